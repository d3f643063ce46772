"""The click application: global options, lazy subcommands and the error boundary."""

from __future__ import annotations

import importlib
import json
import sys

import click

from otpbridge import __version__
from otpbridge.cli import COMMANDS
from otpbridge.cli.common import State, render_error
from otpbridge.core.errors import OtpBridgeError

EPILOG = """\b
Stores and files are named KIND:LOCATION[?option=value], e.g.
  keepass:~/db.kdbx?keyfile=~/k.key   pass:   aegis:backup.json
Without KIND: the format is detected. Remotes are rclone paths (myremote:otp)
or local folders. Secrets never go on the command line: the backup passphrase
comes from --passphrase-file/-fd, OTPBRIDGE_PASSPHRASE, OTPBRIDGE_PASSCOMMAND,
--keyring or a prompt; a store's password from ?password-env=NAME,
?password-file=PATH or OTPBRIDGE_STORE_PASSWORD (README).
Exit codes: 0 ok, 1 error, 2 usage, 3 wrong passphrase/password, 4 integrity,
5 unreachable, 6 refused (would lose data), 7 partial.
"""


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return _not_available(cmd_name)
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, helptext) for name, (_target, helptext) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _not_available(name: str) -> click.Command:
    @click.command(name)
    def stub() -> None:
        raise click.UsageError(f"'{name}' is not available in this build")

    return stub


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="otpbridge", message="%(prog)s %(version)s")
@click.option("--home", type=click.Path(file_okay=False), envvar="OTPBRIDGE_HOME", help="This device's config and state folder (env OTPBRIDGE_HOME).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False), help="Read the backup passphrase from the first line of this file.")
@click.option("--passphrase-fd", type=int, help="Read the backup passphrase from this inherited file descriptor.")
@click.option("--new-passphrase-file", type=click.Path(dir_okay=False), help="Read the new passphrase (passphrase change) from this file.")
@click.option("--new-passphrase-fd", type=int, help="Read the new passphrase from this file descriptor.")
@click.option("--keyring", "use_keyring", is_flag=True, help="Take the backup passphrase from the OS keyring (opt-in).")
@click.option("--recovery-key-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Open the vault with the recovery code in this file instead of the passphrase.")
@click.option("--recovery-key-fd", type=int, metavar="N", help="Read the recovery code from this file descriptor.")
@click.option("--use-recovery-key", "recovery_key", is_flag=True,
              help="Open the vault with the recovery code, asked at a prompt.")
@click.option("--identity", type=click.Path(dir_okay=False), metavar="FILE", envvar="OTPBRIDGE_IDENTITY",
              help="Open the vault with this age identity or OpenSSH ed25519 key file (env OTPBRIDGE_IDENTITY): "
              "no passphrase needed.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors (for cron and hooks); anywhere on the line.")
@click.option("-v", "--verbose", count=True,
              help="Say what is done, with times (store reads, remote calls, key derivation); -vv says more. "
              "Anywhere on the line.")
@click.option("--stats", "show_stats", is_flag=True, help="At exit, print operation counts (key derivations, gpg calls, remote calls) as JSON on stderr.")
@click.pass_context
def cli(ctx: click.Context, show_stats: bool, **options: object) -> None:
    """otpbridge — keep your 2FA accounts safe and in step.

    Read and write TOTP/HOTP accounts in KeePass/KeePassXC, pass (pass-otp), the
    exports of Aegis, Google Authenticator, 2FAS, andOTP, Bitwarden, Ente Auth,
    FreeOTP, Authy, 1Password, LastPass, Proton and Stratum, and QR code screenshots
    ('otpbridge formats' lists them all); back them up encrypted to any rclone remote;
    sync between devices.

    \b
    Examples:
      otpbridge list aegis:backup.json
      otpbridge convert gauth:export.txt keepass:~/otp.kdbx
      otpbridge init myremote:otp --store keepass:~/otp.kdbx
      otpbridge sync
    """
    state = State(**options)  # type: ignore[arg-type]
    ctx.obj = state
    _watch_activity(ctx, state)
    if show_stats:
        ctx.call_on_close(lambda: click.echo("otpbridge-stats: " + json.dumps(dict(state.stats), sort_keys=True), err=True))


def _watch_activity(ctx: click.Context, state: State) -> None:
    """-v/-vv: each step with its time on stderr; else, on a terminal, a transient status
    line (rich, imported on the first step only); on a pipe, nothing."""
    import logging

    from otpbridge.core import activity

    if state.verbose and not state.quiet:
        import time

        t0 = time.time()
        handler = logging.StreamHandler(sys.stderr)

        class _Elapsed(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return f"otpbridge: [{record.created - t0:6.2f}s] {record.getMessage()}"

        handler.setFormatter(_Elapsed())
        activity.log.addHandler(handler)
        activity.log.setLevel(logging.DEBUG if state.verbose > 1 else logging.INFO)

        def _off() -> None:
            activity.log.removeHandler(handler)
            activity.log.setLevel(logging.NOTSET)

        ctx.call_on_close(_off)
        return
    if not state.progress_enabled:
        return
    line = _StatusLine()
    activity.add_listener(line)

    def _stop() -> None:
        activity.remove_listener(line)
        line.stop()

    ctx.call_on_close(_stop)


class _StatusLine:
    """A transient rich status line showing the innermost running step."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.status = None

    def __call__(self, what: str, starting: bool) -> None:
        if starting:
            self.stack.append(what)
        elif what in self.stack:
            self.stack.remove(what)
        if not self.stack:
            self.stop()
            return
        text = self.stack[-1] + " …"
        if self.status is None:
            from rich.console import Console

            self.status = Console(stderr=True, highlight=False).status(text)
            self.status.start()
        else:
            self.status.update(text)

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


#: global options that may stand anywhere on the line (like restic and git)
ANYWHERE = {"-q", "--quiet", "-v", "--verbose", "-vv", "-vvv"}


def hoist_global_flags(args: list[str]) -> list[str]:
    """``otpbridge sync -v`` = ``otpbridge -v sync``: -q/-v after the subcommand move to
    the front (up to a ``--``)."""
    if "--" in args:
        cut = args.index("--")
        head, tail = args[:cut], args[cut:]
    else:
        head, tail = args, []
    flags = [a for a in head if a in ANYWHERE]
    if not flags:
        return args
    rest = [a for a in head if a not in ANYWHERE]
    return [*flags, *rest, *tail]


def run(args: list[str]) -> int:
    from otpbridge.automation.runlog import logged  # run log + unattended-failure record (docs/AUTOMATION.md)

    return logged(args, _run)


def _run(args: list[str]) -> int:
    try:
        result = cli.main(args=hoist_global_flags(args), prog_name="otpbridge", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except OtpBridgeError as err:
        render_error(err)
        return err.exit_code
    except ModuleNotFoundError as exc:
        from otpbridge.core.entrypoints import missing_dependency

        missing = missing_dependency(exc)
        if missing is None:
            raise
        render_error(missing)
        return missing.exit_code
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else str(err), err=True)
        return 2
    except click.ClickException as err:
        err.show()
        return 2 if isinstance(err, click.UsageError) else err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    except click.Abort as err:
        if isinstance(err.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("otpbridge: interrupted", err=True)
            return 130
        click.echo("otpbridge: aborted", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("otpbridge: interrupted", err=True)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1

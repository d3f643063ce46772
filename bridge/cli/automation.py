"""schedule and hook: run sync unattended (systemd timer / cron, git hook, pass extension).

The machinery lives in ``automation/schedule.py`` and ``automation/hooks.py``; this module only parses options
and prints. docs/AUTOMATION.md is the user-facing description.
"""

from __future__ import annotations

import json
import os

import click

from otpbridge.cli.common import State, pass_state
from otpbridge.core.errors import UsageError


def _home_args(state: State) -> list[str]:
    return ["--home", state.home] if state.home else []


def _home(state: State) -> str | None:
    """The home to pin in what we write: only an explicit one (else the platform default)."""
    return str(state.config.config_dir) if state.home else None


def _warn_uninitialised(state: State) -> None:
    if not state.config.read().get("remote"):
        state.warn(f"this home has no vault yet ({state.config.config_file}); run 'otpbridge init REMOTE --store STORE' first")


# --- schedule ------------------------------------------------------------------------------


@click.command("schedule")
@click.option("--every", default="1h", show_default=True, help="How often: 15m, 1h, 6h, 1d …")
@click.option("--install", is_flag=True, help="Write and enable the timer (or crontab line).")
@click.option("--uninstall", is_flag=True, help="Disable and remove it.")
@click.option("--dry-run", is_flag=True, help="With --install/--uninstall: say what would be done; change nothing.")
@click.option("--check", is_flag=True,
              help="Run the scheduled command once, in the unit's own environment, and report the result.")
@click.option(
    "--method",
    type=click.Choice(["auto", "systemd", "cron"]),
    default="auto",
    show_default=True,
    help="auto: a systemd user timer where systemd runs, else a crontab line.",
)
@click.option("--name", default="otpbridge-sync", show_default=True, help="Unit / crontab entry name (one per home).")
@click.option(
    "--passcommand",
    metavar="COMMAND",
    help="OTPBRIDGE_PASSCOMMAND for the scheduled runs (default: copied from the environment if set).",
)
@pass_state
def schedule_cmd(
    state: State,
    every: str,
    install: bool,
    uninstall: bool,
    dry_run: bool,
    check: bool,
    method: str,
    name: str,
    passcommand: str | None,
) -> None:
    """Run 'otpbridge --quiet sync' periodically: a systemd user timer, or cron.

    Without --install, prints the unit files (or the crontab line) it would write.
    The passphrase is never written: scheduled runs get it from OTPBRIDGE_PASSCOMMAND
    (e.g. 'pass show backup/otpbridge'). A run with nothing to do needs no passphrase.
    Failures go to the log and show up in 'otpbridge status'.

    Every secret a run needs must be reachable from the unit: a store password from
    ?password-file= or ?password-command=, the passphrase from --passcommand, the global
    --passphrase-file or --keyring. One that lives only in this shell (?password-env=,
    OTPBRIDGE_PASSPHRASE) makes --install refuse, with a hint. --check runs the command
    once as the timer would, with 'sync --full' so that every store password and the
    passphrase are really used even when nothing changed, and says whether it works.

    \b
    Examples:
      otpbridge schedule --every 1h
      otpbridge schedule --check --passcommand 'pass show backup/otpbridge'
      otpbridge schedule --every 30m --passcommand 'pass show backup/otpbridge' --install
      otpbridge --home ~/.otpb-work schedule --name otpbridge-work --install
      otpbridge schedule --uninstall
    """
    from otpbridge.automation import schedule

    if install and uninstall:
        raise UsageError("--install and --uninstall exclude each other")
    if uninstall:
        out = schedule.uninstall(name=name, method=method, environ=state.environ, dry_run=dry_run)
        for line in out.done:
            state.echo(("would: " if dry_run else "") + line)
        for line in out.notes:
            state.note(line)
        return
    global_args: list[str] = []
    if state.passphrase_file:
        global_args += ["--passphrase-file", os.path.abspath(os.path.expanduser(state.passphrase_file))]
    if state.use_keyring:
        global_args.append("--keyring")
    if state.identity:  # a key file (a path): the timer needs no passphrase
        global_args += ["--identity", os.path.abspath(os.path.expanduser(state.identity))]
    plan = schedule.make_plan(
        home=_home(state), every=schedule.parse_every(every), method=method, name=name, passcommand=passcommand,
        environ=state.environ, global_args=global_args,
    )
    for warning in plan.warnings:
        state.warn(warning)
    _warn_uninitialised(state)
    problems = schedule.unreachable_secrets(plan, state.config.read().get("stores", []), state.environ,
                                            passphrase_file=state.passphrase_file, keyring=state.use_keyring)
    if check:
        _check_schedule(state, schedule, plan, problems)
        return
    if problems and install:
        raise UsageError(
            "the scheduled runs could not reach every secret they need:\n  " + "\n  ".join(problems),
            hint="fix the above, then run 'otpbridge schedule --check' and '--install' again; "
            "a secret is never copied into a unit file or crontab",
        )
    for problem in problems:
        state.warn("a scheduled run would fail: " + problem)
    if not install or dry_run:
        if install:
            state.note("dry run: this is what --install would write")
        elif plan.method == "cron":
            state.note("no running systemd here: add this to your crontab ('crontab -e'), or use --install")
        else:
            state.note("these units would be written; --install writes and enables them")
        click.echo(plan.describe(), nl=False)
        return
    out = schedule.install(plan, environ=state.environ)
    for line in out.done:
        state.echo(line)
    for line in out.notes:
        state.note(line)


def _check_schedule(state: State, schedule, plan, problems: list[str]) -> None:
    for problem in problems:
        state.warn("a scheduled run may fail: " + problem)
    state.note("running, as the " + ("systemd timer" if plan.method == "systemd" else "cron job") + " would: "
               + " ".join(plan.argv) + " --full (every store read and the vault opened, even if nothing changed)")
    proc = schedule.check_run(plan, state.environ)
    if proc.returncode == 0:
        state.echo("the scheduled run works (exit 0)")
        return
    detail = (proc.stderr or proc.stdout).strip()
    state.echo(f"the scheduled run FAILS with exit {proc.returncode}:")
    for line in detail.splitlines():
        state.echo("  " + line)
    raise click.exceptions.Exit(proc.returncode)


# --- hook ----------------------------------------------------------------------------------


@click.group("hook")
def hook_grp() -> None:
    """Sync a pass store after every commit (git hook) and add 'pass otpbridge …'.

    \b
    Examples:
      otpbridge hook install pass:
      otpbridge hook status pass:~/.password-store
      otpbridge hook uninstall pass:
    """


def _passthrough(passcommand: str | None, state: State) -> dict[str, str]:
    env: dict[str, str] = {}
    value = passcommand if passcommand is not None else state.environ.get("OTPBRIDGE_PASSCOMMAND")
    if value:
        env["OTPBRIDGE_PASSCOMMAND"] = value
    if state.environ.get("RCLONE_CONFIG"):
        env["RCLONE_CONFIG"] = state.environ["RCLONE_CONFIG"]
    return env


@hook_grp.command("install")
@click.argument("store", default="pass:")
@click.option("--no-chain", is_flag=True, help="Refuse instead of keeping an existing post-commit hook.")
@click.option("--no-extension", is_flag=True, help="Do not install the 'pass otpbridge' extension.")
@click.option("--passcommand", metavar="COMMAND", help="OTPBRIDGE_PASSCOMMAND for the hook's syncs (default: from the environment).")
@click.option("--dry-run", is_flag=True, help="Print what would be written; change nothing.")
@pass_state
def hook_install_cmd(state: State, store: str, no_chain: bool, no_extension: bool, passcommand: str | None, dry_run: bool) -> None:
    """Install a git post-commit hook into the pass STORE (a git repository).

    After each commit (pass insert, pass otp append, pass edit …) the hook starts
    'otpbridge --quiet sync' in the background. It never fails or blocks the commit;
    a failed sync is logged and shown by 'otpbridge status'. An existing post-commit
    hook is kept and runs first. Also installs the pass extension ('pass otpbridge
    sync|backup|status|restore'), which needs PASSWORD_STORE_ENABLE_EXTENSIONS=true.

    \b
    Examples:
      otpbridge hook install pass:
      otpbridge hook install pass:~/work-store --passcommand 'pass show backup/otpbridge'
      otpbridge hook install pass: --dry-run
    """
    from otpbridge.automation.hooks import install_extension, install_hook, pass_store_dir
    from otpbridge.automation.schedule import console_command

    folder = pass_store_dir(store, state.environ)
    _warn_uninitialised(state)
    _warn_store_not_configured(state, folder)
    command = console_command(state.environ)
    env = _passthrough(passcommand, state)
    if "OTPBRIDGE_PASSCOMMAND" not in env:
        state.warn(
            "no OTPBRIDGE_PASSCOMMAND: the hook's syncs can only upload when the committing shell provides one "
            "(they fail with 'passphrase needed', shown by 'otpbridge status'); see --passcommand"
        )
    report = install_hook(folder, command=command, home=_home(state), chain=not no_chain, extra_env=env, dry_run=dry_run)
    if dry_run:
        click.echo(report.text, nl=False)
    _print_report(state, report, dry_run)
    if not no_extension:
        ext = install_extension(folder, command=command, home=_home(state), dry_run=dry_run)
        _print_report(state, ext, dry_run)


def _warn_store_not_configured(state: State, folder) -> None:
    from otpbridge.automation.hooks import pass_store_dir

    specs = state.config.read().get("stores", []) or []
    for spec in specs:
        if isinstance(spec, str) and spec.lower().startswith("pass:"):
            try:
                if pass_store_dir(spec, {**state.environ, "PASSWORD_STORE_DIR": str(folder)}) == folder:
                    return
            except UsageError:
                continue
    if specs:
        state.warn(f"{folder} is not among this home's stores ({', '.join(map(str, specs))}); its commits will start a sync of those")


def _print_report(state: State, report, dry_run: bool) -> None:
    for line in report.done:
        state.echo(("would: " if dry_run else "") + line)
    for line in report.notes:
        state.note(line)


@hook_grp.command("uninstall")
@click.argument("store", default="pass:")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
@pass_state
def hook_uninstall_cmd(state: State, store: str, dry_run: bool) -> None:
    """Remove the hook (putting back a hook it had kept) and the pass extension.

    \b
    Example:
      otpbridge hook uninstall pass:
    """
    from otpbridge.automation.hooks import pass_store_dir, uninstall_extension, uninstall_hook

    folder = pass_store_dir(store, state.environ)
    _print_report(state, uninstall_hook(folder, dry_run=dry_run), dry_run)
    _print_report(state, uninstall_extension(folder, dry_run=dry_run), dry_run)


@hook_grp.command("status")
@click.argument("store", default="pass:")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def hook_status_cmd(state: State, store: str, as_json: bool) -> None:
    """Is the hook installed in STORE, and did the last unattended run fail?

    \b
    Example:
      otpbridge hook status pass: --json
    """
    from otpbridge.automation.hooks import hook_status, pass_store_dir
    from otpbridge.automation.runlog import describe_failure, log_path, read_failure

    info = hook_status(pass_store_dir(store, state.environ))
    failure = read_failure(state.config.state_dir)
    info["last_unattended_failure"] = failure
    info["log"] = str(log_path(state.config.state_dir))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    state.echo(f"store:     {info['store']}")
    state.echo(f"hook:      {'installed' if info['installed'] else ('another hook (not otpbridge)' if info['other_hook'] else 'not installed')} ({info['hook']})")
    if info["chained"]:
        state.echo(f"chained:   {info['chained']} runs first")
    state.echo(f"extension: {info['extension'] or 'not installed'}")
    state.echo(f"log:       {info['log']}")
    if failure:
        state.echo(describe_failure(failure))


@hook_grp.command("install-extension")
@click.argument("store", default="pass:")
@click.option("--dry-run", is_flag=True, help="Print the extension; write nothing.")
@pass_state
def hook_install_extension_cmd(state: State, store: str, dry_run: bool) -> None:
    """Install only the pass extension: 'pass otpbridge sync|backup|status|restore'.

    It goes to STORE/.extensions/otpbridge.bash (or $PASSWORD_STORE_EXTENSIONS_DIR);
    pass uses it only with PASSWORD_STORE_ENABLE_EXTENSIONS=true.

    \b
    Example:
      otpbridge hook install-extension pass: && export PASSWORD_STORE_ENABLE_EXTENSIONS=true
    """
    from otpbridge.automation.hooks import install_extension, pass_store_dir
    from otpbridge.automation.schedule import console_command

    folder = pass_store_dir(store, state.environ)
    report = install_extension(folder, command=console_command(state.environ), home=_home(state), dry_run=dry_run)
    if dry_run:
        click.echo(report.text, nl=False)
    _print_report(state, report, dry_run)


@hook_grp.command("run", hidden=True)
@click.option("--store", required=True, help="The pass store whose commit started the hook.")
@click.option("--foreground", is_flag=True, help="Sync now and wait (the hook itself detaches).")
@pass_state
def hook_run_cmd(state: State, store: str, foreground: bool) -> None:
    """What the installed hook runs: start (or queue) a background sync; always exit 0.

    \b
    Example (what .git/hooks/post-commit does):
      otpbridge hook run --store pass:~/.password-store
    """
    from otpbridge.automation.hooks import IN_HOOK_ENV, detach, pass_store_dir, run_syncs
    from otpbridge.automation.runlog import open_log
    from otpbridge.automation.schedule import console_command

    if state.environ.get(IN_HOOK_ENV):
        return  # a commit made by the hook's own sync
    folder = pass_store_dir(store, state.environ)
    command = [*console_command(state.environ), *_home_args(state)]
    log = open_log(state.config.state_dir, state.environ) if state.config.config_dir.is_dir() else None

    def note(message: str) -> None:
        if log is not None:
            log.info(message)

    if not foreground:
        pid = detach([*command, "hook", "run", "--store", f"pass:{folder}", "--foreground"], dict(os.environ))
        note(f"hook: started the background sync (pid {pid}) for {folder}")
        return
    result = run_syncs(state_dir=state.config.state_dir, command=command, store=folder, environ=dict(os.environ), log=note)
    if result.deferred:
        note("hook: a sync is already running for this home; it will run once more")


__all__ = ["hook_grp", "schedule_cmd"]

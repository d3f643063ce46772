"""Man pages generated from the click commands themselves (issue 18): one page per
command and subcommand, ``otpbridge(1)``, ``otpbridge-sync(1)``, ``otpbridge-devices-remove(1)``…

The pages are committed under ``bridge/data/man/`` (installed with the package, and into
``share/man/man1`` of the environment, which ``man`` finds next to the ``bin/`` on PATH);
``tests/test_cli_day_in_life.py`` fails when they differ from what this module renders,
so they follow every option change. Regenerate with::

    python -m otpbridge.cli.manpages bridge/data/man
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


def _escape(text: str) -> str:
    out = []
    for line in text.replace("\\", "\\e").splitlines():
        line = line.replace("\b", "").rstrip()
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def _paragraphs(text: str) -> str:
    """click help text to roff: blank lines are paragraphs, ``\\b`` blocks stay as typed."""
    blocks, out = text.strip().split("\n\n"), []
    for block in blocks:
        if block.lstrip().startswith("\b"):
            out.append(".nf\n" + _escape(block.lstrip()[1:].strip("\n")) + "\n.fi")
        else:
            out.append(_escape(" ".join(line.strip() for line in block.splitlines())))
    return "\n.PP\n".join(out)


def _page(path: list[str], cmd: click.Command, ctx: click.Context) -> str:
    title = "-".join(path)
    summary = (cmd.get_short_help_str(limit=200) or "").replace("\\", "\\e")
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    lines = [
        f'.TH "{title.upper()}" "1" "" "otpbridge" "otpbridge manual"',
        ".SH NAME",
        f"{title} \\- {summary}",
        ".SH SYNOPSIS",
        f".B {' '.join(path)}",
        _escape(usage),
        ".SH DESCRIPTION",
        _paragraphs(cmd.help or ""),
    ]
    options = [p.get_help_record(ctx) for p in cmd.get_params(ctx)]
    options = [rec for rec in options if rec]
    if options:
        lines.append(".SH OPTIONS")
        for names, help_text in options:
            lines += [".TP", f"\\fB{_escape(names)}\\fR", _escape(help_text) or "\\&"]
    if isinstance(cmd, click.Group):
        lines.append(".SH COMMANDS")
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                lines += [".TP", f"\\fB{title}-{name}\\fR(1)", _escape(sub.get_short_help_str(limit=120))]
    if cmd.epilog:
        lines += [".SH NOTES", _paragraphs(cmd.epilog)]
    lines += [".SH SEE ALSO", "\\fBotpbridge\\fR(1); docs/CLI.md, docs/SYNC.md, docs/AUTOMATION.md", ""]
    return "\n".join(lines)


def render_all() -> dict[str, str]:
    """``{"otpbridge-sync.1": roff, …}`` for every command."""
    from otpbridge.cli.app import cli as root

    pages: dict[str, str] = {}

    def walk(path: list[str], cmd: click.Command, parent: click.Context | None) -> None:
        # The root's context_settings (-h as well as --help) reach every subcommand, as
        # when the CLI runs; click caches the help option per command on first use.
        settings = root.context_settings if parent is None else {}
        ctx = click.Context(cmd, info_name=path[-1], parent=parent, **settings)
        pages["-".join(path) + ".1"] = _page(path, cmd, ctx)
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk([*path, name], sub, ctx)

    walk(["otpbridge"], root, None)
    return pages


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(render_all().items()):
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for old in folder.glob("*.1"):
        if old not in written:
            old.unlink()
    return written


if __name__ == "__main__":  # pragma: no cover
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "bridge/data/man")):
        print(p)

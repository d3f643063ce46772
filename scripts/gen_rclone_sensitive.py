"""Write bridge/data/rclone-sensitive.json: the options rclone itself marks as secret.

For every rclone backend, the names of the options that ``rclone config providers``
marks ``IsPassword`` or ``Sensitive`` (the ones ``rclone config redacted`` hides). The
redaction of remote strings (``otpbridge.core.remotes``) reads this file, so the fast
path never runs rclone to find out. Run it after upgrading the rclone it was made with::

    python scripts/gen_rclone_sensitive.py            # rewrite the file
    python scripts/gen_rclone_sensitive.py --check    # exit 1 if the file is out of date

``tests/test_rclone_redaction.py`` runs the check against the installed rclone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "bridge" / "data" / "rclone-sensitive.json"


def rclone() -> str:
    sys.path.insert(0, str(OUT.parents[2]))
    from otpbridge.backends.rclone_exec import find_rclone

    return find_rclone(os.environ)


def generate(binary: str | None = None) -> dict:
    binary = binary or rclone()
    env = {"PATH": os.environ.get("PATH", os.defpath), "RCLONE_CONFIG": "/dev/null", "HOME": os.environ.get("HOME", "/")}
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=True, env=env, timeout=60)
    providers = json.loads(subprocess.run([binary, "config", "providers"], capture_output=True, check=True, env=env, timeout=60).stdout)
    backends: dict[str, list[str]] = {}
    for provider in providers:
        names = sorted({o["Name"] for o in provider.get("Options") or [] if o.get("IsPassword") or o.get("Sensitive")})
        for name in [provider["Name"], *(provider.get("Aliases") or [])]:
            backends[name] = names
    return {
        "generated_by": "scripts/gen_rclone_sensitive.py",
        "rclone": version.stdout.split("\n", 1)[0].strip(),
        "backends": dict(sorted(backends.items())),
    }


def render(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    data = generate()
    if "--check" in argv:
        current = json.loads(OUT.read_text(encoding="utf-8"))
        if current != data:
            print(f"{OUT} is out of date for {data['rclone']} (made with {current.get('rclone')}): run {sys.argv[0]}")
            return 1
        print(f"{OUT.name} matches {data['rclone']}")
        return 0
    OUT.write_text(render(data), encoding="utf-8")
    names = {n for v in data["backends"].values() for n in v}
    print(f"wrote {OUT}: {len(data['backends'])} backends, {len(names)} sensitive option names ({data['rclone']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

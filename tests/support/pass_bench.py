"""Measure reading a pass store against a shell loop of ``gpg -d`` (SPEC §9); not a test.

Run: ``.venv/bin/python -m tests.support.pass_bench [ENTRIES] [ROUNDS]`` from the repo
root. It builds a throw-away store (alice's key, a password line plus an otpauth line
per entry), then per round times the baseline ``for f in …; do gpg -d "$f"; done`` and
a cold ``PassStore.read()``, alternating so machine noise hits both alike, and prints
the median of each and their ratio (target ≥ 1.8 on 2 cores). It also prints the gpg
calls of an unchanged second read and of a read after touching one entry, with the
engine-style ``store_cache`` supplied (target: 0 and 1). ``scripts/bench.py`` may
import :func:`run`.
"""

from __future__ import annotations

import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.gpg import PassDir, generate_keys


def build_store(pass_dir: PassDir, entries: int) -> list[Path]:
    def one(i: int) -> Path:
        secret = base64.b32encode(os.urandom(20)).decode().rstrip("=")
        body = f"password-{i}\nlogin: user{i}\notpauth://totp/Svc{i}:user{i}?secret={secret}&issuer=Svc{i}\n"
        return pass_dir.write(f"svc{i % 40}/user{i}", body.encode())

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(entries)))


def shell_loop(files: list[Path], home: Path) -> float:
    script = 'for f in "$@"; do gpg -d --quiet --batch "$f" >/dev/null; done'
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script, "loop", *map(str, files)], check=True, env=dict(os.environ, GNUPGHOME=str(home)))
    return time.perf_counter() - start


def run(entries: int = 1000, rounds: int = 3) -> dict[str, float]:
    keys = generate_keys()
    home = keys.copy("alice")
    root = Path(tempfile.mkdtemp(prefix="passbench"))
    try:
        pass_dir = PassDir(root / "store", home)
        pass_dir.init(keys.alice.fingerprint)
        files = build_store(pass_dir, entries)
        base, ours = [], []
        for _ in range(rounds):
            base.append(shell_loop(files, home.path))
            store = pass_dir.store()
            start = time.perf_counter()
            result = store.read()
            ours.append(time.perf_counter() - start)
            assert len(result.accounts) == entries and not result.errors
        cache: dict[str, bytes] = {}
        pass_dir.store(store_cache=cache).read()
        unchanged = pass_dir.store(store_cache=cache)
        unchanged.read()
        os.utime(files[0])
        touched = pass_dir.store(store_cache=cache)
        touched.read()
        out = {
            "entries": entries,
            "gpg_loop_s": statistics.median(base),
            "read_s": statistics.median(ours),
            "speedup": statistics.median(base) / statistics.median(ours),
            "gpg_calls_unchanged": unchanged.ctx.stats["gpg"],
            "gpg_calls_one_touched": touched.ctx.stats["gpg"],
        }
        return out
    finally:
        home.close()
        keys.close()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> None:
    entries = int(argv[0]) if argv else 1000
    rounds = int(argv[1]) if len(argv) > 1 else 3
    res = run(entries, rounds)
    print(
        f"pass read of {res['entries']} entries: {res['read_s']:.2f} s vs gpg -d loop {res['gpg_loop_s']:.2f} s "
        f"= {res['speedup']:.2f}x (cpus: {os.cpu_count()}); second read gpg calls: "
        f"unchanged {res['gpg_calls_unchanged']}, one touched {res['gpg_calls_one_touched']}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])

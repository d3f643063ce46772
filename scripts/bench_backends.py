"""Measure the rclone transports (per-call processes vs one rcd) for docs/BACKENDS.md.

Usage: .venv/bin/python scripts/bench_backends.py [ROUNDS]
Starts rclone serve webdav/sftp/s3 on 127.0.0.1 like the tests do; prints a Markdown table.
A "typical sync" is 1 listing + 3 reads + 2 writes (each read back): 8 rclone operations.
Each round opens a fresh backend and closes it, so rcd start/stop is included.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otpbridge.backends import rclone_exec as rx  # noqa: E402
from otpbridge.backends.rclone import RcloneBackend  # noqa: E402
from otpbridge.backends.rclone_exec import FAST_FAIL, find_rclone  # noqa: E402
from tests.support.servers import base_environ, running_server  # noqa: E402

BLOB = bytes(range(256)) * 16  # 4 KiB of ciphertext-like bytes


def typical(location: str, env: dict, transport: str) -> float:
    t0 = time.perf_counter()
    with RcloneBackend(location, environ=env, transport=transport) as b:
        b.list()
        for i in range(3):
            b.read(f"obj{i}")
        b.write("new0", BLOB)
        b.write("new1", BLOB)
    return time.perf_counter() - t0


def no_change(location: str, env: dict, transport: str) -> float:
    t0 = time.perf_counter()
    with RcloneBackend(location, environ=env, transport=transport) as b:
        b.list()
    return time.perf_counter() - t0


def bare_lsjson(location: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([find_rclone(env), "lsjson", "-R", *FAST_FAIL, "--", location], env=env, capture_output=True, check=True)
    return time.perf_counter() - t0


def interleaved(fns: list, rounds: int) -> list[tuple[float, float]]:
    """(median, min) in ms per function; the functions alternate so they share the machine's load."""
    for fn in fns:
        fn()  # warm-up (page cache, sftp host keys, s3 bucket)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            rx._version_ok.clear()  # each otpbridge run checks the version once
            times[i].append(fn() * 1000)
    return [(statistics.median(t), min(t)) for t in times]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        targets = [("rclone :local:", f":local:{work}/local", base_environ(), None)]
        servers = []
        for kind in ("webdav", "sftp", "s3"):
            cm = running_server(kind, work / kind)
            (work / kind).mkdir()
            server = cm.__enter__()
            servers.append(cm)
            targets.append((f"serve {kind}", server.location("bench"), server.environ(), server))
        try:
            for label, location, env, _server in targets:
                with RcloneBackend(location, environ=env) as b:
                    for i in range(3):
                        b.write(f"obj{i}", BLOB)
                fns = [
                    lambda: bare_lsjson(location, env),  # noqa: B023
                    lambda: no_change(location, env, "cli"),  # noqa: B023
                    lambda: no_change(location, env, "rcd"),  # noqa: B023
                    lambda: typical(location, env, "cli"),  # noqa: B023
                    lambda: typical(location, env, "rcd"),  # noqa: B023
                ]
                rows.append([label, *interleaved(fns, rounds)])
        finally:
            for cm in servers:
                cm.__exit__(None, None, None)
    print(f"median (min) of {rounds} interleaved rounds, ms; each round = a fresh backend, closed at the end")
    print("| remote | bare `rclone lsjson` | no-change (1 list): cli | rcd | typical sync (8 ops): cli | rcd |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join([row[0], *(f"{med:.0f} ({low:.0f})" for med, low in row[1:])]) + " |")


if __name__ == "__main__":
    main()

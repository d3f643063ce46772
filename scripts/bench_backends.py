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


def median_ms(fn, rounds: int) -> float:
    fn()  # warm-up (page cache, sftp host keys, s3 bucket)
    return statistics.median(fn() for _ in range(rounds)) * 1000


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
                row = [label]
                row.append(median_ms(lambda: bare_lsjson(location, env), rounds))  # noqa: B023
                for transport in ("cli", "rcd"):
                    row.append(median_ms(lambda: no_change(location, env, transport), rounds))  # noqa: B023
                for transport in ("cli", "rcd"):
                    row.append(median_ms(lambda: typical(location, env, transport), rounds))  # noqa: B023
                rows.append(row)
        finally:
            for cm in servers:
                cm.__exit__(None, None, None)
    print(f"median of {rounds} rounds, ms")
    print("| remote | bare `rclone lsjson` | no-change (1 list): cli | rcd | typical sync (8 ops): cli | rcd |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join([row[0], *(f"{v:.0f}" for v in row[1:])]) + " |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmarks for SPEC §9, each beside a baseline measured in the same run.

    python scripts/bench.py            # full mode: SPEC §9 sizes
    python scripts/bench.py --quick    # small sizes; checks operation counts (CI)

It builds its own data in a temporary folder (uris files, KeePass databases written by
keepassxc-cli, a pass store with a throw-away GNUPGHOME, a local-folder remote), runs
each scenario several times and prints: scenario, otpbridge median, baseline median,
ratio, target, and the operation counts otpbridge reported (``--stats``).

Times are informative in --quick mode; only counts are checked there, because a CI
machine's timings say little. In full mode the targets are checked as well.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
OTPBRIDGE = str(BIN / "otpbridge") if (BIN / "otpbridge").exists() else "otpbridge"
RCLONE = str(BIN / "rclone") if (BIN / "rclone").exists() else (shutil.which("rclone") or "rclone")
PASSPHRASE = "bench: correct horse battery staple"
DB_PASSWORD = "bench-db-password"


@dataclass
class Row:
    scenario: str
    ours: float | None
    baseline_name: str
    baseline: float | None
    target: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    ok: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(argv: Sequence[str], env: dict[str, str], *, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), env=env, input=input, capture_output=True, timeout=900, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"bench: {argv[0]} {' '.join(argv[1:3])} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


def stats_of(proc: subprocess.CompletedProcess) -> dict[str, int]:
    for line in proc.stderr.decode(errors="replace").splitlines():
        if line.startswith("otpbridge-stats: "):
            return json.loads(line.split(": ", 1)[1])
    return {}


def random_uris(n: int, seed_tag: str = "") -> str:
    lines = []
    for i in range(n):
        secret = base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")
        kind = "hotp" if i % 10 == 9 else "totp"
        extra = f"&counter={i}" if kind == "hotp" else ""
        lines.append(f"otpauth://{kind}/Issuer{seed_tag}{i}:user{i}%40example.com?secret={secret}&issuer=Issuer{seed_tag}{i}{extra}")
    return "\n".join(lines) + "\n"


# -- scenarios -----------------------------------------------------------------------


def bench_startup(work: Path, env: dict[str, str], runs: int) -> list[Row]:
    uris = work / "startup.txt"
    uris.write_text(random_uris(20))
    py = median_time(lambda: run([sys.executable, "-c", "pass"], env), runs)
    version = median_time(lambda: run([OTPBRIDGE, "--version"], env), runs)
    code = median_time(lambda: run([OTPBRIDGE, "code", f"uris:{uris}"], env), runs)
    return [
        Row("otpbridge --version", version, "python -c pass", py, "≤ 0.15 s", ok=version <= 0.15),
        Row("otpbridge code uris:FILE (20 accounts)", code, "python -c pass", py, "≤ 0.3 s", ok=code <= 0.3),
    ]


def bench_sync(work: Path, env: dict[str, str], runs: int, accounts: int) -> list[Row]:
    home = work / "sync-home"
    remote = work / "sync-remote"
    store = work / "sync-store.txt"
    store.write_text(random_uris(accounts))
    senv = dict(env, OTPBRIDGE_HOME=str(home), OTPBRIDGE_PASSPHRASE=PASSPHRASE)
    run([OTPBRIDGE, "init", str(remote), "--store", f"uris:{store}", "--device", "bench"], senv)
    run([OTPBRIDGE, "sync"], senv)
    # the no-change path must not even need a passphrase
    nopass = {k: v for k, v in senv.items() if k != "OTPBRIDGE_PASSPHRASE"}
    last: dict[str, int] = {}

    def nochange() -> None:
        nonlocal last
        last = stats_of(run([OTPBRIDGE, "--stats", "sync"], nopass))

    ours = median_time(nochange, runs)
    base = median_time(lambda: run([RCLONE, "lsjson", "-R", str(remote)], env), runs)
    problems = []
    if last.get("kdf", 0) != 0:
        problems.append(f"no-change sync derived a key {last.get('kdf')} time(s)")
    if last.get("gpg", 0) != 0:
        problems.append("no-change sync called gpg")
    if last.get("listings", 0) != 1:
        problems.append(f"no-change sync made {last.get('listings', 0)} listings, expected 1")
    rows = [
        Row(
            f"sync, no change ({accounts} accounts, local remote)",
            ours,
            "rclone lsjson -R",
            base,
            "≤ 2.5× · 0 kdf · 0 gpg · 1 listing",
            counts=last,
            problems=problems,
        )
    ]

    one: dict[str, int] = {}

    def onechange() -> None:
        nonlocal one
        with store.open("a") as fh:
            fh.write(random_uris(1, seed_tag=f"x{time.monotonic_ns()}"))
        one = stats_of(run([OTPBRIDGE, "--stats", "sync"], senv))

    ours1 = median_time(onechange, runs)
    problems = []
    if one.get("kdf", 0) != 1:
        problems.append(f"one-change sync derived a key {one.get('kdf', 0)} time(s), expected 1")
    if one.get("uploads", 0) != 1:
        problems.append(f"one-change sync made {one.get('uploads', 0)} uploads, expected 1")
    if one.get("verifications", 0) < 1:
        problems.append("one-change sync did not verify its upload")
    rows.append(
        Row(f"sync, one change ({accounts} accounts)", ours1, "rclone lsjson -R", base, "1 kdf · 1 upload + verify", counts=one, problems=problems)
    )
    return rows


def make_gnupghome(work: Path) -> tuple[Path, str]:
    gnupghome = work / "gnupg"
    gnupghome.mkdir(mode=0o700)
    genv = dict(os.environ, GNUPGHOME=str(gnupghome))
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "bench@otpbridge.invalid", "ed25519", "default", "never"],
        env=genv, capture_output=True, check=True,
    )
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-add-key",
         _fingerprint(genv), "cv25519", "encr", "never"],
        env=genv, capture_output=True, check=True,
    )
    return gnupghome, _fingerprint(genv)


def _fingerprint(env: dict[str, str]) -> str:
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"], env=env, capture_output=True, text=True, check=True).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def bench_pass(work: Path, env: dict[str, str], runs: int, entries: int) -> list[Row]:
    if not shutil.which("gpg"):
        return [Row("pass read", None, "gpg -d loop", None, problems=["gpg not installed"])]
    gnupghome, fpr = make_gnupghome(work)
    store = work / "pass-store"
    store.mkdir()
    (store / ".gpg-id").write_text(fpr + "\n")
    penv = dict(env, GNUPGHOME=str(gnupghome), PASSWORD_STORE_DIR=str(store))
    files = []
    for i, uri in enumerate(random_uris(entries).splitlines()):
        target = store / f"site{i % 50}" / f"user{i}.gpg"
        target.parent.mkdir(exist_ok=True)
        body = f"password{i}\nlogin: user{i}\n{uri}\n".encode()
        run(["gpg", "--batch", "--yes", "--compress-algo=none", "--trust-model=always", "-r", fpr, "-o", str(target), "-e"], penv, input=body)
        files.append(target)
    loop = ["bash", "-c", 'for f in "$@"; do gpg --batch -q -d "$f" >/dev/null; done', "loop", *map(str, files)]
    base = median_time(lambda: run(loop, penv), runs)
    home = work / "pass-home"
    penv["OTPBRIDGE_HOME"] = str(home)
    last: dict[str, int] = {}

    def read_all() -> None:
        nonlocal last
        last = stats_of(run([OTPBRIDGE, "--stats", "list", f"pass:{store}", "--json"], penv))

    ours = median_time(read_all, runs)
    rows = [Row(f"pass read, {entries} entries", ours, "bash loop of gpg -d", base, "≥ 1.8× faster (ratio ≤ 0.56)", counts=last)]
    return rows


def bench_keepass(work: Path, env: dict[str, str], runs: int, entries: int) -> list[Row]:
    cli = shutil.which("keepassxc-cli")
    if not cli:
        return [Row("keepass read", None, "keepassxc-cli export", None, problems=["keepassxc-cli not installed"])]
    xml = work / "kp.xml"
    xml.write_text(_keepass_xml(entries))
    db = work / "kp-argon2.kdbx"
    run([cli, "import", "-p", str(xml), str(db)], env, input=f"{DB_PASSWORD}\n{DB_PASSWORD}\n".encode())
    kenv = dict(env, OTPBRIDGE_KEEPASS_PASSWORD=DB_PASSWORD)
    rows = []
    for label, path in (("Argon2", db),):
        base = median_time(lambda p=path: run([cli, "export", "-q", str(p)], env, input=f"{DB_PASSWORD}\n".encode()), runs)
        last: dict[str, int] = {}

        def read_db(p: Path = path) -> None:
            nonlocal last
            last = stats_of(run([OTPBRIDGE, "--stats", "list", f"keepass:{p}", "--json"], kenv))

        ours = median_time(read_db, runs)
        rows.append(Row(f"keepass read, {entries} entries ({label})", ours, "keepassxc-cli export", base, "≤ 1.5×", counts=last))
    return rows


def _keepass_xml(n: int) -> str:
    from xml.sax.saxutils import escape

    entries = []
    for i, uri in enumerate(random_uris(n).splitlines()):
        if "otpauth://hotp" in uri:
            uri = uri.replace("otpauth://hotp", "otpauth://totp").split("&counter")[0]
        entries.append(
            "<Entry><UUID>{}</UUID>"
            "<String><Key>Title</Key><Value>Site {}</Value></String>"
            "<String><Key>UserName</Key><Value>user{}</Value></String>"
            "<String><Key>Password</Key><Value ProtectInMemory=\"True\">pw{}</Value></String>"
            "<String><Key>otp</Key><Value ProtectInMemory=\"True\">{}</Value></String>"
            "</Entry>".format(base64.b64encode(secrets.token_bytes(16)).decode(), i, i, i, escape(uri))
        )
    return (
        '<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n<KeePassFile><Meta><Generator>otpbridge-bench</Generator></Meta>'
        "<Root><Group><UUID>{}</UUID><Name>Root</Name>{}</Group></Root></KeePassFile>\n"
    ).format(base64.b64encode(secrets.token_bytes(16)).decode(), "".join(entries))


# -- main --------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    head = f"{'scenario':52} {'otpbridge':>10} {'baseline':>10} {'ratio':>7}  {'target':34} counts"
    print(head)
    print("-" * len(head))
    for r in rows:
        ours = f"{r.ours:.3f}s" if r.ours is not None else "-"
        base = f"{r.baseline:.3f}s" if r.baseline is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        counts = ", ".join(f"{k}={v}" for k, v in sorted(r.counts.items()))
        print(f"{r.scenario:52} {ours:>10} {base:>10} {ratio:>7}  {r.target:34} {counts}")
        print(f"{'':52} baseline: {r.baseline_name}")
        for p in r.problems:
            print(f"{'':52} PROBLEM: {p}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes; check counts only (CI)")
    parser.add_argument("--runs", type=int, default=None, help="repetitions per scenario (median)")
    parser.add_argument("--json", dest="json_out", help="also write the rows as JSON to this file")
    parser.add_argument("--only", action="append", choices=["startup", "sync", "pass", "keepass"], help="run only these")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    sizes = {"accounts": 50, "pass": 40, "keepass": 200} if args.quick else {"accounts": 1000, "pass": 1000, "keepass": 10000}
    only = set(args.only or ["startup", "sync", "pass", "keepass"])
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="otpbridge-bench-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTPBRIDGE_")}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        if "startup" in only:
            rows += bench_startup(work, env, runs)
        if "sync" in only:
            rows += bench_sync(work, env, runs, sizes["accounts"])
        if "pass" in only:
            rows += bench_pass(work, env, runs, sizes["pass"])
        if "keepass" in only:
            rows += bench_keepass(work, env, runs, sizes["keepass"])
        subprocess.run(["gpgconf", "--kill", "all"], env=dict(env, GNUPGHOME=str(work / "gnupg")), capture_output=True, check=False)
    print(f"machine: {os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; mode: {'quick' if args.quick else 'full'}, median of {runs}")
    print_table(rows)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([{**r.__dict__, "ratio": r.ratio} for r in rows], indent=2))
    failed = [r for r in rows if r.problems]
    if not args.quick:
        failed += [r for r in rows if r.ok is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmarks for SPEC §9, each figure beside a baseline measured in the same run.

    python scripts/bench.py            # full mode: SPEC §9 sizes (takes several minutes)
    python scripts/bench.py --quick    # small sizes; checks the operation counts (CI)
    python scripts/bench.py --only keepass --runs 3 --json out.json

It builds all of its data in a temporary folder:

* otpauth URI files (the ``uris:`` store of the sync scenarios);
* a pass store encrypted with ``gpg`` under a throw-away ``GNUPGHOME``;
* KeePass databases that KeePassXC wrote: ``keepassxc-cli import`` (KDBX 3.1, AES-KDF,
  rounds tuned by KeePassXC itself for ~1 s, ``-t``) and an Argon2d KDBX 4 (an empty
  database created by pykeepass with Argon2 parameters calibrated to ~1 s, into which
  ``keepassxc-cli merge`` copies the entries, so KeePassXC writes the file and keeps
  its KDF); the KDF of each result is checked with ``keepassxc-cli db-info``;
* a local-folder remote, and a WebDAV remote served by ``rclone serve webdav`` on
  127.0.0.1 (started here on a free port, stopped at the end).

Every scenario drives the installed CLI (``otpbridge --stats …``) in a subprocess,
alternating with its baseline so machine noise hits both alike, and reads the counted
operations from the ``otpbridge-stats:`` line on stderr. Baselines: a bare
``rclone lsjson`` of the same remote, a shell loop of ``gpg -d`` over the same pass
entries, ``keepassxc-cli export`` of the same database (and pykeepass alone, once, for
reference).

Exit status: 1 when a counted operation is wrong (both modes) or, in full mode only,
when a time target of SPEC §9 is missed; times on a CI machine say little, counts do.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

BIN = Path(sys.executable).parent
OTPBRIDGE = (
    str(BIN / "otpbridge") if (BIN / "otpbridge").exists() else (shutil.which("otpbridge") or "otpbridge")
)
RCLONE = str(BIN / "rclone") if (BIN / "rclone").exists() else (shutil.which("rclone") or "rclone")
KEEPASSXC = shutil.which("keepassxc-cli")
GPG = shutil.which("gpg")
# Throw-away credentials of data this script creates and deletes; never a user's.
PASSPHRASE = "bench: correct horse battery staple"
DB_PASSWORD = "bench-db-password"
DAV_USER = "bench"
COUNT_KEYS = (
    "kdf",
    "keepass_kdf",
    "gpg",
    "listings",
    "uploads",
    "verifications",
    "downloads",
    "deletes",
    "rclone_calls",
    "download_bytes",
    "upload_bytes",
)


@dataclass
class Row:
    scenario: str
    ours: float | None
    baseline_name: str
    baseline: float | None
    target: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    ok: bool | None = None  # the time target (None: none, or not measurable)
    problems: list[str] = field(default_factory=list)  # wrong counts / wrong results
    runs: int = 0

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline


@dataclass
class Env:
    work: Path
    env: dict[str, str]
    runs: int
    quick: bool
    sizes: dict[str, int]

    @property
    def heavy_runs(self) -> int:
        """Runs of scenarios that derive a key each time (quick mode: counts matter, not times)."""
        return 2 if self.quick else self.runs

    @property
    def startup_runs(self) -> int:
        return self.runs if self.quick else self.runs * 2  # cheap and the noisiest: more runs


# -- running and timing --------------------------------------------------------------------


def run(
    argv: Sequence[str], env: dict[str, str], *, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), env=env, input=input, capture_output=True, timeout=1800, check=False)
    if check and proc.returncode != 0:
        shown = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv[:3]))
        raise SystemExit(
            f"bench: {shown} … failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-2000:]}"
        )
    return proc


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(
    ours: Callable[[], object],
    base: Callable[[], object] | None,
    runs: int,
    *,
    before: Callable[[], object] | None = None,
) -> tuple[float, float | None]:
    """Medians of ``ours`` and ``base``, alternated run by run (``before`` runs untimed)."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(runs):
        if base is not None:
            b.append(timed(base))
        if before is not None:
            before()
        a.append(timed(ours))
    return statistics.median(a), (statistics.median(b) if b else None)


def stats_of(proc: subprocess.CompletedProcess) -> dict[str, int]:
    for line in proc.stderr.decode(errors="replace").splitlines():
        if line.startswith("otpbridge-stats: "):
            return json.loads(line.split(": ", 1)[1])
    return {}


def expect(counts: dict[str, int], what: str, **wanted: int | tuple[str, int]) -> list[str]:
    """Problems when ``counts`` differ from ``wanted`` (an int, or (">=", n))."""
    problems = []
    if not counts:
        return [f"{what}: no otpbridge-stats line"]
    for key, want in wanted.items():
        got = counts.get(key, 0)
        if isinstance(want, tuple):
            op, n = want
            bad = got < n if op == ">=" else got > n
            if bad:
                problems.append(f"{what}: {key}={got}, expected {op} {n}")
        elif got != want:
            problems.append(f"{what}: {key}={got}, expected {want}")
    return problems


# -- data ----------------------------------------------------------------------------------


def random_uris(n: int, tag: str = "", *, hotp: bool = True) -> list[str]:
    lines = []
    for i in range(n):
        secret = base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")
        is_hotp = hotp and i % 10 == 9
        kind = "hotp" if is_hotp else "totp"
        extra = f"&counter={i}" if is_hotp else ""
        lines.append(
            f"otpauth://{kind}/Issuer{tag}{i}:user{i}%40example.com?secret={secret}&issuer=Issuer{tag}{i}{extra}"
        )
    return lines


def make_gnupghome(work: Path) -> tuple[Path, str]:
    gnupghome = work / "gnupg"
    gnupghome.mkdir(mode=0o700)
    genv = dict(os.environ, GNUPGHOME=str(gnupghome))
    subprocess.run(
        [
            GPG,
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "bench@otpbridge.invalid",
            "ed25519",
            "sign",
            "never",
        ],
        env=genv,
        capture_output=True,
        check=True,
    )
    fpr = _fingerprint(genv)
    subprocess.run(
        [GPG, "--batch", "--passphrase", "", "--quick-add-key", fpr, "cv25519", "encr", "never"],
        env=genv,
        capture_output=True,
        check=True,
    )
    return gnupghome, fpr


def _fingerprint(env: dict[str, str]) -> str:
    out = subprocess.run(
        [GPG, "--batch", "--with-colons", "--list-keys"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def gpg_encrypt(penv: dict[str, str], fpr: str, target: Path, body: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    run(
        [GPG, "--batch", "--yes", "--quiet", "--trust-model=always", "-r", fpr, "-o", str(target), "-e"],
        penv,
        input=body,
    )


def make_pass_store(b: Env, penv: dict[str, str], fpr: str, store: Path, entries: int) -> list[Path]:
    store.mkdir()
    (store / ".gpg-id").write_text(fpr + "\n")
    uris = random_uris(entries)

    def one(i: int) -> Path:
        target = store / f"site{i % 50}" / f"user{i}.gpg"
        gpg_encrypt(penv, fpr, target, f"password{i}\nlogin: user{i}\n{uris[i]}\n".encode())
        return target

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(entries)))


def keepass_xml(n: int) -> str:
    def uuid() -> str:
        return base64.b64encode(secrets.token_bytes(16)).decode()

    entries = []
    for i, uri in enumerate(random_uris(n, hotp=False)):
        entries.append(
            f"<Entry><UUID>{uuid()}</UUID>"
            f"<String><Key>Title</Key><Value>Site {i}</Value></String>"
            f"<String><Key>UserName</Key><Value>user{i}</Value></String>"
            f'<String><Key>Password</Key><Value ProtectInMemory="True">pw{i}</Value></String>'
            f'<String><Key>otp</Key><Value ProtectInMemory="True">{escape(uri)}</Value></String>'
            "</Entry>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n<KeePassFile><Meta><Generator>otpbridge-bench</Generator></Meta>'
        f"<Root><Group><UUID>{uuid()}</UUID><Name>Root</Name>{''.join(entries)}</Group></Root></KeePassFile>\n"
    )


def kpxc(args: Sequence[str], env: dict[str, str], stdin_lines: int = 1) -> subprocess.CompletedProcess:
    assert KEEPASSXC is not None
    return run([KEEPASSXC, *args], env, input=(DB_PASSWORD + "\n").encode() * stdin_lines)


def kdf_of(db: Path, env: dict[str, str]) -> tuple[str, int]:
    """``("AES", rounds)`` / ``("Argon2d", iterations)`` as KeePassXC itself reports it, and the entry count."""
    out = kpxc(["db-info", "-q", str(db)], env).stdout.decode()
    kdf = re.search(r"^KDF: (.*)$", out, re.M)
    count = re.search(r"^Number of entries: (\d+)", out, re.M)
    return (kdf.group(1) if kdf else "?"), int(count.group(1)) if count else -1


def argon2_iterations(memory_kib: int, parallelism: int, seconds: float) -> int:
    """Iterations that take about ``seconds`` here (KeePassXC tunes its default to 1 s the same way)."""
    import argon2.low_level as a2

    def one(t: int) -> float:
        return timed(
            lambda: a2.hash_secret_raw(
                b"x" * 32,
                b"s" * 32,
                time_cost=t,
                memory_cost=memory_kib,
                parallelism=parallelism,
                hash_len=32,
                type=a2.Type.D,
            )
        )

    per = min(one(2) for _ in range(2)) / 2
    return max(2, round(seconds / per))


def make_empty_kdbx4(path: Path, kdf: str, **params: int) -> None:
    """An empty KDBX 4 with the given KDF (pykeepass), into which KeePassXC then merges the data.

    ``kdf="aes"``: ``rounds``; ``kdf="argon2"`` (Argon2d): ``memory_kib``, ``iterations``,
    ``parallelism``. KeePassXC keeps a database's KDF settings when it saves a merge.
    """
    from construct import Container
    from pykeepass import create_database
    from pykeepass.kdbx_parsing.kdbx4 import kdf_uuids

    kp = create_database(str(path), password=DB_PASSWORD)
    header = kp.kdbx.header.value.dynamic_header.kdf_parameters.data

    def item(key: str, vtype: int, value: object) -> Container:
        return Container(type=vtype, key=key, value=value, next_byte=0)

    if kdf == "aes":
        items = [item("$UUID", 0x42, kdf_uuids["aeskdf"]), item("R", 0x05, params["rounds"])]
    else:
        items = [
            item("$UUID", 0x42, kdf_uuids["argon2"]),
            item("I", 0x05, params["iterations"]),
            item("M", 0x05, params["memory_kib"] * 1024),
            item("P", 0x04, params["parallelism"]),
            item("V", 0x04, 0x13),
        ]
    items.append(item("S", 0x42, secrets.token_bytes(32)))
    for i, e in enumerate(items):  # construct's RepeatUntil stops building at next_byte == 0
        e.next_byte = 0 if i == len(items) - 1 else e.type
    header.dict = Container({e.key: e for e in items})
    kp.save()


def make_keepass_dbs(b: Env, entries: int) -> tuple[list[tuple[str, Path]], list[str]]:
    """(label, path) of an AES-KDF and an Argon2d database that KeePassXC wrote; plus notes.

    Full mode: the AES-KDF database is ``keepassxc-cli import``'s own (KDBX 3.1, rounds
    KeePassXC tuned for 1 s on this machine); Argon2d gets 64 MiB, one lane per CPU and
    the iterations that take ~1 s here (KeePassXC's defaults). Quick mode: cheap KDFs in
    KDBX 4 files (keepassxc-cli cannot tune below 100 ms).
    """
    env, work = b.env, b.work
    xml = work / "kp.xml"
    xml.write_text(keepass_xml(entries))
    imported = work / "kp-aes.kdbx"
    run(
        [KEEPASSXC, "import", "-q", "-p", "-t", str(100 if b.quick else 1000), str(xml), str(imported)],
        env,
        input=f"{DB_PASSWORD}\n{DB_PASSWORD}\n".encode(),
    )
    xml.unlink()
    aes = imported
    if b.quick:
        aes = work / "kp-aes4.kdbx"
        make_empty_kdbx4(aes, "aes", rounds=20_000)
        kpxc(["merge", "-q", "-s", str(aes), str(imported)], env)
    argon = work / "kp-argon2.kdbx"
    memory = (8 << 10) if b.quick else (64 << 10)  # KiB
    par = os.cpu_count() or 2
    iters = 2 if b.quick else argon2_iterations(memory, par, 1.0)
    make_empty_kdbx4(argon, "argon2", memory_kib=memory, iterations=iters, parallelism=par)
    kpxc(["merge", "-q", "-s", str(argon), str(imported)], env)
    notes, dbs = [], []
    for path, want in ((aes, "AES"), (argon, "Argon2d")):
        kdf, count = kdf_of(path, env)
        version = "KDBX 3.1" if path.read_bytes()[10:12] == b"\x03\x00" else "KDBX 4"
        notes.append(f"{path.name}: {version}, KDF {kdf}, {count} entries (keepassxc-cli db-info)")
        if not kdf.startswith(want) or count != entries:
            raise SystemExit(f"bench: {path.name} is not what was meant: KDF {kdf!r}, {count} entries")
        dbs.append((f"{version}, {kdf}", path))
    return dbs, notes


@contextlib.contextmanager
def webdav_server(b: Env) -> Iterator[tuple[str, dict[str, str]]]:
    """``rclone serve webdav`` on 127.0.0.1:free port; yields (remote for otpbridge and rclone, client env)."""
    root = b.work / "dav-root"
    root.mkdir()
    password = secrets.token_urlsafe(12)
    senv = dict(b.env, RCLONE_USER=DAV_USER, RCLONE_PASS=password)
    log = b.work / "dav.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [RCLONE, "serve", "webdav", str(root), "--addr", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fh,
            env=senv,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            match = re.search(r"started on \[?https?://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
            if match:
                port = int(match.group(1))
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"bench: rclone serve webdav did not start:\n{log.read_text(errors='replace')[-1000:]}"
                )
            time.sleep(0.02)
        obscured = run([RCLONE, "obscure", "-"], b.env, input=password.encode()).stdout.decode().strip()
        cenv = dict(b.env, RCLONE_WEBDAV_USER=DAV_USER, RCLONE_WEBDAV_PASS=obscured)
        yield f":webdav,url='http://127.0.0.1:{port}/',vendor=rclone:otp", cenv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -- scenarios -----------------------------------------------------------------------------


def warm_up(env: dict[str, str]) -> None:
    """Byte-compile otpbridge (as pip does at install), so no run pays for compiling."""
    code = (
        "import compileall, importlib, os, sys\n"
        "for name in ('otpbridge', 'otpbridge.plugins', 'otpbridge.backends'):\n"
        "    for folder in importlib.import_module(name).__path__:\n"
        "        compileall.compile_dir(folder, quiet=1, maxlevels=0)\n"
    )
    run([sys.executable, "-c", code], env)


def bench_startup(b: Env) -> list[Row]:
    uris = b.work / "startup.txt"
    uris.write_text("\n".join(random_uris(20)) + "\n")
    py = [sys.executable, "-c", "pass"]
    run([OTPBRIDGE, "code", f"uris:{uris}"], b.env)  # warm the page cache and stdlib bytecode
    version, py_t = paired(
        lambda: run([OTPBRIDGE, "--version"], b.env), lambda: run(py, b.env), b.startup_runs
    )
    out: dict[str, object] = {}

    def code() -> None:
        out["p"] = run([OTPBRIDGE, "code", f"uris:{uris}"], b.env)

    code_t, py_t2 = paired(code, lambda: run(py, b.env), b.startup_runs)
    problems = (
        []
        if len(out["p"].stdout.decode().strip().splitlines()) >= 20
        else ["code printed fewer than 20 rows"]
    )  # type: ignore[union-attr]
    rclone_t, _ = paired(lambda: run([RCLONE, "version"], b.env), None, b.runs)
    return [
        Row(
            "otpbridge --version",
            version,
            "python -c pass",
            py_t,
            "≤ 0.15 s",
            ok=version <= 0.15,
            runs=b.startup_runs,
        ),
        Row(
            "otpbridge code uris:FILE (20 accounts)",
            code_t,
            "python -c pass",
            py_t2,
            "≤ 0.3 s",
            ok=code_t <= 0.3,
            problems=problems,
            runs=b.startup_runs,
        ),
        Row("rclone version (process start, reference)", rclone_t, "-", None, "", runs=b.runs),
    ]


def _sync_rows(b: Env, label: str, remote: str, env: dict[str, str], accounts: int) -> list[Row]:
    """no-change and one-change ``sync`` of a uris: store against ``remote``."""
    slug = re.sub(r"\W+", "-", label)
    home = b.work / f"home-{slug}"
    store = b.work / f"store-{slug}.txt"
    store.write_text("\n".join(random_uris(accounts)) + "\n")
    senv = dict(env, OTPBRIDGE_HOME=str(home), OTPBRIDGE_PASSPHRASE=PASSPHRASE)
    # --kdf default: the real key derivation is what the counts are about
    run(
        [OTPBRIDGE, "init", remote, "--store", f"uris:{store}", "--device", "bench", "--kdf", "default"], senv
    )
    run([OTPBRIDGE, "sync"], senv)
    # the no-change path must not even need the passphrase: without it, a KDF would fail
    nopass = {k: v for k, v in senv.items() if k != "OTPBRIDGE_PASSPHRASE"}
    last: dict[str, int] = {}

    def nochange() -> None:
        last.clear()
        last.update(stats_of(run([OTPBRIDGE, "--stats", "sync"], nopass)))

    base_argv = [RCLONE, "lsjson", "-R", "--files-only", "--no-mimetype", remote]
    ours, base = paired(nochange, lambda: run(base_argv, env), b.runs)
    ratio = ours / base if base else None
    rows = [
        Row(
            f"sync, no change ({accounts} accounts, {label})",
            ours,
            "rclone lsjson -R (same remote)",
            base,
            "≤ 2.5× · 0 kdf · 0 gpg · 1 listing",
            counts=dict(last),
            ok=None if ratio is None else ratio <= 2.5,
            problems=expect(last, "no-change sync", kdf=0, gpg=0, listings=1, uploads=0),
            runs=b.runs,
        )
    ]
    one: dict[str, int] = {}
    problems: list[str] = []

    def change() -> None:
        with store.open("a") as fh:
            fh.write(random_uris(1, tag=f"x{time.monotonic_ns()}", hotp=False)[0] + "\n")

    def onechange() -> None:
        one.clear()
        one.update(stats_of(run([OTPBRIDGE, "--stats", "sync"], senv)))
        problems.extend(expect(one, "one-change sync", kdf=1, uploads=1, verifications=1, listings=1))

    ours1, base1 = paired(onechange, lambda: run(base_argv, env), b.heavy_runs, before=change)
    rows.append(
        Row(
            f"sync, one change ({accounts} accounts, {label})",
            ours1,
            "rclone lsjson -R (same remote)",
            base1,
            "1 kdf · 1 upload + its verification",
            counts=dict(one),
            problems=sorted(set(problems)),
            runs=b.heavy_runs,
        )
    )
    return rows


def bench_sync(b: Env) -> list[Row]:
    accounts = b.sizes["accounts"]
    rows = _sync_rows(b, "local folder", str(b.work / "remote-local"), b.env, accounts)
    with webdav_server(b) as (remote, cenv):
        rows += _sync_rows(b, "webdav 127.0.0.1", remote, cenv, accounts)
    return rows


def _remote_size(remote: Path) -> tuple[int, int]:
    files = [p for p in remote.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def bench_scale(b: Env) -> list[Row]:
    """D devices × N accounts on one local-folder remote (issue 20), beside D = 1 in the same run.

    The one-change sync of device 0 alternates with the same change on a one-device vault;
    device 1 then pulls the change. Then ``churn`` change-syncs spread over the D devices
    (small accounts, cheap KDF, tombstone purge age 0) show the remote stays bounded.
    """
    d_n, n = b.sizes["scale_devices"], b.sizes["scale_accounts"]
    kdf = ["--kdf", "insecure-test"] if b.quick else ["--kdf", "default"]
    senv = dict(b.env, OTPBRIDGE_PASSPHRASE=PASSPHRASE, OTPBRIDGE_ALLOW_INSECURE_KDF="1")
    uris = random_uris(n)

    def vault(tag: str, devices: int) -> tuple[Path, list[tuple[dict[str, str], Path]]]:
        remote = b.work / f"remote-scale-{tag}"
        homes = []
        for i in range(devices):
            store = b.work / f"scale-{tag}-{i}.txt"
            store.write_text("\n".join(uris) + "\n" if i == 0 else "")
            env = dict(senv, OTPBRIDGE_HOME=str(b.work / f"scale-{tag}-home{i}"))
            run([OTPBRIDGE, "init", str(remote), "--store", f"uris:{store}", "--device", f"d{i}", *kdf], env)
            run([OTPBRIDGE, "sync"], env)
            homes.append((env, store))
        for env, _store in homes[:2]:
            run([OTPBRIDGE, "sync"], env)  # device 0 and 1 have read every view once
        return remote, homes

    _r1, single = vault("d1", 1)
    remote, homes = vault(f"d{d_n}", d_n)
    objects0, bytes0 = _remote_size(remote)

    def change(store: Path) -> None:
        with store.open("a") as fh:
            fh.write(random_uris(1, tag=f"s{time.monotonic_ns()}", hotp=False)[0] + "\n")

    got: dict[str, dict[str, int]] = {}

    def synced(key: str, env: dict[str, str]) -> Callable[[], None]:
        def go() -> None:
            got[key] = stats_of(run([OTPBRIDGE, "--stats", "sync"], env))

        return go

    one_t: list[float] = []
    many_t: list[float] = []
    pull_t: list[float] = []
    problems: list[str] = []
    for _ in range(b.heavy_runs):
        change(single[0][1])
        one_t.append(timed(synced("one", single[0][0])))
        change(homes[0][1])
        many_t.append(timed(synced("many", homes[0][0])))
        pull_t.append(timed(synced("pull", homes[1][0])))
        problems += expect(got["one"], "scale D=1 one-change", kdf=1, uploads=1, listings=1)
        problems += expect(got["many"], f"scale D={d_n} one-change", kdf=1, uploads=1, listings=1, downloads=0)
        problems += expect(got["pull"], f"scale D={d_n} pull", kdf=1, uploads=0, listings=1, downloads=1)
    t1, t_many, t_pull = (statistics.median(x) for x in (one_t, many_t, pull_t))
    new_bytes = got["many"].get("upload_bytes", 0)
    pulled = got["pull"].get("download_bytes", 0)
    up = got["many"].get("upload_bytes", 0)
    nopass = {k: v for k, v in homes[1][0].items() if k != "OTPBRIDGE_PASSPHRASE"}
    last: dict[str, int] = {}

    def nochange() -> None:
        last.clear()
        last.update(stats_of(run([OTPBRIDGE, "--stats", "sync"], nopass)))

    lsjson = [RCLONE, "lsjson", "-R", "--files-only", "--no-mimetype", str(remote)]
    t_no, t_ls = paired(nochange, lambda: run(lsjson, b.env), b.runs)
    objects, size = _remote_size(remote)
    label = f"D={d_n} × N={n}"
    rows = [
        Row(f"scale: one-change sync, D=1 × N={n}", t1, "-", None, "", counts=dict(got["one"]), runs=len(one_t)),
        Row(
            f"scale: one-change sync, {label}",
            t_many,
            "one-change sync, D=1 (same run)",
            t1,
            "≤ 1.3× D=1",
            counts=dict(got["many"]),
            ok=t_many <= 1.3 * t1,
            problems=sorted(set(problems)),
            runs=len(many_t),
        ),
        Row(
            f"scale: pull of that change by device 1, {label}",
            t_pull,
            "one-change sync, D=1 (same run)",
            t1,
            "downloads 1",
            counts=dict(got["pull"]),
            runs=len(pull_t),
        ),
        Row(
            f"scale: bytes downloaded by the pull: {pulled:,} B for {new_bytes:,} B of new objects",
            None, "-", None, "≤ 1.1× new", ok=pulled <= 1.1 * new_bytes,
        ),
        Row(
            f"scale: bytes uploaded by a one-account change: {up:,} B", None, "-", None, "≤ 64 KiB",
            ok=up <= 64 * 1024,
        ),
        Row(
            f"scale: sync, no change, {label}",
            t_no,
            "rclone lsjson -R (same remote)",
            t_ls,
            "≤ 2.5×",
            counts=dict(last),
            ok=t_ls is not None and t_no <= 2.5 * t_ls,
            problems=expect(last, "scale no-change", kdf=0, listings=1, downloads=0),
            runs=b.runs,
        ),
        Row(
            f"scale: remote after setup {objects0} objects, {bytes0:,} B; after the runs {objects} objects, {size:,} B",
            None, "-", None, "",
        ),
    ]
    rows.append(_churn(b, d_n))
    return rows


CHURN = r"""
import json, os, random, sys, time
from pathlib import Path
from otpbridge.api import Device
work, remote, devices, syncs, accounts = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
uris = [line for line in sys.stdin.read().splitlines() if line]
devs, stores = [], []
for i in range(devices):
    store = work / f"churn-{i}.txt"
    store.write_text("\n".join(uris[:accounts]) + "\n" if i == 0 else "")
    d = Device(work / f"churn-home{i}")
    d.init(remote, [f"uris:{store}"], device_name=f"c{i}", kdf="insecure-test")
    settings = d.settings()
    settings["sync"] = {"tombstone_age_days": 0}
    d.config.write(settings)
    d.sync()
    devs.append(d)
    stores.append(store)
spare = iter(uris[accounts:])
rng = random.Random(20)
purged = 0
start = time.perf_counter()
for k in range(syncs):
    i = k % devices
    lines = [line for line in stores[i].read_text().splitlines() if line]
    if k % 3 == 2 and len(lines) > accounts // 2:
        lines.remove(rng.choice(lines))  # a deletion: a tombstone to purge later
    else:
        lines.append(next(spare))
    stores[i].write_text("\n".join(lines) + "\n")
    purged += devs[i].sync().purged
seconds = time.perf_counter() - start
files = [p for p in Path(remote).rglob("*") if p.is_file()]
print(json.dumps({"objects": len(files), "bytes": sum(p.stat().st_size for p in files), "seconds": seconds,
                  "purged": purged, "views": sum(1 for p in files if p.suffix == ".view")}))
"""


def _churn(b: Env, devices: int) -> Row:
    syncs, accounts, recent = b.sizes["churn"], 20, 10  # snapshots.Retention().recent
    remote = b.work / "remote-churn"
    env = dict(b.env, OTPBRIDGE_PASSPHRASE=PASSPHRASE, OTPBRIDGE_ALLOW_INSECURE_KDF="1")
    feed = "\n".join(random_uris(accounts + syncs + 10, tag="c", hotp=False)).encode()
    proc = run(
        [sys.executable, "-c", CHURN, str(b.work), str(remote), str(devices), str(syncs), str(accounts)],
        env,
        input=feed,
    )
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    # Issue 20 item 3: at most devices × (retention + checkpoint window) objects, plus the
    # epoch header. Retention keeps `recent` objects per device (all runs fall in one day
    # and week); a kept delta keeps its chain back to its checkpoint view, at most
    # MAX_CHAIN deltas (docs/SYNC.md "Deltas").
    from otpbridge.engine.sync import MAX_CHAIN

    bound = devices * (recent + MAX_CHAIN) + 1
    return Row(
        f"scale: remote after {syncs} change-syncs over {devices} devices: {out['objects']} objects "
        f"({out['views']} views), {out['bytes']:,} B; {out['purged']} tombstone omissions (summed over devices)",
        out["seconds"] / syncs,
        "-",
        None,
        f"≤ {bound} objects",
        ok=out["objects"] <= bound,
        problems=[] if out["objects"] <= bound else [f"churn: {out['objects']} objects, more than {bound}"],
        runs=syncs,
    )


def cpu_of(fn: Callable[[], object]) -> float:
    """CPU seconds (user + system) of the child processes ``fn`` ran and waited for,
    their own children included (gpg-agent, a daemon, is in neither figure)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    fn()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _pass_cpu_rows(b: Env, penv: dict[str, str], files: list[Path], read_all: Callable[[], None]) -> list[Row]:
    """Issue 20 item 5: the cold read against ``xargs -P nproc -n 1 gpg -q -d`` (one gpg
    process per entry, all cores busy: the limit of that design), in time and in CPU."""
    listing = b.work / "pass-files.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    xargs = ["sh", "-c", f'xargs -P "$(nproc)" -n 1 gpg --batch -q -d < "{listing}" > /dev/null']
    ours_cpu: list[float] = []
    base_cpu: list[float] = []
    ours_t: list[float] = []
    base_t: list[float] = []
    for _ in range(b.runs):
        start = time.perf_counter()
        base_cpu.append(cpu_of(lambda: run(xargs, penv)))
        base_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        ours_cpu.append(cpu_of(read_all))
        ours_t.append(time.perf_counter() - start)
    n = len(files)
    oc, bc = statistics.median(ours_cpu), statistics.median(base_cpu)
    return [
        Row(
            f"pass read, {n} entries (cold), wall time",
            statistics.median(ours_t),
            "xargs -P nproc -n 1 gpg -q -d",
            statistics.median(base_t),
            "reference",
            runs=b.runs,
        ),
        Row(
            f"pass read, {n} entries (cold), CPU: {oc / n * 1000:.2f} ms against {bc / n * 1000:.2f} ms per entry",
            oc,
            "CPU of xargs -P nproc -n 1 gpg -q -d",
            bc,
            "≤ 1.1× CPU",
            ok=None if not bc else oc <= 1.1 * bc,
            runs=b.runs,
        ),
    ]


def bench_pass(b: Env) -> list[Row]:
    if not GPG:
        return [Row("pass read", None, "gpg -d loop", None, problems=["gpg is not installed"])]
    entries = b.sizes["pass"]
    gnupghome, fpr = make_gnupghome(b.work)
    store = b.work / "pass-store"
    penv = dict(
        b.env,
        GNUPGHOME=str(gnupghome),
        PASSWORD_STORE_DIR=str(store),
        OTPBRIDGE_HOME=str(b.work / "pass-home"),
    )
    files = make_pass_store(b, penv, fpr, store, entries)
    loop = [
        "bash",
        "-c",
        'for f in "$@"; do gpg --batch -q -d "$f" >/dev/null; done',
        "gpg-loop",
        *map(str, files),
    ]
    last: dict[str, int] = {}
    listed: list[int] = []

    def read_all() -> None:
        proc = run([OTPBRIDGE, "--stats", "list", f"pass:{store}", "--json"], penv)
        last.clear()
        last.update(stats_of(proc))
        listed.append(len(json.loads(proc.stdout)["accounts"]))

    ours, base = paired(read_all, lambda: run(loop, penv), b.runs)
    problems = expect(last, "pass read", gpg=entries)
    if any(n != entries for n in listed):
        problems.append(f"pass read listed {sorted(set(listed))} accounts, expected {entries}")
    rows = [
        Row(
            f"pass read, {entries} entries (cold)",
            ours,
            "bash loop of gpg -d",
            base,
            "≥ 1.8× faster (ratio ≤ 0.56)",
            counts=dict(last),
            ok=None if not base else ours / base <= 1 / 1.8,
            problems=problems,
            runs=b.runs,
        )
    ]
    rows += _pass_cpu_rows(b, penv, files, read_all)

    # Through sync: the engine seals a store cache, so after one change only that entry is decrypted.
    sync_env = dict(penv, OTPBRIDGE_HOME=str(b.work / "pass-sync-home"), OTPBRIDGE_PASSPHRASE=PASSPHRASE)
    run(
        [
            OTPBRIDGE,
            "init",
            str(b.work / "remote-pass"),
            "--store",
            f"pass:{store}",
            "--device",
            "bench",
            "--kdf",
            "default",
        ],
        sync_env,
    )
    first = stats_of(run([OTPBRIDGE, "--stats", "sync"], sync_env))
    problems = expect(first, "first pass sync", gpg=entries)
    one: dict[str, int] = {}
    n = [0]

    def change() -> None:
        n[0] += 1
        uri = random_uris(1, tag=f"changed{n[0]}", hotp=False)[0]
        gpg_encrypt(penv, fpr, files[n[0] % len(files)], f"new-password\n{uri}\n".encode())

    def second() -> None:
        one.clear()
        one.update(stats_of(run([OTPBRIDGE, "--stats", "sync"], sync_env)))
        problems.extend(expect(one, "pass sync after one change", gpg=1, kdf=1, uploads=1))

    one_gpg = [GPG, "--batch", "-q", "-d", str(files[0])]
    ours2, base2 = paired(second, lambda: run(one_gpg, penv), b.heavy_runs, before=change)
    rows.append(
        Row(
            f"pass: sync after one entry changed ({entries})",
            ours2,
            "one gpg -d",
            base2,
            "1 gpg call · 1 kdf",
            counts=dict(one),
            problems=sorted(set(problems)),
            runs=b.heavy_runs,
        )
    )
    nochange: dict[str, int] = {}

    def unchanged() -> None:
        nochange.clear()
        nochange.update(stats_of(run([OTPBRIDGE, "--stats", "sync"], sync_env)))

    ours3, _ = paired(unchanged, None, b.runs)
    rows.append(
        Row(
            f"pass: sync, no change ({entries})",
            ours3,
            "-",
            None,
            "0 gpg · 0 kdf · 1 listing",
            counts=dict(nochange),
            problems=expect(nochange, "pass sync, no change", gpg=0, kdf=0, listings=1),
            runs=b.runs,
        )
    )
    return rows


def bench_keepass(b: Env) -> list[Row]:
    if not KEEPASSXC:
        return [
            Row(
                "keepass read",
                None,
                "keepassxc-cli export",
                None,
                problems=["keepassxc-cli is not installed"],
            )
        ]
    entries = b.sizes["keepass"]
    dbs, notes = make_keepass_dbs(b, entries)
    for note in notes:
        print(f"bench: {note}", file=sys.stderr)
    kenv = dict(b.env, OTPBRIDGE_KEEPASS_PASSWORD=DB_PASSWORD, OTPBRIDGE_HOME=str(b.work / "kp-home"))
    rows = []
    for label, path in dbs:
        rows += _keepass_rows(b, label, path, entries, kenv)
    return rows


def _keepass_rows(b: Env, label: str, path: Path, entries: int, kenv: dict[str, str]) -> list[Row]:
    last: dict[str, int] = {}
    listed: list[int] = []

    def read_db() -> None:
        proc = run([OTPBRIDGE, "--stats", "list", f"keepass:{path}", "--json"], kenv)
        last.clear()
        last.update(stats_of(proc))
        listed.append(len(json.loads(proc.stdout)["accounts"]))

    ours, base = paired(read_db, lambda: kpxc(["export", "-q", str(path)], b.env), b.runs)
    problems = expect(last, "keepass read", keepass_kdf=1)
    if any(n != entries for n in listed):
        problems.append(f"keepass read listed {sorted(set(listed))} accounts, expected {entries}")
    # pykeepass alone (its AES-KDF is a Python loop): once, for reference
    code = "import os,sys; from pykeepass import PyKeePass; PyKeePass(sys.argv[1], password=os.environ['BENCH_DB_PASSWORD'])"
    pyk = timed(
        lambda: run([sys.executable, "-c", code, str(path)], dict(b.env, BENCH_DB_PASSWORD=DB_PASSWORD))
    )
    return [
        Row(
            f"keepass read, {entries} entries ({label})",
            ours,
            "keepassxc-cli export",
            base,
            "≤ 1.5×",
            counts=dict(last),
            ok=None if not base else ours / base <= 1.5,
            problems=problems,
            runs=b.runs,
        ),
        Row(
            "  pykeepass alone, same database (reference, 1 run)",
            pyk,
            "keepassxc-cli export",
            base,
            "",
            runs=1,
        ),
    ]


# -- output --------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    mem = "?"
    with contextlib.suppress(OSError):
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem = f"{int(m.group(1)) / 1024 / 1024:.1f} GiB" if m else mem
    load = "?"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{os.cpu_count()} CPUs ({cpu}), {mem} RAM, load average {load}, Python {sys.version.split()[0]}"


def _counts_text(counts: dict[str, int]) -> str:
    keys = [k for k in COUNT_KEYS if k in counts] + sorted(k for k in counts if k not in COUNT_KEYS)
    return " ".join(f"{k}={counts[k]}" for k in keys)


def print_table(rows: list[Row]) -> None:
    w = max(len(r.scenario) for r in rows)
    head = f"{'scenario':{w}}  {'otpbridge':>9}  {'baseline':>9}  {'ratio':>6}  {'target':36}  counted operations"
    print(head)
    print("-" * len(head))
    for r in rows:
        ours = f"{r.ours:.3f}s" if r.ours is not None else "-"
        base = f"{r.baseline:.3f}s" if r.baseline is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        mark = {True: "ok  ", False: "MISS", None: "    "}[r.ok]
        print(
            f"{r.scenario:{w}}  {ours:>9}  {base:>9}  {ratio:>6}  {mark} {r.target:31}  {_counts_text(r.counts)}"
        )
        if r.baseline_name != "-":
            print(f"{'':{w}}  baseline: {r.baseline_name}")
        for p in r.problems:
            print(f"{'':{w}}  COUNT WRONG: {p}")


def print_markdown(rows: list[Row]) -> None:
    print("| scenario | otpbridge | baseline | ratio | target | counted operations |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ours = f"{r.ours:.3f} s" if r.ours is not None else "–"
        base = f"{r.baseline:.3f} s ({r.baseline_name})" if r.baseline is not None else "–"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "–"
        mark = {True: " ✓", False: " ✗ missed", None: ""}[r.ok]
        problems = "; ".join(r.problems)
        print(
            f"| {r.scenario.strip()} | {ours} | {base} | {ratio} | {r.target}{mark} | {_counts_text(r.counts)}{' — ' + problems if problems else ''} |"
        )


SCENARIOS: dict[str, Callable[[Env], list[Row]]] = {
    "startup": bench_startup,
    "sync": bench_sync,
    "scale": bench_scale,
    "pass": bench_pass,
    "keepass": bench_keepass,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; check counts only (CI)")
    parser.add_argument(
        "--runs", type=int, default=None, help="repetitions per scenario (median); default 3 quick, 5 full"
    )
    parser.add_argument("--json", dest="json_out", help="also write the rows as JSON to this file")
    parser.add_argument(
        "--markdown", action="store_true", help="also print the table as Markdown (docs/PERFORMANCE.md)"
    )
    parser.add_argument(
        "--only", action="append", choices=list(SCENARIOS), help="run only these scenarios (repeatable)"
    )
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    sizes = (
        {"accounts": 50, "pass": 40, "keepass": 200, "scale_devices": 3, "scale_accounts": 50, "churn": 30}
        if args.quick
        else {
            "accounts": 1000, "pass": 1000, "keepass": 10000,
            "scale_devices": 20, "scale_accounts": 10000, "churn": 1000,
        }
    )
    only = [name for name in SCENARIOS if name in set(args.only or SCENARIOS)]
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="otpbridge-bench-") as tmp:
        work = Path(tmp)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OTPBRIDGE_", "RCLONE_", "PASSWORD_STORE_"))
        }
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env["RCLONE_CONFIG"] = os.devnull  # the developer's own remotes play no part
        env["HOME"] = str(work / "user-home")  # nothing of the developer's (gnupg, keyring, config)
        (work / "user-home").mkdir()
        env["GNUPGHOME"] = str(work / "no-gnupg")
        # Measure what users get: cached bytecode. (A PYTHONDONTWRITEBYTECODE=1 shell
        # recompiles every module edited since its .pyc, at every start.)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        warm_up(env)
        bench = Env(work, env, runs, args.quick, sizes)
        try:
            for name in only:
                t0 = time.monotonic()
                rows += SCENARIOS[name](bench)
                print(f"bench: {name}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
        finally:
            if GPG and (work / "gnupg").exists():
                subprocess.run(
                    ["gpgconf", "--kill", "all"],
                    env=dict(env, GNUPGHOME=str(work / "gnupg")),
                    capture_output=True,
                    check=False,
                )
    print(f"machine: {machine()}")
    print(
        f"mode: {'quick' if args.quick else 'full'}, median of {runs} runs (startup: {bench.startup_runs}), {time.monotonic() - started:.0f} s in all"
    )
    print_table(rows)
    if args.markdown:
        print()
        print_markdown(rows)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows], indent=2))
    wrong = [r for r in rows if r.problems]
    missed = [] if args.quick else [r for r in rows if r.ok is False]
    if wrong:
        print(f"bench: {len(wrong)} scenario(s) counted wrong operations", file=sys.stderr)
    if missed:
        print(f"bench: {len(missed)} time target(s) missed", file=sys.stderr)
    return 1 if wrong or missed else 0


if __name__ == "__main__":
    sys.exit(main())

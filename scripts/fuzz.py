"""Fuzz every parser otpbridge runs on input it does not control, and print per-parser counts.

    python scripts/fuzz.py                 # the full run: 10,000 inputs per parser
    python scripts/fuzz.py -n 300          # a short run (the test suite runs one)
    python scripts/fuzz.py --only uris,vault-object --seed 7

Inputs are made by hypothesis: mutations of seeds taken from the fixtures
(``tests/fixtures``, each import format's real export files) and from objects
this script makes itself (a vault header, sealed objects and views, a sync state, a
config), plus raw random bytes. A mutation is byte-level (flip, insert, delete,
overwrite, duplicate, truncate) or, for JSON seeds, structural (a value anywhere in the
tree replaced by an awkward one: null, -1, 2**64, a huge string, a nested list…), so most
inputs get past the outer syntax into the code that interprets it.

For each input the parser must either return or raise the error its contract names (an
``OtpBridgeError``, i.e. a message and an exit code; a few function-level parsers raise a
documented ``ValueError`` subclass). Anything else is counted as a *traceback*; an input
that takes longer than ``--hang`` seconds (default 5) is counted as a *hang*. The exit
code is 1 if any parser had either; the first few offending inputs are written to
``--out`` (default ``fuzz-failures/``) for replay.

Parsers that need a password are fuzzed without one (there is no terminal, so an
encrypted export stops at "needs a password"): the containers and everything read
before a key derivation are covered, the decryption paths of the app formats are not
(each KDF would cost 0.1-1 s per input; their bounds are tested in tests/test_fmt_*).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `tests.support.paths` finds tests/fixtures

INTERESTING = [
    None, True, False, 0, -1, 1, 7, 2**31, -(2**31), 2**63, 2**64 + 1, 1e308, -0.0, float("nan"),
    "", " ", "0", "-1", "a" * 300, "\x00", "\u202e", "é", "../../etc/passwd", "otpauth://totp/x?secret=",
    "otpauth://hotp/I:n?secret=JBSWY3DPEHPK3PXP&counter=99999999999999999999", "JBSWY3DPEHPK3PXP", "=" * 9,
    [], {}, [[[]]], {"a": {"b": None}}, ["x", 1, None], "SHA1", "SHA512", "MD5", "totp", "hotp", "steam",
]  # fmt: skip


@dataclass
class Tally:
    name: str
    inputs: int = 0
    accepted: int = 0
    rejected: int = 0
    tracebacks: int = 0
    hangs: int = 0
    seconds: float = 0.0
    examples: list[tuple[str, bytes, str]] = field(default_factory=list)


BATCH = 10


class Hang(BaseException):
    pass


def _alarm(_signum, _frame):
    raise Hang()


# -- mutations ------------------------------------------------------------------------------
def mutate_bytes(seed: bytes, ops: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for op, pos, chunk in ops:
        n = len(data)
        i = pos % (n + 1)
        if op == 0 and n:  # flip bits
            data[i % n] ^= chunk[0] or 1
        elif op == 1:  # insert
            data[i:i] = chunk
        elif op == 2 and n:  # delete a range
            del data[i : i + 1 + chunk[0] % 64]
        elif op == 3 and n:  # overwrite
            data[i : i + len(chunk)] = chunk
        elif op == 4 and n:  # duplicate a slice
            j = min(n, i + 1 + chunk[0])
            data[j:j] = data[i:j]
        elif op == 5:  # truncate
            del data[i:]
        elif op == 6 and n:  # interesting byte
            data[i % n] = (0, 0xFF, 0x7F, 0x80, ord('"'), ord("\\"), ord("\n"), ord(":"))[chunk[0] % 8]
    return bytes(data)


def _nodes(tree, path=()):
    yield path
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _nodes(v, (*path, i))


def mutate_json(seed, changes: list[tuple[int, int]]) -> bytes:
    tree = json.loads(json.dumps(seed))
    for where, what in changes:
        paths = list(_nodes(tree))
        path = paths[where % len(paths)]
        value = INTERESTING[what % len(INTERESTING)]
        if not path:
            tree = value
            continue
        parent = tree
        for p in path[:-1]:
            parent = parent[p]
        if what % 5 == 4 and isinstance(parent, dict):
            parent.pop(path[-1], None)  # a missing key
        else:
            parent[path[-1]] = json.loads(json.dumps(value))
    return json.dumps(tree).encode()


def strategy(seeds: list[bytes]):
    from hypothesis import strategies as st

    json_seeds = []
    for s in seeds:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            json_seeds.append(json.loads(s))
    ops = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=16)), min_size=1, max_size=6)
    parts = [st.builds(mutate_bytes, st.sampled_from(seeds), ops), st.binary(max_size=600)]
    if json_seeds:
        changes = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 1 << 10)), min_size=1, max_size=4)
        structural = st.builds(mutate_json, st.sampled_from(json_seeds), changes)
        parts = [structural, structural, *parts]  # most inputs: valid syntax, wrong content
    return st.one_of(*parts)


# -- the parsers ----------------------------------------------------------------------------
def fixtures_dir() -> Path:
    from tests.support.paths import FIXTURES

    return FIXTURES


FORMAT_SEEDS = {
    "aegis": ["aegis"], "andotp": ["andotp"], "authy": ["authy"], "bitwarden": ["bitwarden"],
    "ente": ["ente_auth"], "freeotp+": ["freeotp_plus"], "gauth": ["google_authenticator"],
    "2fas": ["twofas"], "uris": ["otpauth_uri", "google_authenticator"],
}  # fmt: skip


def _seeds_from(folders: list[str]) -> list[bytes]:
    out = []
    for folder in folders:
        for path in sorted((fixtures_dir() / folder).glob("*")):
            if path.is_file() and path.stat().st_size <= 256 * 1024:
                out.append(path.read_bytes())
    return out


def _context():
    from collections import Counter

    from otpbridge.stores.base import Context

    return Context(environ={"PATH": os.defpath}, stats=Counter(), warn=lambda _m: None, info=lambda _m: None)


def format_parser(kind: str, work: Path) -> tuple[list[bytes], Callable[[bytes], object], tuple]:
    from otpbridge.stores.registry import open_store

    target = work / f"input.{kind.replace('+', 'p')}"
    ctx = _context()

    def run(data: bytes):
        target.write_bytes(data)
        return open_store(f"{kind}:{target}", ctx).read()

    return _seeds_from(FORMAT_SEEDS[kind]), run, ()


def uri_parser(_work: Path):
    from otpbridge.core.otpauth import UriError, parse_uri

    seeds = [line.strip() for s in _seeds_from(["otpauth_uri"]) for line in s.splitlines() if line.strip().startswith(b"otpauth")]

    def run(data: bytes):
        return parse_uri(data.decode("utf-8", "replace"))

    return seeds, run, (UriError,)  # the documented refusal


def keepass_fields_parser(_work: Path):
    from otpbridge.plugins.keepass_fields import entry_accounts, read_slots

    seeds = [
        json.dumps(f).encode()
        for f in (
            {"otp": "otpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP&issuer=Acme&period=30&digits=6"},
            {"otp": "key=JBSWY3DPEHPK3PXP&step=30&size=8&type=totp&otpHashMode=sha256"},
            {"TOTP Seed": "JBSWY3DPEHPK3PXP", "TOTP Settings": "30;6"},
            {"TOTP Seed": "JBSWY3DPEHPK3PXP", "TOTP Settings": "30;S"},
            {"TimeOtp-Secret-Base32": "JBSWY3DPEHPK3PXP", "TimeOtp-Length": "8", "TimeOtp-Period": "60", "TimeOtp-Algorithm": "HMAC-SHA-256"},
            {"HmacOtp-Secret-Hex": "48656c6c6f21deadbeef", "HmacOtp-Counter": "5"},
            {"HmacOtp-Secret-Base64": "SGVsbG8h3q2+7w==", "HmacOtp-Counter": "0"},
            {"hotp": "JBSWY3DPEHPK3PXP;counter=3"},
        )
    ]

    def run(data: bytes):
        try:  # the fuzz input is the entry's fields as JSON (KeePass gives str -> str)
            fields = json.loads(data)
        except (ValueError, RecursionError):
            fields = {"otp": data.decode("utf-8", "replace")}
        if not isinstance(fields, dict):
            fields = {"TOTP Seed": data.decode("utf-8", "replace"), "TOTP Settings": data.decode("utf-8", "replace")[:9]}
        fields = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        return entry_accounts(read_slots(fields, title="Acme", username="alice", folder="Work"))

    return seeds, run, ()


def pass_entry_parser(_work: Path):
    from otpbridge.core.otpauth import UriError
    from otpbridge.plugins.pass_entry import account_from_entry, find_otp_line

    seeds = [
        b"hunter2\nuser: alice\notpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP&issuer=Acme\n",
        b"otpauth://hotp/Bank:bob?secret=JBSWY3DPEHPK3PXP&counter=5\n",
        b"pw\r\nlogin: x\r\notpauth://totp/x?secret=JBSWY3DPEHPK3PXP&algorithm=SHA512&digits=8&period=60\r\n",
        b"just a password\n",
    ]

    def run(data: bytes):
        where = find_otp_line(data)
        if where is None:
            return None
        return account_from_entry(where.text, "Work/Acme/alice")

    return seeds, run, (UriError,)  # becomes the entry's EntryError, as in passstore.read


def _vault():
    from otpbridge.core.secrets import Secret
    from otpbridge.vault.format import PRESETS, create_epoch, open_epoch

    header, _made = create_epoch(Secret("fuzz passphrase"), params=PRESETS["insecure-test"])
    return header, open_epoch(header, Secret("fuzz passphrase"))  # the reader's key, as a sync gets it


def vault_header_parser(_work: Path):
    from otpbridge.vault.format import peek_epoch

    header, _key = _vault()
    return [header, _v2_header()], peek_epoch, ()


def _v2_header() -> bytes:
    """A version-2 header (key slots): a passphrase and a recovery code."""
    from otpbridge.vault.format import PRESETS
    from otpbridge.vault.keyring import NewSlot, create_header, new_recovery_code

    header, _ring, _made = create_header(
        b"k" * 32, vault_id=b"v" * 16, epoch=2, created=1, keep=[],
        new=[NewSlot("passphrase", "fuzz", __import__("otpbridge.core.secrets", fromlist=["Secret"]).Secret("fuzz passphrase"),
                     params=PRESETS["insecure-test"]),
             NewSlot("recovery", "paper", new_recovery_code())])
    return header


def vault_keyring_parser(_work: Path):
    """Opening a version-2 header with the right passphrase: every slot, the keyring."""
    from otpbridge.core.secrets import Secret
    from otpbridge.vault.format import open_epoch

    def run(data: bytes):
        import hashlib

        # Re-checksummed, as a hostile remote would: the mutation reaches the slot table,
        # the wraps and the keyring instead of stopping at the checksum.
        if len(data) > 32:
            data = data[:-32] + hashlib.sha256(data[:-32]).digest()
        return open_epoch(data, Secret("fuzz passphrase"))

    return [_v2_header()], run, ()


def _view_payload(device: str, seq: int) -> bytes:
    from otpbridge.core.otpauth import parse_uri
    from otpbridge.engine.layout import encode_view
    from otpbridge.engine.merge import Record

    acc = parse_uri("otpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP&issuer=Acme")
    rec = Record(acc.identity, 3, device, acc, 0)
    return encode_view(
        {"v": 1, "device": device, "seq": seq, "name": "laptop", "records": [rec.to_json()],
         "removed": {"bbbbbbbbbbbb": {"by": device, "at": 1}}, "devices": {device: "laptop"}}
    )  # fmt: skip


def vault_object_parser(_work: Path):
    _header, key = _vault()
    seeds = [key.seal("view", "aaaaaaaaaaaa", 1, _view_payload("aaaaaaaaaaaa", 1)), key.seal("view", "aaaaaaaaaaaa", 1, b"x" * 3000)]

    def run(data: bytes):
        return key.open(data, kind="view", device="aaaaaaaaaaaa", seq=1)

    return seeds, run, ()


def vault_view_parser(_work: Path):
    """What a device holding the key wrote (a bug, a hostile device): open_view's checks."""
    from collections import Counter
    from types import SimpleNamespace

    from otpbridge.engine.layout import ViewRef
    from otpbridge.engine.remote import open_view

    _header, key = _vault()
    ref = ViewRef("devices/aaaaaaaaaaaa/x.view", 100, "aaaaaaaaaaaa", key.epoch, 1, 0)

    def run(data: bytes):
        blob = key.seal("view", ref.device, ref.seq, data[:60000])
        backend = SimpleNamespace(read=lambda _name: blob)
        return open_view(SimpleNamespace(backend=backend, stats=Counter()), key, ViewRef(ref.name, len(blob), ref.device, ref.epoch, ref.seq, 0))

    return [_view_payload("aaaaaaaaaaaa", 1)], run, ()


def sync_state_parser(work: Path):
    from otpbridge.engine.state import SyncState

    folder = work / "state"
    folder.mkdir(exist_ok=True)
    st = SyncState(vault_id="ab" * 16, device="aaaaaaaaaaaa", epoch=2, last_seq=5, seen={"bbbbbbbbbbbb": 3}, clock=9,
                   base={"id1": __import__("otpbridge.engine.merge", fromlist=["BaseEntry"]).BaseEntry("d" * 8, 1, "x")},
                   fingerprints={"uris:/x": "f"}, listing=[["a", 1]], device_names={"bbbbbbbbbbbb": "phone"},
                   removed={"cccccccccccc": {"by": "aaaaaaaaaaaa"}}, last_verified_backup=1.5, last_sync=2.5,
                   last_error={"time": 1, "message": "m", "exit": 5}, accounts=3, token="t", writes={"5": "w"},
                   pending={"seq": 6, "w": "x"})  # fmt: skip
    st.save(folder)
    seed = (folder / "sync-state.json").read_bytes()

    def run(data: bytes):
        (folder / "sync-state.json").write_bytes(data)
        return SyncState.load(folder)

    return [seed], run, ()


def config_parser(work: Path):
    from otpbridge.core.config import Config, dump_toml

    home = work / "home"
    home.mkdir(exist_ok=True)
    cfg = Config(config_dir=home, state_dir=home / "state")
    seed = dump_toml({"remote": "nas:otp", "stores": ["pass:~/.password-store", "keepass:~/otp.kdbx?password-env=KP"], "kdf": "default",
                      "device": {"id": "aaaaaaaaaaaa", "name": "laptop"}}).encode()  # fmt: skip

    def run(data: bytes):
        cfg.config_file.write_bytes(data)
        return cfg.read()

    return [seed], run, ()


def parsers(work: Path) -> dict[str, Callable[[], tuple[list[bytes], Callable[[bytes], object], tuple]]]:
    out: dict[str, Callable] = {f"format:{k}": (lambda k=k: format_parser(k, work)) for k in FORMAT_SEEDS}
    out.update({
        "otpauth-uri": lambda: uri_parser(work),
        "keepass-fields": lambda: keepass_fields_parser(work),
        "pass-entry": lambda: pass_entry_parser(work),
        "vault-header": lambda: vault_header_parser(work),
        "vault-object": lambda: vault_object_parser(work),
        "vault-view": lambda: vault_view_parser(work),
        "vault-keyring": lambda: vault_keyring_parser(work),
        "sync-state": lambda: sync_state_parser(work),
        "config": lambda: config_parser(work),
    })  # fmt: skip
    return out


# -- the driver -----------------------------------------------------------------------------
def fuzz_one(name: str, make, n: int, seed: int, hang: float) -> Tally:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from otpbridge.core.errors import OtpBridgeError

    seeds, run, allowed = make()
    tally = Tally(name)

    @hseed(seed)
    @settings(max_examples=-(-n // BATCH), deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    # BATCH inputs per hypothesis example: its bookkeeping costs more than most parsers
    @given(st.lists(strategy(seeds or [b""]), min_size=BATCH, max_size=BATCH))
    def case(batch: list[bytes]) -> None:
        for data in batch:
            if tally.inputs >= n:
                return
            one(data)

    def one(data: bytes) -> None:
        tally.inputs += 1
        signal.setitimer(signal.ITIMER_REAL, hang)
        try:
            run(data)
            tally.accepted += 1
        except (OtpBridgeError, *allowed):
            tally.rejected += 1
        except Hang:
            tally.hangs += 1
            tally.examples.append(("hang", data, f"over {hang} s"))
        except Exception:  # noqa: BLE001 - that is what we count
            tally.tracebacks += 1
            tally.examples.append(("traceback", data, traceback.format_exc(limit=6)))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    started = time.monotonic()
    # hypothesis stops at max_examples *valid* examples, or earlier when the space is
    # exhausted; go on with fresh seeds until n inputs were tried
    round_ = 0
    while tally.inputs < n and round_ < 20:
        before = tally.inputs
        case = hseed(seed + round_)(case) if round_ else case
        case()
        round_ += 1
        if tally.inputs == before:
            break
    tally.seconds = time.monotonic() - started
    return tally


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10_000, help="inputs per parser (default 10000)")
    ap.add_argument("--only", default="", help="comma-separated parser names")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--hang", type=float, default=5.0, help="seconds after which an input counts as a hang")
    ap.add_argument("--out", default="fuzz-failures", help="where offending inputs are written")
    ap.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = ap.parse_args(argv)

    sys.stdin = open(os.devnull)  # noqa: SIM115 - no terminal: a store must never prompt
    signal.signal(signal.SIGALRM, _alarm)
    tallies = []
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="otpbridge-fuzz-", dir=shm) as tmp:  # inputs go through files
        work = Path(tmp)
        table = parsers(work)
        names = [x for x in args.only.split(",") if x] or list(table)
        unknown = set(names) - set(table)
        if unknown:
            ap.error(f"unknown parser(s): {', '.join(sorted(unknown))}; known: {', '.join(table)}")
        for name in names:
            t = fuzz_one(name, table[name], args.n, args.seed, args.hang)
            tallies.append(t)
            if not args.json:
                print(f"{name:22} {t.inputs:7} inputs  {t.accepted:6} parsed  {t.rejected:6} refused  "
                      f"{t.tracebacks} tracebacks  {t.hangs} hangs  {t.seconds:6.1f} s", flush=True)  # fmt: skip
    total = sum(t.inputs for t in tallies)
    bad = [t for t in tallies if t.tracebacks or t.hangs]
    if args.json:
        print(json.dumps([{k: v for k, v in t.__dict__.items() if k != "examples"} for t in tallies]))
    else:
        print(f"{'total':22} {total:7} inputs over {len(tallies)} parsers: "
              f"{sum(t.tracebacks for t in tallies)} tracebacks, {sum(t.hangs for t in tallies)} hangs")  # fmt: skip
    if bad:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for t in bad:
            for i, (what, data, text) in enumerate(t.examples[:5]):
                stem = f"{t.name.replace(':', '-').replace('+', 'p')}-{what}-{i}"
                (out / f"{stem}.bin").write_bytes(data)
                (out / f"{stem}.txt").write_text(text + "\n" + base64.b64encode(data[:2000]).decode() + "\n")
                if not args.json:
                    print(f"--- {t.name} {what} #{i}:\n{text}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

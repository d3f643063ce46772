"""Issue 19, "More than one key": key slots through the real CLI, with real parts.

A vault opens with any of its keys - passphrases (one per person), a recovery code, age
and OpenSSH ed25519 key files - and ``key add``/``key remove`` re-key it into a new epoch.
Real rclone (``serve webdav``), real pyrage keys, real ``ssh-keygen`` keys, real KDBX files
(pykeepass; keepassxc-cli as an independent reader when installed); the only fake is the
fault injection around a real local backend in the crash matrix.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from otpbridge.backends.faults import FaultyBackend, SimulatedCrash
from otpbridge.backends.local import LocalBackend
from otpbridge.core.errors import IntegrityError
from otpbridge.core.otpauth import parse_uri
from otpbridge.core.secrets import IdentityKey, RecoveryKey, Secret
from otpbridge.vault.format import VaultKey, WrongPassphrase, open_epoch
from tests.support.engine import PASS, Device, base_env, engine_session, make_account, ok, remote_ids
from tests.support.faults import fault_matrix, matrix_summary, run_faulty

BOB = "bob's very own passphrase, 19 words long"
BOB2 = "bob picked another passphrase in March 2031"
CAROL = "carol's passphrase for the shared vault 7"

pyrage = pytest.importorskip("pyrage")
SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen is not installed")


# --- keys and homes ----------------------------------------------------------------------------
def private_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def age_key(path: Path) -> str:
    """A real age X25519 identity file (as age-keygen writes it); returns its recipient."""
    ident = pyrage.x25519.Identity.generate()
    public = str(ident.to_public())
    private_file(path, f"# created: 2031-01-01T00:00:00Z\n# public key: {public}\n{ident}\n")
    return public


def ssh_key(path: Path, passphrase: str = "") -> str:
    """A real OpenSSH ed25519 key pair from ssh-keygen; returns the public key line."""
    assert SSH_KEYGEN is not None
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", passphrase, "-C", "test@otpbridge", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return path.with_name(path.name + ".pub").read_text().strip()


def home(root: Path, name: str, remote: str, *, env: dict[str, str] | None = None,
         passphrase: str | None = PASS) -> Device:
    """A device; ``passphrase=None``: no passphrase source at all in its environment."""
    dev = Device(root / name, remote, name, env=dict(env) if env is not None else base_env())
    if passphrase is None:
        dev.env.pop("OTPBRIDGE_PASSPHRASE", None)
    else:
        dev.env["OTPBRIDGE_PASSPHRASE"] = passphrase
    return dev


def keys_of(dev: Device, *pre: str) -> list[dict]:
    return ok(dev.run(*pre, "key", "list", "--json")).json()["keys"]


def kdf_of(res) -> int:
    """Key derivations the run reported with --stats (a zero count is left out)."""
    import json

    line = next(ln for ln in res.err.splitlines() if ln.startswith("otpbridge-stats: "))
    return int(json.loads(line.split(": ", 1)[1]).get("kdf", 0))


def ids(dev: Device) -> set[str]:
    return set(dev.accounts())


def restores_with(remote: Path, tmp: Path, *pre: str, passphrase: str | None = None) -> set[str] | None:
    """Every account a fresh machine restores with ``pre`` (e.g. --identity F) or with
    ``passphrase`` (else no passphrase at all); None when that does not open the vault."""
    probe = home(tmp, f"probe-{time.monotonic_ns()}", str(remote), passphrase=passphrase)
    target = probe.root / "restored.txt"
    res = probe.run(*pre, "restore", str(remote), "--into", f"uris:{target}")
    if res.code != 0:
        assert res.code == 3, res.err  # the key opens nothing (not some other failure)
        return None
    return {parse_uri(x).secret_id for x in target.read_text().splitlines() if x.strip()} if target.exists() else set()


_VIEW = re.compile(r"(\d{10})-(\d{12})-\d+\.view")
_DELTA = re.compile(r"(\d{10})-(\d{12})-\d{12}-\d+\.delta")  # docs/REMOTE-LAYOUT.md


def _device_object(name: str):
    """(match, kind) of a view or delta name, else (None, "")."""
    for pattern, kind in ((_VIEW, "view"), (_DELTA, "delta")):
        if m := pattern.fullmatch(name):
            return m, kind
    return None, ""


def objects_opening(remote: Path, credential: Secret, old_keys: tuple[VaultKey, ...] = ()) -> list[str]:
    """Every object on the remote that ``credential`` (or a vault key it once unwrapped,
    ``old_keys``) opens. Headers are tried with the credential; views with every key the
    credential unwrapped now and with the old keys' bytes as if they were the view's
    epoch key (a removed member knew the old vault key). Every object must be one of the
    two kinds, so nothing is left untried."""
    opened: list[str] = []
    keys: list[VaultKey] = []
    files = sorted(p for p in remote.rglob("*") if p.is_file())
    assert files, "the remote is empty"
    for path in files:
        rel = path.relative_to(remote).as_posix()
        if rel.startswith("epochs/") and rel.endswith(".hdr"):
            try:
                keys.append(open_epoch(path.read_bytes(), credential))
            except (WrongPassphrase, IntegrityError):
                continue
            opened.append(rel)
        else:
            assert rel.startswith("devices/") and _device_object(path.name)[0], f"an object of an unknown kind: {rel}"
    for path in files:
        match, kind = _device_object(path.name)
        if not match:
            continue
        epoch, seq, device = int(match.group(1)), int(match.group(2)), path.parent.name
        blob = path.read_bytes()
        tries = [k.rewrap(lambda raw, k=k: VaultKey(k.vault_id, epoch, raw)) for k in (*keys, *old_keys)]
        for key in tries:
            try:
                key.open(blob, kind=kind, device=device, seq=seq)
            except IntegrityError:
                continue
            opened.append(path.relative_to(remote).as_posix())
            break
    return opened


def header_key(remote: Path, credential: Secret) -> VaultKey:
    """The vault key of the current epoch, unwrapped with ``credential``."""
    (header,) = sorted((remote / "epochs").glob("*.hdr"))
    return open_epoch(header.read_bytes(), credential)


def identity(path: Path) -> IdentityKey:
    return IdentityKey(path.read_text(), str(path))


def recovery_code_in(res) -> str:
    code = res.json()["recovery_key"]
    assert re.fullmatch(r"[A-Z2-7]{6}(-[A-Z2-7]{6}){5}", code), code
    return code


def typo_of(code: str) -> str:
    """``code`` with one character changed so that its checksum (the first two bytes of
    SHA-256 of the 20 secret bytes, docs/FORMAT.md §12) no longer matches - computed
    here from the documented format, not by the code under test."""
    letters = code.replace("-", "")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    for pos in (7, 3, 20, 13, 28):
        for ch in alphabet:
            if ch == letters[pos]:
                continue
            text = letters[:pos] + ch + letters[pos + 1:]
            data = base64.b32decode(text + "=" * (-len(text) % 8))
            if hashlib.sha256(data[:20]).digest()[:2] != data[20:22]:
                return "-".join(text[i:i + 6] for i in range(0, len(text), 6))
    raise AssertionError("no typo found")  # pragma: no cover


# --- 1. three homes, three kinds of key --------------------------------------------------------
def test_passphrase_recovery_code_and_age_server_homes_share_one_vault(tmp_path):
    """Home A opens with the passphrase, home B with the recovery code alone, home C is a
    server with an age key file and no passphrase anywhere; what each adds reaches the
    others, and each run says which key it used."""
    remote = tmp_path / "remote"
    a = home(tmp_path, "a", str(remote))
    res = ok(a.init("--recovery-key", "--json"))
    code = recovery_code_in(res)
    assert code not in (a.home / "config.toml").read_text()
    assert not any(code in p.read_text(errors="replace") for p in a.home.rglob("*") if p.is_file())
    code_file = private_file(tmp_path / "recovery.txt", code + "\n")
    keys = keys_of(a)
    assert sorted(k["type"] for k in keys) == ["passphrase", "recovery"]
    assert [k["type"] for k in keys if k["in_use"]] == ["passphrase"]
    server_pub = age_key(tmp_path / "server-age.txt")
    ok(a.run("key", "add", "--name", "server", "--age-recipient", server_pub))
    a.add(make_account("a1"))
    ok(a.sync())

    b = home(tmp_path, "b", str(remote), passphrase=None)
    rk = ("--recovery-key-file", str(code_file))
    b.write_accounts([make_account("b1")])
    ok(b.run(*rk, "init", str(remote), "--store", b.store, "--device", "b", "--kdf", "insecure-test"))
    res = ok(b.run(*rk, "--stats", "sync", "--json"))
    assert kdf_of(res) == 0  # a recovery code costs no Argon2id
    assert ids(b) == {make_account(t).secret_id for t in ("a1", "b1")}

    c = home(tmp_path, "c", str(remote), passphrase=None)
    c.env["OTPBRIDGE_IDENTITY"] = str(tmp_path / "server-age.txt")
    assert not any(k in c.env for k in ("OTPBRIDGE_PASSPHRASE", "OTPBRIDGE_PASSCOMMAND"))
    c.write_accounts([make_account("c1")])
    ok(c.init())
    res = ok(c.run("--stats", "sync", "--json"))
    assert kdf_of(res) == 0
    a.add(make_account("a2"))
    ok(a.sync())
    b.add(make_account("b2"))
    ok(b.run(*rk, "sync"))
    ok(c.sync())
    ok(a.sync())
    ok(b.run(*rk, "sync"))
    everything = {make_account(t).secret_id for t in ("a1", "a2", "b1", "b2", "c1")}
    assert ids(a) == ids(b) == ids(c) == everything

    in_use = {name: [k for k in keys_of(dev, *pre) if k["in_use"]]
              for name, dev, pre in (("a", a, ()), ("b", b, rk), ("c", c, ()))}
    assert [k["type"] for k in in_use["a"]] == ["passphrase"]
    assert [k["type"] for k in in_use["b"]] == ["recovery"]
    assert [(k["type"], k["name"], k["public"]) for k in in_use["c"]] == [("age", "server", server_pub)]
    # the devices table says whose key each device uses
    rows = {r["name"]: r for r in ok(a.run("devices", "list", "--json")).json()}
    assert rows["a"]["key"].startswith("passphrase") and rows["b"]["key"].startswith("recovery")
    assert rows["c"]["key"].startswith("age")
    # each proves its own key without changing anything
    ok(a.run("passphrase", "check"))
    ok(b.run(*rk, "passphrase", "check", "--recovery"))
    ok(c.run("passphrase", "check"))
    assert remote_ids(remote) == everything


# --- 2. two people on one WebDAV remote --------------------------------------------------------
def test_two_people_with_their_own_passphrases_share_a_webdav_vault(tmp_path, webdav_server):
    env = webdav_server.environ(base_env())
    location = webdav_server.location(f"keys-{tmp_path.name}-{os.getpid()}")
    alice = home(tmp_path, "alice", location, env=env)
    alice.write_accounts([make_account("al1")])
    ok(alice.init())
    ok(alice.sync())
    ok(alice.run("key", "add", "--name", "bob", env={"OTPBRIDGE_NEW_PASSPHRASE": BOB}))
    bob = home(tmp_path, "bob", location, env=env, passphrase=BOB)
    bob.write_accounts([make_account("bo1")])
    ok(bob.init())
    res = ok(bob.run("--stats", "sync", "--json"))
    assert kdf_of(res) == 1
    ok(alice.sync())
    alice.add(make_account("al2"))
    ok(alice.sync())
    ok(bob.sync())
    everything = {make_account(t).secret_id for t in ("al1", "al2", "bo1")}
    assert ids(alice) == ids(bob) == everything
    # bob's device remembers his slot: one derivation, not one per passphrase slot
    bob.add(make_account("bo2"))
    res = ok(bob.run("--stats", "sync", "--json"))
    assert kdf_of(res) == 1
    ok(alice.sync())
    assert ids(alice) == everything | {make_account("bo2").secret_id}

    a_keys, b_keys = keys_of(alice), keys_of(bob)
    assert [k["id"] for k in a_keys] == [k["id"] for k in b_keys]
    # alice's passphrase is the vault's first slot (unnamed), bob's the one alice added
    assert [(k["type"], k["name"]) for k in a_keys] == [("passphrase", ""), ("passphrase", "bob")]
    (a_used,) = [k for k in a_keys if k["in_use"]]
    (b_used,) = [k for k in b_keys if k["in_use"]]
    assert b_used["name"] == "bob" and a_used["name"] != "bob" and a_used["id"] != b_used["id"]
    assert {k["device"] for k in a_keys} == {"alice"}  # both were added by alice's device
    rows = {r["name"]: r for r in ok(alice.run("devices", "list", "--json")).json()}
    assert set(rows) == {"alice", "bob"}
    assert a_used["id"] in rows["alice"]["key"] and b_used["id"] in rows["bob"]["key"]
    assert "bob" in rows["bob"]["key"]
    # a wrong passphrase still opens nothing
    res = home(tmp_path, "mallory", location, env=env, passphrase=CAROL).init()
    assert res.code == 3, res.err


# --- 3. removing a person, a key file, a recovery code -----------------------------------------
def test_removed_keys_open_nothing_on_the_remote(tmp_path):
    """After ``key remove`` (and ``devices remove``) every header and every view on the
    remote is tried with the removed passphrase, age key, ssh key and recovery code - and
    with the vault key the removed member unwrapped before: nothing opens."""
    remote = tmp_path / "remote"
    a = home(tmp_path, "a", str(remote))
    a.write_accounts([make_account(str(i)) for i in range(3)])
    code = recovery_code_in(ok(a.init("--recovery-key", "--json")))
    ok(a.sync())
    ok(a.run("key", "add", "--name", "bob", env={"OTPBRIDGE_NEW_PASSPHRASE": BOB}))
    age_pub = age_key(tmp_path / "age.txt")
    ok(a.run("key", "add", "--name", "nas", "--age-recipient", age_pub))
    removed: dict[str, Secret] = {"bob": Secret(BOB), "nas": identity(tmp_path / "age.txt"), "recovery": RecoveryKey(code)}
    if SSH_KEYGEN is not None:
        ssh_pub = ssh_key(tmp_path / "id_ed25519")
        ok(a.run("key", "add", "--name", "pi", "--ssh-recipient", ssh_pub))
        removed["pi"] = identity(tmp_path / "id_ed25519")
    bob = home(tmp_path, "bob", str(remote), passphrase=BOB)
    bob.write_accounts([make_account("bob")])
    ok(bob.init())
    ok(bob.sync())
    ok(a.sync())
    everything = {make_account(t).secret_id for t in ("0", "1", "2", "bob")}
    assert ids(a) == everything
    # before: each of them opens every object, and the vault key is what a member knew
    every = sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file())
    assert len(every) >= 3
    for name, cred in removed.items():
        assert sorted(objects_opening(remote, cred)) == every, name
    old_keys = tuple(header_key(remote, cred) for cred in removed.values())
    views = [x for x in every if x.endswith((".view", ".delta"))]  # every device object
    assert sorted(objects_opening(remote, Secret("no such passphrase"), old_keys[:1])) == views
    if "pi" in removed:
        assert restores_with(remote, tmp_path, "--identity", str(tmp_path / "id_ed25519")) == everything

    bob_id = next(r["id"] for r in ok(a.run("devices", "list", "--json")).json() if r["name"] == "bob")
    res = ok(a.run("key", "remove", "bob"))
    assert "opens nothing on the remote" in res.out and "rclone cleanup" in res.err
    ok(a.run("devices", "remove", bob_id))
    for name in ("nas", "recovery", "pi"):
        if name in removed:
            ok(a.run("key", "remove", name))
    assert [k["type"] for k in keys_of(a)] == ["passphrase"]
    for name, cred in removed.items():
        assert objects_opening(remote, cred, old_keys) == [], name
    assert list((remote / "devices").glob(f"{bob_id}/*")) == []
    # the vault itself is whole, and every way in but the passphrase is shut
    assert remote_ids(remote) == everything
    assert restores_with(remote, tmp_path, "--identity", str(tmp_path / "age.txt")) is None
    assert restores_with(remote, tmp_path, "--recovery-key-file", str(private_file(tmp_path / "code", code))) is None
    assert restores_with(remote, tmp_path, passphrase=BOB) is None
    bob.add(make_account("late"))
    res = bob.sync()  # bob's passphrase opens nothing; what he had stays his
    assert res.code == 3, res.err
    # ... and he is told why: his key was removed (not "the passphrase was changed")
    assert "'bob'" in res.err and "is not in the vault's newest key-slot header" in res.err, res.err
    assert "it was removed" in res.err
    assert "passphrase was changed" not in res.err and "key add" in res.err
    assert ids(bob) == {make_account(t).secret_id for t in ("0", "1", "2", "bob", "late")}
    assert remote_ids(remote) == everything
    left = sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file())
    assert sorted(objects_opening(remote, Secret(PASS))) == left  # the remaining key opens it all


# --- 4. the recovery code alone restores into a new KeePass database ---------------------------
def test_recovery_code_alone_restores_every_account_into_a_new_keepass_database(tmp_path):
    pytest.importorskip("pykeepass")
    from pykeepass import PyKeePass

    remote = tmp_path / "remote"
    a = home(tmp_path, "a", str(remote))
    accounts = [make_account("k1"), make_account("k2", issuer="Bank"), make_account("k3", kind="hotp", counter=7)]
    a.write_accounts(accounts)
    code = recovery_code_in(ok(a.init("--recovery-key", "--json")))
    ok(a.sync())
    # the passphrase is forgotten: a new laptop has only the code (here on a pipe)
    laptop = home(tmp_path, "laptop", str(remote), passphrase=None)
    laptop.env["KPW"] = "new kdbx password 19"
    kdbx = tmp_path / "new.kdbx"
    read_fd, write_fd = os.pipe()
    os.write(write_fd, (code + "\n").encode())
    os.close(write_fd)
    try:
        res = laptop.run("--stats", "--recovery-key-fd", str(read_fd), "restore", str(remote),
                         "--into", f"keepass:{kdbx}?password-env=KPW&create=1")
    finally:
        try:
            os.close(read_fd)
        except OSError:
            pass
    ok(res)
    assert kdf_of(res) == 0
    assert kdbx.is_file()
    kp = PyKeePass(str(kdbx), password="new kdbx password 19")
    got = {}
    for entry in kp.entries:
        if entry.otp:
            acc = parse_uri(entry.otp)
            got[acc.secret_id] = acc
    # KeePass keeps HOTP in its own fields: read every account back through otpbridge too
    listed = ok(laptop.run("list", f"keepass:{kdbx}?password-env=KPW", "--json", "--show-secrets")).json()
    mine = {parse_uri(x["uri"]).secret_id: parse_uri(x["uri"]) for x in listed["accounts"]}
    want = {acc.secret_id: acc for acc in accounts}
    assert set(mine) == set(want)
    for rid, acc in want.items():
        assert (mine[rid].secret, mine[rid].issuer, mine[rid].name, mine[rid].kind) == (acc.secret, acc.issuer, acc.name, acc.kind)
    assert mine[make_account("k3", kind="hotp").secret_id].counter == 7
    # read by pykeepass itself: TOTP in KeePassXC's otp field, HOTP in KeePass's HmacOtp fields
    assert len(kp.entries) == 3
    for tag in ("k1", "k2"):
        assert got[make_account(tag).secret_id].secret == make_account(tag).secret
    hotp = make_account("k3", kind="hotp")
    (entry,) = [e for e in kp.entries if e.get_custom_property("HmacOtp-Secret-Base32")]
    assert base64.b32decode(entry.get_custom_property("HmacOtp-Secret-Base32")) == hotp.secret
    assert entry.get_custom_property("HmacOtp-Counter") == "7"
    from tests.support.kdbx import KEEPASSXC, kpxc

    if KEEPASSXC is not None:  # an independent reader: KeePassXC computes the same TOTP codes
        for tag in ("k1", "k2"):
            acc = want[make_account(tag).secret_id]
            entry = next(e for e in kp.entries if e.otp and parse_uri(e.otp).secret_id == acc.secret_id)
            where = "/".join([*entry.path[:-1], entry.title]) if isinstance(entry.path, list) else entry.title
            before = time.time()
            shown = kpxc(["show", "-t", where], kdbx, password="new kdbx password 19").stdout.strip()
            after = time.time()
            assert shown in {rfc6238(acc.secret, before), rfc6238(acc.secret, after)}, where


def rfc6238(secret: bytes, at: float) -> str:
    """A 6-digit SHA-1 TOTP code, 30-second steps (RFC 6238), for the KeePassXC check."""
    import hmac

    mac = hmac.new(secret, struct.pack(">Q", int(at) // 30), "sha1").digest()
    off = mac[-1] & 15
    return f"{(struct.unpack('>I', mac[off:off + 4])[0] & 0x7FFFFFFF) % 10**6:06d}"


# --- 5. crash injection: key add and key remove ------------------------------------------------


def _crash_setup(root: Path) -> dict:
    remote = root / "remote"
    a = home(root, "a", str(remote))
    a.write_accounts([make_account(str(i)) for i in range(3)])
    ok(a.init())
    ok(a.sync())
    ok(a.run("key", "add", "--name", "bob", env={"OTPBRIDGE_NEW_PASSPHRASE": BOB}))
    pub = age_key(root / "age.txt")
    ok(a.run("key", "add", "--name", "srv", "--age-recipient", pub))
    bob = home(root, "bob", str(remote), passphrase=BOB)
    bob.write_accounts([make_account("b")])
    ok(bob.init())
    ok(bob.sync())
    ok(a.sync())
    return {"a": a, "bob": bob, "remote": remote}


def _rerun_until_done(dev: Device, *args: str, env: dict[str, str] | None = None, where=()) -> None:
    """Run the command again: it finishes the change, exit 0 (an interrupted change it
    cannot tell from another says so, and once more makes the change: docs/SYNC.md
    "Keys"), also when the fault hit after the last remote step."""
    res = dev.run(*args, env=env)
    assert res.code == 0, (where, res.out, res.err)
    if "finished an interrupted change" in res.out:
        res = dev.run(*args, env=env)
        assert res.code == 0, (where, "after the interrupted change was finished", res.out, res.err)
        assert "finished an interrupted change" not in res.out, (where, res.out)


@pytest.mark.slow
@pytest.mark.parametrize("change", ["remove", "add"])
def test_crash_matrix_for_key_changes(tmp_path, change, record_property):
    """A fault at every backend call of ``key remove bob`` (a person leaves) and of ``key
    add --name carol``: afterwards no account is lost (the remote restores completely
    with the key the run used), running the command again finishes the change, the
    other keys still open everything, and the removed passphrase then opens nothing on
    the remote - nor does the vault key Bob unwrapped while he was a member. (Removing
    an age key or a recovery code is the same re-key: test_removed_keys_open_nothing...)"""
    from otpbridge.engine.keys import add_key, remove_key
    from otpbridge.vault.format import choose_params
    from otpbridge.vault.keyring import NewSlot

    root = tmp_path / "case"
    env0 = _crash_setup(root)
    a, bob, remote = env0["a"], env0["bob"], env0["remote"]
    everything = set(a.accounts())
    assert remote_ids(remote) == everything
    template = tmp_path / "template"
    shutil.copytree(root, template, symlinks=True)
    server = identity(root / "age.txt")  # a key that stays: opens without a derivation
    old_key = header_key(remote, Secret(BOB))
    params = choose_params("insecure-test", {"OTPBRIDGE_ALLOW_INSECURE_KDF": "1"})

    def attempt(faulty, fault) -> bool:
        where = (change, *fault)
        s = engine_session(a, faulty)
        if change == "add":
            spec = NewSlot("passphrase", "carol", Secret(CAROL), params=params)
            fn = lambda s=s, spec=spec: add_key(s, spec)  # noqa: E731
        else:
            fn = lambda s=s: remove_key(s, "bob")  # noqa: E731
        if not run_faulty(fn, faulty):
            return False
        # nothing lost: the remote restores completely with the key the run used
        assert remote_ids(remote) == everything, where
        assert set(a.accounts()) == everything, where
        # the same command again finishes the job
        if change == "add":
            _rerun_until_done(a, "key", "add", "--name", "carol", env={"OTPBRIDGE_NEW_PASSPHRASE": CAROL},
                              where=where)
        else:
            _rerun_until_done(a, "key", "remove", "bob", where=where)
        (header,) = (remote / "epochs").glob("*.hdr")
        ring = open_epoch(header.read_bytes(), server).keyring
        names = sorted(x.name for x in ring.slots)
        want = ["", "bob", "carol", "srv"] if change == "add" else ["", "srv"]
        assert names == want, where
        assert remote_ids(remote) == everything, where
        assert objects_opening(remote, server), where
        if change == "add":
            assert remote_ids(remote, CAROL) == everything, where
            ok(bob.sync())  # bob keeps syncing through all of it
            assert set(bob.accounts()) == everything, where
        else:
            assert objects_opening(remote, Secret(BOB), (old_key,)) == [], where
        return True

    total, by_op = matrix_summary(fault_matrix(root, template, remote, attempt))
    gone = ", the removed key opened nothing" if change == "remove" else ""
    record_property("figure", f"crash matrix: key {change}: {total} injected faults ({by_op}), 0 accounts lost, "
                              f"every rerun finished{gone}")
    assert total >= 10


@pytest.mark.parametrize("deletes_done", [0, 1])
def test_a_key_remove_cut_short_after_its_commit_point_is_finished_by_running_it_again(tmp_path, deletes_done):
    """The new header is written (the commit point) but the process dies before the old
    epoch is deleted (``deletes_done=0``: its header and views are left, Bob's passphrase
    still opens them) or after its header only (``1``: header-less views Bob's old vault
    key opens). Running ``key remove bob`` again must finish it - exit 0, not "no key
    'bob'" - and afterwards nothing on the remote opens for Bob."""
    from otpbridge.engine.keys import remove_key

    env0 = _crash_setup(tmp_path)
    a, remote = env0["a"], env0["remote"]
    everything = set(a.accounts())
    old_key = header_key(remote, Secret(BOB))
    faulty = FaultyBackend(LocalBackend(str(remote)), crash_on={"delete": [deletes_done + 1]})
    with pytest.raises(SimulatedCrash):
        remove_key(engine_session(a, faulty), "bob")
    assert objects_opening(remote, Secret(BOB), (old_key,))  # not finished yet
    res = ok(a.run("key", "remove", "bob"))
    assert "removed key" in res.out, res.out
    assert objects_opening(remote, Secret(BOB), (old_key,)) == []
    assert [k["name"] for k in keys_of(a)] == ["", "srv"]
    assert remote_ids(remote) == everything
    res = a.run("key", "remove", "bobby")  # a typo is still a typo
    assert res.code == 2 and "no key 'bobby'" in res.err, res.err
    # and the device goes on as usual
    a.add(make_account("after"))
    res = ok(a.sync())
    assert not res.json()["warnings"] and not res.json()["conflicts"], res.out
    assert remote_ids(remote) == everything | {make_account("after").secret_id}
    assert ok(a.sync()).json()["fast_path"] is True


def test_a_recovery_code_add_cut_short_after_its_commit_point_says_its_code_is_lost(tmp_path):
    """The new header holds the recovery slot, but the process died before the code was
    printed (and before the old epoch went). A recovery code is never stored: the rerun
    finishes the re-key and tells the user to remove the unseen code and add another."""
    from otpbridge.engine.keys import add_key
    from otpbridge.vault.keyring import NewSlot

    env0 = _crash_setup(tmp_path)
    a, remote = env0["a"], env0["remote"]
    everything = set(a.accounts())
    faulty = FaultyBackend(LocalBackend(str(remote)), crash_on={"delete": [1]})
    with pytest.raises(SimulatedCrash):
        add_key(engine_session(a, faulty), NewSlot("recovery", "rk"))
    assert len(list((remote / "epochs").glob("*.hdr"))) == 2  # the old epoch is still there
    res = a.run("key", "add", "--recovery", "--name", "rk ")  # a name with a stray space is the same name
    assert res.code == 2, res.err
    assert "already has a recovery code named 'rk'" in res.err and "never shown" in res.err, res.err
    assert "interrupted key change was finished" in res.err
    (rk,) = [k for k in keys_of(a) if k["name"] == "rk"]
    assert f"key remove {rk['id']}" in res.err
    assert len(list((remote / "epochs").glob("*.hdr"))) == 1 and remote_ids(remote) == everything
    ok(a.run("key", "remove", rk["id"]))
    res = ok(a.run("key", "add", "--recovery", "--name", "rk", "--json"))
    assert res.json()["recovery_key"]


def test_key_names_are_compared_without_surrounding_spaces(tmp_path, vault):
    a, _remote, _code = vault
    ok(a.run("key", "add", "--name", "srv", env={"OTPBRIDGE_NEW_PASSPHRASE": CAROL}))
    res = a.run("key", "add", "--name", "srv ", "--recovery")
    assert res.code == 2 and "already has a key named 'srv'" in res.err, res.err
    assert [k["name"] for k in keys_of(a)].count("srv") == 1


def test_key_add_of_a_key_the_vault_has_is_done_and_of_another_under_its_name_refused(tmp_path):
    env0 = _crash_setup(tmp_path)
    a, remote = env0["a"], env0["remote"]
    before = sorted(p.name for p in remote.rglob("*") if p.is_file())
    res = ok(a.run("key", "add", "--name", "bob", env={"OTPBRIDGE_NEW_PASSPHRASE": BOB}))  # bob's own again
    assert "added" in res.out
    assert sorted(p.name for p in remote.rglob("*") if p.is_file()) == before  # no re-key
    res = a.run("key", "add", "--name", "bob", env={"OTPBRIDGE_NEW_PASSPHRASE": CAROL})
    assert res.code == 2 and "already has a key named 'bob'" in res.err, res.err
    res = a.run("key", "add", "--name", "srv", "--age-recipient", age_key(tmp_path / "other-age.txt"))
    assert res.code == 2 and "already has a key named 'srv'" in res.err, res.err
    assert sorted(p.name for p in remote.rglob("*") if p.is_file()) == before
    assert objects_opening(remote, Secret(CAROL)) == []
    # the same age key under its name, or the same unnamed passphrase, is already there
    pub = (tmp_path / "age.txt").read_text().split("public key: ")[1].split()[0]
    ok(a.run("key", "add", "--name", "srv", "--age-recipient", pub))
    ok(a.run("key", "add", env={"OTPBRIDGE_NEW_PASSPHRASE": PASS}))
    assert sorted(p.name for p in remote.rglob("*") if p.is_file()) == before
    ok(a.run("key", "add", env={"OTPBRIDGE_NEW_PASSPHRASE": CAROL}))
    assert sorted((k["type"], k["name"]) for k in keys_of(a)) == [
        ("age", "srv"), ("passphrase", ""), ("passphrase", ""), ("passphrase", "bob")]
    assert remote_ids(remote, CAROL) == set(a.accounts())
    # the same key under another name would outlive a 'key remove' of either: refused
    before = sorted(p.name for p in remote.rglob("*") if p.is_file())
    for args, env in ((("--name", "srv2", "--age-recipient", pub), None),
                      (("--name", "dup"), {"OTPBRIDGE_NEW_PASSPHRASE": PASS}),  # the one this run opens with
                      (("--name", "bob2"), {"OTPBRIDGE_NEW_PASSPHRASE": BOB})):  # another slot's
        res = a.run("key", "add", *args, env=env)
        assert res.code == 2 and "already has this key" in res.err, (args, res.err)
    assert sorted(p.name for p in remote.rglob("*") if p.is_file()) == before


# --- 6. hostile input and misuse ---------------------------------------------------------------
@pytest.fixture
def vault(tmp_path):
    remote = tmp_path / "remote"
    a = home(tmp_path, "a", str(remote))
    a.write_accounts([make_account("h1"), make_account("h2")])
    code = recovery_code_in(ok(a.init("--recovery-key", "--json")))
    ok(a.sync())
    return a, remote, code


def test_a_recovery_code_with_a_typo_is_exit_2_before_any_work(tmp_path, vault):
    a, remote, code = vault
    bad = private_file(tmp_path / "typo.txt", typo_of(code) + "\n")
    short = private_file(tmp_path / "short.txt", code[:-7] + "\n")
    alien = private_file(tmp_path / "alien.txt", code[:-1] + "!" + "\n")
    laptop = home(tmp_path, "laptop", str(remote), passphrase=None)
    for f in (bad, short, alien):
        res = laptop.run("--stats", "--recovery-key-file", str(f), "restore", str(remote), "--into",
                         f"uris:{tmp_path / 'out.txt'}")
        assert res.code == 2, (f.name, res.err)
        assert kdf_of(res) == 0
        assert "recovery code" in res.err
        assert not (tmp_path / "out.txt").exists()
    assert "typo" in laptop.run("--recovery-key-file", str(bad), "restore", str(remote), "--into",
                                f"uris:{tmp_path / 'out.txt'}").err
    # on a joined home too, and with passphrase check --recovery
    res = a.run("--stats", "--recovery-key-file", str(bad), "passphrase", "check", "--recovery")
    assert res.code == 2 and kdf_of(res) == 0, res.err
    a.add(make_account("h3"))  # a change: the sync has to open the vault (no fast path)
    res = a.run("--stats", "--recovery-key-file", str(bad), "sync")
    assert res.code == 2 and kdf_of(res) == 0, res.err
    # the right code, spaced and lower-cased as people copy it, works
    good = private_file(tmp_path / "good.txt", code.lower().replace("-", " ") + "\n")
    ok(a.run("--recovery-key-file", str(good), "passphrase", "check", "--recovery"))
    # ... and as editors save it: a byte-order mark, CR LF, typographic dashes, a no-break space
    notepad = private_file(tmp_path / "notepad.txt", "")
    notepad.write_bytes(("\ufeff" + code.replace("-", "\u2013", 2).replace("-", "\u00a0") + "\r\n").encode())
    ok(a.run("--recovery-key-file", str(notepad), "passphrase", "check", "--recovery"))


def test_an_identity_file_others_can_read_is_refused(tmp_path, vault):
    a, remote, code = vault
    pub = age_key(tmp_path / "age.txt")
    ok(a.run("key", "add", "--name", "srv", "--age-recipient", pub))
    ok(a.sync())
    (tmp_path / "age.txt").chmod(0o644)
    srv = home(tmp_path, "srv", str(remote), passphrase=None)
    srv.env["OTPBRIDGE_IDENTITY"] = str(tmp_path / "age.txt")
    res = srv.run("--stats", "restore", str(remote), "--into", f"uris:{tmp_path / 'out.txt'}")
    assert res.code == 2 and "chmod 600" in res.err and kdf_of(res) == 0, res.err
    res = srv.init()
    assert res.code == 2, res.err
    (tmp_path / "age.txt").chmod(0o640)
    assert srv.init().code == 2
    (tmp_path / "age.txt").chmod(0o600)
    # one key to open with: an identity and a recovery code at once is a usage error
    rk = private_file(tmp_path / "code.txt", code)
    res = srv.run("--recovery-key-file", str(rk), "restore", str(remote), "--into", f"uris:{tmp_path / 'out.txt'}")
    assert res.code == 2 and "more than one key" in res.err, res.err
    res = srv.run("--use-recovery-key", "restore", str(remote), "--into", f"uris:{tmp_path / 'out.txt'}",
                  drop=("OTPBRIDGE_IDENTITY",))
    assert res.code == 2 and "--recovery-key-file" in res.err, res.err  # no terminal: says what works
    ok(srv.init())
    ok(srv.sync())
    assert ids(srv) == ids(a)


def test_removing_the_last_key_or_the_key_in_use_is_refused(tmp_path, vault):
    a, remote, code = vault
    keys = keys_of(a)
    (mine,) = [k for k in keys if k["in_use"]]
    before = sorted(p.name for p in remote.rglob("*") if p.is_file())
    for ref in (mine["id"], mine["id"][:6]):
        res = a.run("key", "remove", ref)
        assert res.code == 2 and "opened the vault with" in res.err, res.err
    assert sorted(p.name for p in remote.rglob("*") if p.is_file()) == before
    res = a.run("key", "remove", "no-such-key")
    assert res.code == 2, res.err
    # opened with the recovery code, the passphrase may go; then the recovery code is the
    # last key and cannot go (nor with any other credential: there is none left)
    rk = ("--recovery-key-file", str(private_file(tmp_path / "code.txt", code)))
    res = a.run(*rk, "key", "remove", "recovery")
    assert res.code == 2 and "opened the vault with" in res.err, res.err
    ok(a.run(*rk, "key", "remove", mine["id"]))
    assert [k["type"] for k in keys_of(a, *rk)] == ["recovery"]
    res = a.run(*rk, "key", "remove", "recovery")
    assert res.code == 2 and "last key" in res.err, res.err
    a.add(make_account("h3"))
    assert a.run("sync").code == 3  # the passphrase opens nothing now
    # a version-1 vault: its one passphrase is the last key
    v1 = home(tmp_path, "v1", str(tmp_path / "remote-v1"))
    ok(v1.init())
    res = v1.run("key", "remove", "-")
    assert res.code == 2 and "last key" in res.err, res.err


@needs_ssh_keygen
def test_a_passphrase_protected_ssh_key_is_a_clear_usage_error(tmp_path, vault):
    a, remote, _code = vault
    pub = ssh_key(tmp_path / "id_locked", passphrase="ssh key passphrase")
    ok(a.run("key", "add", "--name", "locked", "--ssh-recipient", pub))
    srv = home(tmp_path, "srv", str(remote), passphrase=None)
    res = srv.run("--stats", "--identity", str(tmp_path / "id_locked"), "restore", str(remote),
                  "--into", f"uris:{tmp_path / 'out.txt'}")
    assert res.code == 2, res.err
    assert "passphrase-protected" in res.err and kdf_of(res) == 0
    assert "Traceback" not in res.err


@pytest.mark.parametrize("args", [
    ("--age-recipient", "garbage"),
    ("--age-recipient", "age1notreallyakey"),
    ("--ssh-recipient", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ test"),
    ("--ssh-recipient", "ssh-ed25519 AAAAnotbase64!!"),
    ("--recovery", "--age-recipient", "age1x"),
])
def test_bad_recipients_are_exit_2_and_change_nothing(tmp_path, vault, args):
    a, remote, _code = vault
    before = sorted(p.name for p in remote.rglob("*") if p.is_file())
    res = a.run("--stats", "key", "add", *args)
    assert res.code == 2, res.err
    assert kdf_of(res) == 0
    assert sorted(p.name for p in remote.rglob("*") if p.is_file()) == before


def test_a_vault_without_slots_opens_lists_its_one_key_and_gains_slots(tmp_path):
    remote = tmp_path / "remote"
    a = home(tmp_path, "a", str(remote))
    a.write_accounts([make_account("v1")])
    ok(a.init())
    ok(a.sync())
    (header,) = (remote / "epochs").glob("*.hdr")
    assert header.read_bytes()[8] == 1  # a version-1 header
    res = ok(a.run("key", "list"))
    assert "one key: the passphrase (no key slots yet" in res.out
    listed = ok(a.run("key", "list", "--json")).json()
    assert listed["slots"] is False and [k["type"] for k in listed["keys"]] == ["passphrase"]
    # other kinds of key open nothing there, and say why
    pub = age_key(tmp_path / "age.txt")
    assert restores_with(remote, tmp_path, "--identity", str(tmp_path / "age.txt")) is None
    # the first key add turns it into a vault with slots: the passphrase is the first one
    res = ok(a.run("key", "add", "--recovery", "--json"))
    code = recovery_code_in(res)
    (header,) = (remote / "epochs").glob("*.hdr")
    assert header.read_bytes()[8] == 2
    keys = keys_of(a)
    assert [(k["type"], k["in_use"]) for k in keys] == [("passphrase", True), ("recovery", False)]
    ok(a.run("key", "add", "--name", "srv", "--age-recipient", pub))
    assert remote_ids(remote) == {make_account("v1").secret_id}
    assert restores_with(remote, tmp_path, "--identity", str(tmp_path / "age.txt")) == {make_account("v1").secret_id}
    rk = private_file(tmp_path / "code.txt", code)
    assert restores_with(remote, tmp_path, "--recovery-key-file", str(rk)) == {make_account("v1").secret_id}


def test_passphrase_change_by_name_on_a_two_passphrase_vault(tmp_path, vault):
    a, remote, code = vault
    ok(a.run("key", "add", "--name", "bob", env={"OTPBRIDGE_NEW_PASSPHRASE": BOB}))
    bob = home(tmp_path, "bob", str(remote), passphrase=BOB)
    ok(bob.init())
    ok(bob.sync())
    everything = ids(a)
    ids_before = {k["name"] or "a": k["id"] for k in keys_of(a)}
    # alice sets a new passphrase for bob's slot (bob lost his): only that slot changes
    ok(a.run("passphrase", "change", "--key", "bob", env={"OTPBRIDGE_NEW_PASSPHRASE": BOB2}))
    ids_after = {k["name"] or "a": k["id"] for k in keys_of(a)}
    assert ids_after == ids_before  # the slot keeps its id and name
    assert objects_opening(remote, Secret(BOB)) == []
    assert remote_ids(remote, BOB2) == everything
    assert remote_ids(remote, PASS) == everything
    assert bob.sync().code == 3
    ok(bob.sync(env={"OTPBRIDGE_PASSPHRASE": BOB2}))
    # forgotten passphrase: a new home with the recovery code alone; the vault has two
    # passphrases and this home remembers none, so it asks whose to change
    rk = ("--recovery-key-file", str(private_file(tmp_path / "code.txt", code)))
    lost = home(tmp_path, "lost", str(remote), passphrase=None)
    ok(lost.run(*rk, "init", str(remote), "--store", lost.store, "--device", "lost", "--kdf", "insecure-test"))
    new = {"OTPBRIDGE_NEW_PASSPHRASE": CAROL}
    res = lost.run(*rk, "passphrase", "change", env=new)
    assert res.code == 2 and "--key" in res.err, res.err
    res = lost.run(*rk, "passphrase", "change", "--key", "nobody", env=new)
    assert res.code == 2, res.err
    res = lost.run(*rk, "passphrase", "change", "--key", "recovery", env=new)  # a slot, not a passphrase's
    assert res.code == 2, res.err
    assert remote_ids(remote, PASS) == everything  # nothing changed
    ok(lost.run(*rk, "passphrase", "change", "--key", ids_before["a"], env=new))
    assert [k["name"] for k in keys_of(lost, *rk) if k["in_use"]] == ["recovery"]
    assert objects_opening(remote, Secret(PASS)) == []
    assert remote_ids(remote, CAROL) == everything and remote_ids(remote, BOB2) == everything
    ok(lost.run(*rk, "passphrase", "check", "--recovery"))
    assert a.sync().code == 3
    ok(a.sync(env={"OTPBRIDGE_PASSPHRASE": CAROL}))
    # on a home that remembers its slot, the recovery code changes that slot by default
    ok(a.run(*rk, "passphrase", "change", env={"OTPBRIDGE_NEW_PASSPHRASE": PASS}))
    assert remote_ids(remote, PASS) == everything and remote_ids(remote, BOB2) == everything
    assert objects_opening(remote, Secret(CAROL)) == []
    assert {k["name"] or "a": k["id"] for k in keys_of(a)} == ids_before


# --- planted headers -------------------------------------------------------------------------
def _planted_header(vault_id: bytes, epoch: int, n_slots: int, *, slot_type: int = 1,
                    m: int = 1024 * 1024, t: int = 4, p: int = 4) -> bytes:
    """A version-2 header as docs/FORMAT.md §12 lays it out, made by someone who never
    held the vault key: ``n_slots`` passphrase slots at the strongest parameters a reader
    accepts, random wraps, a random "keyring" and a correct checksum."""
    prefix = struct.pack(">8sB16sQQB", b"otpbEPCH", 2, vault_id, epoch, int(time.time()), n_slots)
    slots = b""
    for _ in range(n_slots):
        body = struct.pack(">BIIIB", 1, m, t, p, 32) + os.urandom(32) + os.urandom(32 + 32 + 32 + 16)
        slots += struct.pack(">B8sH", slot_type, os.urandom(8), len(body)) + body
    keyring = os.urandom(32 + 200)
    body = prefix + slots + struct.pack(">I", len(keyring)) + keyring
    return body + hashlib.sha256(body).digest()


def _restored(path: Path) -> set[str]:
    return {parse_uri(x).secret_id for x in path.read_text().splitlines() if x.strip()}


@pytest.mark.parametrize("slots", [8, 4])
def test_planted_headers_with_many_costly_passphrase_slots_are_refused_or_bounded(tmp_path, vault, slots):
    """An extra header with 8 (more than any reader accepts) or 4 passphrase slots, each
    at the strongest Argon2id parameters a reader accepts (1 GiB, t=4, p=4), planted by
    someone who never held the vault key: in the current epoch, for a device that knows
    its header and for a fresh restore, and in a newer epoch. Never derived for: every
    run costs the one derivation of the real header (stats.kdf), none at 1 GiB."""
    a, remote, code = vault
    key = header_key(remote, Secret(PASS))
    epoch = key.epoch
    dev = "0badc0ffee00"
    same = remote / "epochs" / f"{epoch:010d}-{dev}-{int(time.time())}.hdr"
    same.write_bytes(_planted_header(key.vault_id, epoch, slots))
    started = time.monotonic()
    a.add(make_account("h3"))  # a change: the sync opens the vault
    everything = ids(a)
    res = ok(a.run("--stats", "sync"))
    assert kdf_of(res) == 1 and "headers" in res.err, res.err
    fresh = home(tmp_path, "fresh", str(remote))  # no remembered header: the cheaper one first
    res = ok(fresh.run("--stats", "restore", str(remote), "--into", f"uris:{tmp_path / 'r1.txt'}"))
    assert kdf_of(res) == 1 and _restored(tmp_path / "r1.txt") == everything
    rk = private_file(tmp_path / "code.txt", code)  # a recovery code: no Argon2id at all
    res = ok(fresh.run("--stats", "--recovery-key-file", str(rk), "restore", str(remote), "--into",
                       f"uris:{tmp_path / 'r2.txt'}"))
    assert kdf_of(res) == 0 and _restored(tmp_path / "r2.txt") == everything
    same.unlink()
    if slots == 8:  # a newer epoch's header no reader accepts: refused before any derivation
        newer = remote / "epochs" / f"{epoch + 1:010d}-{dev}-{int(time.time())}.hdr"
        newer.write_bytes(_planted_header(key.vault_id, epoch + 1, slots))
        a.add(make_account("h4"))
        everything = ids(a)
        res = ok(a.run("--stats", "sync"))
        assert kdf_of(res) == 1, res.err
        res = ok(fresh.run("--stats", "restore", str(remote), "--into", f"uris:{tmp_path / 'r3.txt'}"))
        assert kdf_of(res) == 1 and _restored(tmp_path / "r3.txt") == everything
        newer.unlink()
    assert time.monotonic() - started < 30  # no run derived at 1 GiB
    ok(a.sync())
    assert ids(a) == everything and remote_ids(remote) == everything


def test_a_planted_newer_header_costs_at_most_four_derivations(tmp_path, vault):
    """A newer epoch's header with four passphrase slots (the most a reader accepts) that
    no key opens: a run derives at most four keys for it (docs/SYNC.md "Keys"), fails
    without touching anything, and works again once the header is gone."""
    a, remote, _code = vault
    key = header_key(remote, Secret(PASS))
    newer = remote / "epochs" / f"{key.epoch + 1:010d}-0badc0ffee00-{int(time.time())}.hdr"
    newer.write_bytes(_planted_header(key.vault_id, key.epoch + 1, 4, m=8192, t=1, p=1))
    a.add(make_account("h3"))
    everything = ids(a)
    before = sorted(p.name for p in remote.rglob("*") if p.is_file())
    res = a.run("--stats", "sync")
    assert res.code in (3, 4) and kdf_of(res) <= 4, res.err  # refused (wrong key, or a planted header)
    assert sorted(p.name for p in remote.rglob("*") if p.is_file()) == before
    assert ids(a) == everything
    newer.unlink()
    ok(a.sync())
    assert remote_ids(remote) == everything


def test_a_fresh_restore_falls_back_past_one_planted_header_with_several_slots(tmp_path, vault):
    """docs/SYNC.md "Epoch headers": a restore (no remembered header) meets a refusal only
    with two or more planted headers; past ONE planted newer header it uses the epoch that
    opens, with a warning - as it does for a one-slot header. A two-slot header must not
    change that (nor say that the right passphrase opens nothing)."""
    a, remote, _code = vault
    everything = ids(a)
    key = header_key(remote, Secret(PASS))
    for slots in (1, 2):
        newer = remote / "epochs" / f"{key.epoch + 1:010d}-0badc0ffee00-{int(time.time())}.hdr"
        newer.write_bytes(_planted_header(key.vault_id, key.epoch + 1, slots, m=8192, t=1, p=1))
        fresh = home(tmp_path, f"fresh{slots}", str(remote))
        target = tmp_path / f"r{slots}.txt"
        res = fresh.run("--stats", "restore", str(remote), "--into", f"uris:{target}")
        assert res.code == 0, (slots, res.err)
        assert f"using epoch {key.epoch}" in res.err and _restored(target) == everything
        newer.unlink()


def test_eight_slots_of_other_kinds_are_the_limit(tmp_path, vault):
    """A vault holds at most 8 keys, 4 passphrases and 2 recovery codes (refused, exit 2)."""
    a, remote, _code = vault  # 1 passphrase + 1 recovery
    ok(a.run("key", "add", "--recovery"))
    res = a.run("key", "add", "--recovery")
    assert res.code == 2, res.err
    for i in range(3):
        ok(a.run("key", "add", "--name", f"p{i}", env={"OTPBRIDGE_NEW_PASSPHRASE": f"{CAROL} number {i}"}))
    res = a.run("key", "add", "--name", "p9", env={"OTPBRIDGE_NEW_PASSPHRASE": BOB})
    assert res.code == 2, res.err
    for i in range(2):
        ok(a.run("key", "add", "--name", f"age{i}", "--age-recipient", age_key(tmp_path / f"age{i}.txt")))
    assert len(keys_of(a)) == 8
    res = a.run("key", "add", "--name", "age9", "--age-recipient", age_key(tmp_path / "age9.txt"))
    assert res.code == 2, res.err
    res = a.run("key", "add", "--name", "p0", "--age-recipient", age_key(tmp_path / "dup.txt"))
    assert res.code == 2, res.err
    assert remote_ids(remote) == ids(a)
    # a fresh home with the last passphrase still opens: at most four derivations
    last = home(tmp_path, "last", str(remote), passphrase=f"{CAROL} number 2")
    res = last.run("--stats", "restore", str(remote), "--into", f"uris:{tmp_path / 'out.txt'}")
    assert res.code == 0 and 1 <= kdf_of(res) <= 4, res.err


# --- forged headers (FORMAT.md §12.1: the vault authentication secret) --------------------------
def _forged_header(vault_id: bytes, epoch: int, public_line: str, attacker_key: bytes) -> bytes:
    """A version-2 header made from an ssh PUBLIC key alone (e.g. github.com/USER.keys) by
    someone who never held a vault key: a one-slot keyring sealed under a key of their own.
    Written from FORMAT.md §12, not with otpbridge's writer."""
    import json as _json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    slot_id = os.urandom(8)
    body = pyrage.encrypt(attacker_key, [pyrage.ssh.Recipient.from_str(" ".join(public_line.split()[:2]))])
    prefix = b"otpbEPCH" + bytes([2]) + vault_id + struct.pack(">QQ", epoch, int(time.time())) + bytes([1])
    slots = bytes([4]) + slot_id + struct.pack(">H", len(body)) + body
    ring = _json.dumps({"slots": [{"id": slot_id.hex(), "type": "ssh", "name": "server", "public": public_line,
                                   "created": 0, "device": ""}]}).encode()
    salt = os.urandom(32)
    okm = HKDF(algorithm=hashes.SHA256(), length=76, salt=salt, info=b"otpbridge/vault/v2/keyring").derive(attacker_key)
    sealed = salt + AESGCM(okm[:32]).encrypt(okm[32:44], ring, prefix + slots)
    unsigned = prefix + slots + struct.pack(">I", len(sealed)) + sealed
    return unsigned + hashlib.sha256(unsigned).digest()


@needs_ssh_keygen
def test_a_header_forged_from_a_published_ssh_key_is_refused_by_a_device_that_knows_the_vault(tmp_path, vault):
    """An ssh public key is public; a header wrapping the forger's own key to it must not
    make the server seal its accounts under that key: exit 4, nothing uploaded, and the
    forger opens nothing on the remote. Key changes made by the vault's holders still pass."""
    a, remote, _code = vault
    public = ssh_key(tmp_path / "id_server")
    ok(a.run("key", "add", "--name", "server", "--ssh-recipient", public))
    server = home(tmp_path, "server", str(remote), passphrase=None)
    pre = ("--identity", str(tmp_path / "id_server"))
    server.write_accounts([make_account("on-server")])
    ok(server.run(*pre, "init", str(remote), "--store", server.store, "--kdf", "insecure-test"))
    ok(server.run(*pre, "sync"))
    # a holder of the vault's keys changes them twice: the server follows (linked headers)
    ok(a.run("key", "add", "--recovery"))
    ok(a.run("key", "add", "--name", "bob", env={"OTPBRIDGE_NEW_PASSPHRASE": BOB}))
    ok(a.run("key", "remove", "bob"))
    ok(a.sync())
    server.add(make_account("server-2"))
    ok(server.run(*pre, "sync"))
    # the forger plants a newer epoch made from the public key alone
    key = header_key(remote, Secret(PASS))
    attacker = os.urandom(32)
    forged = remote / "epochs" / f"{key.epoch + 1:010d}-0badc0ffee00-{int(time.time())}.hdr"
    forged.write_bytes(_forged_header(key.vault_id, key.epoch + 1, public, attacker))
    before = sorted(p.name for p in remote.rglob("*") if p.is_file())
    server.add(make_account("server-3"))
    res = server.run(*pre, "sync")
    assert res.code == 4, res.err
    assert "not linked to the vault this device knows" in res.err
    assert sorted(p.name for p in remote.rglob("*") if p.is_file()) == before, "nothing was uploaded"
    for path in (p for p in remote.rglob("*") if p.is_file() and p.parent.parent.name == "devices"):
        match, kind = _device_object(path.name)
        seq, device = int(match.group(2)), path.parent.name
        with pytest.raises(IntegrityError):
            VaultKey(key.vault_id, key.epoch + 1, attacker).open(path.read_bytes(), kind=kind, device=device, seq=seq)
    # the real epoch is untouched: with the forgery gone, the server syncs again
    forged.unlink()
    ok(server.run(*pre, "sync"))
    assert make_account("server-3").secret_id in remote_ids(remote)


def test_a_device_that_missed_more_key_changes_than_headers_link_needs_accept_new_keys(tmp_path, vault):
    a, remote, _code = vault
    b = home(tmp_path, "b", str(remote))
    ok(b.init())
    ok(b.sync())
    for i in range(4):  # each removal gives the vault a fresh authentication secret
        ok(a.run("key", "add", "--name", f"p{i}", env={"OTPBRIDGE_NEW_PASSPHRASE": f"{CAROL} round {i}"}))
        ok(a.run("key", "remove", f"p{i}"))
    a.add(make_account("late"))
    ok(a.sync())
    res = b.sync()
    assert res.code == 4 and "missed more than 3 key changes" in res.err, res.err
    assert "--accept-new-keys" in res.err
    ok(b.sync("--accept-new-keys"))
    assert make_account("late").secret_id in b.accounts()
    ok(b.sync())  # trusted from now on


def test_a_remote_rolled_back_past_a_key_removal_is_a_rollback_not_a_forgery(tmp_path, vault):
    """The older header carries no link under the secret the removal drew (links run
    forward): the device must say "rollback" and point at --accept-rollback, not call
    the vault's own older header forged."""
    a, remote, _code = vault
    saved = tmp_path / "saved-remote"
    shutil.copytree(remote, saved)
    recovery = next(k for k in keys_of(a) if k["type"] == "recovery")
    ok(a.run("key", "remove", recovery["id"]))
    shutil.rmtree(remote)
    shutil.copytree(saved, remote)  # the provider restored an older copy of the folder
    res = a.sync()
    assert res.code == 4, res.err
    assert "rollback detected" in res.err and "--accept-rollback" in res.err, res.err
    assert "forged" not in res.err and "--accept-new-keys" not in res.err
    ok(a.sync("--accept-rollback"))
    assert ids(a) == {make_account(t).secret_id for t in ("h1", "h2")}

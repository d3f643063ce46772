"""Building real KeePass databases for tests: pykeepass for KDBX 4, keepassxc-cli for KDBX 3.1.

Passwords go to keepassxc-cli on stdin (it prompts), never on argv.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

KEEPASSXC = shutil.which("keepassxc-cli")
needs_keepassxc = pytest.mark.skipif(KEEPASSXC is None, reason="keepassxc-cli is not installed")


@dataclass
class E:
    """One entry to put in a test database: ``fields`` maps name -> value (or (value, protected))."""

    title: str
    username: str = ""
    password: str = ""
    folder: str = ""
    fields: dict[str, str | tuple[str, bool]] = field(default_factory=dict)
    notes: str = ""

    def items(self) -> list[tuple[str, str, bool]]:
        out = []
        for key, raw in self.fields.items():
            value, protected = raw if isinstance(raw, tuple) else (raw, _secretish(key))
            out.append((key, value, protected))
        return out


def _secretish(key: str) -> bool:
    return key in ("otp", "TOTP Seed") or "Secret" in key


# -- pykeepass (KDBX 4) --------------------------------------------------------------------


def _set_kdf(kp, kdf: str, *, rounds: int = 1000, memory: int = 1 << 20, iterations: int = 2, parallelism: int = 1):
    from construct import Container
    from pykeepass.kdbx_parsing.kdbx4 import kdf_uuids

    params = kp.kdbx.header.value.dynamic_header.kdf_parameters.data
    salt = os.urandom(32)

    def item(key, vtype, value):
        return Container(type=vtype, key=key, value=value, next_byte=0)

    if kdf == "aes":
        entries = [item("$UUID", 0x42, kdf_uuids["aeskdf"]), item("R", 0x05, rounds), item("S", 0x42, salt)]
    else:
        entries = [
            item("$UUID", 0x42, kdf_uuids["argon2id" if kdf == "argon2id" else "argon2"]),
            item("I", 0x05, iterations),
            item("M", 0x05, memory),
            item("P", 0x04, parallelism),
            item("S", 0x42, salt),
            item("V", 0x04, 0x13),
        ]
    for i, e in enumerate(entries):  # construct's RepeatUntil stops building at next_byte == 0
        e.next_byte = 0 if i == len(entries) - 1 else e.type
    params.dict = Container({e.key: e for e in entries})


def _blank_key() -> bytes | None:
    """The public template's known key (skips a 64 MiB Argon2 run per test database)."""
    import hashlib

    from pykeepass.pykeepass import BLANK_DATABASE_LOCATION

    from otpbridge.plugins.keepass import _BLANK_KEYS

    with open(BLANK_DATABASE_LOCATION, "rb") as fh:
        return _BLANK_KEYS.get(hashlib.sha256(fh.read()).hexdigest())


def make_kdbx4(
    path: Path,
    entries: list[E] = (),
    *,
    password: str | None = "pw",
    keyfile: Path | None = None,
    kdf: str = "argon2d",
    rounds: int = 1000,
    recycled: list[E] = (),
) -> Path:
    """A KDBX 4 file written by pykeepass (cheap KDF unless asked otherwise)."""
    from pykeepass import PyKeePass
    from pykeepass.pykeepass import BLANK_DATABASE_LOCATION, BLANK_DATABASE_PASSWORD

    kp = PyKeePass(BLANK_DATABASE_LOCATION, BLANK_DATABASE_PASSWORD, transformed_key=_blank_key())
    _set_kdf(kp, kdf, rounds=rounds)
    kp.password = password
    kp.keyfile = None if keyfile is None else str(keyfile)
    for e in entries:
        _add(kp, e)
    if recycled:
        for e in recycled:
            entry = _add(kp, e)
            kp.trash_entry(entry)
    with open(path, "wb") as fh:
        kp.save(fh)
    return path


def _add(kp, e: E):
    group = kp.root_group
    for name in [p for p in e.folder.split("/") if p]:
        sub = next((g for g in group.subgroups if g.name == name), None)
        group = sub if sub is not None else kp.add_group(group, name)
    entry = kp.add_entry(group, e.title, e.username, e.password, notes=e.notes or None, force_creation=True)
    for key, value, protected in e.items():
        if key == "otp":
            entry.otp = value
        else:
            entry.set_custom_property(key, value, protect=protected)
    return entry


def entry_fields(path: Path, title: str, password: str | None = "pw", keyfile: Path | None = None) -> dict[str, str]:
    """Every string field of the (first, live) entry titled ``title``, read by pykeepass itself."""
    from pykeepass import PyKeePass

    kp = PyKeePass(str(path), password=password, keyfile=None if keyfile is None else str(keyfile))
    entry = kp.find_entries(title=title, first=True)
    assert entry is not None, f"no entry {title!r}"
    return {s.findtext("Key"): s.findtext("Value") or "" for s in entry._element.iterfind("String")}


def make_keyfile(path: Path) -> Path:
    """A key file of random bytes: both KeePassXC and pykeepass hash it with SHA-256."""
    path.write_bytes(os.urandom(100))
    return path


# -- KeePass XML + keepassxc-cli (KDBX 3.1) ------------------------------------------------------


def _uuid() -> str:
    return base64.b64encode(uuid.uuid4().bytes).decode()


def keepass_xml(entries: list[E], *, recycled: list[E] = ()) -> str:
    """A KeePass 2 XML export holding ``entries`` (``recycled`` ones in the recycle bin)."""
    tree: dict = {"entries": [], "groups": {}}
    for e in entries:
        node = tree
        for name in [p for p in e.folder.split("/") if p]:
            node = node["groups"].setdefault(name, {"entries": [], "groups": {}})
        node["entries"].append(e)
    bin_uuid = _uuid()
    if recycled:
        tree["groups"]["Recycle Bin"] = {"entries": list(recycled), "groups": {}, "uuid": bin_uuid}

    def value(text: str, protected: bool) -> str:
        attr = ' ProtectInMemory="True"' if protected else ""
        return f"<Value{attr}>{escape(text)}</Value>"

    def entry_xml(e: E) -> str:
        strings = [("Title", e.title, False), ("UserName", e.username, False), ("Password", e.password, True)]
        if e.notes:
            strings.append(("Notes", e.notes, False))
        strings += e.items()
        body = "".join(f"<String><Key>{escape(k)}</Key>{value(v, p)}</String>" for k, v, p in strings)
        return f"<Entry><UUID>{_uuid()}</UUID>{body}</Entry>"

    def group_xml(name: str, node: dict) -> str:
        inner = "".join(entry_xml(e) for e in node["entries"])
        inner += "".join(group_xml(n, sub) for n, sub in node["groups"].items())
        return f"<Group><UUID>{node.get('uuid') or _uuid()}</UUID><Name>{escape(name)}</Name>{inner}</Group>"

    meta = "<Meta><Generator>otpbridge-tests</Generator><DatabaseName>test</DatabaseName>"
    if recycled:
        meta += f"<RecycleBinEnabled>True</RecycleBinEnabled><RecycleBinUUID>{bin_uuid}</RecycleBinUUID>"
    meta += "</Meta>"
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f"<KeePassFile>{meta}<Root>{group_xml('Root', tree)}</Root></KeePassFile>"
    )


def kpxc(args: list[str], db: Path, *, password: str | None = "pw", keyfile: Path | None = None, check: bool = True):
    """Run a keepassxc-cli command that opens ``db`` (password on stdin)."""
    assert KEEPASSXC is not None
    cmd, *rest = args
    argv = [KEEPASSXC, cmd, "-q"]
    if keyfile is not None:
        argv += ["-k", str(keyfile)]
    if password is None:
        argv.append("--no-password")
    argv += [str(db), *rest]
    proc = subprocess.run(argv, input="" if password is None else password + "\n", capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"keepassxc-cli {cmd} failed: {proc.stderr.strip()}")
    return proc


def kpxc_import(xml: str, db: Path, *, password: str | None = "pw", keyfile: Path | None = None) -> Path:
    """``keepassxc-cli import``: a KDBX 3.1, AES-KDF database tuned to 100 ms."""
    assert KEEPASSXC is not None
    src = db.with_suffix(".xml")
    src.write_text(xml, encoding="utf-8")
    argv = [KEEPASSXC, "import", "-q", "-t", "100"]
    stdin = ""
    if password is not None:
        argv.append("-p")
        stdin = f"{password}\n{password}\n"
    if keyfile is not None:
        argv += ["--set-key-file", str(keyfile)]
    argv += [str(src), str(db)]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    src.unlink()
    if proc.returncode != 0 or not db.exists():
        raise AssertionError(f"keepassxc-cli import failed: {proc.stderr.strip()}")
    return db


def kpxc_version() -> tuple[int, ...]:
    assert KEEPASSXC is not None
    out = subprocess.run([KEEPASSXC, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return tuple(int(p) for p in out.split("-")[0].split(".") if p.isdigit())

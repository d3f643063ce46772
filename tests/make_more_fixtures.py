"""Build the fixtures of tests/fixtures/ that no public test data provides (deterministic).

Run ``python -m tests.make_more_fixtures`` to (re)write them; ``tests/test_more_fixtures.py``
checks the committed files are byte for byte what this script makes. Each builder follows
the format's public description (shared notes app-formats-2, cited per builder) and shares
no code with the plugins, so reading these files also checks the plugins against an
independent writer. Salts and nonces are fixed: these files protect nothing.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: Aegis's reference accounts as otpauth URIs (the same as tests/support/canonical.py).
DENO = "otpauth://totp/Deno:Mason?secret=4SJHB4GSD43FZBAI7C2HLRJGPQ&issuer=Deno&algorithm=SHA1&digits=6&period=30"
SPDX = "otpauth://totp/SPDX:James?secret=5OM4WOOGPLQEF6UGN3CPEOOLWU&issuer=SPDX&algorithm=SHA256&digits=7&period=20"
AIRBNB = "otpauth://totp/Airbnb:Elijah?secret=7ELGJSGXNCCTV3O6LKJWYFV2RA&issuer=Airbnb&algorithm=SHA512&digits=8&period=50"
BOEING_STEAM_SECRET = "JRZCL47CMXVOQMNPZR2F7J4RGI"


def proton_authenticator_protected() -> bytes:
    """Proton Authenticator password-protected export (proton-pass-common
    ``entry/password_exporter.rs``, ``crypto.rs``): Argon2id v0x13 m=19456 KiB t=2 p=1 over
    the UTF-8 password and a 16-byte salt; AES-256-GCM, nonce prepended, AAD
    ``proton.authenticator.export.v1``. Password ``test``. Holds 3 TOTP, 1 Steam (note set)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    plain = {
        "version": 1,
        "entries": [
            {"id": "00000000-0000-4000-8000-000000000001", "content": {"uri": DENO, "entry_type": "Totp", "name": "Mason"}, "note": None},
            {"id": "00000000-0000-4000-8000-000000000002", "content": {"uri": SPDX, "entry_type": "Totp", "name": "James"}, "note": "work phone"},
            {"id": "00000000-0000-4000-8000-000000000003", "content": {"uri": AIRBNB, "entry_type": "Totp", "name": "Elijah"}, "note": None},
            {
                "id": "00000000-0000-4000-8000-000000000004",
                "content": {"uri": f"steam://{BOEING_STEAM_SECRET}", "entry_type": "Steam", "name": "Sophia"},
                "note": None,
            },
        ],
    }
    salt, nonce = bytes(range(16)), bytes(range(100, 112))
    key = Argon2id(salt=salt, length=32, iterations=2, lanes=1, memory_cost=19 * 1024).derive(b"test")
    sealed = AESGCM(key).encrypt(nonce, json.dumps(plain).encode(), b"proton.authenticator.export.v1")
    doc = {"version": 1, "salt": base64.b64encode(salt).decode(), "content": base64.b64encode(nonce + sealed).decode()}
    return json.dumps(doc).encode()


def onepassword_csv() -> bytes:
    """1Password 8 CSV export (header of pass-import's ``1password8.csv``; the ``OTPAuth``
    column holds the item's one-time password as an otpauth URI). 4 rows: 3 with an OTP,
    one of them archived, and 1 without."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(["Title", "Url", "Username", "Password", "OTPAuth", "Favorite", "Archived", "Tags", "Notes"])
    writer.writerow(["Deno", "https://deno.example", "Mason", "pw1", DENO, "true", "false", "dev", "line 1\nline 2"])
    writer.writerow(["SPDX", "https://spdx.example", "James", "pw2", SPDX, "false", "false", "", ""])
    writer.writerow(["Airbnb", "https://airbnb.example", "Elijah", "pw3", AIRBNB, "false", "true", "", ""])
    writer.writerow(["No OTP", "https://nootp.example", "someone", "pw4", "", "false", "false", "", ""])
    return out.getvalue().encode()


BUILDERS: dict[str, Callable[[], bytes]] = {
    "proton_authenticator/protected.json": proton_authenticator_protected,
    "onepassword/1password8_otp.csv": onepassword_csv,
}


def main() -> None:
    for rel, build in BUILDERS.items():
        path = FIXTURES / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(build())
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

# %% [markdown]
# # Audit: which 2FA accounts live where, and what deserves a look
#
# Reads every store and export you name (and, optionally, the encrypted vault) and
# changes nothing. It reports:
#
# * which account is in which source — and which exist in only one place;
# * duplicates: the same secret twice in one source, or the same name with different
#   secrets in different sources (one of them is probably stale);
# * HOTP accounts whose counters differ between sources (the lower one will be rejected);
# * settings worth a note. SHA1 with 6 digits and 30 s is the standard and fine; a secret
#   shorter than 80 bits (RFC 4226 asks for 128, recommends 160), a period other than
#   30 s, or digits other than 6 are noted because some apps handle them badly.
#
# Run it top to bottom (`python scripts/audit.py`) or cell by cell.
#
# Inputs — edit the defaults below or set the environment variables:
#
# * `OTPB_SOURCES` — stores and files separated by `;` or new lines, e.g.
#   `keepass:~/Passwords.kdbx; pass:; aegis:~/aegis.json` (passwords as for the CLI:
#   `?password-env=NAME`, `OTPBRIDGE_KEEPASS_PASSWORD`, `OTPBRIDGE_STORE_PASSWORD`).
# * `OTPB_HOME` — also audit this otpbridge home's vault (needs the backup passphrase
#   from `OTPBRIDGE_PASSCOMMAND` / `OTPBRIDGE_PASSPHRASE`); empty: skip the vault.
# * `OTPB_REPORT` — also write the findings as JSON to this file (no secrets in it).

# %%
import json
import os
import re
from collections import defaultdict

import otpbridge
from otpbridge.core.errors import OtpBridgeError

SOURCES = [s.strip() for s in re.split(r"[;\n]", os.environ.get("OTPB_SOURCES", "keepass:~/Passwords.kdbx; pass:")) if s.strip()]
HOME = os.environ.get("OTPB_HOME") or None
REPORT = os.environ.get("OTPB_REPORT") or None

# %% [markdown]
# ## 1. Read every source
#
# A source that cannot be read is reported and skipped; the audit goes on.

# %%
found: dict[str, list] = {}  # source -> accounts (duplicates kept)
problems: list[str] = []
for spec in SOURCES:
    try:
        res = otpbridge.open_store(spec).read()  # not deduplicated: duplicates are a finding
    except OtpBridgeError as exc:
        problems.append(f"{spec}: cannot read: {exc}")
        continue
    found[spec] = list(res.accounts)
    problems += [f"{spec}: skipped {err}" for err in res.errors]
if HOME:
    try:
        found["vault"] = otpbridge.Device(HOME).accounts()
    except OtpBridgeError as exc:
        problems.append(f"vault ({HOME}): cannot read: {exc}")
for spec, accounts in found.items():
    print(f"{len(accounts):4} account(s) in {spec}")
for line in problems:
    print("  " + line)

# %% [markdown]
# ## 2. Where each account is

# %%
where: dict[str, set] = defaultdict(set)
label: dict[str, str] = {}
for spec, accounts in found.items():
    for acc in accounts:
        where[acc.identity].add(spec)
        label.setdefault(acc.identity, acc.label)
names = list(found)
print("account".ljust(40) + "  " + "  ".join(f"[{i + 1}]" for i in range(len(names))))
for rid in sorted(where, key=lambda r: label[r].lower()):
    marks = "  ".join(" x " if spec in where[rid] else " . " for spec in names)
    print(label[rid][:40].ljust(40) + "  " + marks)
for i, spec in enumerate(names):
    print(f"[{i + 1}] {spec}")
only_one = sorted(label[r] for r, s in where.items() if len(s) == 1 and len(names) > 1)

# %% [markdown]
# ## 3. Findings

# %%
findings: list[dict] = []


def note(kind: str, account: str, detail: str) -> None:
    findings.append({"kind": kind, "account": account, "detail": detail})


for name in only_one:
    note("single-copy", name, "in one source only: no second copy if it is lost")
for spec, accounts in found.items():
    seen: dict[str, int] = defaultdict(int)
    for acc in accounts:
        seen[acc.identity] += 1
    for rid, n in seen.items():
        if n > 1:
            note("duplicate", label[rid], f"{n} times in {spec}")
by_name: dict[tuple, set] = defaultdict(set)
for accounts in found.values():
    for acc in accounts:
        by_name[(acc.issuer.casefold(), acc.name.casefold())].add(acc.identity)
for (issuer, name), ids in by_name.items():
    if len(ids) > 1:
        note("conflicting-secrets", f"{issuer}:{name}", f"{len(ids)} different secrets under one name (one is probably stale)")
counters: dict[str, dict] = defaultdict(dict)
for spec, accounts in found.items():
    for acc in accounts:
        if acc.kind.value == "hotp":
            counters[acc.identity][spec] = acc.counter
for rid, per in counters.items():
    if len(set(per.values())) > 1:
        note("hotp-counter", label[rid], "next counter differs: " + ", ".join(f"{s}={c}" for s, c in per.items()))
checked = set()
for accounts in found.values():
    for acc in accounts:
        if acc.identity in checked:
            continue
        checked.add(acc.identity)
        bits = len(acc.secret) * 8
        if bits < 80:
            note("short-secret", acc.label, f"{bits}-bit secret (RFC 4226: at least 128, 160 recommended)")
        if acc.kind.value == "totp" and acc.period != 30:
            note("period", acc.label, f"period {acc.period}s (some apps assume 30s)")
        if acc.kind.value != "steam" and acc.digits != 6:
            note("digits", acc.label, f"{acc.digits} digits (some apps show only 6)")
        if acc.algorithm.value != "SHA1":
            note("algorithm", acc.label, f"{acc.algorithm.value} (Google Authenticator and some others ignore it)")

for f in sorted(findings, key=lambda f: (f["kind"], f["account"].lower())):
    print(f"{f['kind']:20} {f['account'][:40]:40} {f['detail']}")
print(f"{len(where)} distinct account(s) in {len(found)} source(s); {len(findings)} finding(s); {len(problems)} problem(s)")

# %% [markdown]
# ## 4. Save the report (optional)

# %%
if REPORT:
    out = {
        "sources": {spec: len(accounts) for spec, accounts in found.items()},
        "accounts": {label[r]: sorted(s) for r, s in where.items()},
        "findings": findings,
        "problems": problems,
    }
    with open(REPORT, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)
    print(f"written to {REPORT}")

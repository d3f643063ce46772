# %% [markdown]
# # KeePassXC → pass (pass-otp)
#
# Copies every 2FA account of a KeePass/KeePassXC database into a `pass` store, stored
# the way `pass otp insert` stores them (one `otpauth://` line, encrypted to the store's
# `.gpg-id`, committed when the store is a git repository). Nothing is removed from
# either side; an entry that already exists in the store gets only its OTP line updated.
#
# Run it top to bottom (`python scripts/keepassxc_to_pass.py`) or cell by cell in an
# editor that understands `# %%` cells (VS Code, PyCharm, Spyder, Jupytext).
#
# Inputs — edit the defaults below or set the environment variables:
#
# * `OTPB_SOURCE` — the database, e.g. `keepass:~/Passwords.kdbx` (add `?keyfile=PATH`
#   if it has one). Its password comes from `OTPBRIDGE_KEEPASS_PASSWORD`, from
#   `?password-env=NAME` / `?password-file=PATH` in the spec, or a prompt.
# * `OTPB_DEST` — the pass store: `pass:` is `$PASSWORD_STORE_DIR` or `~/.password-store`.
# * `OTPB_DRY_RUN=1` — stop after showing what would be written.

# %%
import os
import sys
import time

import otpbridge
from otpbridge.codes import code_at

SOURCE = os.environ.get("OTPB_SOURCE", "keepass:~/Passwords.kdbx")
DEST = os.environ.get("OTPB_DEST", "pass:")
DRY_RUN = os.environ.get("OTPB_DRY_RUN", "0") == "1"

# %% [markdown]
# ## 1. What the database holds
#
# Entries that cannot be read (an unknown OTP kind, a broken secret) are listed and left
# alone; the rest is copied.

# %%
source = otpbridge.read(SOURCE)
print(f"{len(source.accounts)} account(s) in {SOURCE}")
for acc in source.accounts:
    print(f"  {acc.kind.value:5} {acc.label}")
for err in source.errors:
    print(f"  skipped {err}")

# %% [markdown]
# ## 2. Dry run: what would change in the pass store

# %%
plan = otpbridge.convert(SOURCE, DEST, dry_run=True)
print(f"would add {len(plan.added)}, update {len(plan.updated)}, leave {plan.unchanged} unchanged")
for acc in plan.added:
    print(f"  + {acc.label}")
for acc in plan.updated:
    print(f"  ~ {acc.label}")
if DRY_RUN:
    sys.exit(0)

# %% [markdown]
# ## 3. Copy

# %%
report = otpbridge.convert(SOURCE, DEST)
print(f"added {len(report.added)}, updated {len(report.updated)}, unchanged {report.unchanged}")

# %% [markdown]
# ## 4. Check: the store has every account and computes the same codes

# %%
now = time.time()
copied = {a.identity: a for a in otpbridge.read_accounts(DEST, strict=False)}
missing = [a.label for a in source.accounts if a.identity not in copied]
differ = [a.label for a in source.accounts if a.identity in copied and code_at(a, now) != code_at(copied[a.identity], now)]
if missing or differ:
    sys.exit(f"check failed: missing {missing}, different codes {differ}")
print(f"ok: all {len(source.accounts)} account(s) are in {DEST} and give the same codes")

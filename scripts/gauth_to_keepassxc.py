# %% [markdown]
# # Google Authenticator → KeePassXC
#
# Google Authenticator exports accounts as QR codes holding `otpauth-migration://`
# links. Scan each QR code of the export (any QR reader, or `zbarimg -q --raw *.png`)
# and save the links, one per line, in a text file; then this recipe puts every
# account into a KeePassXC database (a new one is created if it does not exist yet),
# where KeePassXC shows the codes (TOTP) under each entry.
#
# Run it top to bottom (`python scripts/gauth_to_keepassxc.py`) or cell by cell.
#
# Inputs — edit the defaults below or set the environment variables:
#
# * `OTPB_SOURCE` — the export text file, e.g. `gauth:~/gauth-export.txt`.
# * `OTPB_DEST` — the database, e.g. `keepass:~/otp.kdbx`. Its password comes from
#   `OTPBRIDGE_KEEPASS_PASSWORD`, `?password-env=NAME` / `?password-file=PATH`, or a prompt
#   (for a new database: the password it gets).
# * `OTPB_DRY_RUN=1` — stop after showing what would be written.

# %%
import os
import sys

import _recipe  # this folder's printing and checking, shared by the recipes

import otpbridge

SOURCE = os.environ.get("OTPB_SOURCE", "gauth:~/gauth-export.txt")
DEST = os.environ.get("OTPB_DEST", "keepass:~/otp.kdbx")
DRY_RUN = os.environ.get("OTPB_DRY_RUN", "0") == "1"

# %% [markdown]
# ## 1. Decode the export
#
# One export may hold the same account twice (several QR batches); accounts with the same
# secret are one account.

# %%
source = otpbridge.read(SOURCE)
_recipe.show_source(source, SOURCE, lambda acc: f"{acc.kind.value:5} {acc.algorithm.value:6} {acc.digits} digits  {acc.label}")

# %% [markdown]
# ## 2. Dry run

# %%
plan = otpbridge.convert(SOURCE, DEST, dry_run=True)
_recipe.show_plan(plan)
if DRY_RUN:
    sys.exit(0)

# %% [markdown]
# ## 3. Write the database
#
# Existing entries keep their password and other fields; only OTP fields are set.

# %%
report = otpbridge.convert(SOURCE, DEST)
_recipe.show_report(report)
if report.backup:
    print(f"the previous database is kept as {report.backup}")

# %% [markdown]
# ## 4. Check: read the database back and compare codes

# %%
_recipe.check_codes(source.accounts, _recipe.read_back(DEST))
print(f"ok: all {len(source.accounts)} account(s) are in {DEST} and give the same codes")
print("next: open the database in KeePassXC; TOTP codes show in the entry view")

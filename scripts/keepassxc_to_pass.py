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

import _recipe  # this folder's printing and checking, shared by the recipes

import otpbridge

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
_recipe.show_source(source, SOURCE)

# %% [markdown]
# ## 2. Dry run: what would change in the pass store

# %%
plan = otpbridge.convert(SOURCE, DEST, dry_run=True)
_recipe.show_plan(plan, each=True)
if DRY_RUN:
    sys.exit(0)

# %% [markdown]
# ## 3. Copy

# %%
report = otpbridge.convert(SOURCE, DEST)
_recipe.show_report(report)

# %% [markdown]
# ## 4. Check: the store has every account and computes the same codes

# %%
_recipe.check_codes(source.accounts, _recipe.read_back(DEST))
print(f"ok: all {len(source.accounts)} account(s) are in {DEST} and give the same codes")

# %% [markdown]
# # Restore every 2FA account on a new laptop, into KeePassXC
#
# All that is needed is the remote and the backup passphrase. The accounts go into a
# KeePassXC database (created if it does not exist; an existing one only gains OTP
# fields). Optionally the laptop then joins the vault, so later changes sync both ways.
#
# Run it top to bottom (`python scripts/restore_new_laptop.py`) or cell by cell.
#
# Inputs — edit the defaults below or set the environment variables:
#
# * `OTPB_REMOTE` — the vault: `myremote:otp` (rclone; its config must exist on this
#   machine: `rclone config`) or a folder.
# * `OTPB_DEST` — the database, e.g. `keepass:~/otp.kdbx`; its password from
#   `OTPBRIDGE_KEEPASS_PASSWORD`, `?password-env=NAME` or a prompt.
# * `OTPB_HOME` — this device's otpbridge home (default: the platform's).
# * `OTPB_JOIN=1` — also join the vault with the database as this device's store.
# * `OTPB_DEVICE` — this device's name when joining (default: the host name).
# * The passphrase: `OTPBRIDGE_PASSCOMMAND`, `OTPBRIDGE_PASSPHRASE`, or a prompt.

# %%
import os
import sys

import _recipe  # this folder's printing and checking, shared by the recipes

import otpbridge

REMOTE = os.environ.get("OTPB_REMOTE", "mydrive:otp")
DEST = os.environ.get("OTPB_DEST", "keepass:~/otp.kdbx")
HOME = os.environ.get("OTPB_HOME") or None
JOIN = os.environ.get("OTPB_JOIN", "1") == "1"
DEVICE = os.environ.get("OTPB_DEVICE") or None

device = otpbridge.Device(HOME)  # the passphrase: from the environment or a prompt

# %% [markdown]
# ## 1. Dry run: what the vault holds

# %%
plan = device.restore(DEST, remote=REMOTE, dry_run=True)
print(f"the vault holds {plan.accounts} account(s): {len(plan.added)} new here, {len(plan.updated)} to update")

# %% [markdown]
# ## 2. Restore into the database

# %%
restored = device.restore(DEST, remote=REMOTE)
print(f"restored into {restored.target}: {len(restored.added)} added, {len(restored.updated)} updated, "
      f"{restored.unchanged} unchanged")
for err in restored.errors:
    print(f"  skipped {err}")

# %% [markdown]
# ## 3. Join the vault (optional)
#
# From now on `otpbridge sync` (or a timer: `otpbridge schedule --install`) keeps this
# database and the other devices in step.

# %%
if JOIN:
    device.init(REMOTE, [DEST], device_name=DEVICE)
    first = device.sync()
    print(f"joined; {first.accounts} account(s) in step")

# %% [markdown]
# ## 4. Check: the database computes the vault's codes

# %%
stored = _recipe.read_back(DEST)
if len(stored) < restored.accounts:
    sys.exit(f"the database holds {len(stored)} account(s), the vault {restored.accounts}")
if JOIN:  # a joined device can read the vault's accounts and compare codes one by one
    _recipe.check_codes(device.accounts(), stored)
print(f"ok: {len(stored)} account(s) in {DEST}")

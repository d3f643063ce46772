# %% [markdown]
# # Aegis → pass, then the first encrypted cloud backup
#
# 1. copies every account of an Aegis export into a `pass` store;
# 2. creates an encrypted otpbridge vault on a remote (any rclone remote such as
#    `mydrive:otp`, or a local folder / USB stick) with that store as this device's
#    store, and backs it up;
# 3. proves the backup restores: every object is downloaded and decrypted, and the
#    accounts it holds are compared with the store.
#
# Run it top to bottom (`python scripts/aegis_to_pass_and_cloud.py`) or cell by cell.
#
# Inputs — edit the defaults below or set the environment variables:
#
# * `OTPB_SOURCE` — the Aegis export, e.g. `aegis:~/aegis-backup.json`; an encrypted
#   export needs its password: `?password-env=NAME` or `OTPBRIDGE_STORE_PASSWORD`.
# * `OTPB_DEST` — the pass store (`pass:` is the default store).
# * `OTPB_REMOTE` — where the vault goes: `myremote:otp` (rclone) or a folder.
# * `OTPB_HOME` — this device's otpbridge home (default: the platform's, as the CLI).
# * `OTPB_DEVICE` — a name for this device (default: the host name).
# * `OTPB_KDF` — `default` (Argon2id 64 MiB) or `strong`.
# * The backup passphrase: `OTPBRIDGE_PASSCOMMAND` (e.g. `pass show backup/otpbridge`) or
#   `OTPBRIDGE_PASSPHRASE`; without either it is asked twice on the terminal.

# %%
import getpass
import os
import sys

import _recipe  # this folder's printing and checking, shared by the recipes

import otpbridge

SOURCE = os.environ.get("OTPB_SOURCE", "aegis:~/aegis-backup.json")
DEST = os.environ.get("OTPB_DEST", "pass:")
REMOTE = os.environ.get("OTPB_REMOTE", "mydrive:otp")
HOME = os.environ.get("OTPB_HOME") or None
DEVICE = os.environ.get("OTPB_DEVICE") or None
KDF = os.environ.get("OTPB_KDF", "default")

# %% [markdown]
# ## 1. Aegis → pass

# %%
source = otpbridge.read(SOURCE)
_recipe.show_source(source, SOURCE)
report = otpbridge.convert(SOURCE, DEST)
print(f"pass store: added {len(report.added)}, updated {len(report.updated)}, unchanged {report.unchanged}")

# %% [markdown]
# ## 2. The backup passphrase
#
# It never goes on disk or on a command line. Choose a long one (four or more random
# words): whoever gets the remote's files can try guesses offline.

# %%
def new_passphrase():
    if "OTPBRIDGE_PASSPHRASE" in os.environ or "OTPBRIDGE_PASSCOMMAND" in os.environ:
        return None  # the API reads them itself
    first = getpass.getpass("New backup passphrase: ")
    if first != getpass.getpass("Repeat it: "):
        sys.exit("the two entries differ")
    return first


device = otpbridge.Device(HOME, passphrase=new_passphrase())

# %% [markdown]
# ## 3. Create the vault and back up

# %%
result = device.init(REMOTE, [DEST], device_name=DEVICE, kdf=KDF)
print(("created vault " if result.created else "joined vault ") + result.vault_id)
backup = device.backup()
print(f"backed up {backup.accounts} account(s); uploaded and verified {backup.uploaded or 'nothing new'}")

# %% [markdown]
# ## 4. Prove it restores
#
# `verify` downloads and decrypts every object; then the vault's accounts are compared
# with the pass store's.

# %%
check = device.verify()
in_vault = {a.identity for a in device.accounts()}
in_store = {a.identity for a in otpbridge.read_accounts(DEST, strict=False)}
if in_store - in_vault:
    sys.exit(f"{len(in_store - in_vault)} account(s) of the store are not in the vault")
print(f"ok: {check.views} object(s) decrypted, {len(in_vault)} account(s) in the vault")
print("next: 'otpbridge schedule --install' or 'otpbridge hook install pass:' keeps it in step")

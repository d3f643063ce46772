"""The environment every child process gets (SPEC §7: a secret reaches only the child that needs it).

One helper for every spawner (gpg and the gpg-agent it starts, git, rclone, password
commands, systemctl/crontab): the caller's environment minus

* every ``OTPBRIDGE_*`` variable (our passphrases, password commands and store
  passwords; a spawner that needs a harmless one, such as git's ``OTPBRIDGE_RUNNING``
  guard for our own hook, sets or keeps it explicitly);
* every variable a store spec names as its password (``?password-env=NAME``): the
  names are registered when a spec is parsed (``note_secret_env``) or read, so a
  KeePass password given as ``KP_PW`` never reaches gpg, git or a pass command;
* for children that are not rclone, rclone's own credentials (``RCLONE_CONFIG_PASS``
  and every ``RCLONE_CONFIG_<REMOTE>_<OPTION>``): rclone gets them, nobody else.

The registry is per process on purpose: a run parses all its store specs before it
starts any child, and dropping a name from children for the rest of the process can
only take a variable away, never hand one out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

#: every otpbridge variable that holds a secret or names how to get one (documentation and tests)
SECRET_ENV = (
    "OTPBRIDGE_PASSPHRASE",
    "OTPBRIDGE_NEW_PASSPHRASE",
    "OTPBRIDGE_PASSCOMMAND",
    "OTPBRIDGE_NEW_PASSCOMMAND",
    "OTPBRIDGE_STORE_PASSWORD",
    "OTPBRIDGE_KEEPASS_PASSWORD",
)

_named: set[str] = set()
_lock = threading.Lock()


def note_secret_env(*names: str) -> None:
    """Remember variables that hold a store's password: no child will get them."""
    with _lock:
        _named.update(n for n in names if n)


def secret_env_names() -> frozenset[str]:
    """The variables registered by :func:`note_secret_env` so far."""
    with _lock:
        return frozenset(_named)


def child_env(
    environ: Mapping[str, str],
    *,
    rclone: bool = False,
    hide: Iterable[str] = (),
    keep: Iterable[str] = (),
) -> dict[str, str]:
    """``environ`` as a child may see it (see the module's docstring).

    ``rclone``: the child is rclone, so rclone's own credentials stay. ``hide``: more
    names to drop. ``keep``: OTPBRIDGE_* names this child needs (our own console
    script called back by a hook); never a store's password variable.
    """
    dropped = secret_env_names() | set(hide)
    allowed = set(keep) - dropped
    out: dict[str, str] = {}
    for key, value in environ.items():
        if key in dropped:
            continue
        if key.startswith("OTPBRIDGE_") and key not in allowed:
            continue
        if not rclone and key.startswith("RCLONE_CONFIG_"):
            continue
        out[key] = value
    return out

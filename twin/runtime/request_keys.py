"""Request keys from a key file (the I/O around :mod:`twin.contract.request_auth`).

A key file is TOML, one table per key id::

    [keys.ops-1]
    secret_file = "ops-1.secret"    # relative to the key file; or secret = "..." inline
    commands = ["*"]                # command names this key may issue ("*": all)
    faults = ["latchup", "seu_burst"]
    fleet = true                    # may it use the fleet topics (select)? default false

A secret is text of at least 16 bytes (``openssl rand -hex 32``); its UTF-8 bytes are the HMAC key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from twin.contract.request_auth import Key, KeyFileError, Signer, keyring_from_dict

ENV_KEY_ID = "ORBITWIN_KEY_ID"
ENV_KEY_SECRET_FILE = "ORBITWIN_KEY_SECRET_FILE"


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from None


def load_keyring(path: str | os.PathLike[str]) -> dict[str, Key]:
    """The keys of a key file; raises :class:`~twin.contract.request_auth.KeyFileError` (a ValueError)."""
    p = Path(path)
    try:
        data = tomllib.loads(_read(p, "key file"))
    except tomllib.TOMLDecodeError as exc:
        raise KeyFileError(f"{p}: {exc}") from None
    return keyring_from_dict(data, lambda name: _read(p.parent / name, "secret file"), str(p))


def load_secret(path: str | os.PathLike[str]) -> bytes:
    """A signing client's secret from a file (a trailing newline removed): the HMAC key."""
    raw = _read(Path(path), "secret file").removesuffix("\n").encode("utf-8")
    if len(raw) < 16:
        raise KeyFileError(f"{path}: the secret is {len(raw)} bytes; at least 16 (e.g. openssl rand -hex 32)")
    return raw


def make_signer(kid: str, secret_file: str | os.PathLike[str], client: str) -> Signer:
    """A :class:`~twin.contract.request_auth.Signer` for key ``kid`` (secret read from ``secret_file``),
    stating ``client`` as its MQTT client id; issue times from the wall clock, 128-bit random nonces."""
    import secrets
    import time

    return Signer(kid, load_secret(secret_file), client, time.time, lambda: secrets.token_hex(16))

"""The signing options of the subcommands that send requests (``orbitwin send``, ``orbitwin scenario publish``).

``--key-id ID`` and ``--key-secret-file FILE`` (or ``$ORBITWIN_KEY_ID`` and
``$ORBITWIN_KEY_SECRET_FILE``): sign every request with that key (docs/mqtt.md, "Signed requests").
The secret is only ever read from a file, never taken on the command line.
"""

from __future__ import annotations

import argparse
import os
import uuid

from twin.contract.request_auth import Signer
from twin.runtime.request_keys import ENV_KEY_ID, ENV_KEY_SECRET_FILE, make_signer


def add_key_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("signing", f"Sign requests for a twin started with --keys (also "
                                             f"${ENV_KEY_ID} and ${ENV_KEY_SECRET_FILE}).")
    g.add_argument("--key-id", metavar="ID", help=f"key id to sign with (or ${ENV_KEY_ID})")
    g.add_argument("--key-secret-file", metavar="FILE", help=f"file holding that key's secret (or ${ENV_KEY_SECRET_FILE})")


def client_id_and_signer(a: argparse.Namespace, role: str) -> tuple[str, Signer | None]:
    """The MQTT client id to connect with (``--client-id`` or ``orbitwin-{role}-<random>``) and a signer
    stating it, or None when no key is given. A key id without a secret file (or the reverse) is an error."""
    client_id = a.client_id or f"orbitwin-{role}-{uuid.uuid4().hex[:8]}"
    kid = a.key_id or os.environ.get(ENV_KEY_ID)
    secret_file = a.key_secret_file or os.environ.get(ENV_KEY_SECRET_FILE)
    if not kid and not secret_file:
        return client_id, None
    if not kid or not secret_file:
        raise ValueError("signing needs both --key-id and --key-secret-file (or "
                         f"${ENV_KEY_ID} and ${ENV_KEY_SECRET_FILE})")
    return client_id, make_signer(kid, secret_file, client_id)

"""The MQTT options every connecting subcommand shares, defined once: broker, credentials, TLS, session.

``add_mqtt_options(parser)`` adds them; ``mqtt_settings_from_args(args)`` turns them into the
door's :class:`~twin.mqtt.MqttSettings`, resolving credentials from the options, the URL, the
environment (``$ORBITWIN_MQTT_USERNAME``, ``$ORBITWIN_MQTT_PASSWORD``,
``$ORBITWIN_MQTT_PASSWORD_FILE``) or a password file, in that order.

Secrets other subcommands take (tokens, webhook passwords) follow one rule, :func:`secret_from_sources`:
a file named by an option, else ``$NAME``, else the file named by ``$NAME_FILE``; an option that would
put the secret itself on the command line is refused by :class:`SecretOnCommandLine` without
echoing it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twin.contract.topics import DEFAULT_PREFIX
from twin.mqtt import ENV_PASSWORD, ENV_PASSWORD_FILE, ENV_USERNAME, MqttSettings

_URL_HELP = "broker URL mqtt://host[:port] or mqtts://host[:port] (TLS)"


def add_mqtt_options(parser: argparse.ArgumentParser, *, required: bool = True, url_help: str | None = None,
                     client_id: str | None = None, connect_timeout_s: float = 30.0) -> None:
    """Add the shared MQTT option group; ``client_id`` is this subcommand's default client id."""
    g = parser.add_argument_group(
        "MQTT broker",
        f"Credentials: --mqtt-username/--mqtt-password[-file], else user:pass@ in the URL, else "
        f"${ENV_USERNAME} and ${ENV_PASSWORD} (or ${ENV_PASSWORD_FILE}). Prefer the environment or a "
        f"password file: a password on the command line is visible to other users (ps).")
    g.add_argument("--mqtt", metavar="URL", required=required, help=url_help or _URL_HELP)
    g.add_argument("--mqtt-username", metavar="USER", help=f"MQTT username (or ${ENV_USERNAME})")
    g.add_argument("--mqtt-password", metavar="PASSWORD",
                   help=f"MQTT password (visible in ps: prefer ${ENV_PASSWORD} or --mqtt-password-file)")
    g.add_argument("--mqtt-password-file", metavar="FILE",
                   help=f"file holding the MQTT password (or ${ENV_PASSWORD_FILE})")
    g.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate(s) to verify the broker (mqtts://; "
                                                     "default: the system's CA store)")
    g.add_argument("--mqtt-cert", metavar="FILE", help="client certificate for mqtts:// (PEM)")
    g.add_argument("--mqtt-key", metavar="FILE", help="client certificate's private key (PEM)")
    g.add_argument("--mqtt-insecure", action="store_true",
                   help="do not verify the broker's certificate or host name (testing only)")
    g.add_argument("--mqtt-protocol", choices=("5", "3.1.1"), default="5", help="MQTT protocol version (default 5)")
    g.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"topic prefix (default {DEFAULT_PREFIX})")
    g.add_argument("--client-id", default=client_id,
                   help=f"MQTT client id (default {client_id or 'random'}; a fixed id resumes a persistent session)")
    g.add_argument("--keepalive", type=int, default=10, metavar="S", help="MQTT keepalive in seconds (default 10)")
    g.add_argument("--session-expiry", type=int, metavar="S",
                   help="seconds the broker keeps the session while disconnected (default: the component's)")
    g.add_argument("--connect-timeout", type=float, default=connect_timeout_s, metavar="S",
                   help=f"seconds to wait for the broker at start (default {connect_timeout_s:g})")


def mqtt_settings_from_args(args: argparse.Namespace, url: str | None = None,
                            protocol: str | None = None) -> MqttSettings:
    """The door's settings from the shared options (``url``/``protocol`` override ``--mqtt``/``--mqtt-protocol``).

    Raises :class:`~twin.mqtt.MqttConfigError` (a ValueError) naming the bad option.
    """
    broker = url or args.mqtt
    if not broker:
        raise ValueError("--mqtt is required")
    warn_secret_on_command_line(args)
    return MqttSettings.from_sources(
        broker, username=args.mqtt_username, password=args.mqtt_password, password_file=args.mqtt_password_file,
        ca_file=args.mqtt_ca, cert_file=args.mqtt_cert, key_file=args.mqtt_key, insecure=args.mqtt_insecure,
        protocol=protocol or args.mqtt_protocol, keepalive_s=args.keepalive, session_expiry_s=args.session_expiry)


class SecretOnCommandLine(argparse.Action):
    """An option that would carry a secret on the command line: refused (exit 2) naming what to use instead.

    The value is consumed but never printed, so a mistyped secret does not end up in a log either.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, *, instead: str, **kwargs: Any) -> None:
        self.instead = instead
        super().__init__(option_strings, dest, nargs=1, default=None, metavar="SECRET", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string}: a secret on the command line is visible to every user of the machine "
                     f"(ps); use {self.instead}")


def secret_from_sources(path: str | None, env_name: str, what: str,
                        environ: Mapping[str, str] | None = None) -> str | None:
    """A secret from the file ``path`` (an option), else ``$env_name``, else the file ``$env_name_FILE``; None if
    none is set. The file's trailing newline is dropped; an empty or unreadable file is a ValueError naming
    the file, never its content."""
    env = os.environ if environ is None else environ
    if path is None and env.get(env_name):
        if env.get(f"{env_name}_FILE"):
            raise ValueError(f"set only one of ${env_name} and ${env_name}_FILE")
        return env[env_name]
    path = path or env.get(f"{env_name}_FILE") or None
    if path is None:
        return None
    try:
        value = Path(path).read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"cannot read the {what} file {path}: {reason}") from None
    if not value:
        raise ValueError(f"the {what} file {path} is empty")
    return value


def warn_secret_on_command_line(args: argparse.Namespace) -> None:
    """One line on stderr when --mqtt-password carried the MQTT password on the command line."""
    if getattr(args, "mqtt_password", None) is not None:
        print(f"orbitwin: warning: --mqtt-password puts the password where every user of the machine sees it (ps); "
              f"prefer ${ENV_PASSWORD} or --mqtt-password-file", file=sys.stderr)

"""The MQTT options every connecting subcommand shares, defined once: broker, credentials, TLS, session.

``add_mqtt_options(parser)`` adds them; ``mqtt_settings_from_args(args)`` turns them into the
door's :class:`~twin.mqtt.MqttSettings`, resolving credentials from the options, the URL, the
environment (``$ORBITWIN_MQTT_USERNAME``, ``$ORBITWIN_MQTT_PASSWORD``,
``$ORBITWIN_MQTT_PASSWORD_FILE``) or a password file, in that order.
"""

from __future__ import annotations

import argparse

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
    return MqttSettings.from_sources(
        broker, username=args.mqtt_username, password=args.mqtt_password, password_file=args.mqtt_password_file,
        ca_file=args.mqtt_ca, cert_file=args.mqtt_cert, key_file=args.mqtt_key, insecure=args.mqtt_insecure,
        protocol=protocol or args.mqtt_protocol, keepalive_s=args.keepalive, session_expiry_s=args.session_expiry)

"""``orbitwin bridge influx``: store the twin's telemetry, events and replies in InfluxDB (v1 or v2 API)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from orbitwin.cli import arg_types
from orbitwin.cli.lifecycle import stop_on_signals
from orbitwin.cli.mqtt_options import add_mqtt_options, mqtt_settings_from_args, secret_from_sources
from orbitwin.cli.status_line import add_status_options, influx_line, report_until_stopped


def add_parser(bsub: Any) -> None:
    b = bsub.add_parser("influx", help="store telemetry, events and replies in InfluxDB")
    add_mqtt_options(b, client_id="orbitwin-influx-bridge")
    g = b.add_argument_group("InfluxDB")
    g.add_argument("--influx", required=True, type=arg_types.http_url,
                   help="InfluxDB URL with its scheme, e.g. http://localhost:8086")
    g.add_argument("--api", choices=("v1", "v2"), default="v1", help="v1 /write (InfluxDB 1.x) or v2 (2.x/3.x)")
    g.add_argument("--db", default="orbitwin", help="v1: database (default orbitwin)")
    g.add_argument("--rp", help="v1: retention policy")
    g.add_argument("--influx-user", help="v1: user")
    g.add_argument("--influx-password", default=os.environ.get("ORBITWIN_INFLUX_PASSWORD"),
                   help="v1: password (visible in ps: prefer $ORBITWIN_INFLUX_PASSWORD or --influx-password-file)")
    g.add_argument("--influx-password-file", metavar="FILE",
                   help="v1: file holding the password (or $ORBITWIN_INFLUX_PASSWORD_FILE)")
    g.add_argument("--org", help="v2: organisation")
    g.add_argument("--bucket", help="v2: bucket")
    g.add_argument("--token", default=os.environ.get("ORBITWIN_INFLUX_TOKEN"),
                   help="v2: API token (visible in ps: prefer $ORBITWIN_INFLUX_TOKEN or --token-file)")
    g.add_argument("--token-file", metavar="FILE", help="v2: file holding the API token (or $ORBITWIN_INFLUX_TOKEN_FILE)")
    b.add_argument("--bridge-id", default="influx", help="name in the bridge's own status")
    b.add_argument("--shard", type=arg_types.positive_int, metavar="K",
                   help="store the partition of twin shard K (orbitwin run --shard K/N): its fleet topics under "
                        "{prefix}/shard/K and its satellites' events, replies and replays (one bridge per shard; "
                        "give each its own --bridge-id, --spool-dir and --client-id)")
    b.add_argument("--spool-dir", default="orbitwin-spool", help="on-disk spool for InfluxDB outages")
    b.add_argument("--spool-max-mb", type=float, default=1024.0, help="spool size limit (oldest dropped beyond)")
    b.add_argument("--dead-letter", default="orbitwin-dead-letters.jsonl", help="JSONL file of what cannot be stored")
    add_status_options(b)
    b.set_defaults(func=cmd_bridge_influx)


def cmd_bridge_influx(a: argparse.Namespace) -> int:
    from bridges.influx.bridge import BridgeSettings, InfluxBridge
    from bridges.influx.writer import InfluxV1Writer, InfluxV2Writer

    broker = mqtt_settings_from_args(a)
    if a.token_file or not a.token:
        a.token = secret_from_sources(a.token_file, "ORBITWIN_INFLUX_TOKEN", "InfluxDB token")
    if a.influx_password_file or not a.influx_password:
        a.influx_password = secret_from_sources(a.influx_password_file, "ORBITWIN_INFLUX_PASSWORD", "InfluxDB password")
    if a.api == "v2":
        if not (a.org and a.bucket and a.token):
            raise ValueError("--api v2 needs --org, --bucket and a token ($ORBITWIN_INFLUX_TOKEN or --token-file)")
        writer: Any = InfluxV2Writer(a.influx, a.org, a.bucket, a.token)
    else:
        writer = InfluxV1Writer(a.influx, a.db, a.rp, a.influx_user, a.influx_password)
    settings = BridgeSettings(broker, a.client_id, a.prefix, spool_dir=a.spool_dir,
                              spool_max_bytes=int(a.spool_max_mb * 2**20), dead_letter_path=a.dead_letter,
                              bridge_id=a.bridge_id, report_every_s=min(a.report_every, 5.0),
                              shard=None if a.shard is None else str(a.shard))
    _check_target(writer)
    bridge = InfluxBridge(settings, writer)
    stopping = stop_on_signals()
    bridge.start(wait_s=a.connect_timeout)
    print(f"orbitwin bridge influx: {broker.redacted_url} -> {a.influx} ({a.api}); spool {a.spool_dir}; "
          f"dead letters {a.dead_letter}", flush=True)
    try:
        report_until_stopped(stopping, a.report_every, bridge.status, influx_line, a.json)
    finally:
        bridge.stop()
    return 0


def _check_target(writer: Any) -> None:
    """Create a missing 1.x database, check a 2.x bucket; a target that cannot work is an error now.

    InfluxDB being down is not: the bridge spools until it answers (and creates the database then).
    """
    from bridges.influx.writer import InfluxQueryError, InfluxV1Writer

    try:
        if isinstance(writer, InfluxV1Writer):
            if writer.ensure_database():
                print(f"orbitwin bridge influx: created database {writer.database!r}", flush=True)
        else:
            writer.check_bucket()
    except InfluxQueryError as exc:
        print(f"orbitwin bridge influx: InfluxDB not reachable yet ({exc}); spooling until it is", flush=True)

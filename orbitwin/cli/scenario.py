"""``orbitwin scenario publish``: send a scenario file's requests to a running twin over MQTT."""

from __future__ import annotations

import argparse
import json
from typing import Any

from orbitwin.cli.key_options import add_key_options, client_id_and_signer
from orbitwin.cli.mqtt_options import add_mqtt_options, mqtt_settings_from_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scenario", help="scenario files")
    ssub = p.add_subparsers(dest="scenario_cmd", required=True)
    sp = ssub.add_parser("publish", help="send a scenario's requests to a running twin over MQTT")
    sp.add_argument("file", help="scenario TOML/JSON")
    sp.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the replies")
    add_key_options(sp)
    add_mqtt_options(sp, connect_timeout_s=10.0)
    sp.set_defaults(func=cmd_scenario_publish)


def cmd_scenario_publish(a: argparse.Namespace) -> int:
    """Print each request's first reply (JSON lines); exit 1 unless every one was accepted or completed."""
    from twin.runtime.scenario import load_scenario, publish_scenario

    scenario = load_scenario(a.file)
    client_id, signer = client_id_and_signer(a, "scenario")
    replies = publish_scenario(scenario, mqtt_settings_from_args(a), a.prefix, a.wait,
                               connect_timeout_s=a.connect_timeout, client_id=client_id, signer=signer)
    for r in replies:
        print(json.dumps(r))
    return 0 if all(r.get("status") in ("accepted", "completed") for r in replies) else 1

"""``orbitwin send``: one command or fault to a running twin over MQTT, signed when given a key."""

from __future__ import annotations

import argparse
import json
from typing import Any

from orbitwin.cli.key_options import add_key_options, client_id_and_signer
from orbitwin.cli.mqtt_options import add_mqtt_options, mqtt_settings_from_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser("send", help="send one command or fault to a running twin (signed with --key-id)",
                       description="Send one request and print its replies' last (completed or rejected) as "
                                   "JSON. Example: orbitwin send --sat STARLINK-1008 "
                                   "'{\"command\":\"throttle\",\"args\":{\"factor\":0.5}}' --mqtt mqtt://localhost")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--sat", metavar="NAME", help="the satellite (topic {prefix}/sat/NAME/cmd or /fault)")
    where.add_argument("--fleet", action="store_true", help="a fleet request (the JSON carries select)")
    p.add_argument("request", help='the request JSON, e.g. \'{"command":"throttle","args":{"factor":0.5}}\'')
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the final reply (default 10)")
    add_key_options(p)
    add_mqtt_options(p, connect_timeout_s=10.0)
    p.set_defaults(func=cmd_send)


def cmd_send(a: argparse.Namespace) -> int:
    """Exit 0 when the request completed (or was accepted and is still waiting for its time), else 1."""
    from twin.runtime.scenario import ScenarioError, publish_scenario, scenario_from_dict

    try:
        request = json.loads(a.request)
    except ValueError as exc:
        raise ValueError(f"the request is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ValueError("the request must be a JSON object")
    entry = dict(request) | ({"sat": a.sat} if a.sat else {})
    try:
        scenario = scenario_from_dict({"request": [entry]}, "request")
    except ScenarioError as exc:
        raise ValueError(str(exc)) from None
    client_id, signer = client_id_and_signer(a, "send")
    (reply,) = publish_scenario(scenario, mqtt_settings_from_args(a), a.prefix, a.wait,
                                connect_timeout_s=a.connect_timeout, client_id=client_id, signer=signer, final=True)
    print(json.dumps(reply))
    return 0 if reply.get("status") in ("accepted", "completed") else 1

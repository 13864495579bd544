"""``orbitwin send``: one command or fault to a running twin over MQTT, signed when given a key; or
``orbitwin send route --from END --to END``: a route between two network endpoints (not signed: a
read-only query)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from orbitwin.cli.key_options import add_key_options, client_id_and_signer
from orbitwin.cli.mqtt_options import add_mqtt_options, mqtt_settings_from_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser("send", help="send one command or fault to a running twin (signed with --key-id), or ask "
                                    "for a route",
                       description="Send one request and print its replies' last (completed or rejected) as "
                                   "JSON. Example: orbitwin send --sat STARLINK-1008 "
                                   "'{\"command\":\"throttle\",\"args\":{\"factor\":0.5}}' --mqtt mqtt://localhost. "
                                   "A route: orbitwin send route --from city:London --to 'city:New York' (ends: "
                                   "sat:NAME, gateway:NAME, city:NAME or point:LAT,LON in degrees)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--sat", metavar="NAME", help="the satellite (topic {prefix}/sat/NAME/cmd or /fault)")
    where.add_argument("--fleet", action="store_true", help="a fleet request (the JSON carries select)")
    p.add_argument("request", help='the request JSON, e.g. \'{"command":"throttle","args":{"factor":0.5}}\', or '
                                   '"route" with --from and --to')
    p.add_argument("--from", dest="route_from", metavar="END", help="route: the first end (sat:NAME, gateway:NAME, "
                                                                     "city:NAME or point:LAT,LON)")
    p.add_argument("--to", dest="route_to", metavar="END", help="route: the other end")
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the final reply (default 10)")
    add_key_options(p)
    add_mqtt_options(p, connect_timeout_s=10.0)
    p.set_defaults(func=cmd_send)


def cmd_send(a: argparse.Namespace) -> int:
    """Exit 0 when the request completed (or was accepted and is still waiting for its time), else 1."""
    if a.request == "route":
        return cmd_route(a)  # without the runtime's imports (the scenario module loads the engine: seconds)
    if a.route_from or a.route_to:
        raise ValueError("--from and --to are for routes: orbitwin send route --from END --to END")
    if not a.sat and not a.fleet:
        raise ValueError("a command or fault needs --sat NAME or --fleet")
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


def cmd_route(a: argparse.Namespace) -> int:
    """``orbitwin send route``: print the route reply as JSON; exit 0 when completed, else 1."""
    import uuid

    from orbitwin.client import OrbitwinClient, ReplyTimeout
    from orbitwin.client.bodies import route_end

    if a.sat or a.fleet:
        raise ValueError("a route names its ends with --from and --to, not --sat or --fleet")
    if not a.route_from or not a.route_to:
        raise ValueError("a route needs --from END and --to END")
    body = {"from": route_end(a.route_from, "--from"), "to": route_end(a.route_to, "--to")}
    with OrbitwinClient(mqtt_settings_from_args(a), prefix=a.prefix, timeout_s=a.wait,
                        client_id=a.client_id or f"orbitwin-send-{uuid.uuid4().hex[:8]}",
                        connect_timeout_s=a.connect_timeout) as client:
        try:
            reply = client.request(client.topics.route, body, "route").wait(a.wait)
        except ReplyTimeout:
            reply = {"status": "no reply"}
    print(json.dumps(reply))
    return 0 if reply.get("status") == "completed" else 1

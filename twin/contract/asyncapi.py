"""The MQTT contract as an AsyncAPI 3.0.0 document, generated from the code.

Telemetry payloads come from :mod:`twin.schema.telemetry` (and the envelope the encoder really writes),
requests from :mod:`twin.schema.commands` and :mod:`twin.contract.request_parser`, replies from
:class:`twin.schema.commands.Reason`. Nothing here lists a field, command or argument by hand.

    python -m twin.contract.asyncapi > docs/asyncapi.yaml          # YAML (the committed copy)
    python -m twin.contract.asyncapi --format json --prefix my/v1  # JSON, another prefix
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from twin.schema.commands import COMMANDS, FAULTS
from twin.contract.topics import CONTRACT_VERSION, DEFAULT_PREFIX, Topics
from twin.contract.request_parser import MAX_REQUEST_BYTES
from twin.contract.asyncapi_route import ROUTE_EXAMPLE, route_schemas
from twin.schema.telemetry import PACKET_FIELDS, PACKETS, SCHEMA_VERSION

from twin.contract.asyncapi_payloads import (
    audit_schema,
    auth_schema,
    board_schemas,
    ASYNCAPI_VERSION,
    MQTT_BINDING_VERSION,
    EXAMPLE_SAT,
    HAS_FRAMES,
    HAS_REPLAY_TOPICS,
    JSON,
    _ref,
    telemetry_schema,
    frame_schema,
    request_example,
    request_schema,
    selector_schema,
    replay_schema,
    reply_schemas,
    event_schema,
    state_schema,
    catalogue_schema,
    summary_schema,
    status_schema,
    topology_schema,
    latency_schema,
)
from twin.contract.asyncapi_fleet import aggregate_schema
from twin.contract.telemetry_encoder import TOPIC_RATES


def _mqtt_op(qos: int, retain: bool = False) -> JSON:
    return {"mqtt": {"qos": qos, "retain": retain, "bindingVersion": MQTT_BINDING_VERSION}}


_REQUEST_MSG_BINDINGS = {"mqtt": {
    "responseTopic": {"type": "string", "description": "MQTT 5 response topic: replies go there (it wins over "
                                                       "reply_to; topics with + or # are ignored)"},
    "correlationData": {"type": "string", "description": "MQTT 5 correlation data, echoed on every reply"},
    "contentType": "application/json", "bindingVersion": MQTT_BINDING_VERSION}}
_REPLY_MSG_BINDINGS = {"mqtt": {
    "correlationData": {"type": "string", "description": "The request's correlation data (MQTT 5 requests)"},
    "contentType": "application/json", "bindingVersion": MQTT_BINDING_VERSION}}

_SAT_PARAM = {"sat": {"description": "Satellite name as in the catalogue", "examples": [EXAMPLE_SAT]}}


def _message(name: str, title: str, schema: str, summary: str, examples: Sequence[JSON] = (),
             bindings: JSON | None = None) -> JSON:
    m: JSON = {"name": name, "title": title, "summary": summary, "contentType": "application/json",
               "payload": _ref(schema)}
    if bindings:
        m["bindings"] = bindings
    if examples:
        m["examples"] = [{"name": f"{name}-{k}", "payload": e} for k, e in enumerate(examples)]
    return m


def asyncapi_document(prefix: str = DEFAULT_PREFIX) -> JSON:
    """The AsyncAPI 3.0.0 document of the contract under ``prefix`` (operations from the twin's side)."""
    topics = Topics(prefix)
    sat = "{sat}"
    schemas: JSON = {
        "At": {"type": ["number", "string", "null"], "minimum": 0, "format": "date-time",
               "description": "Execute at this sim time: seconds since the twin's start (number) or an ISO 8601 UTC "
                              "time (string); a time in the past executes now. Omit to execute at the next tick."},
        "RequestId": {"type": ["string", "null"], "minLength": 1, "maxLength": 256,
                      "description": "Echoed as id in every reply and as detail.request_id in the request's events"},
        "ReplyTo": {"type": ["string", "null"], "minLength": 1, "maxLength": 1024, "pattern": "^[^+#]*$",
                    "description": "Reply topic for MQTT 3.1.1 clients (an MQTT 5 response topic wins)"},
        "Selector": selector_schema(),
        "Authenticator": auth_schema(),
        "Audit": audit_schema(),
        "CommandRequest": request_schema("command", COMMANDS, fleet=False),
        "FaultRequest": request_schema("fault", FAULTS, fleet=False),
        "FleetCommandRequest": request_schema("command", COMMANDS, fleet=True),
        "FleetFaultRequest": request_schema("fault", FAULTS, fleet=True),
        "ReplayRequest": replay_schema(),
        **reply_schemas(),
        **route_schemas(),
        "Event": event_schema(),
        "State": state_schema(),
        "Catalogue": catalogue_schema(),
        "Summary": summary_schema(),
        "Status": status_schema(),
        "Topology": topology_schema(),
        "Latency": latency_schema(),
        "Aggregate": aggregate_schema(),
        **board_schemas(),
    }
    messages: JSON = {}
    channels: JSON = {}
    operations: JSON = {}

    def channel(cid: str, address: str | None, msgs: dict[str, str], description: str,
                params: JSON | None = None) -> None:
        ch: JSON = {"address": address, "description": description,
                    "messages": {k: _ref(m, "messages") for k, m in msgs.items()}}
        if params:
            ch["parameters"] = params
        channels[cid] = ch

    def operation(oid: str, action: str, cid: str, summary: str, qos: int, retain: bool = False,
                  reply: tuple[str, str] | None = None, reply_message: str = "reply") -> None:
        op: JSON = {"action": action, "channel": {"$ref": f"#/channels/{cid}"}, "summary": summary,
                    "messages": [{"$ref": f"#/channels/{cid}/messages/{k}"} for k in channels[cid]["messages"]],
                    "bindings": _mqtt_op(qos, retain)}
        if reply is not None:
            rcid, where = reply
            op["reply"] = {"address": {"location": "$message.payload#/reply_to", "description": where},
                           "channel": {"$ref": f"#/channels/{rcid}"},
                           "messages": [{"$ref": f"#/channels/{rcid}/messages/{reply_message}"}]}
        operations[oid] = op

    # telemetry: one channel per packet
    replayed_where = ("on {prefix}/replay/{sat}/tm/{packet}" if HAS_REPLAY_TOPICS else "on the same topic")
    for p in PACKETS:
        schemas[f"Telemetry_{p.name}"] = telemetry_schema(p.name)
        messages[f"telemetry_{p.name}"] = _message(
            f"telemetry_{p.name}", f"Telemetry {p.name}", f"Telemetry_{p.name}",
            f"{p.description} (default {p.rate_hz:g} Hz)") | {"x-rate-hz": p.rate_hz}
        cid = f"satTelemetry_{p.name}"
        channel(cid, topics.tm(sat, p.name), {p.name: f"telemetry_{p.name}"},
                f"Telemetry packet {p.name} of one satellite: {', '.join(PACKET_FIELDS[p.name])}. Replayed "
                f"messages come again {replayed_where} with their original seq and t.", _SAT_PARAM)
        operation(f"publishTelemetry_{p.name}", "send", cid, f"Publish {p.name} at its rate (QoS set by --qos, "
                  f"default 1)", 1)

    packet_param = {"packet": {"description": "Telemetry packet", "enum": [p.name for p in PACKETS]}}
    if HAS_REPLAY_TOPICS:
        channel("replayedTelemetry", topics.replayed(sat, "{packet}"),
                {p.name: f"telemetry_{p.name}" for p in PACKETS},
                "Telemetry published again on a replay request: the original payload (same seq, t, bseq)",
                _SAT_PARAM | packet_param)
        operation("publishReplayedTelemetry", "send", "replayedTelemetry", "Answer a replay request", 1)
    if HAS_FRAMES:
        for p in PACKETS:
            schemas[f"Frame_{p.name}"] = frame_schema(p.name)
            messages[f"frame_{p.name}"] = _message(f"frame_{p.name}", f"Fleet frame {p.name}", f"Frame_{p.name}",
                                                   f"Packet {p.name} of every satellite due this tick, as columns")
        channel("fleetFrame", topics.fleet_tm("{packet}"), {p.name: f"frame_{p.name}" for p in PACKETS},
                "Fleet frames for bulk consumers: one message per packet and tick holding the rows that the "
                "per-satellite telemetry topics carry", packet_param)
        operation("publishFleetFrame", "send", "fleetFrame", "Every tick, one frame per due packet", 1)

    ex_cmd = [request_example(COMMANDS["throttle"], "command") | {"id": "thr-1"}]
    ex_fault = [request_example(FAULTS["latchup"], "fault") | {"args": {"device": 3}, "id": "sel-1"}]
    messages |= {
        "state": _message("state", "Twin birth/death", "State", "Retained birth (online) and death (offline)"),
        "catalogue": _message("catalogue", "Fleet catalogue", "Catalogue", "Retained list of satellites"),
        "summary": _message("summary", "Fleet summary", "Summary", "Fleet aggregates, every tick by default"),
        "status": _message("status", "Twin status", "Status", "Runtime status and request counters"),
        "event": _message("event", "Event", "Event", "Limits, FDIR, SEU/SEL, faults, commands"),
        "command": _message("command", "Command request", "CommandRequest", "A command for the topic's satellite",
                            ex_cmd, _REQUEST_MSG_BINDINGS),
        "fault": _message("fault", "Fault injection request", "FaultRequest", "A fault for the topic's satellite",
                          ex_fault, _REQUEST_MSG_BINDINGS),
        "fleetCommand": _message("fleetCommand", "Fleet command request", "FleetCommandRequest",
                                 "A command for the selected satellites",
                                 [{"command": "enter_safe_mode", "select": "*", "id": "safe-all"}],
                                 _REQUEST_MSG_BINDINGS),
        "fleetFault": _message("fleetFault", "Fleet fault request", "FleetFaultRequest",
                               "A fault for the selected satellites",
                               [{"fault": "seu_burst", "args": {"count": 50}, "select": {"names": "STARLINK-10*"},
                                 "at": 60}], _REQUEST_MSG_BINDINGS),
        "replay": _message("replay", "Replay request", "ReplayRequest", "Ask for buffered telemetry again",
                           [{"sat": EXAMPLE_SAT, "from_seq": 0, "to_seq": 4, "id": "replay-1"}],
                           _REQUEST_MSG_BINDINGS),
        "reply": _message("reply", "Reply", "Reply", "accepted, completed or rejected", bindings=_REPLY_MSG_BINDINGS),
        "route": _message("route", "Route request", "RouteRequest", "A route between two network endpoints",
                          [ROUTE_EXAMPLE], _REQUEST_MSG_BINDINGS),
        "routeReply": _message("routeReply", "Route reply", "RouteReply",
                               "completed with the route at once, or rejected", bindings=_REPLY_MSG_BINDINGS),
        "audit": _message("audit", "Audit record", "Audit", "One per request (cmd, fault, replay), accepted or not"),
        "topology": _message("topology", "Fleet topology", "Topology",
                             "The laser links up: an edge list with delays and utilisation"),
        "latency": _message("latency", "City-pair latency", "Latency",
                            "Round trip and stretch between every pair of cities over the mesh"),
        "aggregate": _message("aggregate", "Shell or plane aggregate", "Aggregate",
                              "Counts nominal/yellow/red/safe/lost and mean/min/max of key fields of one shell or "
                              "orbital plane"),
    }

    channel("state", topics.state, {"state": "state"}, "Twin birth/death (retained, QoS 1); the death is the "
            "MQTT last will")
    channel("catalogue", topics.catalogue, {"catalogue": "catalogue"}, "Satellites, NORAD ids, shells (retained)")
    channel("summary", topics.summary, {"summary": "summary"}, "Fleet aggregates per tick")
    channel("status", topics.status, {"status": "status"}, "Twin runtime status and counters")
    channel("satEvent", topics.sat(sat, "event"), {"event": "event"}, "Events of one satellite", _SAT_PARAM)
    channel("fleetTopology", topics.fleet("topology"), {"topology": "topology"},
            "The laser mesh for bulk consumers (a twin with the network model): every link up with its delay and "
            "utilisation, satellites by index into the name table")
    channel("fleetLatency", topics.fleet("latency"), {"latency": "latency"},
            "The city-pair latency matrix (a twin with the network model), as the engine computes it")
    shell_param = {"shell": {"description": "Shell name: median altitude and inclination, e.g. 550km-53deg "
                                            "(other: satellites in no shell)", "examples": ["550km-53deg"]}}
    channel("fleetAggShell", topics.fleet_agg_shell("{shell}"), {"aggregate": "aggregate"},
            "One shell's aggregate (orbitwin run --aggregates on|HZ; off by default)", shell_param)
    channel("fleetAggPlane", topics.fleet_agg_plane("{shell}", "{plane}"), {"aggregate": "aggregate"},
            "One orbital plane's aggregate (orbitwin run --aggregates on|HZ; off by default)",
            shell_param | {"plane": {"description": "Plane within the shell, p00 at the lowest RAAN, eastwards",
                                     "examples": ["p00"]}})
    channel("fleetEvent", topics.fleet("event"), {"event": "event"},
            "Events of requests that targeted several satellites")
    channel("satCommand", topics.sat(sat, "cmd"), {"command": "command"}, "Commands for one satellite", _SAT_PARAM)
    channel("satFault", topics.sat(sat, "fault"), {"fault": "fault"}, "Fault injections for one satellite",
            _SAT_PARAM)
    channel("fleetCommand", topics.fleet("cmd"), {"command": "fleetCommand"}, "Fleet-wide commands (select)")
    channel("fleetFault", topics.fleet("fault"), {"fault": "fleetFault"}, "Fleet-wide fault injections (select)")
    channel("fleetReplay", topics.replay, {"replay": "replay"}, "Telemetry replay requests")
    channel("fleetRoute", topics.route, {"route": "route"},
            "Route requests: the shortest-delay route between two endpoints over the last tick's network "
            "(a twin with the network model; without it: rejected not_now)")
    channel("satReply", topics.sat(sat, "reply"), {"reply": "reply"},
            "Replies to requests on the satellite's cmd/fault topics (MQTT 3.1.1 clients, or no response topic)",
            _SAT_PARAM)
    channel("fleetReply", topics.fleet("reply"), {"reply": "reply", "routeReply": "routeReply"},
            "Replies to fleet, replay and route requests without a response topic")
    channel("errors", topics.errors, {"reply": "reply"},
            "Rejections of messages that cannot be routed (unknown topic under the prefix)")
    channel("audit", topics.audit, {"audit": "audit"},
            "The audit trail: one record per request with its topic, claimed key id and client, result and reason")
    channel("responseTopic", None, {"reply": "reply", "routeReply": "routeReply"},
            "The MQTT 5 response topic (or reply_to) chosen by the requester; replies carry its correlation data")

    board_param = {"board": {"description": "Board name (default: the bound satellite's name)",
                             "examples": [EXAMPLE_SAT]}}
    messages |= {
        "boardState": _message("boardState", "Board state", "BoardState", "Retained: the satellite a board binds to"),
        "boardTelemetry": _message("boardTelemetry", "Board telemetry", "BoardTelemetry", "A board's measurements"),
        "boardJob": _message("boardJob", "Board job end", "BoardJob", "A job the board ran ended"),
        "boardRequest": _message("boardRequest", "Board request", "BoardRequest", "A command or fault for a board",
                                 [{"command": "set_load", "args": {"load": 0.5}, "id": "b-1"}], _REQUEST_MSG_BINDINGS),
    }
    channel("boardState", topics.board("{board}", "state"), {"state": "boardState"},
            "Published (retained) by orbitwin bridge serial; the twin binds the board to the satellite named",
            board_param)
    channel("boardTelemetry", topics.board("{board}", "tm"), {"tm": "boardTelemetry"},
            "A board's measurements (5 Hz); the twin scales them to the bound satellite's payload", board_param)
    channel("boardJob", topics.board("{board}", "job"), {"job": "boardJob"},
            "Published by orbitwin bridge serial when a job the board ran ends (run_job on its cmd topic); the twin "
            "ends the compute job with the board-measured time and upsets", board_param)
    channel("boardCommand", topics.board("{board}", "cmd"), {"request": "boardRequest"},
            "Board commands, from the twin (its commands for the bound satellite) or any client", board_param)
    channel("boardFault", topics.board("{board}", "fault"), {"request": "boardRequest"},
            "Board faults, from the twin (SEU/SEL it decides for the bound satellite) or any client", board_param)
    operation("receiveBoardState", "receive", "boardState", "Bind or unbind a board", 1, True)
    operation("receiveBoardTelemetry", "receive", "boardTelemetry", "Take a bound board's measurements", 0)
    operation("receiveBoardJob", "receive", "boardJob", "End a compute job the bound board ran", 1)
    operation("sendBoardCommand", "send", "boardCommand", "Forward a payload command to the bound board", 1)
    operation("sendBoardFault", "send", "boardFault", "Forward a radiation effect to the bound board", 1)

    operation("publishState", "send", "state", "Birth on connect, death as last will or on stop", 1, True)
    operation("publishCatalogue", "send", "catalogue", "On every connection", 1, True)
    operation("publishSummary", "send", "summary", "Every tick by default (orbitwin run --rates summary=HZ)", 1)
    operation("publishStatus", "send", "status", "Every 5 s of sim time by default (--rates status=HZ), and at "
              "the end of a run", 1)
    operation("publishSatEvent", "send", "satEvent", "As events happen", 1)
    operation("publishTopology", "send", "fleetTopology", f"Every {1 / (TOPIC_RATES['topology'] or 1):g} s of sim "
              "time by default (orbitwin run --rates topology=HZ)", 1)
    operation("publishLatency", "send", "fleetLatency", "Each new matrix: every network.city_matrix_interval_s of "
              "sim time (the design file)", 1)
    operation("publishAggShell", "send", "fleetAggShell", "At the policy's aggregate rate (--aggregates), with "
              "every plane's; never shed", 1)
    operation("publishAggPlane", "send", "fleetAggPlane", "At the policy's aggregate rate (--aggregates)", 1)
    operation("publishFleetEvent", "send", "fleetEvent", "As fleet request events happen", 1)
    operation("replySatellite", "send", "satReply", "Replies to satellite requests", 1)
    operation("replyFleet", "send", "fleetReply", "Replies to fleet, replay and route requests", 1)
    operation("replyError", "send", "errors", "Rejections that have no request topic to answer on", 1)
    operation("replyResponseTopic", "send", "responseTopic", "Replies to a requester's own topic", 1)
    operation("publishAudit", "send", "audit", "One record per request, when it is accepted or rejected", 1)
    sat_where = "MQTT 5 response topic, else reply_to, else {prefix}/sat/{sat}/reply"
    fleet_where = "MQTT 5 response topic, else reply_to, else {prefix}/fleet/reply"
    operation("receiveSatCommand", "receive", "satCommand", "Take a command", 1, reply=("satReply", sat_where))
    operation("receiveSatFault", "receive", "satFault", "Take a fault injection", 1, reply=("satReply", sat_where))
    operation("receiveFleetCommand", "receive", "fleetCommand", "Take a fleet command", 1,
              reply=("fleetReply", fleet_where))
    operation("receiveFleetFault", "receive", "fleetFault", "Take a fleet fault injection", 1,
              reply=("fleetReply", fleet_where))
    operation("receiveReplay", "receive", "fleetReplay", "Publish buffered telemetry again", 1,
              reply=("fleetReply", fleet_where))
    operation("receiveRoute", "receive", "fleetRoute", "Answer a route request at once from the last tick's mesh", 1,
              reply=("fleetReply", fleet_where), reply_message="routeReply")

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Orbitwin fleet twin MQTT contract",
            "version": f"{CONTRACT_VERSION}.{SCHEMA_VERSION}.0",
            "description": (
                f"Telemetry, events, birth/death and request/reply of the Orbitwin fleet twin under `{prefix}`. "
                "Generated from the code by `python -m twin.contract.asyncapi`; see docs/mqtt.md for the guide. "
                "Operations are described from the twin's side: it sends telemetry, events, replies and state, "
                "and receives commands, faults and replay requests. Every request gets a reply: accepted then "
                "completed, or rejected with a reason."),
            "x-contract-version": CONTRACT_VERSION,
            "x-schema-version": SCHEMA_VERSION,
            "x-max-request-bytes": MAX_REQUEST_BYTES,
        },
        "defaultContentType": "application/json",
        "servers": {"broker": {
            "host": "{host}:{port}", "protocol": "mqtt", "protocolVersion": "5",
            "description": "Any MQTT broker (the twin connects with MQTT 5; clients may use 3.1.1 or 5)",
            "variables": {"host": {"default": "localhost"}, "port": {"default": "1883"}},
            "bindings": {"mqtt": {"cleanSession": False, "keepAlive": 10, "sessionExpiryInterval": 3600,
                                  "lastWill": {"topic": topics.state, "qos": 1, "retain": True,
                                               "message": "state offline with the connection's bseq"},
                                  "bindingVersion": MQTT_BINDING_VERSION}},
        }},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def to_yaml(doc: Mapping[str, Any]) -> str:
    """The document as YAML (stable key order, as committed in docs/asyncapi.yaml)."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # no &anchors for shared sub-dicts
            return True

    return yaml.dump(dict(doc), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m twin.contract.asyncapi", description=__doc__.splitlines()[0])
    p.add_argument("--prefix", default=DEFAULT_PREFIX)
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    a = p.parse_args(argv)
    doc = asyncapi_document(a.prefix)
    sys.stdout.write(to_yaml(doc) if a.format == "yaml" else json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The MQTT contract as an AsyncAPI 3.0.0 document, generated from the code.

Telemetry payloads come from :mod:`twin.schema` (and the envelope the encoder really writes),
requests from :mod:`twin.commands` and :mod:`twin.requests`, replies from
:class:`twin.commands.Reason`. Nothing here lists a field, command or argument by hand.

    python -m twin.asyncapi > docs/asyncapi.yaml          # YAML (the committed copy)
    python -m twin.asyncapi --format json --prefix my/v1  # JSON, another prefix
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from .commands import COMMANDS, FAULTS, SENSOR_FAULTS, Arg, Reason, Spec
from .contract import CONTRACT_VERSION, DEFAULT_PREFIX, Topics, header
from . import requests as _requests
from .requests import MAX_REPLAY_SPAN, MAX_REQUEST_BYTES
from .schema import FIELD_BY_NAME, FIELDS, PACKET_FIELDS, PACKETS, SCHEMA_VERSION, Field

ASYNCAPI_VERSION = "3.0.0"
MQTT_BINDING_VERSION = "0.2.0"
EVENT_KINDS = ("limit", "fdir", "seu", "sel", "fault", "command")  # twin.engine.Event.kind
SEVERITIES = ("info", "warning", "critical")
REPLY_STATUSES = ("accepted", "completed", "rejected")
EXAMPLE_SAT = "STARLINK-1008"
MAX_REPLAY_RANGES: int | None = getattr(_requests, "MAX_REPLAY_RANGES", None)
HAS_FRAMES = hasattr(Topics, "fleet_tm")  # fleet frames: {prefix}/fleet/tm/{packet}
HAS_REPLAY_TOPICS = hasattr(Topics, "replayed")  # replays on {prefix}/replay/{sat}/tm/{packet}

JSON = dict[str, Any]

_ENVELOPE_DOC = {
    "v": "Telemetry schema version",
    "sat": "Satellite name",
    "norad": "NORAD catalogue number",
    "packet": "Packet name (also the last topic level)",
    "t": "Sim time, ISO 8601 UTC with milliseconds",
    "t_s": "Sim seconds since the twin's start",
    "seq": "Per-satellite sequence number over all its packets: +1 per message, starts at 0 per run",
    "run": "Run id: the first birth sequence of the twin process; seq restarts when it changes",
    "bseq": "Birth sequence of the MQTT connection that published the message",
    "sats": "Satellite names, one per row",
    "tick": "Twin tick number",
}
_UNITS = {"t_s": "s"}


def _ref(name: str, kind: str = "schemas") -> JSON:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else "null"


def _sample_property(key: str, value: Any) -> JSON:
    """Schema of one envelope/header key from a value the code really produced."""
    s: JSON = {"type": _json_type(value), "description": _ENVELOPE_DOC.get(key, key)}
    if key == "t":
        s["format"] = "date-time"
    if key in ("seq", "bseq", "run", "norad", "tick"):
        s["minimum"] = 0
    if key in _UNITS:
        s["x-unit"] = _UNITS[key]
    return s


# --- telemetry -------------------------------------------------------------------------
def field_schema(f: Field) -> JSON:
    """JSON Schema of one telemetry field (non-finite floats are sent as null)."""
    s: JSON = {"type": {"float": ["number", "null"], "int": "integer", "bool": "boolean"}[f.dtype],
               "description": f.description, "x-unit": f.unit}
    if f.enum:
        s["enum"] = sorted(f.enum)
        s["x-enum-names"] = {str(k): v for k, v in sorted(f.enum.items())}
    if f.limits is not None:
        s["x-limits"] = {k: v for k, v in asdict(f.limits).items() if v is not None}
    return s


def _telemetry_sample(packet: str) -> JSON:
    """One payload rendered by the real encoder (zeros), to read the envelope it writes."""
    from .tm_encoder import PacketEncoder

    dtypes = {"float": float, "int": np.int64, "bool": bool}
    tm = {f: np.zeros(1, dtype=dtypes[FIELD_BY_NAME[f].dtype]) for f in PACKET_FIELDS[packet]}
    enc = PacketEncoder(packet, [EXAMPLE_SAT], [44714], Topics())
    ((_, payload),) = enc.encode(tm, np.array([0]), np.array([0]), 1, "2026-01-01T00:00:00.000Z", 0.0)
    return json.loads(payload)


def telemetry_schema(packet: str) -> JSON:
    sample = _telemetry_sample(packet)
    props: JSON = {}
    for key, value in sample.items():
        if key == "fields":
            fields = PACKET_FIELDS[packet]
            props[key] = {"type": "object", "description": "Field values (units in x-unit)",
                          "properties": {f: field_schema(FIELD_BY_NAME[f]) for f in fields},
                          "required": list(fields), "additionalProperties": False}
        else:
            props[key] = _sample_property(key, value)
    props["v"] = props["v"] | {"const": SCHEMA_VERSION}
    props["packet"] = props["packet"] | {"const": packet}
    return {"type": "object", "title": f"Telemetry packet {packet}", "properties": props,
            "required": list(sample), "additionalProperties": False}


def _frame_sample(packet: str) -> JSON:
    from .tm_encoder import FrameEncoder  # type: ignore[attr-defined]

    dtypes = {"float": float, "int": np.int64, "bool": bool}
    tm = {f: np.zeros(1, dtype=dtypes[FIELD_BY_NAME[f].dtype]) for f in PACKET_FIELDS[packet]}
    enc = FrameEncoder(packet, [EXAMPLE_SAT], [44714], Topics())
    _, payload = enc.encode(tm, np.array([0]), np.array([0]), 1, "2026-01-01T00:00:00.000Z", 0.0)
    return json.loads(payload)


def frame_schema(packet: str) -> JSON:
    """A fleet frame: the packet of every satellite due this tick, as columns (row k = one satellite)."""
    sample = _frame_sample(packet)
    props: JSON = {}
    for key, value in sample.items():
        if key == "fields":
            fields = PACKET_FIELDS[packet]
            props[key] = {"type": "object", "description": "One column per field, rows as in sats",
                          "properties": {f: {"type": "array", "items": {k: v for k, v in field_schema(
                              FIELD_BY_NAME[f]).items() if k != "description"}, "description": FIELD_BY_NAME[f]
                              .description, "x-unit": FIELD_BY_NAME[f].unit} for f in fields},
                          "required": list(fields), "additionalProperties": False}
        elif isinstance(value, list):
            props[key] = {"type": "array", "items": {"type": _json_type(value[0])},
                          "description": _ENVELOPE_DOC.get(key, key)}
        else:
            props[key] = _sample_property(key, value)
    props["v"] = props["v"] | {"const": SCHEMA_VERSION}
    props["packet"] = props["packet"] | {"const": packet}
    return {"type": "object", "title": f"Fleet frame {packet}", "properties": props,
            "required": list(sample), "additionalProperties": False}


# --- requests --------------------------------------------------------------------------
_ARG_TYPES = {"float": "number", "int": "integer", "str": "string", "bool": "boolean"}


def arg_schema(spec: Spec, a: Arg) -> JSON:
    """JSON Schema of one command/fault argument (optional ones may be null: default)."""
    t = _ARG_TYPES[a.type]
    s: JSON = {"type": t if a.required else [t, "null"], "description": a.description}
    if a.unit:
        s["x-unit"] = a.unit
    if a.min is not None:
        s["minimum"] = a.min
    if a.max is not None:
        s["maximum"] = a.max
    if a.choices is not None:
        s["enum"] = list(a.choices)
    if spec.name in SENSOR_FAULTS and a.name == "field":
        s["enum"] = [f.name for f in FIELDS]
        s["description"] += " (a schema field name)"
    if not a.required and a.default is not None:
        s["default"] = a.default
    return s


def _example_value(spec: Spec, a: Arg) -> Any:
    if spec.name in SENSOR_FAULTS and a.name == "field":
        return "payload_temp_k"
    if a.choices:
        return a.choices[0]
    if a.type == "str":
        return "x"
    lo = a.min if a.min is not None else 0.0
    hi = a.max if a.max is not None else lo + 1.0
    v = lo + (hi - lo) / 2 if hi - lo <= 1.0 else lo + 1
    return int(v) if a.type == "int" else float(v)


def request_example(spec: Spec, kind: str) -> JSON:
    """A valid request for ``spec`` (required arguments only)."""
    out: JSON = {kind: spec.name}
    args = {a.name: _example_value(spec, a) for a in spec.args if a.required}
    if args:
        out["args"] = args
    return out


def _request_variant(kind: str, spec: Spec, fleet: bool) -> JSON:
    args = {"type": ["object", "null"], "description": "Arguments (omit or null when none are required)",
            "properties": {a.name: arg_schema(spec, a) for a in spec.args},
            "additionalProperties": False}
    required_args = [a.name for a in spec.args if a.required]
    if required_args:
        args["type"] = "object"
        args["required"] = required_args
    props: JSON = {kind: {"const": spec.name}, "args": args, "at": _ref("At"), "id": _ref("RequestId"),
                   "reply_to": _ref("ReplyTo")}
    if kind == "fault":
        props["start"] = _ref("At") | {"description": "Alias of at (at wins when both are given)"}
        props["duration_s"] = {"type": ["number", "null"], "exclusiveMinimum": 0, "x-unit": "s",
                               "description": "Fault duration; omit for a fault that lasts until clear_fault"}
    required = [kind] + (["args"] if required_args else [])
    if fleet:
        props["select"] = _ref("Selector")
        required.append("select")
    return {"title": spec.name, "description": spec.description, "type": "object", "properties": props,
            "required": required, "additionalProperties": False}


def request_schema(kind: str, table: Mapping[str, Spec], fleet: bool) -> JSON:
    where = "a fleet topic (with select)" if fleet else "a satellite's topic"
    return {"title": f"{'Fleet ' if fleet else ''}{kind} request",
            "description": f"One {kind} request on {where}; at most {MAX_REQUEST_BYTES} bytes of UTF-8 JSON.",
            "oneOf": [_request_variant(kind, spec, fleet) for spec in table.values()]}


def _band(what: str) -> JSON:
    return {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
            "description": f"[low, high] {what}, low <= high"}


def selector_schema() -> JSON:
    return {"description": "Which satellites a fleet request targets (all given criteria must hold; "
                           "a selector matching none is rejected with unknown_satellite)",
            "oneOf": [
                {"const": "*", "description": "Every satellite"},
                {"type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
                    "sats": {"type": "array", "minItems": 1, "items": {"type": "string"},
                             "description": "Satellite names"},
                    "names": {"type": "string", "minLength": 1,
                              "description": "Comma-separated glob patterns, e.g. STARLINK-3*"},
                    "shell": {"type": "object", "minProperties": 1, "additionalProperties": False,
                              "properties": {"alt_km": _band("mean altitude in km") | {"x-unit": "km"},
                                             "inc_deg": _band("inclination in degrees") | {"x-unit": "deg"}}},
                }},
            ]}


def replay_schema() -> JSON:
    seq = {"type": "integer", "minimum": 0}
    props: JSON = {"sat": {"type": "string", "minLength": 1, "description": "Satellite name"},
                   "from_seq": seq | {"description": "First sequence number"},
                   "to_seq": seq | {"description": "Last sequence number (inclusive)"},
                   "id": _ref("RequestId"), "reply_to": _ref("ReplyTo")}
    out: JSON = {"type": "object", "title": "Replay request", "additionalProperties": False,
                 "description": f"Publish a satellite's buffered telemetry with seq from_seq..to_seq again "
                                f"(to_seq - from_seq <= {MAX_REPLAY_SPAN} per range); the reply says how many "
                                f"were found and how many are no longer held (evicted).",
                 "x-max-span": MAX_REPLAY_SPAN, "properties": props, "required": ["sat", "from_seq", "to_seq"]}
    if MAX_REPLAY_RANGES is not None:
        props["ranges"] = {"type": "array", "minItems": 1, "maxItems": MAX_REPLAY_RANGES,
                           "description": "Several ranges at once (then sat/from_seq/to_seq are not used)",
                           "items": {"type": "array", "minItems": 3, "maxItems": 3,
                                     "items": [{"type": "string", "minLength": 1, "description": "sat"},
                                               seq | {"description": "from_seq"}, seq | {"description": "to_seq"}]}}
        del out["required"]
        out["anyOf"] = [{"required": ["ranges"]}, {"required": ["sat", "from_seq", "to_seq"]}]
    return out


# --- replies, events, state ------------------------------------------------------------
def _reply_variant(status: str, extra: JSON, required: Sequence[str]) -> JSON:
    props: JSON = {
        "v": {"const": CONTRACT_VERSION, "description": "Contract version"},
        "status": {"const": status},
        "id": {"type": "string", "maxLength": 256,
               "description": "The request's id, else its MQTT 5 correlation data, else r<n> assigned by the twin"},
        "request": {"type": "string", "description": "Command or fault name, when the request named one"},
        "t": {"type": "string", "format": "date-time", "description": "Sim time of the reply"},
        "t_s": {"type": "number", "x-unit": "s", "description": "Sim seconds of the reply"},
        "sat": {"type": "string", "description": "Satellite of a satellite-topic request"},
        "run": {"type": "integer", "description": "Run id of the twin process"},
        "seq": {"type": "integer", "minimum": 0, "description": "Reply sequence number of this run"},
    } | extra
    return {"title": f"Reply {status}", "type": "object", "properties": props, "additionalProperties": False,
            "required": ["v", "status", "id", "t", "t_s", *required]}


def reply_schemas() -> dict[str, JSON]:
    accepted = _reply_variant("accepted", {
        "execute_t_s": {"type": "number", "x-unit": "s", "description": "Sim time the request will execute"},
        "sats": {"type": "integer", "minimum": 1, "description": "Satellites targeted"},
    }, ["execute_t_s", "sats"])
    count = {"type": "integer", "minimum": 0}
    completed = _reply_variant("completed", {
        "result": {"type": ["object", "null"], "description": "What the command or fault did (per request)"},
        "found": count | {"description": "Replay: messages published again"},
        "evicted": count | {"description": "Replay: requested messages no longer in the buffer"},
        "from_seq": count, "to_seq": count, "ranges": count | {"description": "Replay: ranges served"},
    }, [])
    rejected = _reply_variant("rejected", {
        "reason": {"type": "string", "enum": [r.value for r in Reason], "description": "Machine-readable reason"},
        "message": {"type": "string", "description": "Human-readable explanation"},
        "field": {"type": "string", "description": "The offending key, argument or topic"},
    }, ["reason", "message"])
    return {"ReplyAccepted": accepted, "ReplyCompleted": completed, "ReplyRejected": rejected,
            "Reply": {"title": "Reply", "description": "accepted then completed, or rejected (at any stage)",
                      "oneOf": [_ref("ReplyAccepted"), _ref("ReplyCompleted"), _ref("ReplyRejected")]}}


def _header_props(with_sat: bool) -> tuple[JSON, list[str]]:
    """Properties of :func:`twin.contract.header` (read from a real header)."""
    sample = header(EXAMPLE_SAT if with_sat else None, "2026-01-01T00:00:00.000Z", 0.0, 1)
    props = {k: _sample_property(k, v) for k, v in sample.items()}
    props["v"] |= {"const": SCHEMA_VERSION}
    return props, [k for k in sample if k != "sat"]


def event_schema() -> JSON:
    props, required = _header_props(True)
    props["sat"]["description"] = "Satellite (absent on fleet/event: a request for several satellites)"
    props |= {
        "run": {"type": "integer", "description": "Run id of the twin process"},
        "seq": {"type": "integer", "minimum": 0, "description": "Event sequence number of the satellite (or of "
                                                                "fleet/event) in this run"},
        "kind": {"type": "string", "enum": list(EVENT_KINDS)},
        "name": {"type": "string", "description": "e.g. latchup, safe_mode_entered, command_completed, a limited "
                                                  "field name for kind limit"},
        "severity": {"type": "string", "enum": list(SEVERITIES)},
        "detail": {"type": "object", "description": "Event-specific data; for requests: request_id (the request's "
                                                    "id), request, args, sats, result"},
    }
    return {"title": "Event", "type": "object", "properties": props, "additionalProperties": False,
            "required": required + ["kind", "name", "severity", "detail"]}


def state_schema() -> JSON:
    return {"title": "Twin state (birth/death)", "type": "object", "additionalProperties": True,
            "description": "Retained. online is the birth, offline the death (last will, or graceful stop). A death "
                           "whose bseq differs from the current birth's is stale and must be ignored.",
            "properties": {
                "v": {"const": 1}, "state": {"type": "string", "enum": ["online", "offline"]},
                "bseq": {"type": "integer", "minimum": 0, "description": "Birth sequence of the connection"},
                "wall_time": {"type": "number", "x-unit": "s", "description": "Unix time of publication"},
                "run": {"type": "integer", "description": "Run id (online only)"},
                "sats": {"type": "integer", "description": "Satellites in the twin (online only)"},
                "dt_s": {"type": "number", "x-unit": "s", "description": "Tick length (online only)"},
                "seed": {"type": "integer", "description": "Random seed (online only)"},
                "prefix": {"type": "string", "description": "Topic prefix (online only)"},
                "packets": {"type": "object", "additionalProperties": {"type": "number"},
                            "description": "Default packet rates in Hz (online only)"},
            }, "required": ["v", "state", "bseq"]}


def catalogue_schema() -> JSON:
    sat = {"type": "object", "properties": {"sat": {"type": "string"}, "norad": {"type": "integer"},
                                            "shell": {"type": "string", "description": "e.g. 550km-53deg"}},
           "required": ["sat", "norad", "shell"]}
    return {"title": "Fleet catalogue", "type": "object", "properties": {"v": {"const": 1}, "sats": {
        "type": "array", "items": sat}}, "required": ["v", "sats"]}


def summary_schema() -> JSON:
    props, required = _header_props(False)
    num = {"type": ["number", "null"]}
    count = {"type": "integer", "minimum": 0}
    props |= {"tick": count, "sats": count, "nominal": count, "yellow": count, "red": count, "safe": count,
              "lost": count, "sunlit": count, "in_saa": count, "latched": count,
              "array_power_mw": num | {"x-unit": "MW"}, "payload_power_mw": num | {"x-unit": "MW"},
              "throughput_eops": num | {"x-unit": "EOPS"}, "mean_soc": num | {"x-unit": "1"}}
    return {"title": "Fleet summary (every tick)", "type": "object", "properties": props,
            "required": required + ["tick", "sats"]}


def status_schema() -> JSON:
    props, required = _header_props(False)
    ms = {"type": ["number", "null"]}
    props |= {"tick": {"type": "integer"}, "step_ms": ms | {"x-unit": "ms"}, "lag_s": ms | {"x-unit": "s"},
              "max_lag_s": ms | {"x-unit": "s"},
              "mqtt": {"type": "object", "description": "connected, bseq, connects, published, acked, outstanding, "
                                                        "refused_queue_full, rebirths"},
              "counters": {"type": "object", "additionalProperties": {"type": "integer"},
                           "description": "requests, malformed, unknown_topic, accepted, rejected, rejected_<reason>, "
                                          "replies_<status>, telemetry, events, replayed"},
              "replay_buffer_bytes": {"type": "integer"}}
    return {"title": "Twin status (every few seconds)", "type": "object", "properties": props,
            "required": required + ["tick", "mqtt", "counters"]}


# --- the document ----------------------------------------------------------------------
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
        "CommandRequest": request_schema("command", COMMANDS, fleet=False),
        "FaultRequest": request_schema("fault", FAULTS, fleet=False),
        "FleetCommandRequest": request_schema("command", COMMANDS, fleet=True),
        "FleetFaultRequest": request_schema("fault", FAULTS, fleet=True),
        "ReplayRequest": replay_schema(),
        **reply_schemas(),
        "Event": event_schema(),
        "State": state_schema(),
        "Catalogue": catalogue_schema(),
        "Summary": summary_schema(),
        "Status": status_schema(),
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
                  reply: tuple[str, str] | None = None) -> None:
        op: JSON = {"action": action, "channel": {"$ref": f"#/channels/{cid}"}, "summary": summary,
                    "messages": [{"$ref": f"#/channels/{cid}/messages/{k}"} for k in channels[cid]["messages"]],
                    "bindings": _mqtt_op(qos, retain)}
        if reply is not None:
            rcid, where = reply
            op["reply"] = {"address": {"location": "$message.payload#/reply_to", "description": where},
                           "channel": {"$ref": f"#/channels/{rcid}"},
                           "messages": [{"$ref": f"#/channels/{rcid}/messages/reply"}]}
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
        "summary": _message("summary", "Fleet summary", "Summary", "Fleet aggregates, every tick"),
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
    }

    channel("state", topics.state, {"state": "state"}, "Twin birth/death (retained, QoS 1); the death is the "
            "MQTT last will")
    channel("catalogue", topics.catalogue, {"catalogue": "catalogue"}, "Satellites, NORAD ids, shells (retained)")
    channel("summary", topics.summary, {"summary": "summary"}, "Fleet aggregates per tick")
    channel("status", topics.status, {"status": "status"}, "Twin runtime status and counters")
    channel("satEvent", topics.sat(sat, "event"), {"event": "event"}, "Events of one satellite", _SAT_PARAM)
    channel("fleetEvent", topics.fleet("event"), {"event": "event"},
            "Events of requests that targeted several satellites")
    channel("satCommand", topics.sat(sat, "cmd"), {"command": "command"}, "Commands for one satellite", _SAT_PARAM)
    channel("satFault", topics.sat(sat, "fault"), {"fault": "fault"}, "Fault injections for one satellite",
            _SAT_PARAM)
    channel("fleetCommand", topics.fleet("cmd"), {"command": "fleetCommand"}, "Fleet-wide commands (select)")
    channel("fleetFault", topics.fleet("fault"), {"fault": "fleetFault"}, "Fleet-wide fault injections (select)")
    channel("fleetReplay", topics.replay, {"replay": "replay"}, "Telemetry replay requests")
    channel("satReply", topics.sat(sat, "reply"), {"reply": "reply"},
            "Replies to requests on the satellite's cmd/fault topics (MQTT 3.1.1 clients, or no response topic)",
            _SAT_PARAM)
    channel("fleetReply", topics.fleet("reply"), {"reply": "reply"},
            "Replies to fleet requests and replay requests without a response topic")
    channel("errors", topics.errors, {"reply": "reply"},
            "Rejections of messages that cannot be routed (unknown topic under the prefix)")
    channel("responseTopic", None, {"reply": "reply"},
            "The MQTT 5 response topic (or reply_to) chosen by the requester; replies carry its correlation data")

    operation("publishState", "send", "state", "Birth on connect, death as last will or on stop", 1, True)
    operation("publishCatalogue", "send", "catalogue", "On every connection", 1, True)
    operation("publishSummary", "send", "summary", "Every tick", 1)
    operation("publishStatus", "send", "status", "Every few seconds of sim time", 1)
    operation("publishSatEvent", "send", "satEvent", "As events happen", 1)
    operation("publishFleetEvent", "send", "fleetEvent", "As fleet request events happen", 1)
    operation("replySatellite", "send", "satReply", "Replies to satellite requests", 1)
    operation("replyFleet", "send", "fleetReply", "Replies to fleet and replay requests", 1)
    operation("replyError", "send", "errors", "Rejections that have no request topic to answer on", 1)
    operation("replyResponseTopic", "send", "responseTopic", "Replies to a requester's own topic", 1)
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

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Orbitwin fleet twin MQTT contract",
            "version": f"{CONTRACT_VERSION}.{SCHEMA_VERSION}.0",
            "description": (
                f"Telemetry, events, birth/death and request/reply of the Orbitwin fleet twin under `{prefix}`. "
                "Generated from the code by `python -m twin.asyncapi`; see docs/mqtt.md for the guide. "
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
    p = argparse.ArgumentParser(prog="python -m twin.asyncapi", description=__doc__.splitlines()[0])
    p.add_argument("--prefix", default=DEFAULT_PREFIX)
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    a = p.parse_args(argv)
    doc = asyncapi_document(a.prefix)
    sys.stdout.write(to_yaml(doc) if a.format == "yaml" else json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""JSON Schemas of the MQTT contract's payloads, built from the code (used by twin.asyncapi).

Here: what comes in, requests (commands, faults, selectors, replays, the signature of a signed
request) and the board bridge's messages. The rest lives next to it and is re-exported from here:
:mod:`twin.contract.asyncapi_common` (constants, envelope), :mod:`twin.contract.asyncapi_fleet`
(telemetry, frames, state, catalogue, summary, status, network frames) and
:mod:`twin.contract.asyncapi_replies` (replies, events, audit records).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twin.schema.commands import SENSOR_FAULTS, Arg, Spec
from twin.contract.request_parser import MAX_REPLAY_SPAN, MAX_REQUEST_BYTES
from twin.schema.telemetry import FIELDS

# re-exported: twin.contract.asyncapi, twin.contract.asyncapi_route and the tests import them from here
from twin.contract.asyncapi_common import (
    ASYNCAPI_VERSION,
    EVENT_KINDS,
    EXAMPLE_SAT,
    HAS_FRAMES,
    HAS_REPLAY_TOPICS,
    JSON,
    MAX_REPLAY_RANGES,
    MQTT_BINDING_VERSION,
    SEVERITIES,
    _ref,
)
from twin.contract.asyncapi_fleet import (
    catalogue_schema,
    compute_summary_props,
    field_schema,
    frame_schema,
    grid_schema,
    latency_schema,
    state_schema,
    status_schema,
    summary_schema,
    telemetry_schema,
    tle_epoch_schema,
    topology_schema,
)
from twin.contract.asyncapi_replies import (
    _reply_variant,
    audit_schema,
    event_schema,
    job_reply_schemas,
    reply_schemas,
)

__all__ = [
    # requests and board messages (this module)
    "arg_schema", "auth_schema", "board_schemas", "replay_schema", "request_example", "request_schema",
    "selector_schema",
    # re-exported
    "ASYNCAPI_VERSION", "EVENT_KINDS", "EXAMPLE_SAT", "HAS_FRAMES", "HAS_REPLAY_TOPICS", "JSON", "MAX_REPLAY_RANGES",
    "MQTT_BINDING_VERSION", "SEVERITIES", "_ref",
    "catalogue_schema", "compute_summary_props", "field_schema", "frame_schema", "grid_schema", "latency_schema",
    "state_schema", "status_schema", "summary_schema", "telemetry_schema", "tle_epoch_schema", "topology_schema",
    "_reply_variant", "audit_schema", "event_schema", "job_reply_schemas", "reply_schemas",
]


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
                   "reply_to": _ref("ReplyTo"), "auth": _ref("Authenticator")}
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
                                f"(to_seq - from_seq <= {MAX_REPLAY_SPAN} per range), after live telemetry and "
                                f"at a bounded rate; the reply, when the last one has been sent, says how many "
                                f"were held, how many were sent (found) and how many are no longer held (evicted).",
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


# --- board messages ---------------------------------------------------------------------
def board_schemas() -> dict[str, JSON]:
    """Payloads of ``{prefix}/board/{board}/...`` (``orbitwin bridge serial``); board fields from the serial protocol."""
    from orbitwin_fw import messages as fw

    from twin.contract.board_messages import BOARD_JOB, BOARD_MEASUREMENT

    raw: JSON = {name: {"type": "number"} for name in fw.LAYOUTS[fw.PAYLOAD_TELEMETRY][1]}
    for a in BOARD_MEASUREMENT.args:  # what the twin reads, checked on arrival (a bad one is rejected)
        raw[a.name] = {"type": "integer" if a.type == "int" else "number", "minimum": a.min, "maximum": a.max,
                       "description": a.description}
    base = {"v": {"type": "integer"}, "board": {"type": "string"}, "sat": {"type": "string"},
            "wall_time": {"type": "number", "description": "Unix time at the bridge (s)"}}
    job: JSON = {}
    for a in BOARD_JOB.args:  # checked on arrival like the measurements
        job[a.name] = ({"enum": list(a.choices or ())} if a.type == "str" else
                       {"type": "integer" if a.type == "int" else "number", "minimum": a.min, "maximum": a.max}) | (
            {"x-unit": a.unit} if a.unit else {}) | {"description": a.description}
    return {
        "BoardState": {"title": "BoardState", "type": "object", "required": ["board", "sat", "state"],
                       "properties": base | {"state": {"enum": ["online", "offline"]}, "linked": {"type": "boolean"},
                                             "silent": {"type": "boolean"}, "port": {"type": "string"},
                                             "capabilities": {"type": "object"}}},
        "BoardTelemetry": {"title": "BoardTelemetry", "type": "object", "required": ["board", "sat", "seq", "raw"],
                           "properties": base | {"seq": {"type": "integer"}, "linked": {"type": "boolean"},
                                                 "raw": {"type": "object", "properties": raw,
                                                         "required": [a.name for a in BOARD_MEASUREMENT.args],
                                                         "description": "PAYLOAD_TELEMETRY of the serial protocol"}}},
        "BoardJob": {"title": "BoardJob", "type": "object", "required": ["board", "sat", *job],
                     "properties": base | job,
                     "description": "The end of a job the board ran (JOB_DONE of the serial protocol); lost: the "
                                    "board reset or was unplugged while it held the job, or never got it"},
        "BoardRequest": {"title": "BoardRequest", "type": "object",
                         "description": "A command (set_load, set_throttle, power_cycle, reset, hardware_reset, "
                                        "ping, run_job with job_id and ops, cancel_job with job_id) or a fault (seu, "
                                        "seu_double, latchup, hang) for the board",
                         "properties": {"command": {"type": "string"}, "fault": {"type": "string"},
                                        "args": {"type": "object"}, "id": {"type": "string"}}},
    }


# --- signed requests ----------------------------------------------------------------------
def auth_schema() -> JSON:
    """The ``auth`` object of a signed request (:mod:`twin.contract.request_auth`)."""
    from twin.contract.request_auth import AUTH_FIELDS, DOMAIN

    props: JSON = {
        "client": {"type": "string", "minLength": 1, "maxLength": 128,
                   "description": "The sender's MQTT client id as it states it (covered by the signature)"},
        "iat": {"type": "integer", "minimum": 0, "x-unit": "s",
                "description": "Issue time, Unix seconds of the sender's wall clock; the twin takes it within "
                               "--auth-window (default 30 s) of its own wall clock, else stale"},
        "kid": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$", "description": "Key id (the twin's key file)"},
        "nonce": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$",
                  "description": "New for every request; one seen before with the key within the window: replayed"},
        "sig": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                "description": f"HMAC-SHA256 (hex) under the key's secret of {DOMAIN.decode()!r} LF topic LF the "
                               f"canonical JSON of the request with auth but without auth.sig"},
    }
    assert set(props) == set(AUTH_FIELDS)
    return {"type": "object", "title": "Authenticator", "properties": props, "required": list(AUTH_FIELDS),
            "additionalProperties": False,
            "description": "Signs the request (required by a twin started with --keys). The payload must be canonical "
                           "JSON (sorted keys, no whitespace, NFC strings, no duplicate keys) with sig in place; "
                           "see docs/mqtt.md#signed-requests"}

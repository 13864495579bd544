"""JSON Schemas of the MQTT contract's payloads, built from the code (used by twin.asyncapi)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from twin.schema.commands import SENSOR_FAULTS, Arg, Reason, Spec
from twin.contract.topics import CONTRACT_VERSION, Topics, header
from twin.contract import request_parser as _requests
from twin.contract.request_parser import MAX_REPLAY_SPAN, MAX_REQUEST_BYTES
from twin.core.catalogue import TLE_EPOCH_POLICIES
from twin.core.compute.coupling import LATENCY_WINDOW_S
from twin.schema.compute_regions import latency_region_keys
from twin.core.compute.placement import POLICIES as COMPUTE_POLICIES
from twin.schema import dose_regions, fleet_grid
from twin.schema.codec import CODECS, codec
from twin.schema.telemetry import FIELD_BY_NAME, FIELDS, PACKET_FIELDS, SCHEMA_VERSION, Field

ASYNCAPI_VERSION = "3.0.0"
MQTT_BINDING_VERSION = "0.2.0"
EVENT_KINDS = ("limit", "fdir", "seu", "sel", "fault", "command", "hil")  # twin.core.events.Event.kind
SEVERITIES = ("info", "warning", "critical")
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
    s: JSON = codec(f).json_schema() | {"description": f.description, "x-unit": f.unit}
    if f.enum:
        s["enum"] = sorted(f.enum)
        s["x-enum-names"] = {str(k): v for k, v in sorted(f.enum.items())}
    if f.limits is not None:
        s["x-limits"] = {k: v for k, v in asdict(f.limits).items() if v is not None}
    return s


def _zeros(packet: str) -> dict[str, np.ndarray]:
    """One satellite's packet of zeros, each field typed as the encoders receive it."""
    return {f: np.zeros(1, dtype=codec(f).numpy) for f in PACKET_FIELDS[packet]}


def _telemetry_sample(packet: str) -> JSON:
    """One payload rendered by the real encoder (zeros), to read the envelope it writes."""
    from twin.contract.telemetry_encoder import PacketEncoder

    enc = PacketEncoder(packet, [EXAMPLE_SAT], [44714], Topics())
    ((_, payload),) = enc.encode(_zeros(packet), np.array([0]), np.array([0]), 1, "2026-01-01T00:00:00.000Z", 0.0)
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
    from twin.contract.telemetry_encoder import FrameEncoder  # type: ignore[attr-defined]

    enc = FrameEncoder(packet, [EXAMPLE_SAT], [44714], Topics())
    _, payload = enc.encode(_zeros(packet), np.array([0]), np.array([0]), 1, "2026-01-01T00:00:00.000Z", 0.0)
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
        "authenticated": {"type": "boolean", "description": "Requests (cmd, fault, replay): true when the request "
                                                            "carried a verified signature"},
        "kid": {"type": "string", "description": "The key id of a verified signed request"},
    } | extra
    return {"title": f"Reply {status}", "type": "object", "properties": props, "additionalProperties": False,
            "required": ["v", "status", "id", "t", "t_s", *required]}


def reply_schemas() -> dict[str, JSON]:
    accepted = _reply_variant("accepted", {
        "execute_t_s": {"type": "number", "x-unit": "s", "description": "Sim time the request will execute"},
        "sats": {"type": "integer", "minimum": 1, "description": "Satellites targeted"},
        "late_s": {"type": "number", "exclusiveMinimum": 0, "x-unit": "s",
                   "description": "Only when the request's time had passed on arrival: how far past it the request "
                                  "executes (it runs at once, at execute_t_s)"},
    }, ["execute_t_s", "sats"])
    count = {"type": "integer", "minimum": 0}
    completed = _reply_variant("completed", {
        "result": {"type": ["object", "null"], "description": "What the command or fault did (per request)"},
        "found": count | {"description": "Replay: messages published again"},
        "evicted": count | {"description": "Replay: requested messages no longer in the buffer"},
        "held": count | {"description": "Replay: requested messages the buffer holds (found < held: truncated)"},
        "truncated": {"const": True, "description": "Replay: more were held than one request publishes again; "
                                                   "found are the earliest, ask again for the rest"},
        "limit": count | {"description": "Replay: messages one request publishes again at most"},
        "from_seq": count, "to_seq": count, "ranges": count | {"description": "Replay: ranges served"},
    }, [])
    rejected = _reply_variant("rejected", {
        "reason": {"type": "string", "enum": [r.value for r in Reason], "description": "Machine-readable reason"},
        "message": {"type": "string", "description": "Human-readable explanation"},
        "field": {"type": "string", "description": "The offending key, argument or topic"},
    }, ["reason", "message"])
    out = {"ReplyAccepted": accepted, "ReplyCompleted": completed, "ReplyRejected": rejected} | job_reply_schemas(accepted)
    return out | {"Reply": {"title": "Reply", "description": "accepted then completed, or rejected (at any stage); a "
                                                         "run_job request: queued, then its job's life "
                                                         "(twin.runtime.job_replies)",
                            "oneOf": [_ref(k) for k in out]}}


def job_reply_schemas(accepted: JSON) -> dict[str, JSON]:
    """Replies through a compute job's life (``run_job``; :mod:`twin.runtime.job_replies`)."""
    from twin.core.compute.jobs import END_REASONS, OUTCOMES

    count = {"type": "integer", "minimum": 0}
    wh = {"type": "number", "x-unit": "Wh"}
    job = {"job_id": count | {"description": "The job's id (the same in every reply of its life)"},
           "job_t_s": {"type": "number", "x-unit": "s", "description": "Sim time of the step in the job's life"}}
    queued = dict(accepted, title="Reply queued")
    queued["properties"] = dict(accepted["properties"], status={"const": "queued"})
    placed = _reply_variant("accepted", job | {"placement": {
        "type": "object", "additionalProperties": False, "required": ["sat", "device", "delay_ms", "ready_t_s"],
        "properties": {"sat": {"type": "string"}, "device": count,
                       "delay_ms": {"type": "number", "x-unit": "ms", "description": "One-way delay source to satellite"},
                       "ready_t_s": {"type": "number", "x-unit": "s", "description": "When its input has arrived"}}}},
        ["job_id", "job_t_s", "placement"])
    placed["title"] = "Reply accepted (job placed)"
    migrated = _reply_variant("migrated", job | {
        "from": {"type": "string"}, "to": {"type": "string"}, "bytes": {"type": "number", "x-unit": "B"},
        "arrives_t_s": {"type": "number", "x-unit": "s"}, "done_dev_s": {"type": "number", "x-unit": "s"}},
        ["job_id", "from", "to"])
    requeued = _reply_variant("requeued", job | {
        "sat": {"type": ["string", "null"]}, "why": {"type": "string", "description": "device_failed, "
                                                     "leaving_jurisdiction, or a board's board_<status>"},
        "resume_from_dev_s": {"type": "number", "x-unit": "s"}}, ["job_id", "why"])
    done = _reply_variant("completed", job | {
        "outcome": {"enum": list(OUTCOMES)}, "sat": {"type": ["string", "null"]},
        "latency_ms": {"type": ["number", "null"], "x-unit": "ms", "description": "Interactive: measured round trip"},
        "energy_wh": wh, "battery_wh": wh, "array_wh": wh, "upsets": count, "migrations": count,
        "bytes_moved": {"type": "number", "x-unit": "B"},
        "board_s": {"type": ["number", "null"], "x-unit": "s", "description": "Run time a board in the loop measured"},
        "downlink_gateway": {"type": ["string", "null"], "description": "Jurisdiction: the gateway in it the result "
                                                                         "went down through"}},
        ["job_id", "outcome", "energy_wh", "battery_wh", "array_wh"])
    done["title"] = "Reply completed (job)"
    ended = {"reason": {"enum": list(END_REASONS)}, "message": {"type": "string"}, "sat": {"type": ["string", "null"]},
             "energy_wh": wh}
    failed = _reply_variant("failed", job | ended, ["job_id", "reason", "message"])
    rejected = _reply_variant("rejected", job | ended, ["job_id", "reason", "message"])
    rejected["title"] = "Reply rejected (job)"
    return {"ReplyQueued": queued, "ReplyJobAccepted": placed, "ReplyMigrated": migrated, "ReplyRequeued": requeued,
            "ReplyJobCompleted": done, "ReplyFailed": failed, "ReplyJobRejected": rejected}


def _header_props(with_sat: bool) -> tuple[JSON, list[str]]:
    """Properties of :func:`twin.contract.topics.header` (read from a real header)."""
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
                "rates": {"type": "object", "additionalProperties": {"type": ["number", "null"]},
                          "description": "Rates of the summary and status topics in Hz, null = every tick "
                                         "(online only)"},
                "overload": {"type": "string", "enum": ["wait", "shed"],
                             "description": "What the twin does when the broker link cannot keep up (online only)"},
                "tle_epoch": tle_epoch_schema() | {"description": "The stale-catalogue policy applied (online only)"},
            }, "required": ["v", "state", "bseq"]}


def tle_epoch_schema() -> JSON:
    """The ``tle_epoch`` of the birth and the catalogue: what the twin did with the catalogue's epochs."""
    return {"type": "object", "additionalProperties": False, "properties": {
        "policy": {"type": "string", "enum": list(TLE_EPOCH_POLICIES), "description": "--tle-epoch as asked"},
        "applied": {"type": "string", "enum": ["keep", "shift"],
                    "description": "keep: the TLEs propagated as given; shift: every epoch moved by shift_days "
                                   "(same mean elements: the catalogue's constellation, not the real satellites' "
                                   "positions at the start)"},
        "catalogue_epoch": {"type": ["string", "null"], "format": "date-time",
                            "description": "Median epoch of the TLE file as read"},
        "start_minus_epoch_days": {"type": "number", "x-unit": "d",
                                   "description": "The run's start minus the catalogue epoch"},
        "shift_days": {"type": "number", "x-unit": "d", "description": "How far every epoch was moved (0 if kept)"},
        "threshold_days": {"type": "number", "x-unit": "d",
                           "description": "auto shifts when |start_minus_epoch_days| exceeds this"},
    }, "required": ["policy", "applied", "catalogue_epoch", "start_minus_epoch_days", "shift_days",
                    "threshold_days"]}


def catalogue_schema() -> JSON:
    sat = {"type": "object", "properties": {"sat": {"type": "string"}, "norad": {"type": "integer"},
                                            "shell": {"type": "string", "description": "e.g. 550km-53deg"}},
           "required": ["sat", "norad", "shell"]}
    return {"title": "Fleet catalogue", "type": "object", "properties": {"v": {"const": 1}, "sats": {
        "type": "array", "items": sat}, "tle_epoch": tle_epoch_schema()}, "required": ["v", "sats"]}


def summary_schema() -> JSON:
    props, required = _header_props(False)
    num = {"type": ["number", "null"]}
    count = {"type": "integer", "minimum": 0}
    props |= {"tick": count, "sats": count, "nominal": count, "yellow": count, "red": count, "safe": count,
              "lost": count, "sunlit": count, "in_saa": count, "latched": count,
              "boards": count | {"description": "Live satellites whose payload is a hardware board (payload_source > 0)"},
              "array_power_mw": num | {"x-unit": "MW"}, "payload_power_mw": num | {"x-unit": "MW"},
              "throughput_eops": num | {"x-unit": "EOPS"}, "mean_soc": num | {"x-unit": "1"},
              **{r.summary_field: {"type": "number", "minimum": 0, "x-unit": dose_regions.SUMMARY_UNIT,
                                   "description": f"Dose rate summed over the live satellites in region {r.label}: "
                                                  f"{r.description} (twin.schema.dose_regions)"}
                 for r in dose_regions.DOSE_REGIONS},
              "grid": grid_schema(),
              "net_partitioned": count | {"description": "Network: live satellites with no route to any gateway"},
              "net_links_up": count | {"description": "Network: laser links up in the fleet"},
              "net_overloaded_links": count | {"description": "Network: links (laser and ground) loaded above "
                                                              "their capacity"},
              "net_gw_delay_p50_ms": num | {"x-unit": "ms", "description": "Network: median one-way delay of the "
                                                                          "live routed satellites to their nearest "
                                                                          "gateway (null when none is routed)"},
              "net_gw_delay_p99_ms": num | {"x-unit": "ms", "description": "Network: 99th percentile of the same"},
              **compute_summary_props()}
    return {"title": "Fleet summary (every tick by default)", "type": "object", "properties": props,
            "required": required + ["tick", "sats"],
            "description": "The net_* aggregates only from a twin with the network model (docs/network.md); "
                           "the compute keys (compute_policy, jobs_*, job_*, compute_*_wh, throttled_device_h, "
                           "interactive_latency_*) only from a twin with compute placement on "
                           "(docs/physics.md#compute-jobs)"}


def compute_summary_props() -> JSON:
    """The fleet summary's compute keys (:meth:`twin.core.compute.coupling.ComputeCoupling.summary`)."""
    count = {"type": "integer", "minimum": 0}
    since = "since start"
    wh = {"type": "number", "minimum": 0, "x-unit": "Wh"}
    window = f"over the last {LATENCY_WINDOW_S / 3600:g} h of sim time (null when none completed)"
    return {
        "compute_policy": {"type": "string", "enum": list(COMPUTE_POLICIES),
                           "description": "Compute: the scheduler's placement policy"},
        "jobs_submitted": count | {"description": f"Compute: jobs submitted {since}"},
        "jobs_queued": count | {"description": "Compute: jobs waiting for a device now"},
        "jobs_running": count | {"description": "Compute: jobs holding a device now (running or migrating)"},
        "jobs_completed": count | {"description": f"Compute: jobs completed {since} (corrupt results included)"},
        "jobs_failed": count | {"description": f"Compute: jobs failed {since} (their deadline passed before they "
                                              "completed)"},
        "jobs_rejected": count | {"description": f"Compute: jobs rejected {since} (malformed, or no satellite could "
                                                "take them)"},
        "jobs_interactive_completed": count | {"description": f"Compute: interactive jobs completed {since}"},
        "jobs_deadline_missed": count | {"description": f"Compute: jobs that completed late (past their deadline or "
                                                       f"latency bound) or failed at their deadline {since}"},
        "jobs_corrupted": count | {"description": f"Compute: completed jobs whose result an upset corrupted {since}"},
        "job_migrations": count | {"description": f"Compute: job moves between satellites {since}"},
        "job_bytes_moved": {"type": "number", "minimum": 0, "x-unit": "B",
                            "description": f"Compute: job state moved over the links by migrations {since}"},
        "compute_battery_wh": wh | {"description": f"Compute: accelerator energy of the jobs drawn from the "
                                                   f"batteries {since}"},
        "compute_array_wh": wh | {"description": f"Compute: accelerator energy of the jobs from the solar arrays "
                                                 f"{since}"},
        "throttled_device_h": {"type": "number", "minimum": 0, "x-unit": "h",
                               "description": f"Compute: device-hours of busy accelerators delivering less than "
                                              f"the scheduler planned {since} (throttling, power cap, payload off)"},
        "interactive_latency_p50_ms": {"type": ["number", "null"], "minimum": 0, "x-unit": "ms",
                                       "description": f"Compute: median interactive job latency (submit to answer "
                                                      f"at the user) {window}"},
        "interactive_latency_p99_ms": {"type": ["number", "null"], "minimum": 0, "x-unit": "ms",
                                       "description": f"Compute: 99th percentile of the same {window}"},
    } | {key: {"type": ["number", "null"], "minimum": 0, "x-unit": "ms",
               "description": f"Compute: the {key.split('_')[2]} of the interactive latency of jobs from cities in "
                              f"{key.split('_ms_')[1].replace('_', ' ')} {window}"}
         for key in latency_region_keys()}


def _columns(item: JSON, what: str, unit: str | None = None) -> JSON:
    return {"type": "array", "items": item, "description": what} | ({"x-unit": unit} if unit else {})


def topology_schema() -> JSON:
    """``{prefix}/fleet/topology`` (:class:`twin.contract.network_frames.TopologyEncoder`)."""
    props, required = _header_props(False)
    count = {"type": "integer", "minimum": 0}
    index = {"type": "integer", "minimum": 0}
    props |= {
        "run": {"type": "integer", "description": "Run id of the twin process"},
        "tick": count | {"description": "Twin tick number"},
        "links_up": count | {"description": "Laser links up (the number of edges)"},
        "overloaded": count | {"description": "Links (laser and ground) above their capacity"},
        "sats": {"type": "array", "items": {"type": "string"},
                 "description": "The fleet in catalogue order: edges index this list"},
        "edges": {"type": "object", "additionalProperties": False, "required": ["a", "b", "delay_ms", "util"],
                  "description": "One laser link up per row k: sats[a[k]] - sats[b[k]] with a[k] < b[k]",
                  "properties": {
                      "a": _columns(index, "Lower satellite index of each link"),
                      "b": _columns(index, "Higher satellite index of each link"),
                      "delay_ms": _columns({"type": "number", "minimum": 0}, "One-way propagation delay", "ms"),
                      "util": _columns({"type": "number", "minimum": 0},
                                       "Utilisation: offered load / capacity (> 1 overloaded)", "1")}},
    }
    return {"title": "Fleet topology (laser links)", "type": "object", "properties": props,
            "additionalProperties": False, "required": required + ["run", "tick", "links_up", "overloaded", "sats",
                                                                   "edges"]}


def latency_schema() -> JSON:
    """``{prefix}/fleet/latency`` (:class:`twin.contract.network_frames.LatencyEncoder`)."""
    props, required = _header_props(False)
    count = {"type": "integer", "minimum": 0}
    index = {"type": "integer", "minimum": 0}
    num = {"type": ["number", "null"], "minimum": 0}
    props |= {
        "run": {"type": "integer", "description": "Run id of the twin process"},
        "tick": count | {"description": "Twin tick number the frame was published at"},
        "cities": {"type": "array", "items": {"type": "string"}, "description": "The user endpoints (cities)"},
        "reachable_pairs": count | {"description": "City pairs with a route over the mesh"},
        "pairs": {"type": "object", "additionalProperties": False,
                  "required": ["src", "dst", "rtt_ms", "fibre_rtt_ms", "stretch"],
                  "description": "Every unordered pair of distinct cities once, row k: cities[src[k]] - "
                                 "cities[dst[k]] with src[k] < dst[k]",
                  "properties": {
                      "src": _columns(index, "First city of each pair"),
                      "dst": _columns(index, "Second city of each pair"),
                      "rtt_ms": _columns(num, "Round trip over the mesh (null when no route)", "ms"),
                      "fibre_rtt_ms": _columns({"type": "number", "minimum": 0},
                                               "Round trip of a great-circle fibre between the two cities", "ms"),
                      "stretch": _columns(num, "rtt_ms / fibre_rtt_ms (null when no route)", "1")}},
    }
    return {"title": "City-pair latency matrix", "type": "object", "properties": props,
            "additionalProperties": False,
            "description": "t and t_s are the sim time the matrix was computed at",
            "required": required + ["run", "tick", "cities", "reachable_pairs", "pairs"]}


def grid_schema() -> JSON:
    """The summary's ``grid``: one array of every cell per field (twin.schema.fleet_grid)."""
    props: JSON = {"cell_deg": {"const": fleet_grid.CELL_DEG, "x-unit": "deg",
                                "description": "Cell size in latitude and longitude"}}
    for f in fleet_grid.GRID_FIELDS:
        item = CODECS[f.dtype].json_schema() | ({"minimum": 0} if f.dtype == "int" else {})
        props[f.name] = {"type": "array", "items": item, "minItems": fleet_grid.N_CELLS,
                         "maxItems": fleet_grid.N_CELLS, "description": f.description} | (
                             {"x-unit": f.unit} if f.unit else {})
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False,
            "description": f"The fleet binned on {fleet_grid.ROWS} x {fleet_grid.COLS} cells of "
                           f"{fleet_grid.CELL_DEG} deg, row-major from latitude -90, longitude -180 deg "
                           f"(cell k: latitude -90 + {fleet_grid.CELL_DEG} * (k // {fleet_grid.COLS}), longitude "
                           f"-180 + {fleet_grid.CELL_DEG} * (k % {fleet_grid.COLS}), south-west corner); live "
                           "satellites with a position only; empty cells included. Only in the first summary at or "
                           f"after every {fleet_grid.PERIOD_S:g} s of sim time"}


def status_schema() -> JSON:
    props, required = _header_props(False)
    ms = {"type": ["number", "null"]}
    props |= {"tick": {"type": "integer"}, "step_ms": ms | {"x-unit": "ms"}, "lag_s": ms | {"x-unit": "s"},
              "max_lag_s": ms | {"x-unit": "s", "description": "Largest lag_s: how late a tick started, slow "
                                                              "ticks and backpressure waits included"},
              "publish_lag_s": ms | {"x-unit": "s", "description": "Last tick's messages at the broker minus the "
                                                                  "wall time the tick was due"},
              "max_publish_lag_s": ms | {"x-unit": "s"},
              "overload": {"type": "string", "enum": ["wait", "shed"]},
              "max_backlog": {"type": "integer", "description": "Messages the broker has not taken that the twin "
                                                                "allows before it waits or sheds"},
              "backpressure_waits": {"type": "integer"}, "backpressure_wait_s": ms | {"x-unit": "s"},
              "shed": {"type": "object", "additionalProperties": {"type": "integer"},
                       "description": "Per-satellite telemetry messages shed per packet (overload shed); each "
                                      "one is a gap in its satellite's seq"},
              "shed_ticks": {"type": "integer"},
              "link_rate_msgs_s": ms | {"description": "Delivery rate measured while the link was saturated"},
              "mqtt": {"type": "object", "description": "connected, bseq, connects, published, acked, outstanding, "
                                                        "refused_queue_full, rebirths, lost_qos0_disconnected, "
                                                        "queue_full_waits"},
              "counters": {"type": "object", "additionalProperties": {"type": "integer"},
                           "description": "requests, malformed, unknown_topic, accepted, rejected, rejected_<reason>, "
                                          "replies_<status>, telemetry, events, replayed, audited (audit records "
                                          "published), request_budget_ticks (ticks whose request time ran out)"},
              "replay_buffer_bytes": {"type": "integer"},
              "auth": {"type": "object", "description": "Signed requests: required (bool), keys (count), window_s, "
                                                        "nonces (remembered now)"}}
    return {"title": "Twin status (every few seconds)", "type": "object", "properties": props,
            "required": required + ["tick", "mqtt", "counters"]}


# --- the document ----------------------------------------------------------------------


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


# --- signed requests and the audit trail -------------------------------------------------
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


def audit_schema() -> JSON:
    """One record on ``{prefix}/audit`` (``TwinService._audit``)."""
    props, required = _header_props(False)
    text = {"type": ["string", "null"]}
    props |= {
        "run": {"type": "integer", "description": "Run id of the twin process"},
        "seq": {"type": "integer", "minimum": 0, "description": "Audit sequence number of this run"},
        "wall_time": {"type": "number", "x-unit": "s", "description": "The twin's wall clock (Unix s) at the check"},
        "topic": {"type": "string", "description": "The request's topic"},
        "id": {"type": "string", "description": "The request's id (as in its replies)"},
        "request": text | {"description": "Command or fault name the request gave"},
        "kid": text | {"description": "Key id the request claimed (verified only when result is accepted)"},
        "client": text | {"description": "Client id: auth.client of a signed request, else the MQTT 5 user "
                                         "property client_id (unverified)"},
        "authenticated": {"type": "boolean", "description": "A verified signature"},
        "result": {"type": "string", "enum": ["accepted", "rejected"]},
        "reason": {"type": ["string", "null"], "enum": [*[r.value for r in Reason], None],
                   "description": "Why it was rejected (null when accepted)"},
    }
    return {"title": "Audit record", "type": "object", "properties": props, "additionalProperties": False,
            "required": required + ["run", "seq", "topic", "id", "authenticated", "result", "reason"]}


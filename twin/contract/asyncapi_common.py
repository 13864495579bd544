"""Shared pieces of the AsyncAPI document's payload schemas (:mod:`twin.contract.asyncapi_payloads`).

The document's version constants, the envelope keys' descriptions and the schema of one
envelope or header key read from a value the code really produced (units in ``x-unit``: s).
"""

from __future__ import annotations

from typing import Any

from twin.contract import request_parser as _requests
from twin.contract.topics import Topics, header
from twin.schema.telemetry import SCHEMA_VERSION

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


def _header_props(with_sat: bool) -> tuple[JSON, list[str]]:
    """Properties of :func:`twin.contract.topics.header` (read from a real header)."""
    sample = header(EXAMPLE_SAT if with_sat else None, "2026-01-01T00:00:00.000Z", 0.0, 1)
    props = {k: _sample_property(k, v) for k, v in sample.items()}
    props["v"] |= {"const": SCHEMA_VERSION}
    return props, [k for k in sample if k != "sat"]

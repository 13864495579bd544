"""Parsing untrusted board messages (``{prefix}/board/{board}/state`` and ``/tm``) into typed values.

A serial bridge announces a board (its retained state) and streams its measurements; anyone on
the broker can publish the same topics, retained or not. Everything the twin takes from a board
is checked here, at the boundary, before it reaches the engine: JSON object, types, finiteness
and range. A problem raises :class:`~twin.schema.commands.CommandError` (reason and field),
which the runtime counts and publishes on the board's event topic.

The measurement's fields and ranges come from their definitions, not from new numbers: the
integer counters from their width in the serial protocol's ``PAYLOAD_TELEMETRY`` layout
(:mod:`orbitwin_fw.messages`), the utilisation from the load set-point's range (both are the
fraction of the accelerators' capacity at work).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from orbitwin_fw import messages as fw
from twin.contract.request_parser import decode_json
from twin.schema.commands import COMMANDS, Arg, CommandError, Reason, Spec, validate

BOARD_STATES = ("online", "offline")
MAX_NAME = 256


def _protocol_arg(name: str, description: str) -> Arg:
    """An integer field of the board's PAYLOAD_TELEMETRY with the range of its wire type."""
    fmt, names = fw.LAYOUTS[fw.PAYLOAD_TELEMETRY]
    code = fmt.lstrip("<>=!")[names.index(name)]
    bits = 8 * struct.calcsize(code)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if code.islower() else (0, 2**bits - 1)
    return Arg(name, "int", "", description, min=lo, max=hi)


_LOAD = next(a for a in COMMANDS["set_payload_load"].args if a.name == "load")
# the part of the board's raw PAYLOAD_TELEMETRY the twin uses (hil_binding.BoardBackend.sample)
BOARD_MEASUREMENT = Spec("board measurement", "What the twin takes from a board's raw telemetry", (
    Arg("utilisation", "float", "1", "Fraction of the board's accelerator capacity at work", min=_LOAD.min,
        max=_LOAD.max),
    _protocol_arg("latched", "Non-zero while the board's device is in latch-up"),
    _protocol_arg("seu_corrected", "Upsets the board's ECC corrected since its boot"),
    _protocol_arg("seu_uncorrectable", "Upsets the board's ECC could not correct since its boot"),
))
_MEASUREMENT_TABLE = {BOARD_MEASUREMENT.name: BOARD_MEASUREMENT}


@dataclass(frozen=True)
class BoardState:
    """A board's retained state: ``online`` bound to ``sat`` (``linked``: its serial link is up), or ``offline``."""

    state: str
    sat: str | None
    linked: bool


@dataclass(frozen=True)
class BoardMeasurement:
    """The checked part of one board telemetry message."""

    utilisation: float  # 0..1
    latched: bool
    seu_corrected: int  # >= 0, since the board's boot
    seu_uncorrectable: int
    linked: bool


def _linked(obj: dict[str, Any]) -> bool:
    v = obj.get("linked", True)
    if not isinstance(v, bool):
        raise CommandError(Reason.BAD_ARGUMENT, "linked must be true or false", "linked")
    return v


def _name(obj: dict[str, Any], key: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v or len(v) > MAX_NAME or not v.isprintable():
        raise CommandError(Reason.BAD_ARGUMENT, f"{key} must be a printable name of 1..{MAX_NAME} characters", key)
    return v


def parse_board_state(payload: bytes) -> BoardState:
    """``{"state": "online", "sat": "STARLINK-1008", "linked": true, ...}``; an empty payload (a cleared
    retained message) is ``offline``."""
    if not payload:
        return BoardState("offline", None, False)
    obj = decode_json(payload)
    state = obj.get("state")
    if state not in BOARD_STATES:
        raise CommandError(Reason.BAD_ARGUMENT, f"state must be one of {', '.join(BOARD_STATES)}", "state")
    if state == "offline":
        return BoardState("offline", obj["sat"] if isinstance(obj.get("sat"), str) else None, False)
    return BoardState("online", _name(obj, "sat"), _linked(obj))


def parse_board_measurement(payload: bytes) -> BoardMeasurement:
    """A board telemetry message: ``raw`` must hold every field of :data:`BOARD_MEASUREMENT`, each
    a finite number of its type within its range (other raw fields are not read)."""
    obj = decode_json(payload)
    raw = obj.get("raw")
    if not isinstance(raw, dict):
        raise CommandError(Reason.BAD_ARGUMENT, "raw must be an object of the board's measurements", "raw")
    used = {a.name: raw.get(a.name) for a in BOARD_MEASUREMENT.args}
    try:
        _, v = validate(_MEASUREMENT_TABLE, BOARD_MEASUREMENT.name, used)
    except CommandError as exc:
        raise CommandError(exc.reason, exc.message, f"raw.{exc.field}" if exc.field else "raw") from None
    return BoardMeasurement(v["utilisation"], v["latched"] != 0, v["seu_corrected"], v["seu_uncorrectable"],
                            _linked(obj))

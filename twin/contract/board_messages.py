"""Parsing untrusted board messages (``{prefix}/board/{board}/state``, ``/tm`` and ``/job``) into typed values.

A serial bridge announces a board (its retained state) and streams its measurements; anyone on
the broker can publish the same topics, retained or not. Everything the twin takes from a board
is checked here, at the boundary, before it reaches the engine: JSON object, types, finiteness
and range. A problem raises :class:`~twin.schema.commands.CommandError` (reason and field),
which the runtime counts and publishes on the board's event topic.

The measurement's fields and ranges come from their definitions, not from new numbers: the
integer counters from their width in the serial protocol's ``PAYLOAD_TELEMETRY`` layout
(:mod:`orbitwin_fw.messages`), the utilisation from the load set-point's range (both are the
fraction of the accelerators' capacity at work). A job's end takes its counters' ranges from the
``JOB_DONE`` layout.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from orbitwin_fw import messages as fw
from twin.contract.request_parser import decode_json
from twin.schema.commands import COMMANDS, Arg, CommandError, Reason, Spec, validate

BOARD_STATES = ("online", "offline")
MAX_NAME = 256


def _protocol_arg(name: str, description: str, mtype: int = fw.PAYLOAD_TELEMETRY) -> Arg:
    """An integer field of the board's PAYLOAD_TELEMETRY (or ``mtype``) with the range of its wire type."""
    fmt, names = fw.LAYOUTS[mtype]
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
# the end of a job the board ran (JOB_DONE as the serial bridge publishes it; ``lost``: the bridge's
# word for a job the board dropped in a reset or never got)
BOARD_JOB_STATUSES = (*(fw.JOB_STATUS_NAMES[k] for k in sorted(fw.JOB_STATUS_NAMES)), "lost")
_BUSY_MAX_S = (2**32 - 1) / 1e6  # JOB_DONE.busy_us is a u32 of microseconds
BOARD_JOB = Spec("board job", "The end of a job a board ran (JOB_DONE)", (
    _protocol_arg("job_id", "The job's id (the twin's job id)", fw.JOB_DONE),
    _protocol_arg("ops_done", "Unit jobs (int8 16x16 matrix-vector products) the board ran for it", fw.JOB_DONE),
    Arg("busy_s", "float", "s", "The board-measured run time of the job", min=0.0, max=_BUSY_MAX_S),
    _protocol_arg("upsets", "Uncorrectable upsets the board's scrub detected while the job ran", fw.JOB_DONE),
    Arg("status", "str", "", "How it ended", choices=BOARD_JOB_STATUSES),
))
_JOB_TABLE = {BOARD_JOB.name: BOARD_JOB}


@dataclass(frozen=True)
class BoardState:
    """A board's retained state: ``online`` bound to ``sat`` (``linked``: its serial link is up), or ``offline``."""

    state: str
    sat: str | None
    linked: bool
    jobs_per_s_max: float | None = None  # the board's unit-job rate at full duty (its CAPABILITIES), if known


@dataclass(frozen=True)
class BoardMeasurement:
    """The checked part of one board telemetry message."""

    utilisation: float  # 0..1
    latched: bool
    seu_corrected: int  # >= 0, since the board's boot
    seu_uncorrectable: int
    linked: bool


@dataclass(frozen=True)
class BoardJobResult:
    """The checked end of one board job (``board/{board}/job``)."""

    job_id: int
    ops_done: int
    busy_s: float  # measured on the board
    upsets: int  # uncorrectable, detected while it ran
    status: str  # one of BOARD_JOB_STATUSES


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
    return BoardState("online", _name(obj, "sat"), _linked(obj), _jobs_rate(obj))


def _jobs_rate(obj: dict[str, Any]) -> float | None:
    """``capabilities.jobs_per_s_max`` (absent until the board's handshake: None), a finite number > 0."""
    caps = obj.get("capabilities")
    if caps is None or (isinstance(caps, dict) and caps.get("jobs_per_s_max") is None):
        return None
    v = caps.get("jobs_per_s_max") if isinstance(caps, dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v < 1e12:
        raise CommandError(Reason.BAD_ARGUMENT, "capabilities.jobs_per_s_max must be a finite number > 0",
                           "capabilities.jobs_per_s_max")
    return float(v)


def parse_board_job(payload: bytes) -> BoardJobResult:
    """A board job's end: every field of :data:`BOARD_JOB`, each of its type within its range (others are
    not read)."""
    obj = decode_json(payload)
    _, v = validate(_JOB_TABLE, BOARD_JOB.name, {a.name: obj.get(a.name) for a in BOARD_JOB.args})
    return BoardJobResult(v["job_id"], v["ops_done"], v["busy_s"], v["upsets"], v["status"])


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

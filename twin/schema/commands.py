"""Commands and fault injections: their names, arguments, units, ranges and typed errors.

This is the one definition used by the engine, the MQTT contract and its AsyncAPI document.
Validation turns untrusted arguments into typed values or raises :class:`CommandError` with a
machine-readable reason and the offending field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from twin.schema.telemetry import FIELD_BY_NAME


class Reason(StrEnum):
    """Why a request was rejected."""

    UNKNOWN_SATELLITE = "unknown_satellite"
    UNKNOWN_COMMAND = "unknown_command"
    BAD_ARGUMENT = "bad_argument"
    OUT_OF_RANGE = "out_of_range"
    NOT_NOW = "not_now"
    MALFORMED = "malformed"
    QUEUE_FULL = "queue_full"  # too many requests wait (per client or in total), or a replay queue is full
    TOO_MANY_FAULTS = "too_many_faults"  # the satellite already has the most persistent faults allowed
    # signed requests (twin.contract.request_auth)
    UNAUTHENTICATED = "unauthenticated"  # unsigned where a signature is required, or not verifiable
    STALE = "stale"  # issue time outside the window around the twin's wall clock
    REPLAYED = "replayed"  # nonce already used with this key within the window
    FORBIDDEN = "forbidden"  # the key may not issue this command or fault (or not on a fleet topic)


class CommandError(ValueError):
    """A rejected command or fault: ``reason`` (a :class:`Reason`), ``field`` (or None), message."""

    def __init__(self, reason: Reason, message: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        self.message = message
        super().__init__(f"{reason.value}: {message}")

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"reason": self.reason.value, "message": self.message}
        if self.field is not None:
            d["field"] = self.field
        return d


@dataclass(frozen=True)
class Arg:
    """One argument of a command or fault."""

    name: str
    type: str  # "float" | "int" | "str" | "bool"
    unit: str
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    required: bool = True
    default: Any = None


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    args: tuple[Arg, ...] = ()


THERMAL_SETPOINT_NODES = ("payload", "battery", "avionics")
ATTITUDE_CHOICES = ("sun_track", "nadir_fixed", "safe_sun")

COMPUTE_POLICIES = ("nearest", "random", "round_robin", "aware")  # twin.core.compute.placement
WATCH_ACTIONS = ("set", "add", "remove")  # set_watch (twin.contract.telemetry_policy)
JOB_KINDS = ("interactive", "batch", "checkpoint")  # twin.core.compute.jobs.JobKind, in its order

_DEVICE = Arg("device", "int", "", "Accelerator index; omit for all devices", min=0, max=63, required=False)

COMMANDS: dict[str, Spec] = {s.name: s for s in (
    Spec("set_payload_load", "Set the accelerator load set-point",
         (Arg("load", "float", "1", "Requested load", min=0.0, max=1.0),)),
    Spec("set_power_cap", "Cap the payload's electrical power",
         (Arg("power_w", "float", "W", "Payload power cap", min=0.0, max=1e6),)),
    Spec("throttle", "Throttle the payload (1 = no throttling)",
         (Arg("factor", "float", "1", "Throttle factor", min=0.0, max=1.0),)),
    Spec("power_cycle", "Power-cycle an accelerator (clears latch-up and hang)", (_DEVICE,)),
    Spec("submit_jobs", "Queue compute work", (Arg("work_top", "float", "TOP", "Work in tera-operations", min=0.0, max=1e12),)),
    Spec("enter_safe_mode", "Enter safe mode: payload off, sun pointing"),
    Spec("leave_safe_mode", "Leave safe mode and resume nominal operations"),
    Spec("set_heater_setpoint", "Change a thermostat set-point",
         (Arg("node", "str", "", "Thermal node", choices=THERMAL_SETPOINT_NODES),
          Arg("temp_k", "float", "K", "Set-point", min=200.0, max=330.0))),
    Spec("set_attitude_mode", "Change the attitude mode",
         (Arg("mode", "str", "", "Attitude mode", choices=ATTITUDE_CHOICES),)),
    Spec("clear_fault", "End an injected fault now", (Arg("fault_id", "int", "", "Fault id from the injection reply", min=0),)),
    Spec("run_job", "Submit a compute job: the scheduler places it on one of the selected (or addressed) satellites "
         "and replies queued, then accepted (with the placement), migrated, and completed, failed or rejected", (
             Arg("kind", "str", "", "interactive (latency bound, starts at once or is rejected), batch (deadline, "
                 "may wait) or checkpoint (long, checkpoints, may be moved)", choices=JOB_KINDS),
             Arg("work_dev_s", "float", "s", "Accelerator work in device-seconds (one device at full clock for 1 s)",
                 min=1e-3, max=1e7),
             Arg("input_bytes", "float", "B", "Input data sent from the source", min=0.0, max=1e13, required=False,
                 default=0.0),
             Arg("output_bytes", "float", "B", "Result data sent to the destination", min=0.0, max=1e13,
                 required=False, default=0.0),
             Arg("state_bytes", "float", "B", "Checkpoint size, moved when the job migrates (checkpoint jobs)",
                 min=0.0, max=1e13, required=False, default=0.0),
             Arg("checkpoint_every_dev_s", "float", "s", "Work between checkpoints (0: none)", min=0.0, max=1e7,
                 required=False, default=0.0),
             Arg("deadline_s", "float", "s", "The work must be done this long after it is queued (omit: no deadline)",
                 min=1e-3, max=1e8, required=False),
             Arg("latency_bound_ms", "float", "ms", "Interactive: round trip from submission to the answer (omit: none)",
                 min=1.0, max=1e7, required=False),
             Arg("source", "str", "", "Where the input comes from: 'city:NAME' (a ground endpoint of the twin) or "
                 "'sat:NAME'"),
             Arg("destination", "str", "", "Where the result goes, as source (omit: the source)", required=False),
             Arg("jurisdiction", "str", "", "Data sovereignty: comma-separated ISO 3166-1 alpha-3 codes or region "
                 "names (e.g. 'FRA,DEU' or 'EU'); the job is then processed only above that territory and its "
                 "result downlinked only through gateways in it", required=False),
         )),
    Spec("set_compute_policy", "Change the compute scheduler's placement policy (takes effect from the next tick)",
         (Arg("policy", "str", "", "Placement policy", choices=COMPUTE_POLICIES),)),
    Spec("set_watch", "Change the watched selection of the telemetry policy: the satellites that publish "
         "per-satellite telemetry topics (from the tick after the one that runs it; fleet frames set to 'watched' "
         "follow, aggregates and events do not change). The targets are the topic's satellite or the select",
         (Arg("action", "str", "", "set: watch exactly the targets; add: watch them too; remove: stop watching them",
              choices=WATCH_ACTIONS, required=False, default="set"),)),
    Spec("launch", "Launch pending satellites (slots not yet in orbit) into a low parking orbit in their slot's "
         "plane; they raise to their slot, or wait there as spares with hold",
         (Arg("parking_alt_km", "float", "km", "Parking orbit mean altitude (omit: the default, 350 km)",
              min=150.0, max=2000.0, required=False),
          Arg("hold", "bool", "", "Stay in the parking orbit as spares until raise_orbit", required=False,
              default=False))),
    Spec("raise_orbit", "Raise parked spares to their slot, or to the slot of another satellite (replacing a "
         "failed one)",
         (Arg("slot_of", "str", "", "The satellite whose slot altitude to take (omit: the spare's own slot)",
              required=False),)),
    Spec("deorbit", "Lower satellites until they re-enter (end of life, or a failed satellite)"),
)}

FAULTS: dict[str, Spec] = {s.name: s for s in (
    Spec("solar_array_string_loss", "Lose solar array strings",
         (Arg("strings", "int", "", "Strings lost", min=1, max=1000, required=False, default=1),)),
    Spec("battery_cell_failure", "Lose battery cell strings",
         (Arg("strings", "int", "", "Parallel strings lost", min=1, max=100, required=False, default=1),)),
    Spec("radiator_degradation", "Radiator loses effective emissive area",
         (Arg("efficiency", "float", "1", "Remaining fraction", min=0.0, max=1.0),)),
    Spec("heatpipe_degradation", "Payload-to-radiator link loses conductance",
         (Arg("efficiency", "float", "1", "Remaining fraction", min=0.0, max=1.0),)),
    Spec("sensor_stuck", "A telemetry sensor reads a constant",
         (Arg("field", "str", "", "Telemetry field"), Arg("value", "float", "", "Stuck reading", required=False))),
    Spec("sensor_bias", "A telemetry sensor reads with an offset",
         (Arg("field", "str", "", "Telemetry field"), Arg("bias", "float", "", "Offset in the field's unit"))),
    Spec("sensor_noise", "A telemetry sensor reads with Gaussian noise",
         (Arg("field", "str", "", "Telemetry field"), Arg("sigma", "float", "", "Standard deviation", min=0.0))),
    Spec("seu_burst", "A burst of single-event upsets in a device's memory",
         (Arg("count", "int", "", "Upsets", min=1, max=1_000_000, required=False, default=100), _DEVICE)),
    Spec("latchup", "Single-event latch-up on a device", (_DEVICE,)),
    Spec("payload_hang", "The payload stops responding until power-cycled"),
    Spec("laser_terminal_failure", "Laser inter-satellite link terminals fail",
         (Arg("terminals", "int", "", "Terminals lost", min=1, max=16, required=False, default=1),)),
    Spec("sun_pointing_loss", "Attitude control loses sun pointing (the array tumbles)"),
    Spec("link_outage", "The laser link between the satellite and a peer is down (no link between them forms)",
         (Arg("peer", "str", "", "The other satellite's name"),)),
    Spec("gateway_outage", "A gateway is out of service for the whole network (booked on the satellites it is sent to)",
         (Arg("gateway", "str", "", "Gateway name from the ground-site file"),)),
)}

SENSOR_FAULTS = ("sensor_stuck", "sensor_bias", "sensor_noise")


def _coerce(arg: Arg, value: Any) -> Any:
    if arg.type == "bool":
        if not isinstance(value, bool):
            raise CommandError(Reason.BAD_ARGUMENT, f"{arg.name} must be true or false", arg.name)
        return value
    if arg.type == "str":
        if not isinstance(value, str):
            raise CommandError(Reason.BAD_ARGUMENT, f"{arg.name} must be a string", arg.name)
        if arg.choices is not None and value not in arg.choices:
            raise CommandError(Reason.BAD_ARGUMENT, f"{arg.name} must be one of {', '.join(arg.choices)}", arg.name)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(Reason.BAD_ARGUMENT, f"{arg.name} must be a number", arg.name)
    if arg.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise CommandError(Reason.BAD_ARGUMENT, f"{arg.name} must be an integer", arg.name)
        value = int(value)
    else:
        try:
            value = float(value)
        except OverflowError:  # a JSON integer too large for a float
            raise CommandError(Reason.OUT_OF_RANGE, f"{arg.name} is too large", arg.name) from None
        if not math.isfinite(value):
            raise CommandError(Reason.BAD_ARGUMENT, f"{arg.name} must be finite", arg.name)
    if (arg.min is not None and value < arg.min) or (arg.max is not None and value > arg.max):
        lo = "-inf" if arg.min is None else f"{arg.min:g}"
        hi = "inf" if arg.max is None else f"{arg.max:g}"
        unit = "" if arg.unit in ("", "1") else f" {arg.unit}"  # a dimensionless value has no unit
        raise CommandError(Reason.OUT_OF_RANGE, f"{arg.name}={value} outside [{lo}, {hi}]{unit}", arg.name)
    return value


def validate(table: Mapping[str, Spec], name: Any, args: Any) -> tuple[Spec, dict[str, Any]]:
    """Check ``name`` against ``table`` (COMMANDS or FAULTS) and coerce ``args``; raise CommandError."""
    if not isinstance(name, str) or name not in table:
        kind = "fault" if table is FAULTS else "command"
        raise CommandError(Reason.UNKNOWN_COMMAND, f"unknown {kind} {name!r}", "fault" if table is FAULTS else "command")
    spec = table[name]
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise CommandError(Reason.BAD_ARGUMENT, "args must be an object", "args")
    known = {a.name for a in spec.args}
    extra = sorted(k for k in args if k not in known)
    if extra:
        raise CommandError(Reason.BAD_ARGUMENT, f"unknown argument {extra[0]!r} for {name}", str(extra[0]))
    out: dict[str, Any] = {}
    for a in spec.args:
        if a.name in args and args[a.name] is not None:
            out[a.name] = _coerce(a, args[a.name])
        elif a.required:
            raise CommandError(Reason.BAD_ARGUMENT, f"missing argument {a.name!r} for {name}", a.name)
        else:
            out[a.name] = a.default
    if name in SENSOR_FAULTS and out["field"] not in FIELD_BY_NAME:
        raise CommandError(Reason.BAD_ARGUMENT, f"unknown telemetry field {out['field']!r}", "field")
    return spec, out

"""Injected faults: their effect on the fleet's state, their duration, and their end.

Persistent faults (degradations, sensor faults, tumbling, hang) stay active until their
duration ends or ``clear_fault``; the degradation arrays are recomputed from the active set so
overlapping faults compose and end cleanly. Impulse faults (SEU burst, latch-up) act once; a
latch-up then lasts until a power cycle, as on the real device.

Faults act on a :class:`FaultTarget` (the engine's own state arrays, changed in place) and
return the events they cause; they know nothing of the engine. See docs/physics.md#faults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.core.events import Event, Request
from twin.core.payload import PayloadState
from twin.core.power import PowerParams
from twin.schema.commands import FAULTS, CommandError, Reason
from twin.schema.telemetry import ATT_SAFE_SUN, ATT_SUN_TRACK, ATT_TUMBLING, MODE_LOST, MODE_SAFE

FAULT_BITS = {name: i for i, name in enumerate(FAULTS)}


@dataclass(frozen=True)
class FaultTarget:
    """The fleet state faults act on: the engine's arrays (n satellites), changed in place."""

    t_s: float  # sim time now [s]
    mode: np.ndarray  # (n,) int8 MODE_*, read only here
    attitude: np.ndarray  # (n,) int8 ATT_*
    seu_total: np.ndarray  # (n,) int64 upsets counted so far
    payload: PayloadState
    rng: np.random.Generator


@dataclass
class ActiveFault:
    """A persistent fault: which satellites, its arguments, its start and (optional) end [s]."""

    fault_id: int
    kind: str
    sats: np.ndarray
    args: dict[str, Any]
    start_s: float
    end_s: float | None


class FaultBook:
    """Active faults and the per-satellite degradations they cause.

    ``uncorrectable_fraction``: share of an injected SEU burst's upsets that ECC cannot correct
    (the design's memories, :func:`twin.core.radiation.uncorrectable_fraction`).
    """

    def __init__(self, n: int, uncorrectable_fraction: float) -> None:
        self.n = n
        self.uncorrectable_fraction = uncorrectable_fraction
        self.active: dict[int, ActiveFault] = {}
        self._next_id = 1
        self._recompute()

    def _recompute(self) -> None:
        n = self.n
        self.array_strings_failed = np.zeros(n, dtype=np.int64)
        self.battery_strings_failed = np.zeros(n, dtype=np.int64)
        self.radiator_eff = np.ones(n)
        self.heatpipe_eff = np.ones(n)
        self.isl_failed = np.zeros(n, dtype=np.int64)
        self.tumbling = np.zeros(n, dtype=bool)
        self.hung = np.zeros(n, dtype=bool)
        self.flags = np.zeros(n, dtype=np.int64)
        self.sensor: list[ActiveFault] = []
        for f in self.active.values():
            s, a = f.sats, f.args
            self.flags[s] |= 1 << FAULT_BITS[f.kind]
            if f.kind == "solar_array_string_loss":
                self.array_strings_failed[s] += a["strings"]
            elif f.kind == "battery_cell_failure":
                self.battery_strings_failed[s] += a["strings"]
            elif f.kind == "radiator_degradation":
                self.radiator_eff[s] *= a["efficiency"]
            elif f.kind == "heatpipe_degradation":
                self.heatpipe_eff[s] *= a["efficiency"]
            elif f.kind == "laser_terminal_failure":
                self.isl_failed[s] += a["terminals"]
            elif f.kind == "sun_pointing_loss":
                self.tumbling[s] = True
            elif f.kind == "payload_hang":
                self.hung[s] = True
            elif f.kind.startswith("sensor_"):
                self.sensor.append(f)

    def isl_fraction(self, power: PowerParams) -> np.ndarray:
        """Fraction of laser terminals still working (their power follows)."""
        count = power.isl_terminal_count
        return np.clip(count - self.isl_failed, 0, count) / max(count, 1)

    def start(self, req: Request, fleet: FaultTarget) -> tuple[dict[str, Any], list[Event]]:
        """Apply a due fault request: the reply's result and the events it caused."""
        kind, a, s = req.name, req.args, req.sats
        s = s[fleet.mode[s] != MODE_LOST]
        if s.size == 0:
            raise CommandError(Reason.NOT_NOW, "satellite is lost (no valid orbit)", "sat")
        fid = self._next_id
        self._next_id += 1
        p, t = fleet.payload, fleet.t_s
        events: list[Event] = []
        if kind == "seu_burst":
            dev = 0 if a["device"] is None else a["device"]
            unc = fleet.rng.binomial(a["count"], self.uncorrectable_fraction, size=s.size)
            p.ecc_uncorrectable[s, dev] += unc
            p.ecc_corrected[s, dev] += a["count"] - unc
            fleet.seu_total[s] += a["count"]
            for i, u in zip(s, unc):
                events.append(Event(t, int(i), "seu", "seu_burst", "warning",
                                    {"device": dev, "count": a["count"], "uncorrectable": int(u), "fault_id": fid}))
                _forward(p, int(i), "seu", dev, a["count"])
            return {"fault_id": fid, "uncorrectable": int(unc.sum()), "applied": int(s.size)}, events
        if kind == "latchup":
            devs = range(p.latched.shape[1]) if a["device"] is None else (a["device"],)
            for dev in devs:
                p.latched[s, dev] = True
            p.sel_total[s] += len(devs)
            for i in s:
                for dev in devs:
                    events.append(Event(t, int(i), "sel", "latchup", "critical",
                                        {"device": dev, "cause": "injected", "fault_id": fid}))
                    _forward(p, int(i), "sel", dev, 1)
            return {"fault_id": fid, "devices": list(devs), "applied": int(s.size)}, events
        end = None if req.duration_s is None else t + req.duration_s
        self.active[fid] = ActiveFault(fid, kind, s, dict(a), t, end)
        self._recompute()
        if kind == "payload_hang":
            p.hung[s] = True
            for i in s:
                _forward(p, int(i), "hang", 0, 1)
        if kind == "sun_pointing_loss":
            fleet.attitude[s] = ATT_TUMBLING
        for i in s:
            events.append(Event(t, int(i), "fault", "fault_started", "warning",
                                {"fault": kind, "fault_id": fid, "args": a, "end_s": end}))
        return {"fault_id": fid, "end_s": end, "applied": int(s.size)}, events

    def _end(self, f: ActiveFault, why: str, fleet: FaultTarget) -> list[Event]:
        del self.active[f.fault_id]
        self._recompute()
        s = f.sats
        if f.kind == "payload_hang":
            fleet.payload.hung[s] &= self.hung[s]
        if f.kind == "sun_pointing_loss":
            still = self.tumbling[s]
            fleet.attitude[s] = np.where(still, ATT_TUMBLING,
                                         np.where(fleet.mode[s] == MODE_SAFE, ATT_SAFE_SUN, ATT_SUN_TRACK))
        return [Event(fleet.t_s, int(i), "fault", "fault_ended", "info",
                      {"fault": f.kind, "fault_id": f.fault_id, "why": why}) for i in s]

    def expire(self, fleet: FaultTarget) -> list[Event]:
        """End every fault whose duration is over at ``fleet.t_s``; the events that caused."""
        events: list[Event] = []
        for f in [f for f in self.active.values() if f.end_s is not None and f.end_s <= fleet.t_s + 1e-9]:
            events += self._end(f, "duration", fleet)
        return events

    def clear(self, fault_id: int, fleet: FaultTarget) -> tuple[dict[str, Any], list[Event]]:
        """End fault ``fault_id`` now (command ``clear_fault``): the reply's result and the events."""
        f = self.active.get(fault_id)
        if f is None:
            raise CommandError(Reason.BAD_ARGUMENT, f"no active fault with id {fault_id}", "fault_id")
        return {"fault_id": fault_id, "cleared": True}, self._end(f, "cleared", fleet)

    def apply_sensor_faults(self, tm: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        """Turn true values into what the faulty sensors read (in place, copying touched fields).

        A field keeps its schema type: integer readings are rounded, boolean ones read true above 0.5.
        """
        for f in self.sensor:
            name, s = f.args["field"], f.sats
            dtype = tm[name].dtype
            values = tm[name].astype(float, copy=True)
            if f.kind == "sensor_stuck":
                stuck = f.args.get("_stuck")
                if stuck is None:
                    stuck = values[s].copy() if f.args.get("value") is None else np.full(s.size, f.args["value"])
                    f.args["_stuck"] = stuck
                values[s] = stuck
            elif f.kind == "sensor_bias":
                values[s] += f.args["bias"]
            else:
                values[s] += rng.normal(0.0, f.args["sigma"], s.size)
            if dtype.kind == "b":
                tm[name] = values > 0.5
            elif dtype.kind in "iu":
                tm[name] = np.rint(np.nan_to_num(values)).astype(dtype)
            else:
                tm[name] = values


def _forward(payload: PayloadState, sat: int, kind: str, dev: int, count: int) -> None:
    """Pass a radiation effect on to the board bound to ``sat``, if any."""
    backend = payload.backends.get(sat)
    if backend is not None:
        backend.radiation_effect(kind, dev, count)

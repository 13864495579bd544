"""Injected faults: their effect on the fleet's state, their duration, and their end.

Persistent faults (degradations, sensor faults, tumbling, hang) stay active until their
duration ends or ``clear_fault``; the degradation arrays are recomputed from the active set so
overlapping faults compose and end cleanly. Impulse faults (SEU burst, latch-up) act once; a
latch-up then lasts until a power cycle, as on the real device.

Faults act on a :class:`FaultTarget` (the engine's own state arrays, changed in place) and
return the events they cause; they know nothing of the engine. See docs/physics.md#faults.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.core.events import Event, Request
from twin.core.payload import PayloadState
from twin.core import sat_random
from twin.core.sat_random import Draws, SatRandom
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
    random: SatRandom  # the satellites' random streams (twin.core.sat_random)
    tick: int  # the tick now (the counter of the streams)


@dataclass
class ActiveFault:
    """A persistent fault: which satellites, its arguments, its start and (optional) end [s]."""

    fault_id: int
    kind: str
    sats: np.ndarray
    args: dict[str, Any]
    start_s: float
    end_s: float | None
    draw_index: np.ndarray | None = None  # per satellite of ``sats``: the index of its random draws


IMPULSE_FAULTS = frozenset({"seu_burst", "latchup"})  # act once; every other fault stays active
NETWORK_FAULTS = frozenset({"link_outage", "gateway_outage"})  # act on the network (the engine reads them)


class FaultBook:
    """Active faults and the per-satellite degradations they cause.

    ``uncorrectable_fraction``: share of an injected SEU burst's upsets that ECC cannot correct
    (the design's memories, :func:`twin.core.radiation.uncorrectable_fraction`).
    ``max_per_sat``: persistent faults one satellite may have active at once.

    Bookkeeping costs what the faults touch, never the square of their number: a fault's start
    adds its effect on its satellites, its end recomputes only those satellites from the faults
    still on them, and ends are found in a heap keyed by end time (nothing to scan per tick).
    """

    def __init__(self, n: int, uncorrectable_fraction: float, max_per_sat: int = 64) -> None:
        self.n = n
        self.uncorrectable_fraction = uncorrectable_fraction
        self.max_per_sat = max_per_sat
        self.active: dict[int, ActiveFault] = {}
        self.per_sat = np.zeros(n, dtype=np.int64)  # persistent faults active per satellite
        self._on_sat: dict[int, set[int]] = {}  # satellite -> ids of the faults active on it
        self._ends: list[tuple[float, int]] = []  # (end_s, fault_id), a heap; cleared faults stay until popped
        self._sensor: dict[int, ActiveFault] = {}  # sensor faults in start order (= fault id order)
        self._network: dict[int, ActiveFault] = {}  # link and gateway outages in start order
        self.network_version = 0  # counts starts and ends of network faults (the engine rebuilds its outages)
        self._next_id = 1
        # faults started per satellite: numbers a fault's random draws per satellite (a fault id counts the
        # faults of this process, so a shard numbers them differently; this count is the same everywhere)
        self.started = np.zeros(n, dtype=np.int64)
        self.array_strings_failed = np.zeros(n, dtype=np.int64)
        self.battery_strings_failed = np.zeros(n, dtype=np.int64)
        self.radiator_eff = np.ones(n)
        self.heatpipe_eff = np.ones(n)
        self.isl_failed = np.zeros(n, dtype=np.int64)
        self.tumbling = np.zeros(n, dtype=bool)
        self.hung = np.zeros(n, dtype=bool)
        self.flags = np.zeros(n, dtype=np.int64)

    @property
    def sensor(self) -> list[ActiveFault]:
        """Active sensor faults, in the order they started."""
        return list(self._sensor.values())

    def _apply(self, f: ActiveFault, s: np.ndarray) -> None:
        """Add fault ``f``'s degradation to satellites ``s`` (unique indices, a subset of ``f.sats``)."""
        a = f.args
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

    def _recompute(self, s: np.ndarray) -> None:
        """Degradations of satellites ``s`` (unique) from the faults still active on them."""
        self.array_strings_failed[s] = 0
        self.battery_strings_failed[s] = 0
        self.radiator_eff[s] = 1.0
        self.heatpipe_eff[s] = 1.0
        self.isl_failed[s] = 0
        self.tumbling[s] = False
        self.hung[s] = False
        self.flags[s] = 0
        fids: set[int] = set()
        for i in s.tolist():
            fids |= self._on_sat.get(i, set())
        if not fids:
            return
        mask = np.zeros(self.n, dtype=bool)
        mask[s] = True
        for fid in sorted(fids):  # start order, as the faults were first applied
            g = self.active[fid]
            self._apply(g, g.sats[mask[g.sats]])

    def network_faults(self, kind: str) -> list[ActiveFault]:
        """Active network faults of ``kind`` (``link_outage``, ``gateway_outage``) in start order."""
        return [f for f in self._network.values() if f.kind == kind]

    def room(self, sats: np.ndarray, pending: np.ndarray | None = None) -> bool:
        """Whether every satellite of ``sats`` can take one more persistent fault (``pending``: (n,)
        faults already waiting to start, counted as active)."""
        held = self.per_sat[sats] if pending is None else self.per_sat[sats] + pending[sats]
        return bool(np.all(held < self.max_per_sat))

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
        if kind not in IMPULSE_FAULTS and not self.room(s):
            raise CommandError(Reason.TOO_MANY_FAULTS, f"a satellite already has {self.max_per_sat} active faults "
                               "(the most allowed); clear one first", "sat")
        fid = self._next_id
        self._next_id += 1
        draw_index = self.started[s].copy()
        self.started[s] += 1
        p, t = fleet.payload, fleet.t_s
        events: list[Event] = []
        if kind == "seu_burst":
            dev = 0 if a["device"] is None else a["device"]
            unc = fleet.random.draws(sat_random.SEU_BURST, fleet.tick).binomial(
                a["count"], self.uncorrectable_fraction, s, index=draw_index)
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
        sats, first = np.unique(s, return_index=True)
        f = ActiveFault(fid, kind, sats, dict(a), t, end, draw_index[first])
        self.active[fid] = f
        for i in f.sats.tolist():
            self._on_sat.setdefault(i, set()).add(fid)
        self.per_sat[f.sats] += 1
        if kind.startswith("sensor_"):
            self._sensor[fid] = f
        if kind in NETWORK_FAULTS:
            self._network[fid] = f
            self.network_version += 1
        if end is not None:
            heapq.heappush(self._ends, (end, fid))
        self._apply(f, f.sats)
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
        self._sensor.pop(f.fault_id, None)
        if self._network.pop(f.fault_id, None) is not None:
            self.network_version += 1
        s = f.sats
        for i in s.tolist():
            on = self._on_sat[i]
            on.discard(f.fault_id)
            if not on:
                del self._on_sat[i]
        self.per_sat[s] -= 1
        self._recompute(s)
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
        while self._ends and self._ends[0][0] <= fleet.t_s + 1e-9:
            _, fid = heapq.heappop(self._ends)
            f = self.active.get(fid)
            if f is not None:  # else cleared before its end
                events += self._end(f, "duration", fleet)
        return events

    def clear(self, fault_id: int, fleet: FaultTarget) -> tuple[dict[str, Any], list[Event]]:
        """End fault ``fault_id`` now (command ``clear_fault``): the reply's result and the events."""
        f = self.active.get(fault_id)
        if f is None:
            raise CommandError(Reason.BAD_ARGUMENT, f"no active fault with id {fault_id}", "fault_id")
        return {"fault_id": fault_id, "cleared": True}, self._end(f, "cleared", fleet)

    def apply_sensor_faults(self, tm: dict[str, np.ndarray], noise: Draws) -> None:
        """Turn true values into what the faulty sensors read (in place, copying touched fields).

        ``noise``: this tick's sensor-noise stream of the satellites (each fault draws its own numbers).
        A field keeps its schema type: integer readings are rounded, boolean ones read true above 0.5.
        """
        readings: dict[str, np.ndarray] = {}  # each touched field copied once, whatever its number of faults
        for f in self._sensor.values():
            name, s = f.args["field"], f.sats
            values = readings.get(name)
            if values is None:
                values = readings[name] = tm[name].astype(float, copy=True)
            if f.kind == "sensor_stuck":
                stuck = f.args.get("_stuck")
                if stuck is None:
                    stuck = values[s].copy() if f.args.get("value") is None else np.full(s.size, f.args["value"])
                    f.args["_stuck"] = stuck
                values[s] = stuck
            elif f.kind == "sensor_bias":
                values[s] += f.args["bias"]
            else:
                values[s] += f.args["sigma"] * noise.normal(s, f.draw_index if f.draw_index is not None else 0)
        for name, values in readings.items():
            dtype = tm[name].dtype
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

"""Injected faults: their effect on the fleet's state, their duration, and their end.

Persistent faults (degradations, sensor faults, tumbling, hang) stay active until their
duration ends or ``clear_fault``; the degradation arrays are recomputed from the active set so
overlapping faults compose and end cleanly. Impulse faults (SEU burst, latch-up) act once; a
latch-up then lasts until a power cycle, as on the real device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.schema.commands import FAULTS, CommandError, Reason

if TYPE_CHECKING:  # pragma: no cover
    from twin.core.engine import FleetTwin, Request
    from twin.core.power import PowerParams

FAULT_BITS = {name: i for i, name in enumerate(FAULTS)}
IMPULSE = ("seu_burst", "latchup")
MULTI_BIT_FRACTION = 0.014  # Alsat-1: 98.6% of upsets single-bit (physics.md)


@dataclass
class ActiveFault:
    fault_id: int
    kind: str
    sats: np.ndarray
    args: dict[str, Any]
    start_s: float
    end_s: float | None


class FaultBook:
    """Active faults and the per-satellite degradations they cause."""

    def __init__(self, n: int) -> None:
        self.n = n
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

    def start(self, twin: FleetTwin, req: Request) -> dict[str, Any]:
        """Apply a due fault request; returns the reply's result."""
        kind, a, s = req.name, req.args, req.sats
        s = s[twin.mode[s] != 2]
        if s.size == 0:
            raise CommandError(Reason.NOT_NOW, "satellite is lost (no valid orbit)", "sat")
        fid = self._next_id
        self._next_id += 1
        p = twin.payload
        nd = twin.design.payload.n_devices
        if kind == "seu_burst":
            dev = 0 if a["device"] is None else a["device"]
            unc = twin.rng.binomial(a["count"], MULTI_BIT_FRACTION, size=s.size)
            p.ecc_uncorrectable[s, dev] += unc
            p.ecc_corrected[s, dev] += a["count"] - unc
            twin.seu_total[s] += a["count"]
            for i, u in zip(s, unc):
                twin._emit(int(i), "seu", "seu_burst", "warning", device=dev, count=a["count"], uncorrectable=int(u),
                           fault_id=fid)
                self._forward(twin, int(i), "seu", dev, a["count"])
            return {"fault_id": fid, "uncorrectable": int(unc.sum()), "applied": int(s.size)}
        if kind == "latchup":
            devs = range(nd) if a["device"] is None else (a["device"],)
            for dev in devs:
                p.latched[s, dev] = True
            p.sel_total[s] += len(devs)
            for i in s:
                for dev in devs:
                    twin._emit(int(i), "sel", "latchup", "critical", device=dev, cause="injected", fault_id=fid)
                    self._forward(twin, int(i), "sel", dev, 1)
            return {"fault_id": fid, "devices": list(devs), "applied": int(s.size)}
        end = None if req.duration_s is None else twin.t_s + req.duration_s
        f = ActiveFault(fid, kind, s, dict(a), twin.t_s, end)
        self.active[fid] = f
        self._recompute()
        if kind == "payload_hang":
            p.hung[s] = True
            for i in s:
                self._forward(twin, int(i), "hang", 0, 1)
        if kind == "sun_pointing_loss":
            twin.attitude[s] = 3
        for i in s:
            twin._emit(int(i), "fault", "fault_started", "warning", fault=kind, fault_id=fid, args=a, end_s=end)
        return {"fault_id": fid, "end_s": end, "applied": int(s.size)}

    @staticmethod
    def _forward(twin: FleetTwin, sat: int, kind: str, dev: int, count: int) -> None:
        backend = twin.payload.backends.get(sat)
        if backend is not None:
            backend.radiation_effect(kind, dev, count)

    def _end(self, twin: FleetTwin, f: ActiveFault, why: str) -> None:
        del self.active[f.fault_id]
        self._recompute()
        s = f.sats
        if f.kind == "payload_hang":
            twin.payload.hung[s] &= self.hung[s]
        if f.kind == "sun_pointing_loss":
            still = self.tumbling[s]
            twin.attitude[s] = np.where(still, 3, np.where(twin.mode[s] == 1, 2, 0))
        for i in s:
            twin._emit(int(i), "fault", "fault_ended", "info", fault=f.kind, fault_id=f.fault_id, why=why)

    def expire(self, twin: FleetTwin) -> None:
        for f in [f for f in self.active.values() if f.end_s is not None and f.end_s <= twin.t_s + 1e-9]:
            self._end(twin, f, "duration")

    def clear(self, twin: FleetTwin, fault_id: int) -> dict[str, Any]:
        f = self.active.get(fault_id)
        if f is None:
            raise CommandError(Reason.BAD_ARGUMENT, f"no active fault with id {fault_id}", "fault_id")
        self._end(twin, f, "cleared")
        return {"fault_id": fault_id, "cleared": True}

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

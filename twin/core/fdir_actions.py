"""Onboard FDIR over the fleet after each tick (:func:`run_fdir`): the decisions of :mod:`twin.core.fdir`
applied to the engine's state, with the events they cause, and the limit states of every field.

Functions over the engine (:class:`twin.core.engine.FleetTwin`), like :mod:`twin.core.commanding`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.core import fdir as fdir_mod
from twin.core import payload as pl
from twin.core import thermal
from twin.schema.telemetry import FIELD_BY_NAME, MODE_LOST, MODE_SAFE

# the engine (twin.core.engine.FleetTwin), typed loosely: the engine imports this module
FleetTwin = Any


def fdir_response(twin: FleetTwin, i: int) -> dict[str, Any]:
    """What onboard FDIR currently imposes on satellite ``i`` (for the events' detail)."""
    return {"throttle": float(twin.payload.fdir_throttle[i]), "charge_limit": float(twin.charge_limit[i]),
            "radio_fraction": float(twin.radio_fraction[i]), "isl_on": bool(twin.isl_on[i]),
            "payload_off": bool(twin.payload_off[i]),
            "heaters_forced": [thermal.NODE_NAMES[j] for j in np.flatnonzero(twin.heater_forced[i])]}

def run_fdir(twin: FleetTwin, dt: float) -> None:
    """Onboard FDIR after a tick's physics: its responses (applied next tick), its events, and the limit
    states of every field (the ``limit_state`` telemetry and its change events)."""
    tm = twin.tm
    live = twin.mode != MODE_LOST
    act = fdir_mod.step(twin.fdir, twin.design.fdir, tm, twin.payload.latched, twin.payload.hung,
                        twin.mode == MODE_SAFE, dt, FIELD_BY_NAME["payload_temp_k"], FIELD_BY_NAME["battery_soc"])
    twin.payload.fdir_throttle = act.throttle
    twin.charge_limit, twin.radio_fraction, twin.isl_on = act.charge_limit, act.radio_fraction, act.isl_on
    twin.heater_forced, twin.payload_off = act.heater_forced, act.payload_off
    for sat, node, side, old, new in act.node_changes:
        if live[sat] and (node, side) != ("payload", "hot"):  # payload hot: payload_throttle below
            twin._emit(sat, "fdir", f"{node}_{side}", ("info", "warning", "critical")[new], level=new,
                       old_level=old, **{f"{node}_temp_k": float(tm[f"{node}_temp_k"][sat])},
                       **fdir_response(twin, sat))
    for sat, fname, now in act.degraded_changes:
        if live[sat]:
            twin._emit(sat, "fdir", fname.replace("_efficiency", "_degraded"), "warning" if now else "info",
                       level=int(now), **{fname: float(tm[fname][sat])}, throttle=float(act.throttle[sat]))
    for i in act.changed_hot:
        if live[i]:
            twin._emit(int(i), "fdir", "payload_throttle", "warning", level=int(twin.fdir.hot[i]),
                       throttle=float(act.throttle[i]), payload_temp_k=float(tm["payload_temp_k"][i]))
    for i in act.changed_shed:
        if live[i]:
            twin._emit(int(i), "fdir", "payload_shed" if twin.fdir.shed_payload[i] else "payload_restored",
                       "warning", battery_soc=float(tm["battery_soc"][i]))
    for s, d in act.power_cycle:
        if live[s]:
            pl.power_cycle(twin.payload, twin.design.payload, s, d)
            twin.fdir.latch_s[s, :] = 0.0
            twin.fdir.hang_s[s] = 0.0
            twin._emit(s, "fdir", "power_cycle", "warning", device=d,
                       cause="watchdog" if d is None else "latchup")
            backend = twin.payload.backends.get(s)
            if backend is not None:
                backend.command("power_cycle", {"device": d})
    if act.enter_safe.size:
        twin._enter_safe(act.enter_safe[live[act.enter_safe]], "battery_low")
    states = fdir_mod.evaluate_limits(tm)
    if twin.limit_state is not None:
        for fname, st in states.items():
            changed = np.flatnonzero((st != twin.limit_state[fname]) & live)
            for i in changed:
                sev = ("info", "warning", "critical")[int(st[i])]
                twin._emit(int(i), "limit", fname, sev, old=int(twin.limit_state[fname][i]), new=int(st[i]),
                           value=float(tm[fname][i]))
    twin.limit_state = states
    tm["limit_state"] = np.where(live, fdir_mod.worst_state(states, twin.n), 0).astype(np.int8)

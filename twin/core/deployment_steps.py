"""A changing constellation inside the engine's tick (:mod:`twin.core.deployment` holds the phases):
satellites raised and lowered, new element sets where their altitude moved, a launched satellite's
fresh state, and the deployment events. Functions over the engine, like :mod:`twin.core.commanding`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.core import deployment
from twin.core import fdir as fdir_mod
from twin.core import payload as pl
from twin.schema.telemetry import ATT_SUN_TRACK, MODE_LOST, MODE_NOMINAL

# the engine (twin.core.engine.FleetTwin), typed loosely: the engine imports this module
FleetTwin = Any


def advance_deployment(twin: FleetTwin, dt: float) -> None:
    """Raise and lower the satellites that are moving; new element sets where their altitude moved
    (docs/physics.md#deployment); events for arrivals and re-entries."""
    dep = twin.deployment
    moves = dep.advance(dt)
    if moves.launched.size:
        reset_launched(twin, moves.launched)
        for i in moves.launched:
            twin._emit(int(i), "deployment", "launched", "info", parking_alt_km=round(float(dep.alt_m[i]) / 1e3, 3),
                       phase=deployment.PHASE_NAMES[int(dep.phase[i])])
    if moves.reelement.size:
        rows = moves.reelement
        sats = twin.propagator.satrecs
        table = deployment.circular_elements([sats[i] for i in rows], twin.catalogue.norad_ids[rows],
                                             twin.now_jd, dep.alt_m[rows])
        twin.propagator.replace(rows, table)
    for i in moves.arrived:
        twin._emit(int(i), "deployment", "on_station", "info", alt_km=round(float(dep.alt_m[i]) / 1e3, 3))
    for i in moves.reentered:
        twin.mode[i] = MODE_LOST
        twin._emit(int(i), "deployment", "reentered", "info", alt_km=round(float(dep.alt_m[i]) / 1e3, 3))

def reset_launched(twin: FleetTwin, rows: np.ndarray) -> None:
    """Satellites just launched start fresh: the design's initial state, no dose, no upsets."""
    des = twin.design
    twin.temp_k[rows] = des.thermal.initial_temp_k
    twin.soc[rows] = des.battery.soc_initial
    twin.v_rc_v[rows] = 0.0
    twin.shed_state[rows] = False
    twin.dose_rad[rows] = 0.0
    twin.cover_dose_rad[rows] = 0.0
    twin.seu_total[rows] = 0
    twin.mode[rows] = MODE_NOMINAL
    twin.attitude[rows] = ATT_SUN_TRACK
    for state, fresh in ((twin.payload, pl.PayloadState.initial(1, des.payload)),
                         (twin.fdir, fdir_mod.FdirState.initial(1, des.payload.n_devices))):
        for key, value in vars(fresh).items():
            arr = getattr(state, key)
            if isinstance(arr, np.ndarray) and arr.shape[:1] == (twin.n,):
                arr[rows] = value[0]

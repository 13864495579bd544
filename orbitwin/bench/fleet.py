"""``orbitwin bench fleet``: full fleet step time against bare SGP4 and a naive skyfield loop."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.engine import FleetTwin


def _naive_per_satellite_s(twin: FleetTwin, sample: int, steps: int = 3) -> float:
    """Seconds per satellite-step of a plain per-satellite skyfield loop (position, sunlit, lat/lon/alt)."""
    from skyfield.api import EarthSatellite, wgs84

    from twin.core.ephemeris import jd_to_utc_tuple, skyfield_context

    ts, eph = skyfield_context()
    cat = twin.catalogue
    idx = np.linspace(0, len(cat) - 1, min(sample, len(cat))).astype(int)
    sats = [EarthSatellite(cat.line1[i], cat.line2[i], cat.names[i], ts) for i in idx]
    t0 = time.perf_counter()
    for k in range(steps):
        jd, fr = twin.jd_fr(twin.t_s + k * twin.dt_s)
        t = ts.utc(*jd_to_utc_tuple(np.array([jd + fr])))
        for sat in sats:
            geo = sat.at(t)
            geo.is_sunlit(eph)
            wgs84.latlon_of(geo)
            wgs84.height_of(geo)
    return (time.perf_counter() - t0) / (steps * len(sats))


def _time_steps(twin: FleetTwin, steps: int,
                tick: Callable[[], None] | None = None) -> tuple[list[float], list[float]]:
    """Per-step wall times of the full step and of bare SGP4 for the same satellites and instants; ``tick`` after each."""
    for _ in range(3):
        twin.step()
    step_s, sgp4_s = [], []
    for _ in range(steps):
        jd, fr = twin.jd_fr(twin.t_s + twin.dt_s)
        t0 = time.perf_counter()
        twin.propagator.teme(jd, fr)
        sgp4_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        twin.step()
        step_s.append(time.perf_counter() - t0)
        if tick is not None:
            tick()
    return step_s, sgp4_s


def bench_fleet(count: int | None = None, steps: int = 60, dt_s: float = 1.0, naive_sample: int = 200,
                seed: int = 0, progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
    """Time ``steps`` fleet steps; compare with SGP4 alone and with a naive loop measured in the same run.

    The headline figures use the default engine (next tick's orbit pipelined on a second core when
    the machine has one); the single-process figures are measured too. ``progress(done, total)``:
    timed steps, single-process then pipelined.
    """
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], 2 * steps)

    cat = load_catalogue()
    if count is not None:
        cat = cat.select(count=count)
    with FleetTwin(cat, load_design(), dt_s=dt_s, seed=seed, orbit_worker=False) as single:
        single_step_s, single_sgp4_s = _time_steps(single, steps, tick)
    t_build = time.perf_counter()
    twin = FleetTwin(cat, load_design(), dt_s=dt_s, seed=seed)
    build_s = time.perf_counter() - t_build
    step_s, sgp4_s = _time_steps(twin, steps, tick)
    pipelined = twin.propagator.__class__.__name__ == "PipelinedPropagator"
    twin.close()
    step_med = statistics.median(step_s)
    sgp4_med = statistics.median(sgp4_s)
    naive_sat_s = _naive_per_satellite_s(twin, naive_sample)
    single_med = statistics.median(single_step_s)
    return {
        "benchmark": "fleet",
        "sats": twin.n,
        "steps": steps,
        "dt_s": dt_s,
        "build_s": round(build_s, 3),
        "step_ms_median": round(step_med * 1e3, 3),
        "step_ms_p99": round(float(np.percentile(step_s, 99)) * 1e3, 3),
        "sat_steps_per_s": round(twin.n / step_med),
        "realtime_factor": round(dt_s / step_med, 1),
        "sgp4_ms_median": round(sgp4_med * 1e3, 3),
        "ratio_vs_sgp4": round(step_med / sgp4_med, 3),
        "naive_sample": min(naive_sample, twin.n),
        "naive_ms_per_sat_step": round(naive_sat_s * 1e3, 4),
        "speedup_vs_naive": round(naive_sat_s * twin.n / step_med, 1),
        "orbit_pipelined": pipelined,
        "single_process_step_ms_median": round(single_med * 1e3, 3),
        "single_process_ratio_vs_sgp4": round(single_med / statistics.median(single_sgp4_s), 3),
        "single_process_speedup_vs_naive": round(naive_sat_s * twin.n / single_med, 1),
        "lost_sats": int(np.sum(twin.mode == 2)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
    }

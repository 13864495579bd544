"""``orbitwin bench fleet --constellation FILE``: a synthetic constellation of any size against real time.

Steps the constellation (no network model: the mesh of a million satellites is not in scope here)
and, in the same run and configuration, the shipped 9,543-satellite catalogue as the baseline, and
reports step times, satellite-steps per second, memory (this process and the orbit worker,
resident set) and where a step's time goes: one profiled step, its time summed per module of the
numerical core, and the time the parent waited for the orbit worker (SGP4 and the radiation
sample of the next tick run there, overlapped with the parent's physics).
"""

from __future__ import annotations

import cProfile
import gc
import os
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from twin.core.catalogue import Catalogue, load_catalogue
from twin.core.constellation import build_catalogue, load_constellation
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.schema.telemetry import MODE_LOST

ProgressFn = Callable[[float, float], None]
EPOCH_JD = 2461377.5  # 2026-12-03 00:00 UTC: any fixed epoch (the run starts there)


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process [MiB] from /proc (0 where /proc is missing)."""
    try:
        text = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _worker_pid(twin: FleetTwin) -> int | None:
    proc = getattr(twin.propagator, "_proc", None)
    return None if proc is None else proc.pid


def _module_of(path: str, func: str) -> str | None:
    """The numerical-core module a profiled function belongs to, the orbit-worker wait, or None (a library)."""
    if func in ("poll", "recv_bytes", "_poll", "wait") or "multiprocessing" in path or "selectors.py" in path:
        return "waiting for the orbit worker"
    if "/twin/core/" in path:
        return "twin.core." + Path(path).stem
    return None


def _where_the_time_goes(twin: FleetTwin, steps: int) -> dict[str, float]:
    """Milliseconds per step by module of the numerical core, each with the numpy time it called
    (a library function's own time is shared among its callers in proportion to their calls' time,
    up through library wrappers), and the time spent waiting for the orbit worker."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        twin.step()
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    by: dict[str, float] = {}

    def credit(key: tuple[str, int, str], ms: float, depth: int) -> None:
        home = _module_of(key[0], key[2])
        callers = stats.get(key, (0, 0, 0, 0, {}))[4]
        if home is not None or depth > 6 or not callers:
            name = home or "other (outside the core)"
            by[name] = by.get(name, 0.0) + ms
            return
        total = sum(edge[3] for edge in callers.values()) or 1.0
        for caller, edge in callers.items():
            credit(caller, ms * edge[3] / total, depth + 1)

    for key, (_cc, _nc, tottime, _ct, _callers) in stats.items():
        credit(key, tottime * 1e3 / steps, 0)
    return dict(sorted(((k, round(v, 1)) for k, v in by.items() if v >= 0.5), key=lambda kv: -kv[1]))


def _measure(cat: Catalogue, steps: int, dt_s: float, profile_steps: int,
             tick: Callable[[], None]) -> dict[str, Any]:
    gc.collect()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    twin = FleetTwin(cat, load_design(), start_jd=EPOCH_JD, dt_s=dt_s, seed=0, network=False)
    build_s = time.perf_counter() - t0
    try:
        for _ in range(2):
            twin.step()
        step_s = []
        for _ in range(steps):
            t0 = time.perf_counter()
            twin.step()
            step_s.append(time.perf_counter() - t0)
            tick()
        pid = _worker_pid(twin)
        parent_mb, worker_mb = rss_mb(), (rss_mb(pid) if pid else 0.0)
        where = _where_the_time_goes(twin, profile_steps) if profile_steps else {}
        lost = int(np.sum(twin.mode == MODE_LOST))
        prop = twin.propagator
        balance = {"radiation_in_orbit_worker": bool(getattr(prop, "radiation_in_worker", False)),
                   "balance_note": getattr(prop, "balance_note", None)}
    finally:
        twin.close()
    med = statistics.median(step_s)
    total_mb = parent_mb - rss0 + worker_mb
    return {
        "sats": len(cat), "build_s": round(build_s, 1),
        "step_ms_median": round(med * 1e3, 1), "step_ms_p90": round(float(np.percentile(step_s, 90)) * 1e3, 1),
        "realtime_factor": round(dt_s / med, 2), "sat_steps_per_s": round(len(cat) / med),
        "memory_mb": round(total_mb), "bytes_per_sat": round(total_mb * 2**20 / len(cat)),
        "parent_rss_mb": round(parent_mb), "orbit_worker_rss_mb": round(worker_mb),
        "lost_sats": lost, "profile_ms_per_step": where, **balance,
    }


def bench_scale(constellation: str, steps: int = 10, dt_s: float = 1.0, baseline: bool = True,
                profile_steps: int = 2, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Time ``steps`` steps of ``constellation`` (a file or a shipped name) and of the shipped catalogue."""
    total = steps * (2 if baseline else 1)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    t0 = time.perf_counter()
    spec = load_constellation(constellation)
    cat = build_catalogue(spec, EPOCH_JD)
    catalogue_s = time.perf_counter() - t0
    out: dict[str, Any] = {"benchmark": "fleet", "constellation": spec.name, "dt_s": dt_s, "steps": steps,
                           "network": False, "catalogue_build_s": round(catalogue_s, 1)}
    if baseline:
        out["baseline_shipped"] = _measure(load_catalogue(), steps, dt_s, profile_steps, tick)
    run = _measure(cat, steps, dt_s, profile_steps, tick)
    del cat
    out["run"] = run
    if baseline:
        base = out["baseline_shipped"]
        out["sat_steps_per_s_ratio_vs_baseline"] = round(run["sat_steps_per_s"] / base["sat_steps_per_s"], 3)
    out["realtime"] = run["step_ms_median"] <= dt_s * 1e3
    out["machine"] = {"cpus": os.cpu_count(), "numpy": np.__version__}
    return out

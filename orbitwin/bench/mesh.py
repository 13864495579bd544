"""``orbitwin bench mesh``: the network core over the whole fleet, per tick, against networkx.

Positions come from SGP4 before the timing (the fleet step has them already); what is timed is
:meth:`twin.core.network.Mesh.step`: +Grid topology update, gateways in view and the
nearest-gateway routing of every satellite, at ``dt_s`` per tick. The 100-city latency matrix and
networkx on the same graphs are timed in the same run.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from typing import Any

import numpy as np

from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.network import Mesh
from twin.core.network.geometry import C_M_S
from twin.core.network.routing import Edges, nearest_gateway
from twin.core.network.ground import visible_pairs
from twin.core.orbit import FleetPropagator, gmst82_rad


def _positions(prop: FleetPropagator, jd: float, times_s: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """Earth-fixed positions (lost rows NaN) and the sidereal angle at each time."""
    whole = math.floor(jd - 0.5) + 0.5
    out, gmst = [], []
    for t in times_s:
        fr = jd - whole + float(t) / 86_400.0
        g = float(gmst82_rad(whole, fr))
        o = prop.propagate(whole, fr, g)
        r = o.r_itrs_m.copy()
        r[o.error_code != 0] = np.nan
        out.append(r)
        gmst.append(g)
    return out, gmst


def _networkx() -> Any:
    """networkx, the baseline (a test extra, not a runtime dependency of the twin)."""
    try:
        import networkx
    except ImportError as exc:
        raise RuntimeError("orbitwin bench mesh compares with networkx: pip install networkx") from exc
    return networkx


def _nx_graph(edges: Edges) -> Any:
    nx = _networkx()
    g = nx.DiGraph()
    g.add_weighted_edges_from(zip(edges.src.tolist(), edges.dst.tolist(), edges.delay_s.tolist()), weight="w")
    return g


def bench_mesh(steps: int = 60, dt_s: float = 1.0, count: int | None = None, start_days: float = 0.0,
               nx_city_sample: int = 10) -> dict[str, Any]:
    """Time ``steps`` mesh ticks of the fleet (after 5 warm-up ticks), the city matrix and networkx."""
    nx = _networkx()

    cat = load_catalogue()
    if count is not None:
        cat = cat.select(count=count)
    design = load_design()
    jd = cat.median_epoch_jd() + start_days
    t_build = time.perf_counter()
    mesh = Mesh.from_catalogue(cat, design.network, design.power.isl_terminal_count, jd)
    build_s = time.perf_counter() - t_build
    warm = 5
    times = np.arange(warm + steps) * dt_s
    pos, gmst = _positions(FleetPropagator(cat), jd, times)
    step_s, step_cpu_s = [], []
    for k, t in enumerate(times):
        t0, c0 = time.perf_counter(), time.process_time()
        st = mesh.step(float(t), pos[k], gmst_rad=gmst[k])
        if k >= warm:
            step_s.append(time.perf_counter() - t0)
            step_cpu_s.append(time.process_time() - c0)
    n = mesh.n
    # the nearest-gateway routing alone, scipy against networkx, on the last tick's graph
    vis = st.gw_visibility
    isl = Edges.isl(st.edges[:, 0], st.edges[:, 1], st.edge_length_m)
    gw_delay = vis.range_m / C_M_S
    scipy_s = []
    for _ in range(9):
        t0 = time.perf_counter()
        routes = nearest_gateway(n, isl, vis.site, vis.sat, gw_delay, len(mesh.gateways))
        scipy_s.append(time.perf_counter() - t0)
    g = _nx_graph(isl + Edges(vis.site + n, vis.sat, gw_delay))
    sources = set((np.unique(vis.site) + n).tolist())
    nx_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        ref = nx.multi_source_dijkstra_path_length(g, sources, weight="w")
        nx_s.append(time.perf_counter() - t0)
    got = routes.delay_s
    diff = max((abs(got[i] - d) for i, d in ref.items() if i < n), default=0.0)
    # the city matrix, scipy against networkx (a sample of cities, scaled to all)
    matrix_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        m = mesh.city_matrix_s()
        matrix_s.append(time.perf_counter() - t0)
    cities = mesh.cities
    assert cities is not None
    cv = visible_pairs(cities, pos[-1], math.radians(design.network.user_min_elevation_deg))
    cd = cv.range_m / C_M_S
    c = len(cities)
    gc = _nx_graph(isl + Edges(cv.site + n, cv.sat, cd) + Edges(cv.sat, cv.site + n + c, cd))
    sample = [i for i in range(c) if (i + n) in gc][:nx_city_sample]
    t0 = time.perf_counter()
    worst = 0.0
    for a in sample:
        ref_c = nx.single_source_dijkstra_path_length(gc, a + n, weight="w")
        for b in range(c):
            if b != a and (b + n + c) in ref_c:
                worst = max(worst, abs(m[a, b] - ref_c[b + n + c]))
    nx_matrix_s = (time.perf_counter() - t0) / max(len(sample), 1) * c
    step_med = statistics.median(step_s)
    scipy_med = statistics.median(scipy_s)
    nx_med = statistics.median(nx_s)
    matrix_med = statistics.median(matrix_s)
    return {
        "benchmark": "mesh",
        "sats": n,
        "steps": steps,
        "dt_s": dt_s,
        "start_days_after_median_epoch": start_days,
        "build_s": round(build_s, 3),
        "shells": mesh.planes.n_shells,
        "planes": mesh.planes.n_planes,
        "sats_in_shells": int(np.sum(mesh.planes.shell >= 0)),
        "lost_sats": int(np.sum(~np.isfinite(pos[-1]).all(axis=1))),
        "gateways": len(mesh.gateways),
        "links_up": int(len(st.edges)),
        "sats_reaching_a_gateway": int(np.isfinite(st.gw_delay_s).sum()),
        "gw_delay_ms_median": round(float(np.median(st.gw_delay_s[np.isfinite(st.gw_delay_s)])) * 1e3, 3),
        "gw_hops_max": int(st.gw_hops.max()),
        "step_ms_median": round(step_med * 1e3, 3),
        "step_ms_p99": round(float(np.percentile(step_s, 99)) * 1e3, 3),
        "step_cpu_ms_median": round(statistics.median(step_cpu_s) * 1e3, 3),
        "step_target_ms": 15.0,
        "routing_scipy_ms_median": round(scipy_med * 1e3, 3),
        "routing_networkx_ms_median": round(nx_med * 1e3, 3),
        "ratio_routing_vs_networkx": round(nx_med / scipy_med, 1),
        "ratio_step_vs_networkx_routing": round(nx_med / step_med, 1),
        "max_delay_difference_vs_networkx_s": float(diff),
        "city_matrix_pairs": c * (c - 1) // 2,
        "city_matrix_s_median": round(matrix_med, 4),
        "city_matrix_target_s": 1.0,
        "city_matrix_networkx_s_estimate": round(nx_matrix_s, 3),
        "city_matrix_networkx_sample": len(sample),
        "ratio_city_matrix_vs_networkx": round(nx_matrix_s / matrix_med, 1),
        "max_city_delay_difference_vs_networkx_s": float(worst),
        "note": "wall times on a shared 2-core machine; load_average shows the contention during the run",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
    }

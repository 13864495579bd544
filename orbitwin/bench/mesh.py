"""``orbitwin bench mesh``: the network core over the whole fleet, per tick, against networkx.

Positions come from SGP4 before the timing (the fleet step has them already); what is timed is
:meth:`twin.core.network.Mesh.step`: +Grid topology update, gateways in view, the nearest-gateway
routing of every satellite and the cities' traffic, at ``dt_s`` per tick; the traffic stage is
timed inside each step (the bench wraps its instance's ``Mesh._traffic``) so the step without it
(topology plus routing, the issue's 15 ms target) is reported too. The 100-city latency matrix and
networkx on the same graphs are timed in the same run, and so is the SGP4 propagation of the
fleet, a fixed workload that shows how loaded the shared machine was (a ratio that travels
between runs better than wall times do).

What each side of the routing comparison computes, from the same inputs (the tick's up laser
links with their lengths, and the (gateway, satellite) pairs in view with their slant ranges):

- ours, ``nearest_gateway``: for every satellite the one-way delay to its nearest reachable
  gateway, that gateway, the next satellite and the number of links; graph built from the arrays
  (CSR), scipy's Dijkstra with predecessors from one virtual source, pointer jumping for hops and
  gateway. All of it is timed.
- networkx, three ways: (1) ``multi_source_dijkstra_path_length`` on a prebuilt graph: distances
  only (less than ours: no gateway, next hop or hops; the graph's build not timed); (2)
  ``multi_source_dijkstra`` with paths on the prebuilt graph, the gateway, next hop and hops read
  from the paths: the same outputs as ours; (3) as (2) plus building the graph from the tick's
  arrays: the same work per tick as ours (every delay changes every tick).

The kernels alone (one-source Dijkstra distances on a prebuilt graph: scipy, and igraph and
rustworkx when installed) are timed too: they bound the prebuilt ratios any routing on that
library can reach.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.network import Mesh
from twin.core.network.geometry import C_M_S
from twin.core.network.ground import visible_pairs
from twin.core.network.routing import Edges, GatewayRoutes, nearest_gateway
from twin.core.orbit import FleetPropagator, gmst82_rad


def _positions(prop: FleetPropagator, jd: float, times_s: np.ndarray) -> tuple[list[np.ndarray], list[float],
                                                                                   list[float]]:
    """Earth-fixed positions (lost rows NaN), the sidereal angle at each time and the propagation's wall time (s)."""
    whole = math.floor(jd - 0.5) + 0.5
    out, gmst, took = [], [], []
    for t in times_s:
        t0 = time.perf_counter()
        fr = jd - whole + float(t) / 86_400.0
        g = float(gmst82_rad(whole, fr))
        o = prop.propagate(whole, fr, g)
        r = o.r_itrs_m.copy()
        r[o.error_code != 0] = np.nan
        took.append(time.perf_counter() - t0)
        out.append(r)
        gmst.append(g)
    return out, gmst, took


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


def _nx_nearest_gateway(g: Any, n: int, sources: set[int]) -> GatewayRoutes:
    """networkx's multi-source Dijkstra with paths, read into the same arrays as ``nearest_gateway`` (gateway
    nodes are ``n + gateway index``)."""
    nx = _networkx()
    dist, paths = nx.multi_source_dijkstra(g, sources, weight="w")
    delay = np.full(n, np.inf)
    hops = np.full(n, -1, dtype=np.int64)
    gateway = np.full(n, -1, dtype=np.int64)
    next_sat = np.full(n, -1, dtype=np.int64)
    for v, path in paths.items():
        if v < n:
            delay[v] = dist[v]
            hops[v] = len(path) - 1
            gateway[v] = path[0] - n
            next_sat[v] = path[-2] if len(path) > 2 else -1
    return GatewayRoutes(delay, hops, gateway, next_sat)


def _kernels(n: int, edges: np.ndarray, length_m: np.ndarray, gw_sat: np.ndarray, gw_delay_s: np.ndarray,
             repeat: int = 15) -> dict[str, float]:
    """Median ms of the bare one-source Dijkstra distances on a prebuilt graph of the tick (a virtual source
    joined to every satellite in view by its shortest ground link): scipy, and igraph and rustworkx when
    installed. The floor of any routing built on that library, against networkx's prebuilt figure."""
    from scipy.sparse.csgraph import dijkstra

    from twin.core.network.routing import shortest_per_group

    best = shortest_per_group(gw_sat, gw_delay_s)
    e = Edges.isl(edges[:, 0], edges[:, 1], length_m) + Edges(np.full(best.size, n), gw_sat[best], gw_delay_s[best])
    graph = e.graph(n + 1)
    out = {"scipy": round(_median_time(lambda: dijkstra(graph, directed=True, indices=n), repeat)[0] * 1e3, 3)}
    try:
        import igraph  # type: ignore[import-untyped,import-not-found,unused-ignore]
        g = igraph.Graph(n=n + 1, edges=np.stack([e.src, e.dst], axis=1).tolist(), directed=True)
        g.es["w"] = e.delay_s.tolist()
        out["igraph"] = round(_median_time(lambda: g.distances(source=[n], weights="w", mode="out"),
                                           repeat)[0] * 1e3, 3)
    except ImportError:
        pass
    try:
        import rustworkx  # type: ignore[import-not-found,unused-ignore]
        rg = rustworkx.PyDiGraph()
        rg.add_nodes_from(range(n + 1))
        rg.add_edges_from(list(zip(e.src.tolist(), e.dst.tolist(), e.delay_s.tolist())))
        out["rustworkx"] = round(_median_time(lambda: rustworkx.dijkstra_shortest_path_lengths(rg, n, float),
                                              repeat)[0] * 1e3, 3)
    except ImportError:
        pass
    return out


def _median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any, float]:
    """Median wall time (s), the last result and the median CPU time (s) of ``repeat`` calls."""
    times, cpu, out = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), out, statistics.median(cpu)


def bench_mesh(steps: int = 60, dt_s: float = 1.0, count: int | None = None, start_days: float = 0.0,
               nx_city_sample: int = 10, nx_repeat: int = 3,
               progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
    """Time ``steps`` mesh ticks of the fleet (after 5 warm-up ticks), the city matrix and networkx.

    ``progress(done, total)``: mesh ticks, warm-up included.
    """
    nx = _networkx()
    load_before = os.getloadavg()
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
    pos, gmst, sgp4_s = _positions(FleetPropagator(cat), jd, times)
    # the traffic stage, timed inside each step on this instance
    traffic_s: list[float] = []
    traffic_cpu_s: list[float] = []
    inner = mesh._traffic

    def timed_traffic(*args: Any) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        out = inner(*args)
        traffic_s.append(time.perf_counter() - t0)
        traffic_cpu_s.append(time.process_time() - c0)
        return out

    mesh._traffic = timed_traffic  # type: ignore[method-assign,assignment]
    step_s, step_cpu_s, net_s, net_cpu_s = [], [], [], []
    for k, t in enumerate(times):
        t0, c0 = time.perf_counter(), time.process_time()
        st = mesh.step(float(t), pos[k], gmst_rad=gmst[k])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if k >= warm:
            step_s.append(wall)
            step_cpu_s.append(cpu)
            net_s.append(wall - (traffic_s[-1] if traffic_s else 0.0))
            net_cpu_s.append(cpu - (traffic_cpu_s[-1] if traffic_cpu_s else 0.0))
        if progress is not None:
            progress(k + 1, times.size)
    n = mesh.n
    # nearest-gateway routing, ours against networkx, on the last tick's inputs
    vis = st.gw_visibility
    gw_delay = vis.range_m / C_M_S
    n_gw = len(mesh.gateways)

    def ours() -> GatewayRoutes:
        isl = Edges.isl(st.edges[:, 0], st.edges[:, 1], st.edge_length_m)
        return nearest_gateway(n, isl, vis.site, vis.sat, gw_delay, n_gw)

    scipy_s, routes, scipy_cpu = _median_time(ours, 15)
    kernels = _kernels(n, st.edges, st.edge_length_m, vis.sat, gw_delay)
    isl = Edges.isl(st.edges[:, 0], st.edges[:, 1], st.edge_length_m)
    ground = Edges(vis.site + n, vis.sat, gw_delay)
    g = _nx_graph(isl + ground)
    sources = set((np.unique(vis.site) + n).tolist())
    nx_dist_s, ref, nx_dist_cpu = _median_time(lambda: nx.multi_source_dijkstra_path_length(g, sources, weight="w"),
                                               nx_repeat)
    nx_same_s, nx_routes, nx_same_cpu = _median_time(lambda: _nx_nearest_gateway(g, n, sources), nx_repeat)
    nx_tick_s, _r, nx_tick_cpu = _median_time(lambda: _nx_nearest_gateway(_nx_graph(isl + ground), n, sources),
                                              nx_repeat)
    got = routes.delay_s
    diff = max((abs(got[i] - d) for i, d in ref.items() if i < n), default=0.0)
    reach = np.isfinite(nx_routes.delay_s)
    same_reach = bool(np.array_equal(reach, np.isfinite(got)))
    # ties aside, the same gateway, next hop and hops (ties: an equal delay either way)
    agree_gw = float(np.mean(nx_routes.gateway[reach] == routes.gateway[reach])) if reach.any() else 1.0
    agree_hops = float(np.mean(nx_routes.hops[reach] == routes.hops[reach])) if reach.any() else 1.0
    # the city matrix, scipy against networkx (a sample of cities, scaled to all)
    matrix_s, m, _c = _median_time(mesh.city_matrix_s, 3)
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
    net_med = statistics.median(net_s)
    traffic_med = statistics.median(traffic_s[warm:]) if len(traffic_s) > warm else 0.0
    sgp4_med = statistics.median(sgp4_s)
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
        "gateways": n_gw,
        "links_up": int(len(st.edges)),
        "sats_reaching_a_gateway": int(np.isfinite(st.gw_delay_s).sum()),
        "gw_delay_ms_median": round(float(np.median(st.gw_delay_s[np.isfinite(st.gw_delay_s)])) * 1e3, 3),
        "gw_hops_max": int(st.gw_hops.max()),
        "step_ms_median": round(step_med * 1e3, 3),
        "step_ms_p99": round(float(np.percentile(step_s, 99)) * 1e3, 3),
        "step_cpu_ms_median": round(statistics.median(step_cpu_s) * 1e3, 3),
        "traffic_ms_median": round(traffic_med * 1e3, 3),
        "topology_and_routing_ms_median": round(net_med * 1e3, 3),
        "topology_and_routing_ms_p99": round(float(np.percentile(net_s, 99)) * 1e3, 3),
        "topology_and_routing_cpu_ms_median": round(statistics.median(net_cpu_s) * 1e3, 3),
        "step_target_ms": 15.0,
        "sgp4_fleet_ms_median": round(sgp4_med * 1e3, 3),
        "ratio_step_vs_sgp4_same_run": round(step_med / sgp4_med, 2),
        "routing_scipy_ms_median": round(scipy_s * 1e3, 3),
        "routing_networkx_distances_prebuilt_ms": round(nx_dist_s * 1e3, 3),
        "routing_networkx_same_outputs_prebuilt_ms": round(nx_same_s * 1e3, 3),
        "routing_networkx_same_outputs_with_graph_build_ms": round(nx_tick_s * 1e3, 3),
        "ratio_routing_vs_networkx_distances_prebuilt": round(nx_dist_s / scipy_s, 1),
        "ratio_routing_vs_networkx_same_outputs_prebuilt": round(nx_same_s / scipy_s, 1),
        "ratio_routing_vs_networkx_same_work_per_tick": round(nx_tick_s / scipy_s, 1),
        "ratio_step_vs_networkx_routing_per_tick": round(nx_tick_s / step_med, 1),
        "routing_scipy_cpu_ms_median": round(scipy_cpu * 1e3, 3),
        "ratio_routing_vs_networkx_cpu": {"distances_prebuilt": round(nx_dist_cpu / scipy_cpu, 1),
                                          "same_outputs_prebuilt": round(nx_same_cpu / scipy_cpu, 1),
                                          "same_work_per_tick": round(nx_tick_cpu / scipy_cpu, 1)},
        "routing_kernel_prebuilt_ms": kernels,
        "ratio_networkx_distances_prebuilt_vs_scipy_kernel": round(nx_dist_s / (kernels["scipy"] / 1e3), 1),
        "max_delay_difference_vs_networkx_s": float(diff),
        "same_reachability_as_networkx": same_reach,
        "same_gateway_as_networkx_fraction": round(agree_gw, 6),
        "same_hops_as_networkx_fraction": round(agree_hops, 6),
        "city_matrix_pairs": c * (c - 1) // 2,
        "city_matrix_s_median": round(matrix_s, 4),
        "city_matrix_target_s": 1.0,
        "city_matrix_networkx_s_estimate": round(nx_matrix_s, 3),
        "city_matrix_networkx_sample": len(sample),
        "ratio_city_matrix_vs_networkx": round(nx_matrix_s / matrix_s, 1),
        "max_city_delay_difference_vs_networkx_s": float(worst),
        "note": "wall times on a shared 2-core machine (other engineers' work running): load averages before and "
                "after; sgp4_fleet_ms_median is a fixed workload timed in the same run",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
    }

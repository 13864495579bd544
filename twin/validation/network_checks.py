"""Network validation cases (issue 15) for ``orbitwin validate``: closed forms, and the mesh over one
orbit of the shipped fleet against its constraints, an independent shortest-path solver, the
great-circle light bound and the published +Grid London-New York figures.

Figures: docs/physics.md#validation-network and ../shared/reference/network.md (closed forms: the
longest laser link 2 sqrt((R+h)^2 - (R+g)^2) = 5,016.6 km at h = 550 km over g = 80 km; the slant
range sqrt((R+h)^2 - (R cos e)^2) - R sin e = 1,123.4 km at 550 km and 25 deg; the in-plane
spacing 2 r sin(pi/N) = 1,971.95 km for N = 22 at 550 km). The reference shortest paths are
networkx's Dijkstra (a test extra) when it is installed, else the plain binary-heap Dijkstra of
this module: both independent of scipy's csgraph, which the mesh uses.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from twin.core.constants import MU_EARTH_M3_S2, R_EARTH_M
from twin.core.network import Endpoint, GroundSites, Mesh, NetworkParams, load_gateways
from twin.core.network.geometry import (
    C_M_S, isl_feasible, light_bound_rtt_s, max_isl_range_m, max_slant_range_m, segment_min_radius_m,
)
from twin.core.network.grid import AHEAD, BEHIND, LEFT, RIGHT
from twin.core.network.ground import visible_pairs
from twin.core.network.shells import MeanElements
from twin.validation.physics_checks import Check

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

# ../shared/reference/network.md (docs/physics.md#validation-network): closed-form figures
ISL_MAX_550_80_KM = 5_016.6  # longest laser link at 550 km over an 80 km grazing altitude
SLANT_550_25_KM = 1_123.4  # slant range at 550 km and 25 deg elevation
INTRA_PLANE_72X22_KM = 1_971.95  # 2 r sin(pi/22) at 550 km
# an independent +Grid computation on Hypatia's Starlink shell 1 (72 x 22, 53 deg, ~509 km): London-New York
PUBLISHED_LDN_NYC_RTT_MS = (42.2, 43.8, 46.2)  # min, median, max
PUBLISHED_LDN_NYC_FIBRE_MS = 54.6
LDN_NYC_TOLERANCE_MS = 3.0  # the shipped fleet is not Hypatia's single shell (docs/network.md#measured)
REFERENCE_TOLERANCE_S = 1e-6  # shortest-path delays against the reference solver
_PEER = {AHEAD: BEHIND, BEHIND: AHEAD, RIGHT: LEFT, LEFT: RIGHT}


# --- ideal shells ---------------------------------------------------------------------------
def walker_elements(planes: int, per_plane: int, alt_m: float, inc_deg: float, phase_offset: float = 0.5,
                    drop: NDArray[np.bool_] | None = None) -> MeanElements:
    """Mean elements of an ideal Walker-delta shell (odd planes shifted by ``phase_offset`` slots); circular orbits.

    ``drop`` (planes * per_plane,) removes satellites (unevenly filled planes).
    """
    p, k = np.meshgrid(np.arange(planes), np.arange(per_plane), indexing="ij")
    raan = 2 * np.pi * p / planes
    u = 2 * np.pi * (k + phase_offset * (p % 2)) / per_plane
    n = planes * per_plane
    rate = math.sqrt(MU_EARTH_M3_S2 / (R_EARTH_M + alt_m) ** 3)
    keep = np.ones(n, dtype=bool) if drop is None else ~drop
    return MeanElements(np.full(n, math.radians(inc_deg))[keep], np.full(n, float(alt_m))[keep],
                        raan.ravel()[keep], u.ravel()[keep], np.full(n, rate)[keep])


def circular_positions_m(el: MeanElements, t_s: float) -> F64:
    """Positions (m) of circular orbits with elements ``el`` at ``t_s``, (n, 3), in the frame of the elements."""
    u = el.arg_latitude_rad + el.arg_latitude_rate_rad_s * t_s
    o, i = el.raan_rad, el.inclination_rad
    r = R_EARTH_M + el.altitude_m
    out: F64 = np.stack([r * (np.cos(o) * np.cos(u) - np.sin(o) * np.sin(u) * np.cos(i)),
                         r * (np.sin(o) * np.cos(u) + np.cos(o) * np.sin(u) * np.cos(i)),
                         r * np.sin(u) * np.sin(i)], axis=1)
    return out


def _check(name: str, value: float, expected: float, tol: float, unit: str, note: str = "") -> Check:
    ok = bool(abs(value - expected) <= tol)
    return Check(name, value, expected, tol, unit, ok,
                 f"{value:.6g} {unit} vs {expected:.6g} +/- {tol:.3g} {unit}{' ' + note if note else ''}")


def _bisect(closes: Callable[[float], bool], lo: float, hi: float, tol: float) -> float:
    """The largest x in [lo, hi] with ``closes(x)`` (true at lo, false at hi), to ``tol``."""
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if closes(mid) else (lo, mid)
    return lo


# --- closed forms ---------------------------------------------------------------------------
def closed_form_checks(params: NetworkParams, terminal_count: int) -> list[Check]:
    """The three closed forms, each also found from the model's own predicate (not just the formula)."""
    out = []
    alt, g = 550e3, params.grazing_altitude_m
    r = R_EARTH_M + alt
    # longest laser link: the chord the model's line-of-sight test still accepts, by bisection on its half-angle
    closed = float(max_isl_range_m(alt, g))

    def chord_closes(half_rad: float) -> bool:
        a = np.array([[r * math.cos(half_rad), r * math.sin(half_rad), 0.0]])
        b = np.array([[r * math.cos(half_rad), -r * math.sin(half_rad), 0.0]])
        return bool(isl_feasible(a, b, 1e12, g)[0][0])

    half = _bisect(chord_closes, 0.0, math.pi / 2, 1e-11)
    found = 2 * r * math.sin(half)
    out.append(_check(f"network: longest laser link at 550 km over {g / 1e3:g} km (model)", found / 1e3,
                      closed / 1e3, 0.001, "km", "(isl_feasible bisected vs 2 sqrt((R+h)^2 - (R+g)^2))"))
    if g == 80e3:
        out.append(_check("network: longest laser link at 550 km over 80 km (network.md)", closed / 1e3,
                          ISL_MAX_550_80_KM, 0.1, "km"))
    # slant range at the gateway minimum elevation: a satellite over the equator, moved away from a
    # site on the equator (where geodetic = geocentric) until the model's visibility test drops it
    e = math.radians(params.gateway_min_elevation_deg)
    site = GroundSites.from_lat_lon(["equator"], [0.0], [0.0])

    def in_view(angle_rad: float) -> bool:
        pos = np.array([[r * math.cos(angle_rad), r * math.sin(angle_rad), 0.0]])
        return bool(visible_pairs(site, pos, e).sat.size)

    angle = _bisect(in_view, 0.0, math.pi / 2, 1e-11)
    pos = np.array([r * math.cos(angle), r * math.sin(angle), 0.0])
    slant = float(np.linalg.norm(pos - site.pos_m[0]))
    closed_slant = float(max_slant_range_m(alt, e))
    out.append(_check(f"network: slant range at {params.gateway_min_elevation_deg:g} deg, 550 km (model)",
                      slant / 1e3, closed_slant / 1e3, 0.001, "km",
                      "(visible_pairs bisected vs sqrt((R+h)^2 - (R cos e)^2) - R sin e)"))
    if params.gateway_min_elevation_deg == 25.0:
        out.append(_check("network: slant range at 25 deg, 550 km (network.md)", closed_slant / 1e3, SLANT_550_25_KM,
                          0.1, "km"))
    # in-plane neighbour distance on an ideal 72 x 22 shell at 550 km: the mesh's ahead links
    el = walker_elements(72, 22, alt, 53.0)
    mesh = Mesh(el, params, terminal_count, load_gateways())
    p = circular_positions_m(el, 0.0)
    st = mesh.step(0.0, p)
    ahead = st.partner[:, AHEAD]
    has = ahead >= 0
    d = np.linalg.norm(p[has] - p[ahead[has]], axis=1)
    spacing = 2 * r * math.sin(math.pi / 22)
    err = float(np.abs(d - spacing).max()) if d.size == el.altitude_m.size else float("inf")
    out.append(_check("network: intra-plane link = 2 r sin(pi/N), 72 x 22 at 550 km", err, 0.0, 1.0, "m",
                      f"(worst of {int(has.sum())} ahead links; 2 r sin(pi/22) = {spacing / 1e3:.2f} km, "
                      f"network.md {INTRA_PLANE_72X22_KM} km; links {len(st.edges)}, +Grid 2 x 72 x 22 = 3168)"))
    return out


# --- reference shortest paths -------------------------------------------------------------------
def _heap_dijkstra(adj: dict[object, list[tuple[object, float]]], sources: list[object]) -> dict[object, float]:
    """Distances from the nearest of ``sources`` (binary heap, no decrease-key)."""
    dist: dict[object, float] = {}
    heap: list[tuple[float, int, object]] = [(0.0, k, s) for k, s in enumerate(sources)]
    heapq.heapify(heap)
    tie = len(heap)
    while heap:
        d, _, u = heapq.heappop(heap)
        if u in dist:
            continue
        dist[u] = d
        for v, w in adj.get(u, ()):
            if v not in dist:
                tie += 1
                heapq.heappush(heap, (d + w, tie, v))
    return dist


Edge = tuple[object, object, float]


@dataclass(frozen=True)
class ReferenceSolver:
    """Shortest-path distances over weighted directed edges: one graph, one run per source set (networkx or a heap)."""

    name: str
    solve: Callable[[list[Edge], list[list[object]]], list[dict[object, float]]]


def reference_solver() -> ReferenceSolver:
    """networkx's multi-source Dijkstra when installed (a test extra), else this module's heap Dijkstra."""
    try:
        import networkx as nx
    except ImportError:
        def plain(edges: list[Edge], source_sets: list[list[object]]) -> list[dict[object, float]]:
            adj: dict[object, list[tuple[object, float]]] = {}
            for a, b, w in edges:
                adj.setdefault(a, []).append((b, w))
            return [_heap_dijkstra(adj, sources) for sources in source_sets]

        return ReferenceSolver("heapq (a binary-heap Dijkstra; networkx is not installed)", plain)

    def with_nx(edges: list[Edge], source_sets: list[list[object]]) -> list[dict[object, float]]:
        g = nx.DiGraph()
        g.add_weighted_edges_from(edges, weight="w")
        out: list[dict[object, float]] = []
        for sources in source_sets:
            src = {x for x in sources if x in g}
            out.append(dict(nx.multi_source_dijkstra_path_length(g, src, weight="w")) if src else {})
        return out

    return ReferenceSolver("networkx " + str(nx.__version__), with_nx)


def _isl_edges(edges: I64, length_m: F64) -> list[Edge]:
    d = (length_m / C_M_S).tolist()
    a, b = edges[:, 0].tolist(), edges[:, 1].tolist()
    return list(zip(a, b, d)) + list(zip(b, a, d))


# --- the shipped fleet over one orbit -------------------------------------------------------------
@dataclass
class OrbitTally:
    """Worst values over the orbit's ticks."""

    ticks: int = 0
    longest_m: float = 0.0
    lowest_clearance_m: float = math.inf
    max_links: int = 0
    max_terminals: int = 0
    asymmetric: int = 0
    length_mismatch_m: float = 0.0
    duplicate_edges: int = 0
    links_mean: float = 0.0
    ref_worst_s: float = 0.0
    ref_reach_mismatch: int = 0
    ref_ticks: int = 0
    ref_pairs: int = 0
    bound_pairs: int = 0
    bound_violations: int = 0
    bound_margin_s: float = math.inf


def _tick_links(st_partner: I64, st_slot_up: NDArray[np.bool_], edges: I64, length_m: F64, pos: F64,
                tally: OrbitTally) -> None:
    lo, hi = edges[:, 0], edges[:, 1]
    length = np.linalg.norm(pos[hi] - pos[lo], axis=1)
    if length.size:
        tally.longest_m = max(tally.longest_m, float(length.max()))
        tally.lowest_clearance_m = min(tally.lowest_clearance_m,
                                       float(segment_min_radius_m(pos[lo], pos[hi]).min()) - R_EARTH_M)
        tally.length_mismatch_m = max(tally.length_mismatch_m, float(np.abs(length - length_m).max()))
    for slot, peer in _PEER.items():
        i = np.flatnonzero(st_partner[:, slot] >= 0)
        j = st_partner[i, slot]
        tally.asymmetric += int(np.sum(st_partner[j, peer] != i) + np.sum(st_slot_up[j, peer] != st_slot_up[i, slot]))
    tally.asymmetric += int(st_slot_up.sum()) - 2 * len(edges)
    tally.duplicate_edges += len(edges) - len(np.unique(lo * pos.shape[0] + hi))


def fleet_orbit_checks(params: NetworkParams, terminal_count: int, dt_s: float, reference_ticks: int,
                       reference_cities: int, catalogue_count: int | None = None,
                       progress: Callable[[float, float], None] | None = None) -> tuple[list[Check], list[str]]:
    """One orbit of the shipped fleet from its median epoch every ``dt_s``: every link and route checked.

    Each tick: link lengths within range and 80 km line of sight, terminal counts, symmetry, the
    London-New York route (RTT, stretch, light bound). ``reference_ticks`` ticks spread over the orbit:
    nearest-gateway delays of every satellite and ``reference_cities`` rows of the city matrix
    against the reference solver, and every city pair's RTT against the light bound.
    ``progress(done, total)``: after every tick, sim seconds walked of the orbit's (ticks times ``dt_s``).
    """
    from twin.core.catalogue import load_catalogue
    from twin.core.orbit import FleetPropagator, gmst82_rad

    cat = load_catalogue()
    if catalogue_count is not None:
        cat = cat.select(count=catalogue_count)
    jd = cat.median_epoch_jd()
    mesh = Mesh.from_catalogue(cat, params, terminal_count, jd)
    cities = mesh.cities
    assert cities is not None
    prop = FleetPropagator(cat)
    alt_max = float(mesh.planes.shell_altitude_m.max()) if mesh.planes.n_shells else 550e3
    orbit_s = 2 * math.pi * math.sqrt((R_EARTH_M + alt_max) ** 3 / MU_EARTH_M3_S2)
    times = np.arange(0.0, orbit_s, dt_s)
    ref_at = set(np.linspace(0, times.size - 1, max(reference_ticks, 1)).round().astype(int).tolist())
    solver = reference_solver()
    lon_i, nyc_i = cities.index("London"), cities.index("New-York-Newark")
    whole = math.floor(jd - 0.5) + 0.5
    tally = OrbitTally()
    rtt_ms: list[float] = []
    stretch: list[float] = []
    below_bound = 0
    fibre_ms = math.nan
    lost = 0
    started = time.perf_counter()
    for k, t in enumerate(times):
        fr = jd - whole + float(t) / 86_400.0
        gmst = float(gmst82_rad(whole, fr))
        o = prop.propagate(whole, fr, gmst)
        pos = o.r_itrs_m.copy()
        pos[o.error_code != 0] = np.nan
        lost = max(lost, int(np.sum(o.error_code != 0)))
        st = mesh.step(float(t), pos, gmst_rad=gmst)
        tally.ticks += 1
        tally.max_links = max(tally.max_links, int(st.links_up.max()))
        tally.max_terminals = max(tally.max_terminals, int(st.terminals_in_use.max()))
        tally.links_mean += float(st.links_up.mean())
        _tick_links(st.partner, st.slot_up, st.edges, st.edge_length_m, pos, tally)
        r = mesh.route(Endpoint.city(lon_i), Endpoint.city(nyc_i))
        if r.reachable:
            rtt_ms.append(r.rtt_s * 1e3)
            stretch.append(r.stretch)
            fibre_ms = r.fibre_rtt_s * 1e3
            below_bound += int(r.rtt_s < r.bound_rtt_s)
        if k in ref_at:
            _reference_tick(mesh, pos, st.edges, st.edge_length_m, st.gw_visibility.site, st.gw_visibility.sat,
                            st.gw_visibility.range_m, st.gw_delay_s, cities, reference_cities, solver, tally)
        if progress is not None:
            progress((k + 1) * dt_s, times.size * dt_s)
    elapsed = time.perf_counter() - started
    out: list[Check] = []
    where = (f"({tally.ticks} ticks every {dt_s:g} s over {orbit_s / 60:.1f} min, {mesh.n} satellites, "
             f"{lost} lost, {mesh.planes.n_shells} shells)")
    out.append(Check("network: every link within range and line of sight over an orbit",
                     tally.lowest_clearance_m, params.grazing_altitude_m, 0.0, "m",
                     tally.longest_m <= params.isl_max_range_m and tally.lowest_clearance_m >= params.grazing_altitude_m
                     and tally.length_mismatch_m <= 1e-3,
                     f"longest {tally.longest_m / 1e3:.1f} km <= {params.isl_max_range_m / 1e3:g} km, lowest line of "
                     f"sight {tally.lowest_clearance_m / 1e3:.1f} km >= {params.grazing_altitude_m / 1e3:g} km, "
                     f"reported lengths within {tally.length_mismatch_m:.2g} m {where}"))
    out.append(Check("network: no satellite over its terminal count, links symmetric", float(tally.asymmetric),
                     0.0, 0.0, "links",
                     tally.max_links <= terminal_count and tally.max_terminals <= terminal_count
                     and tally.asymmetric == 0 and tally.duplicate_edges == 0,
                     f"most links up {tally.max_links}, terminals in use {tally.max_terminals} <= {terminal_count}; "
                     f"{tally.asymmetric} one-sided, {tally.duplicate_edges} duplicate links; mean "
                     f"{tally.links_mean / max(tally.ticks, 1):.2f} links up per satellite"))
    out.append(Check(f"network: shortest-path delays vs {solver.name.split()[0]}", tally.ref_worst_s, 0.0,
                     REFERENCE_TOLERANCE_S, "s",
                     tally.ref_worst_s <= REFERENCE_TOLERANCE_S and tally.ref_reach_mismatch == 0 and tally.ref_ticks > 0,
                     f"worst {tally.ref_worst_s:.3g} s <= 1 us over {tally.ref_pairs} delays on {tally.ref_ticks} ticks "
                     f"(every satellite to its nearest gateway, {reference_cities} cities to all; reference "
                     f"{solver.name}); {tally.ref_reach_mismatch} reachability differences"))
    out.append(Check("network: every route RTT >= great-circle light time", float(tally.bound_violations + below_bound),
                     0.0, 0.0, "routes", tally.bound_violations + below_bound == 0 and tally.bound_pairs > 0,
                     f"{tally.bound_pairs} city pairs on {tally.ref_ticks} ticks and {len(rtt_ms)} London-New York "
                     f"routes, none below; smallest margin {tally.bound_margin_s * 1e3:.2f} ms"))
    lines: list[str] = []
    if rtt_ms:
        med = float(np.median(rtt_ms))
        pub = PUBLISHED_LDN_NYC_RTT_MS
        out.append(_check("network: London-New York median RTT over an orbit vs published +Grid", med, pub[1],
                          LDN_NYC_TOLERANCE_MS, "ms",
                          f"(min {min(rtt_ms):.1f}, max {max(rtt_ms):.1f} ms; published {pub[0]} / {pub[1]} / {pub[2]} "
                          f"ms; difference {med - pub[1]:+.1f} ms; median stretch {float(np.median(stretch)):.3f} vs a "
                          f"great-circle fibre of {fibre_ms:.1f} ms)"))
        lines = [
            f"network: London-New York over one orbit ({len(rtt_ms)} of {tally.ticks} ticks routed): RTT min "
            f"{min(rtt_ms):.1f}, median {med:.1f}, max {max(rtt_ms):.1f} ms, median stretch "
            f"{float(np.median(stretch)):.3f} against a great-circle fibre ({fibre_ms:.1f} ms; published "
            f"{PUBLISHED_LDN_NYC_FIBRE_MS} ms at n = 1.47).",
            f"  published +Grid (Hypatia's shell 1, 72 x 22, 53 deg, ~509 km): {pub[0]} / {pub[1]} / {pub[2]} ms; "
            f"the twin's median differs by {med - pub[1]:+.1f} ms because the shipped fleet is several shells "
            "(denser, some lower, at other inclinations), not one 1,584-satellite shell, so a route has more and "
            "better-placed satellites to choose from (docs/network.md#measured).",
            f"  ({elapsed:.1f} s for the orbit walk)",
        ]
    else:
        out.append(Check("network: London-New York median RTT over an orbit vs published +Grid", math.inf,
                         PUBLISHED_LDN_NYC_RTT_MS[1], LDN_NYC_TOLERANCE_MS, "ms", False, "never routed"))
    return out, lines


def _reference_tick(mesh: Mesh, pos: F64, edges: I64, length_m: F64, gw_site: I64, gw_sat: I64, gw_range_m: F64,
                    gw_delay_s: F64, cities: GroundSites, n_cities: int, solver: ReferenceSolver,
                    tally: OrbitTally) -> None:
    """One tick against the reference solver and the light bound."""
    n = mesh.n
    # one graph: ground nodes are ends only (gateways and "up" cities have edges out, "down" cities edges in),
    # so no shortest path passes through the ground and one graph serves every source set
    gw_edges: list[Edge] = [
        (("gw", s), k, d) for s, k, d in zip(gw_site.tolist(), gw_sat.tolist(), (gw_range_m / C_M_S).tolist())]
    vis = visible_pairs(cities, pos, math.radians(mesh.params.user_min_elevation_deg))
    cd = (vis.range_m / C_M_S).tolist()
    city_edges: list[Edge] = ([(("up", s), k, d) for s, k, d in zip(vis.site.tolist(), vis.sat.tolist(), cd)]
                              + [(k, ("down", s), d) for s, k, d in zip(vis.site.tolist(), vis.sat.tolist(), cd)])
    seen = sorted(set(vis.site.tolist()))
    picks = [seen[i] for i in np.linspace(0, len(seen) - 1, min(n_cities, len(seen))).round().astype(int)] if seen else []
    refs = solver.solve(_isl_edges(edges, length_m) + gw_edges + city_edges,
                        [[("gw", s) for s in sorted(set(gw_site.tolist()))]] + [[("up", a)] for a in picks])
    want = np.array([refs[0].get(i, math.inf) for i in range(n)])
    reach = np.isfinite(want)
    tally.ref_reach_mismatch += int(np.sum(reach != np.isfinite(gw_delay_s)))
    if reach.any():
        tally.ref_worst_s = max(tally.ref_worst_s, float(np.abs(gw_delay_s[reach] - want[reach]).max()))
    tally.ref_pairs += int(reach.sum())
    tally.ref_ticks += 1
    m = mesh.city_matrix_s()
    nc = len(cities)
    for a, ref_c in zip(picks, refs[1:]):
        got = np.delete(m[a], a)
        exp = np.delete(np.array([ref_c.get(("down", b), math.inf) for b in range(nc)]), a)
        fin = np.isfinite(exp)
        tally.ref_reach_mismatch += int(np.sum(fin != np.isfinite(got)))
        if fin.any():
            tally.ref_worst_s = max(tally.ref_worst_s, float(np.abs(got[fin] - exp[fin]).max()))
        tally.ref_pairs += int(fin.sum())
    finite = np.isfinite(m) & ~np.eye(nc, dtype=bool)
    a_i, b_i = np.nonzero(finite)
    bound = light_bound_rtt_s(cities.pos_m[a_i], cities.pos_m[b_i])
    margin = 2 * m[a_i, b_i] - bound
    tally.bound_pairs += int(a_i.size)
    tally.bound_violations += int(np.sum(margin < 0))
    if margin.size:
        tally.bound_margin_s = min(tally.bound_margin_s, float(margin.min()))


def network_report(quick: bool = False,
                   progress: Callable[[float, float], None] | None = None) -> tuple[list[Check], list[str]]:
    """For ``orbitwin validate``: the closed forms and one orbit of the shipped fleet (every 120 s quick, else 10 s).

    ``progress(done, total)``: the orbit walk's, as :func:`fleet_orbit_checks`.
    """
    from twin.core.design import load_design

    design = load_design()
    params = design.network
    count = design.power.isl_terminal_count
    checks = closed_form_checks(params, count)
    orbit, lines = fleet_orbit_checks(params, count, dt_s=120.0 if quick else 10.0,
                                      reference_ticks=2 if quick else 6, reference_cities=3 if quick else 10,
                                      progress=progress)
    return checks + orbit, lines


__all__ = ["ReferenceSolver", "closed_form_checks", "circular_positions_m", "fleet_orbit_checks", "network_report",
           "reference_solver", "walker_elements"]

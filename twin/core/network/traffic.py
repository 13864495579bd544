"""Offered traffic between the user endpoints (cities) and the gateways, routed on the per-tick shortest paths.

Each city offers a share of the total (``network.offered_traffic_gbps``) in proportion to its
population (weights given, or by the rank-size rule on a list sorted by population). The traffic
enters the mesh at the city's access satellite: the satellite in view (at or above the user
minimum elevation) whose user link plus its route to the nearest reachable gateway is shortest, so
the city's path is its shortest path to any gateway; it then follows the nearest-gateway tree
(``next_sat``) to the satellite that downlinks to the gateway. Loads are accumulated along that
tree with a handful of array operations per hop level (no Python loop over cities or paths).

One direction is modelled, the busier one (gateway to user, the download); the return traffic
takes the same links the other way and laser and ground links are full duplex, so it never sets a
link's utilisation. Loads are never clipped: a link above its capacity is reported as overloaded
(utilisation > 1). Cities with no route count as unserved. Pure numpy; model: docs/network.md#traffic.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from twin.core.constants import R_EARTH_M
from twin.core.network.geometry import C_M_S
from twin.core.network.ground import GroundSites, SiteIndex

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

# estimate: exponent q of the rank-size rule population ~ rank^-q for the world's largest urban
# agglomerations (a least-squares fit to the UN World Urbanization Prospects 2014 populations of
# 2015, ranks 1-60, gives 0.48); used when a city list sorted by population has no population.
RANK_SIZE_EXPONENT = 0.5


def rank_size_weights(n_cities: int, exponent: float = RANK_SIZE_EXPONENT) -> F64:
    """Population shares (sum 1) of ``n_cities`` listed by decreasing population: rank^-exponent."""
    if n_cities <= 0:
        return np.zeros(0)
    w: F64 = np.arange(1, n_cities + 1, dtype=np.float64) ** -float(exponent)
    out: F64 = w / w.sum()
    return out


def city_demand_gbps(offered_total_gbps: float, weights: ArrayLike) -> F64:
    """Each city's offered traffic (Gbit/s): the total split in proportion to ``weights`` (>= 0)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError("city weights must be a 1-D array of finite values >= 0")
    total = w.sum()
    if total <= 0:
        return np.zeros_like(w)
    out: F64 = float(offered_total_gbps) * w / total
    return out


_MOVE_LIMIT_RAD = np.radians(0.5)  # setting: candidates are re-listed once a satellite has moved this far
_CANDIDATE_MARGIN_RAD = np.radians(0.8)  # setting: > the move limit plus the geodetic-up tilt (<= 0.06 deg here)
_RISE_LIMIT_M = 20_000.0  # setting: candidates cover each satellite up to this much higher; re-listed beyond
_INDEX_STEP_RAD = np.radians(0.5)  # setting: shared site indices cover central angles rounded up to this
_INDEX_CACHE: dict[tuple[bytes, float], SiteIndex] = {}
_INDEX_CACHE_MAX = 8  # setting: site indices kept for reuse by every mesh over the same sites (~0.1 s each)


def _site_index(sites: GroundSites, angle_rad: float) -> SiteIndex:
    """A site index covering ``angle_rad`` (rounded up), shared by every mesh over the same sites."""
    angle_q = float(np.ceil(angle_rad / _INDEX_STEP_RAD) * _INDEX_STEP_RAD)
    key = (hashlib.blake2b(np.ascontiguousarray(sites.pos_m).tobytes(), digest_size=16).digest(), angle_q)
    index = _INDEX_CACHE.get(key)
    if index is None:
        while len(_INDEX_CACHE) >= _INDEX_CACHE_MAX:
            del _INDEX_CACHE[next(iter(_INDEX_CACHE))]
        index = _INDEX_CACHE[key] = SiteIndex(sites, angle_q)
    return index


def _view_angle_rad(r_m: F64, min_elevation_rad: float) -> F64:
    """Largest Earth-central angle at which a satellite at radius ``r_m`` is seen above the elevation
    (from the lowest possible site: the polar radius); as :func:`central_angle_rad`, vectorised."""
    r_site = R_EARTH_M - 21_385.0
    out: F64 = np.arccos(np.minimum(r_site * np.cos(min_elevation_rad) / r_m, 1.0)) - min_elevation_rad
    return out


class AccessCandidates:
    """(site, satellite) pairs that may be in view, kept while no satellite has moved far.

    The list holds, for each satellite, the sites within the largest central angle it can be seen
    at (at the minimum elevation, from the lowest possible site, ``_RISE_LIMIT_M`` higher than it
    flies) plus ``_CANDIDATE_MARGIN_RAD``. It is re-listed when a satellite has moved more than
    ``_MOVE_LIMIT_RAD`` as seen from the Earth's centre (asin(displacement / R) bounds the angle),
    risen more than ``_RISE_LIMIT_M``, or a satellite not listed then has a position now. Each tick
    only the listed pairs' elevations are checked, with the same expression as
    :func:`twin.core.network.ground.visible_pairs`, so the pairs in view are exactly that
    function's (tested).
    """

    def __init__(self, sites: GroundSites, min_elevation_rad: float) -> None:
        self.sites = sites
        self.min_elevation_rad = float(min_elevation_rad)
        self._pos = np.zeros((0, 3))
        self._r2_limit = np.zeros(0)
        self._finite = np.zeros(0, dtype=bool)
        self.site = np.zeros(0, dtype=np.int64)
        self.sat = np.zeros(0, dtype=np.int64)
        self._site_pos = np.zeros((0, 3))
        self._site_up = np.zeros((0, 3))
        self.starts = np.zeros(0, dtype=np.int64)  # first pair of each site with pairs
        self.refreshes = 0

    def _stale(self, pos: F64, finite: B) -> bool:
        if self._pos.shape != pos.shape or np.any(finite & ~self._finite):
            return True
        d = pos - self._pos
        moved2 = np.fmax.reduce(np.einsum("ij,ij->i", d, d))  # NaN (lost now or then) ignored
        if moved2 >= (R_EARTH_M * np.sin(_MOVE_LIMIT_RAD)) ** 2:
            return True
        return bool(np.any(np.einsum("ij,ij->i", pos, pos) > self._r2_limit))  # NaN compares False

    def _refresh(self, pos: F64, finite: B) -> None:
        sites = self.sites
        ids = np.flatnonzero(finite)
        p = pos[ids]
        r = np.sqrt(np.einsum("ij,ij->i", p, p))
        limit = _view_angle_rad(r + _RISE_LIMIT_M, self.min_elevation_rad) + _CANDIDATE_MARGIN_RAD
        if ids.size:
            s, k = _site_index(sites, float(limit.max())).candidates(p)
            u_site = sites.pos_m / np.sqrt(np.einsum("ij,ij->i", sites.pos_m, sites.pos_m))[:, None]
            cos_angle = np.einsum("ij,ij->i", p[k], u_site[s]) / r[k]
            keep = cos_angle >= np.cos(np.minimum(limit[k], np.pi))
            s, k = s[keep], k[keep]
            order = np.lexsort((k, s))  # by site, then satellite
            s, k = s[order], k[order]
        else:
            s = k = np.zeros(0, dtype=np.int64)
        self.site, self.sat = s.astype(np.int64), ids[k].astype(np.int64)
        self._site_pos, self._site_up = sites.pos_m[self.site], sites.up[self.site]
        self.starts = np.flatnonzero(np.r_[True, self.site[1:] != self.site[:-1]]) if s.size else self.starts[:0]
        r2_limit = np.full(pos.shape[0], np.inf)
        r2_limit[ids] = (r + _RISE_LIMIT_M) ** 2
        self._pos, self._finite, self._r2_limit = pos.copy(), finite.copy(), r2_limit
        self.refreshes += 1

    def in_view(self, pos: F64) -> tuple[B, F64]:
        """Which listed pairs are in view now and their slant range (m); re-lists first when stale."""
        finite = np.isfinite(pos.sum(axis=1))  # any non-finite coordinate makes the sum non-finite
        if self._stale(pos, finite):
            self._refresh(pos, finite)
        v = pos[self.sat] - self._site_pos
        d = np.sqrt(np.einsum("ij,ij->i", v, v))
        ok: B = np.einsum("ij,ij->i", v, self._site_up) >= np.sin(self.min_elevation_rad) * d
        return ok, d


def access_from_candidates(cand: AccessCandidates, pos: F64, gw_delay_s: F64) -> I64:
    """Per site, the satellite in view whose link delay plus route delay to a gateway is least (-1: none);
    ties go to the lower satellite index. Same result as :func:`access_satellites` on the pairs in view."""
    out = np.full(len(cand.sites), -1, dtype=np.int64)
    ok, d = cand.in_view(pos)
    if cand.site.size == 0:
        return out
    cost = np.where(ok, d / C_M_S + gw_delay_s[cand.sat], np.inf)
    best = np.minimum.reduceat(cost, cand.starts)
    counts = np.diff(np.r_[cand.starts, cost.size])
    hit = np.flatnonzero((cost == np.repeat(best, counts)) & np.isfinite(cost))
    if hit.size:
        first = hit[np.r_[True, cand.site[hit][1:] != cand.site[hit][:-1]]]
        out[cand.site[first]] = cand.sat[first]
    return out


def access_satellites(site: I64, sat: I64, link_delay_s: F64, gw_delay_s: F64, n_sites: int) -> I64:
    """Per site, the satellite in view whose link delay plus route delay to a gateway is least (-1: none).

    ``site``/``sat``/``link_delay_s``: the (site, satellite) pairs in view and their link delay (s);
    ``gw_delay_s`` (n,): each satellite's delay to its nearest reachable gateway (inf: none).
    """
    out = np.full(n_sites, -1, dtype=np.int64)
    cost = link_delay_s + gw_delay_s[sat]
    ok = np.isfinite(cost)
    if not ok.any():
        return out
    s, k, c = site[ok], sat[ok], cost[ok]
    order = np.lexsort((k, c, s))  # by site, then cost (ties: lower satellite index)
    first = np.r_[True, s[order][1:] != s[order][:-1]]
    best = order[first]
    out[s[best]] = k[best]
    return out


@dataclass(frozen=True)
class TrafficState:
    """Loads of one tick (Gbit/s) and utilisations (load / capacity, > 1 when overloaded).

    ISL arrays are over the mesh's up links ``edges`` (m,); satellite arrays (n,); city arrays (c,).
    ``feeder_load_gbps``: on the satellite's link to its gateway; ``user_load_gbps``: on its links
    to the cities it serves (each city its own link); ``sat_throughput_gbps``: the traffic through
    the satellite, counted once (what it receives from its gateway or the previous satellite equals
    what it sends on to the next satellites and its cities); ``sat_max_util``: the highest
    utilisation of its links carrying traffic (laser, feeder, user); ``overloaded``: the number of
    links (laser, feeder and user) above capacity; ``overloaded_edges``: the indices into ``edges``
    of the overloaded laser links; ``gateway_load_gbps`` (g,): what each gateway sends up (the sum
    of its satellites' feeder loads); ``unserved_gbps``: offered by cities with no route.
    """

    edge_load_gbps: F64
    edge_capacity_gbps: F64
    edge_util: F64
    feeder_load_gbps: F64
    user_load_gbps: F64
    sat_throughput_gbps: F64
    sat_max_util: F64
    city_demand_gbps: F64
    city_sat: I64
    city_util: F64
    overloaded: int
    overloaded_edges: I64
    offered_gbps: float
    carried_gbps: float
    unserved_gbps: float
    gateway_load_gbps: F64


def route_traffic(demand_gbps: F64, city_sat: I64, next_sat: I64, edges: I64,
                  isl_capacity_gbps: float, ground_capacity_gbps: float,
                  sat_gateway: I64 | None = None, n_gateways: int = 0,
                  sat_demand_gbps: F64 | None = None) -> TrafficState:
    """Accumulate each city's demand along the nearest-gateway tree.

    ``demand_gbps`` (c,): each city's offered traffic; ``city_sat`` (c,): its access satellite (-1:
    unserved); ``next_sat`` (n,): the next satellite toward the nearest gateway (-1: the satellite
    downlinks itself, or has no route; access satellites always have a route); ``edges`` (m, 2):
    the up laser links; ``sat_gateway`` (n,): each satellite's nearest gateway (for the load each
    gateway receives, ``n_gateways`` long). The traffic through every satellite is summed by walking all the loaded
    paths one hop per step (as many steps as the longest path's hops), one ``np.add.at`` over
    at most one walker per served city each. ``sat_demand_gbps`` (n,): traffic between a satellite and its
    nearest gateway that no city offers (compute jobs' input arriving at the satellite that runs them): it
    loads the same path and feeder, not a user link.
    """
    n = next_sat.size
    demand = np.asarray(demand_gbps, dtype=np.float64)
    served = city_sat >= 0
    through = np.zeros(n)
    cur, load = city_sat[served], demand[served]
    if sat_demand_gbps is not None:
        extra = np.asarray(sat_demand_gbps, dtype=np.float64)
        routed = np.ones(n, dtype=bool) if sat_gateway is None else sat_gateway >= 0
        own = np.flatnonzero((extra > 0) & routed)  # a satellite with no route gets nothing
        cur, load = np.concatenate([cur, own]), np.concatenate([load, extra[own]])
    for _ in range(n + 1):  # a tree: at most n hops (guards against a malformed next_sat)
        if cur.size == 0:
            break
        np.add.at(through, cur, load)
        nxt = next_sat[cur]
        keep = nxt >= 0
        cur, load = nxt[keep], load[keep]
    else:
        raise ValueError("next_sat is not a tree (a cycle)")
    has_next = next_sat >= 0
    up_load = np.where(has_next, through, 0.0)  # on the link to next_sat, flowing from it
    feeder = np.where(has_next, 0.0, through)
    user: F64 = np.bincount(city_sat[served], weights=demand[served], minlength=n).astype(np.float64)
    lo, hi = edges[:, 0], edges[:, 1]
    edge_load = np.where(next_sat[lo] == hi, up_load[lo], 0.0) + np.where(next_sat[hi] == lo, up_load[hi], 0.0)
    edge_cap = np.full(edge_load.size, float(isl_capacity_gbps))
    with np.errstate(divide="ignore", invalid="ignore"):
        edge_util = np.where(edge_load > 0, edge_load / edge_cap, 0.0)
        feeder_util = np.where(feeder > 0, feeder / ground_capacity_gbps, 0.0)
        city_util = np.where(served & (demand > 0), demand / ground_capacity_gbps, 0.0)
    sat_max = feeder_util.copy()
    loaded = np.flatnonzero(edge_load > 0)
    np.maximum.at(sat_max, lo[loaded], edge_util[loaded])
    np.maximum.at(sat_max, hi[loaded], edge_util[loaded])
    np.maximum.at(sat_max, city_sat[served], city_util[served])
    over_edges = np.flatnonzero(edge_util > 1.0)
    overloaded = int(over_edges.size + np.count_nonzero(feeder_util > 1.0) + np.count_nonzero(city_util > 1.0))
    offered = float(demand.sum())
    carried = float(demand[served].sum())
    gw_load = np.zeros(n_gateways)
    if sat_gateway is not None:
        roots = np.flatnonzero(feeder > 0)
        gw_load = np.bincount(sat_gateway[roots], weights=feeder[roots], minlength=n_gateways).astype(np.float64)
    return TrafficState(edge_load, edge_cap, edge_util, feeder, user, through, sat_max, demand, city_sat.copy(),
                        city_util, overloaded, over_edges.astype(np.int64), offered, carried, offered - carried,
                        gw_load)


def empty_traffic(n_sats: int, n_edges: int, n_cities: int, isl_capacity_gbps: float,
                  n_gateways: int = 0) -> TrafficState:
    """No traffic (no cities configured)."""
    z = np.zeros(n_sats)
    return TrafficState(np.zeros(n_edges), np.full(n_edges, float(isl_capacity_gbps)), np.zeros(n_edges), z, z.copy(),
                        z.copy(), z.copy(), np.zeros(n_cities), np.full(n_cities, -1, dtype=np.int64),
                        np.zeros(n_cities), 0, np.zeros(0, dtype=np.int64), 0.0, 0.0, 0.0, np.zeros(n_gateways))


def add_flows(tr: TrafficState, edges: I64, graph: csr_matrix, src: I64, dst: I64,
              gbps: F64) -> tuple[TrafficState, int]:
    """``tr`` with satellite-to-satellite flows added (compute jobs' checkpoints moving between satellites):
    flow k carries ``gbps[k]`` from satellite ``src[k]`` to ``dst[k]`` over the shortest-delay path of the
    laser links ``edges`` (m, 2) (``graph``: their CSR adjacency over at least the satellites). The loads,
    utilisations and overload counts are recomputed; returns the new state and how many flows had no path.
    """
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    gbps = np.asarray(gbps, dtype=np.float64)
    if src.size == 0:
        return tr, 0
    n = tr.sat_throughput_gbps.size
    lo, hi = np.minimum(edges[:, 0], edges[:, 1]), np.maximum(edges[:, 0], edges[:, 1])
    keys = lo * n + hi
    order = np.argsort(keys)
    sources, which = np.unique(src, return_inverse=True)
    _, pred = dijkstra(graph, directed=True, indices=sources, return_predecessors=True)
    edge_load = tr.edge_load_gbps.copy()
    through = tr.sat_throughput_gbps.copy()
    unrouted = 0
    for k in range(src.size):
        path = [int(dst[k])]
        row = pred[which[k]]
        while path[-1] != src[k] and row[path[-1]] >= 0:
            path.append(int(row[path[-1]]))
        if path[-1] != src[k]:
            unrouted += 1
            continue
        nodes = np.array(path[::-1], dtype=np.int64)
        a, b = np.minimum(nodes[:-1], nodes[1:]), np.maximum(nodes[:-1], nodes[1:])
        idx = order[np.searchsorted(keys[order], a * n + b)]
        edge_load[idx] += gbps[k]
        through[nodes] += gbps[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        edge_util = np.where(edge_load > 0, edge_load / tr.edge_capacity_gbps, 0.0)
    sat_max = tr.sat_max_util.copy()
    loaded = np.flatnonzero(edge_load > 0)
    np.maximum.at(sat_max, lo[loaded], edge_util[loaded])
    np.maximum.at(sat_max, hi[loaded], edge_util[loaded])
    over_edges = np.flatnonzero(edge_util > 1.0)
    overloaded = tr.overloaded - tr.overloaded_edges.size + over_edges.size
    return dataclasses.replace(tr, edge_load_gbps=edge_load, edge_util=edge_util, sat_throughput_gbps=through,
                               sat_max_util=sat_max, overloaded=int(overloaded),
                               overloaded_edges=over_edges.astype(np.int64)), unrouted

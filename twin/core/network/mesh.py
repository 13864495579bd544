"""The constellation's network, one call per tick: +Grid links, gateways in view, nearest-gateway routes.

:class:`Mesh` holds the shells and planes (grouped once from the catalogue's mean elements) and
the link assignments (kept from tick to tick). :meth:`Mesh.step` takes the Earth-fixed positions
and which laser terminals work and are powered, and returns per-satellite arrays
(:class:`MeshState`). :meth:`Mesh.city_matrix` and :meth:`Mesh.route` work on the last step's
mesh. Pure numpy/scipy: no clock, no I/O beyond reading the ground-site files at construction.
Model and figures: docs/network.md, docs/physics.md#network.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.core.catalogue import Catalogue
from twin.core.network.geometry import C_M_S, fibre_rtt_s, great_circle_m, light_bound_rtt_s
from twin.core.network.grid import (
    N_SLOTS, REMATCH_EVERY_TICKS, GridLinks, count4, edge_lengths_m, slot_arrays, update_links,
)
from twin.core.network.ground import (
    GroundSites, SiteIndex, Visibility, VisibilityCache, central_angle_rad, highest_altitude_m, load_cities,
    load_gateways, visible_pairs,
)
from twin.core.network.params import NetworkParams
from twin.core.network.routing import Edges, GatewayRoutes, ground_matrix_s, nearest_gateway, shortest_path
from twin.core.network.shells import MeanElements, Planes, arg_latitude_rad, elements_from_catalogue, group_planes
from twin.core.network.traffic import (
    AccessCandidates, TrafficState, access_from_candidates, add_flows, city_demand_gbps, empty_traffic,
    rank_size_weights, route_traffic,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

_SHARED_INDEX_STEP_M = 50_000.0  # setting: shared site indices cover altitudes rounded up to 50 km, plus 50 km
_SHARED_INDEX_MAX = 16  # setting: site indices kept for reuse (oldest dropped first)
_shared_index: dict[tuple[bytes, float, float], SiteIndex] = {}


def ensure_index(index: SiteIndex | None, sites: GroundSites, sat_pos_m: F64, min_elevation_rad: float) -> SiteIndex:
    """``index`` if it covers the highest finite satellite of ``sat_pos_m``, else a shared one that does.

    As :func:`twin.core.network.ground.ensure_index`, but the indices built are kept for every mesh
    over the same sites (keyed by the sites' positions, the elevation and the altitude rounded up):
    an index costs ~0.1 s, and the tests and the runtime build many small twins.
    """
    alt_max = highest_altitude_m(sat_pos_m)
    if index is not None and index.max_central_angle_rad >= central_angle_rad(alt_max, min_elevation_rad):
        return index
    alt_q = float(np.ceil(alt_max / _SHARED_INDEX_STEP_M) + 1.0) * _SHARED_INDEX_STEP_M
    key = (hashlib.blake2b(np.ascontiguousarray(sites.pos_m).tobytes(), digest_size=16).digest(),
           float(min_elevation_rad), alt_q)
    shared = _shared_index.get(key)
    if shared is None:
        while len(_shared_index) >= _SHARED_INDEX_MAX:
            del _shared_index[next(iter(_shared_index))]
        shared = _shared_index[key] = SiteIndex(sites, central_angle_rad(alt_q, min_elevation_rad))
    return shared


def terminals_from_count(working: ArrayLike, terminal_count: int) -> B:
    """Terminal mask (n, 4) from a count of working terminals per satellite.

    Slots are ahead, behind, right, left; a design with fewer than four terminals fits the first
    ones; failures take the highest slots first (cross-plane before intra-plane).
    """
    w = np.clip(np.asarray(working, dtype=np.int64), 0, min(terminal_count, N_SLOTS))
    out: B = np.arange(N_SLOTS)[None, :] < w[:, None]
    return out


@dataclass(frozen=True)
class Endpoint:
    """One end of a route: a satellite, gateway or city (by index) or any latitude/longitude (deg)."""

    kind: str
    index: int = -1
    lat_deg: float = 0.0
    lon_deg: float = 0.0
    indices: tuple[int, ...] = ()  # kind "gateways": any of these gateways (the nearest reachable one)

    @classmethod
    def sat(cls, i: int) -> Endpoint:
        return cls("sat", int(i))

    @classmethod
    def gateway(cls, i: int) -> Endpoint:
        return cls("gateway", int(i))

    @classmethod
    def gateways(cls, indices: tuple[int, ...]) -> Endpoint:
        """Any of these gateways: the route ends at whichever gives the shortest delay."""
        if not indices:
            raise ValueError("a gateway set needs at least one gateway")
        return cls("gateways", -1, indices=tuple(int(i) for i in indices))

    @classmethod
    def city(cls, i: int) -> Endpoint:
        return cls("city", int(i))

    @classmethod
    def point(cls, lat_deg: float, lon_deg: float) -> Endpoint:
        if not (np.isfinite(lat_deg) and np.isfinite(lon_deg) and abs(lat_deg) <= 90 and abs(lon_deg) <= 360):
            raise ValueError("latitude must be within +-90 deg and longitude within +-360 deg")
        return cls("point", -1, float(lat_deg), float(lon_deg))


@dataclass(frozen=True)
class Route:
    """A route between two endpoints over the last step's mesh.

    ``path``: names of the nodes (ground ends, then satellite names); ``sats``: satellite indices;
    ``one_way_s``/``rtt_s``: propagation delay (inf when unreachable); ``hops``: links;
    ``bottleneck_gbps``: smallest link capacity on the path; ``fibre_rtt_s``: a great-circle fibre
    between the two ends (ground ends only, else NaN); ``stretch``: ``rtt_s / fibre_rtt_s``;
    ``bound_rtt_s``: the great-circle light-time lower bound (ground ends only, else NaN).
    """

    path: tuple[str, ...]
    sats: I64
    one_way_s: float
    rtt_s: float
    hops: int
    bottleneck_gbps: float
    fibre_rtt_s: float
    stretch: float
    bound_rtt_s: float

    @property
    def reachable(self) -> bool:
        return bool(np.isfinite(self.one_way_s))


@dataclass(frozen=True)
class MeshState:
    """One tick of the network, arrays over satellites (n,) unless stated.

    ``partner`` (n, 4): the satellite each terminal (ahead, behind, right, left) is assigned to, -1
    none; ``slot_up`` (n, 4): that link is up; ``links_up``: links up; ``terminals_in_use``: links
    assigned that close (up or acquiring): the terminals drawing power; ``edges`` (m, 2) the up
    links (first < second) and ``edge_length_m``; ``gateways_visible``: operational gateways in
    view; ``gw_*``: the route to the nearest reachable gateway (:class:`GatewayRoutes`).

    Traffic (docs/network.md#traffic; Gbit/s, utilisation = load / capacity, > 1 overloaded, never
    clipped): ``edge_load_gbps``/``edge_capacity_gbps``/``edge_util`` (m,) per up link of
    ``edges``; ``sat_max_util``: the highest utilisation of the satellite's loaded links (laser,
    gateway, user); ``sat_throughput_gbps``: the traffic through it (relayed plus up/down, counted
    once); ``overloaded``: links above capacity (laser and ground); ``unserved_gbps``: offered by
    cities with no route; ``traffic``: the rest (:class:`TrafficState`: feeder and user loads, each
    city's access satellite, the overloaded laser links).
    """

    t_s: float
    partner: I64
    slot_up: B
    links_up: NDArray[np.int8]
    terminals_in_use: NDArray[np.int8]
    edges: I64
    edge_length_m: F64
    gateways_visible: NDArray[np.int16]
    gw_delay_s: F64
    gw_hops: I64
    gw_index: I64
    gw_next_sat: I64
    gw_visibility: Visibility = field(repr=False)
    edge_load_gbps: F64 = field(repr=False)
    edge_capacity_gbps: F64 = field(repr=False)
    edge_util: F64 = field(repr=False)
    sat_max_util: F64 = field(repr=False)
    sat_throughput_gbps: F64 = field(repr=False)
    overloaded: int
    unserved_gbps: float
    traffic: TrafficState = field(repr=False)

    def rows(self, idx: NDArray[np.int64]) -> MeshState:
        """This tick seen from the satellites ``idx`` (a shard's): their per-satellite arrays, in that
        order; links, gateways and traffic stay the whole mesh's, numbered over the whole fleet."""
        return dataclasses.replace(
            self, partner=self.partner[idx], slot_up=self.slot_up[idx], links_up=self.links_up[idx],
            terminals_in_use=self.terminals_in_use[idx], gateways_visible=self.gateways_visible[idx],
            gw_delay_s=self.gw_delay_s[idx], gw_hops=self.gw_hops[idx], gw_index=self.gw_index[idx],
            gw_next_sat=self.gw_next_sat[idx], sat_max_util=self.sat_max_util[idx],
            sat_throughput_gbps=self.sat_throughput_gbps[idx])


class Mesh:
    """The network of one fleet: construct once, :meth:`step` every tick."""

    def __init__(self, elements: MeanElements, params: NetworkParams, terminal_count: int,
                 gateways: GroundSites, cities: GroundSites | None = None,
                 names: tuple[str, ...] | None = None, city_weights: ArrayLike | None = None) -> None:
        """``city_weights``: the cities' populations (any scale) for the traffic split; default the
        rank-size rule on the list's order (the shipped list is sorted by population)."""
        self.elements = elements
        self.params = params
        self.terminal_count = int(terminal_count)
        self.n = n = len(elements)
        self.names = names if names is not None else tuple(f"SAT-{i}" for i in range(n))
        self.gateways = gateways
        self.cities = cities
        self.planes: Planes = group_planes(elements)
        self._links = GridLinks.empty(n)
        self._first = True
        self._ticks = 0
        self.flows_unrouted = 0  # satellite-to-satellite flows (Mesh.step flows) that found no laser path
        self._pos = np.full((n, 3), np.nan)
        self._isl = Edges(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        self._gw_ok = np.ones(len(gateways), dtype=bool)
        self.state: MeshState | None = None
        self._gw_view = VisibilityCache(gateways, np.radians(params.gateway_min_elevation_deg))
        self._city_index: SiteIndex | None = None
        n_cities = len(cities) if cities is not None else 0
        w = rank_size_weights(n_cities) if city_weights is None else np.asarray(city_weights, dtype=np.float64)
        if w.shape != (n_cities,):
            raise ValueError(f"city_weights must have one value per city ({n_cities}), got shape {w.shape}")
        self.city_demand_gbps: F64 = city_demand_gbps(params.offered_traffic_gbps, w)
        self._access: AccessCandidates | None = None

    @classmethod
    def from_catalogue(cls, cat: Catalogue, params: NetworkParams, terminal_count: int, jd_utc: float,
                       gateways: GroundSites | None = None, cities: GroundSites | None = None,
                       city_weights: ArrayLike | None = None) -> Mesh:
        """A mesh for ``cat`` whose time origin (``t_s = 0``) is ``jd_utc``; default ground sites when None."""
        return cls(elements_from_catalogue(cat, jd_utc), params, terminal_count,
                   gateways if gateways is not None else load_gateways(),
                   cities if cities is not None else load_cities(), cat.names, city_weights)

    # --- per tick ---------------------------------------------------------------------------
    def step(self, t_s: float, positions_m: F64, terminals_ok: ArrayLike | None = None,
             gateway_ok: ArrayLike | None = None, link_outages: ArrayLike | None = None,
             gmst_rad: float | None = None, sat_demand_gbps: ArrayLike | None = None,
             flows: tuple[I64, I64, F64] | None = None) -> MeshState:
        """The network at ``t_s`` (s after the mesh's time origin).

        ``positions_m`` (n, 3): Earth-fixed (ITRS) positions, non-finite rows for lost satellites;
        ``terminals_ok``: (n, 4) working and powered terminals, or (n,) bool for all four (default
        all); ``gateway_ok`` (n_gateways,) bool (default all); ``link_outages`` (k, 2) satellite
        index pairs forced down; ``gmst_rad``: the Greenwich sidereal angle of ``positions_m``'s
        frame, so the in-plane order comes from the positions themselves (recommended; without it,
        from the mean elements advanced linearly, fine for days but not months past their epochs);
        ``sat_demand_gbps`` (n,): traffic between each satellite and its nearest gateway beside the
        cities' (compute jobs' input on its way up to the satellite that runs them); ``flows``
        (source satellites, destination satellites, Gbit/s): traffic between satellites over the
        shortest-delay laser path (compute jobs' checkpoints moving); flows with no path are counted in
        ``flows_unrouted``.
        """
        n, p = self.n, self.params
        pos = np.asarray(positions_m, dtype=np.float64)
        term = self._terminals(terminals_ok)
        gw_ok = np.ones(len(self.gateways), dtype=bool) if gateway_ok is None else np.asarray(gateway_ok, bool)
        outage_keys = None
        if link_outages is not None:
            pairs = np.asarray(link_outages, dtype=np.int64).reshape(-1, 2)
            outage_keys = np.sort(np.minimum(pairs[:, 0], pairs[:, 1]) * n + np.maximum(pairs[:, 0], pairs[:, 1]))
        u = arg_latitude_rad(self.elements, t_s, pos, gmst_rad)
        links, up = update_links(self._links, t_s, self.planes.plane, self.planes.right_plane, u, pos, term,
                                 p.isl_max_range_m, p.grazing_altitude_m, p.acquisition_s,
                                 p.cross_plane_hysteresis, outage_keys, self._first,
                                 np.arange(self.planes.n_planes) % REMATCH_EVERY_TICKS == self._ticks % REMATCH_EVERY_TICKS)
        self._links, self._first = links, False
        self._ticks += 1
        partner, slot_up, closing, lo, hi = slot_arrays(links, up)
        length = edge_lengths_m(pos, lo, hi)
        self._isl = Edges.isl(lo, hi, length)
        vis = self._gw_view.visible(pos, gw_ok)
        routes: GatewayRoutes = nearest_gateway(n, self._isl, vis.site, vis.sat, vis.range_m / C_M_S,
                                                len(self.gateways))
        self._pos, self._gw_ok = pos, gw_ok
        edges = np.stack([lo, hi], axis=1)
        traffic = self._traffic(pos, routes, edges, None if sat_demand_gbps is None else
                                np.asarray(sat_demand_gbps, dtype=np.float64))
        if flows is not None and len(flows[0]):
            traffic, unrouted = add_flows(traffic, edges, self._isl.graph(n), *flows)
            self.flows_unrouted += unrouted
        self.state = MeshState(
            float(t_s), partner, slot_up, count4(slot_up), count4(closing),
            edges, length, np.bincount(vis.sat, minlength=n).astype(np.int16),
            routes.delay_s, routes.hops, routes.gateway, routes.next_sat, vis,
            edge_load_gbps=traffic.edge_load_gbps, edge_capacity_gbps=traffic.edge_capacity_gbps,
            edge_util=traffic.edge_util, sat_max_util=traffic.sat_max_util,
            sat_throughput_gbps=traffic.sat_throughput_gbps, overloaded=traffic.overloaded,
            unserved_gbps=traffic.unserved_gbps, traffic=traffic)
        return self.state

    def _traffic(self, pos: F64, routes: GatewayRoutes, edges: I64, sat_demand_gbps: F64 | None = None) -> TrafficState:
        """The cities' offered traffic (and ``sat_demand_gbps``) routed to the nearest gateways over this tick's tree."""
        p = self.params
        if self.cities is None or len(self.cities) == 0:
            if sat_demand_gbps is not None:
                return route_traffic(np.zeros(0), np.zeros(0, np.int64), routes.next_sat, edges, p.isl_capacity_gbps,
                                     p.ground_link_capacity_gbps, routes.gateway, len(self.gateways), sat_demand_gbps)
            return empty_traffic(self.n, len(edges), 0, p.isl_capacity_gbps, len(self.gateways))
        if self._access is None:
            self._access = AccessCandidates(self.cities, np.radians(p.user_min_elevation_deg))
        city_sat = access_from_candidates(self._access, pos, routes.delay_s)
        return route_traffic(self.city_demand_gbps, city_sat, routes.next_sat, edges, p.isl_capacity_gbps,
                             p.ground_link_capacity_gbps, routes.gateway, len(self.gateways), sat_demand_gbps)

    def _terminals(self, terminals_ok: ArrayLike | None) -> B:
        n = self.n
        fitted = np.arange(N_SLOTS)[None, :] < min(self.terminal_count, N_SLOTS)
        if terminals_ok is None:
            out: B = np.broadcast_to(fitted, (n, N_SLOTS)).copy()
            return out
        t = np.asarray(terminals_ok, dtype=bool)
        if t.shape == (n,):
            t = t[:, None]
        if t.shape not in ((n, 1), (n, N_SLOTS)):
            raise ValueError(f"terminals_ok must have shape ({n},) or ({n}, {N_SLOTS}), got {t.shape}")
        out = fitted & t
        return out

    # --- on the last step's mesh ------------------------------------------------------------
    def city_matrix_s(self, cities: GroundSites | None = None) -> F64:
        """One-way delay (s) between every pair of cities (default: the mesh's cities), inf when none."""
        sites = cities if cities is not None else self.cities
        if sites is None:
            raise ValueError("no cities configured")
        e_user = np.radians(self.params.user_min_elevation_deg)
        if cities is None:
            self._city_index = ensure_index(self._city_index, sites, self._pos, e_user)
        vis = visible_pairs(sites, self._pos, e_user, None, self._city_index if cities is None else None)
        return ground_matrix_s(self.n, self._isl, vis.site, vis.sat, vis.range_m / C_M_S, len(sites))

    def _ground(self, e: Endpoint) -> tuple[GroundSites, str, float] | None:
        """The ground site of an endpoint, its label and minimum elevation (deg); None for a satellite."""
        p = self.params
        if e.kind == "sat":
            if not 0 <= e.index < self.n:
                raise ValueError(f"satellite index {e.index} out of range")
            return None
        if e.kind == "gateway":
            sites = self.gateways
            if not 0 <= e.index < len(sites):
                raise ValueError(f"gateway index {e.index} out of range")
            one = GroundSites(sites.names[e.index:e.index + 1], sites.lat_deg[e.index:e.index + 1],
                              sites.lon_deg[e.index:e.index + 1], sites.pos_m[e.index:e.index + 1],
                              sites.up[e.index:e.index + 1])
            return one, f"gateway:{sites.names[e.index]}", p.gateway_min_elevation_deg
        if e.kind == "gateways":
            sites = self.gateways
            idx = np.asarray(e.indices, dtype=np.int64)
            if idx.size == 0 or idx.min() < 0 or idx.max() >= len(sites):
                raise ValueError("gateway index out of range")
            many = GroundSites(tuple(sites.names[i] for i in idx), sites.lat_deg[idx], sites.lon_deg[idx],
                               sites.pos_m[idx], sites.up[idx])
            return many, "gateway:any", p.gateway_min_elevation_deg
        if e.kind == "city":
            if self.cities is None or not 0 <= e.index < len(self.cities):
                raise ValueError(f"city index {e.index} out of range")
            c = self.cities
            one = GroundSites(c.names[e.index:e.index + 1], c.lat_deg[e.index:e.index + 1],
                              c.lon_deg[e.index:e.index + 1], c.pos_m[e.index:e.index + 1], c.up[e.index:e.index + 1])
            return one, f"city:{c.names[e.index]}", p.user_min_elevation_deg
        if e.kind == "point":
            one = GroundSites.from_lat_lon(["point"], [e.lat_deg], [e.lon_deg])
            return one, f"point:{e.lat_deg:.4f},{e.lon_deg:.4f}", p.user_min_elevation_deg
        raise ValueError(f"unknown endpoint kind {e.kind!r}")

    def _in_service(self, e: Endpoint) -> B | None:
        """Which of an endpoint's gateways are in service (None for a city or point: all of them)."""
        if e.kind == "gateway":
            out: B = self._gw_ok[e.index:e.index + 1]
            return out
        if e.kind == "gateways":
            out = self._gw_ok[np.asarray(e.indices, dtype=np.int64)]
            return out
        return None

    def route(self, a: Endpoint, b: Endpoint) -> Route:
        """The shortest-delay route between two endpoints over the last step's mesh."""
        n, p = self.n, self.params
        ga, gb = self._ground(a), self._ground(b)
        edges = self._isl
        src, dst = a.index, b.index
        va = vb = None
        if ga is not None:
            src = n
            va = visible_pairs(ga[0], self._pos, np.radians(ga[2]), self._in_service(a))
            edges = edges + Edges(np.full(va.sat.size, src, dtype=np.int64), va.sat, va.range_m / C_M_S)
        if gb is not None:
            dst = n + 1
            vb = visible_pairs(gb[0], self._pos, np.radians(gb[2]), self._in_service(b))
            edges = edges + Edges(vb.sat, np.full(vb.sat.size, dst, dtype=np.int64), vb.range_m / C_M_S)
        delay, nodes = shortest_path(edges.graph(n + 2), src, dst)
        sats = np.array([x for x in nodes if x < n], dtype=np.int64)
        label_a = label_b = "?"
        if ga is not None:
            label_a = _used_site(ga[0], va, nodes[1]) if a.kind == "gateways" and len(nodes) >= 2 else ga[1]
        if gb is not None:
            label_b = _used_site(gb[0], vb, nodes[-2]) if b.kind == "gateways" and len(nodes) >= 2 else gb[1]
        labels = [self.names[x] if x < n else (label_a if x == n else label_b) for x in nodes]
        hops = max(len(nodes) - 1, 0)
        ground_hops = int(ga is not None) + int(gb is not None)
        caps = ([p.isl_capacity_gbps] if hops > ground_hops else []) + ([p.ground_link_capacity_gbps] if ground_hops else [])
        bottleneck = min(caps) if nodes and caps else (np.inf if nodes else 0.0)
        fibre = stretch = bound = float("nan")
        if ga is not None and gb is not None:
            fibre = float(fibre_rtt_s(great_circle_m(ga[0].lat_deg, ga[0].lon_deg, gb[0].lat_deg, gb[0].lon_deg))[0])
            bound = float(light_bound_rtt_s(ga[0].pos_m, gb[0].pos_m)[0])
            stretch = 2 * delay / fibre if fibre > 0 else float("nan")
        return Route(tuple(labels), sats, delay, 2 * delay, hops, float(bottleneck), fibre, stretch, bound)


def _used_site(sites: GroundSites, vis: Visibility | None, sat: int) -> str:
    """``gateway:NAME`` of the nearest of ``sites`` in view of ``sat`` (the ground hop a shortest path took)."""
    assert vis is not None
    k = np.flatnonzero(vis.sat == sat)
    j = int(vis.site[k[np.argmin(vis.range_m[k])]])
    return f"gateway:{sites.names[j]}"

"""Offered traffic over the shipped fleet's mesh (issue 15 item 5): conservation, per-link loads against
a networkx accumulation over the same shortest paths, overloads reported (never clipped) when the
offered total rises, a link outage moving the load, unserved traffic, and the access-satellite
candidates against the exact visibility. Tolerances in Gbit/s.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from test_network_mesh import NET, Fleet
from twin.core.network import Mesh, MeshState
from twin.core.network.geometry import C_M_S
from twin.core.network.ground import visible_pairs
from twin.core.network.traffic import (
    AccessCandidates, access_from_candidates, access_satellites, city_demand_gbps, rank_size_weights, route_traffic,
)

TOL_GBPS = 1e-9  # float round-off on sums of ~1,000 Gbit/s


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet()


def _reference_loads(mesh: Mesh, st: MeshState, pos: np.ndarray) -> tuple[dict[tuple[int, int], float],
                                                                            dict[int, float], dict[int, float],
                                                                            dict[int, float], float]:
    """networkx: each city's shortest path from any gateway in service (the same graph: laser links,
    gateway up-links, the city's down-links from the satellites it sees), its demand added to every
    laser link, the first satellite's feeder link and the last satellite's user link on the way.
    Returns ISL loads keyed by (lo, hi), feeder and user loads by satellite, gateway loads by gateway
    and the unserved Gbit/s."""
    g = nx.DiGraph()
    for (a, b), d in zip(st.edges.tolist(), (st.edge_length_m / C_M_S).tolist()):
        g.add_edge(a, b, w=d)
        g.add_edge(b, a, w=d)
    vis = st.gw_visibility
    for s, k, d in zip(vis.site.tolist(), vis.sat.tolist(), (vis.range_m / C_M_S).tolist()):
        g.add_edge(("gw", s), k, w=d)
    cities = mesh.cities
    assert cities is not None
    cv = visible_pairs(cities, pos, math.radians(NET.user_min_elevation_deg))
    for s, k, d in zip(cv.site.tolist(), cv.sat.tolist(), (cv.range_m / C_M_S).tolist()):
        g.add_edge(k, ("city", s), w=d)
    _, paths = nx.multi_source_dijkstra(g, {("gw", s) for s in set(vis.site.tolist())}, weight="w")
    isl: dict[tuple[int, int], float] = {}
    feeder: dict[int, float] = {}
    user: dict[int, float] = {}
    gateway: dict[int, float] = {}
    unserved = 0.0
    for c, demand in enumerate(mesh.city_demand_gbps.tolist()):
        path = paths.get(("city", c))
        if path is None:
            unserved += demand
            continue
        sats = path[1:-1]
        gateway[path[0][1]] = gateway.get(path[0][1], 0.0) + demand
        feeder[sats[0]] = feeder.get(sats[0], 0.0) + demand
        user[sats[-1]] = user.get(sats[-1], 0.0) + demand
        for a, b in zip(sats[:-1], sats[1:]):
            key = (min(a, b), max(a, b))
            isl[key] = isl.get(key, 0.0) + demand
    return isl, feeder, user, gateway, unserved


def _check_conservation(st: MeshState) -> None:
    """Offered = carried + unserved; at every satellite, what arrives (feeder link or the link from the
    next satellite toward the gateway) equals what leaves (links to the satellites behind it and the
    user links); throughput is that flow; the highest utilisation is that of its busiest loaded link."""
    tr = st.traffic
    n = st.gw_next_sat.size
    assert tr.offered_gbps == pytest.approx(tr.carried_gbps + tr.unserved_gbps, abs=TOL_GBPS)
    assert tr.offered_gbps == pytest.approx(float(tr.city_demand_gbps.sum()), abs=TOL_GBPS)
    served = tr.city_sat >= 0
    assert tr.carried_gbps == pytest.approx(float(tr.city_demand_gbps[served].sum()), abs=TOL_GBPS)
    assert tr.user_load_gbps.sum() == pytest.approx(tr.carried_gbps, abs=TOL_GBPS)
    assert tr.feeder_load_gbps.sum() == pytest.approx(tr.carried_gbps, abs=TOL_GBPS)
    assert tr.gateway_load_gbps.sum() == pytest.approx(tr.carried_gbps, abs=TOL_GBPS)
    lo, hi = st.edges[:, 0], st.edges[:, 1]
    nxt = st.gw_next_sat
    # orient every loaded link from the gateway side (parent) to the user side (child)
    lo_child = nxt[lo] == hi
    hi_child = nxt[hi] == lo
    assert not np.any(lo_child & hi_child)
    loaded = st.edge_load_gbps > 0
    assert np.all(lo_child[loaded] | hi_child[loaded])  # load only on tree links
    child = np.where(lo_child, lo, hi)
    parent = np.where(lo_child, hi, lo)
    inflow = tr.feeder_load_gbps + np.bincount(child[loaded], weights=st.edge_load_gbps[loaded], minlength=n)
    outflow = tr.user_load_gbps + np.bincount(parent[loaded], weights=st.edge_load_gbps[loaded], minlength=n)
    assert np.abs(inflow - outflow).max() < TOL_GBPS
    assert np.abs(st.sat_throughput_gbps - inflow).max() < TOL_GBPS
    # utilisation: load / capacity, the satellite's maximum over its loaded links
    assert np.allclose(st.edge_util, st.edge_load_gbps / NET.isl_capacity_gbps, rtol=0, atol=1e-12)
    want = tr.feeder_load_gbps / NET.ground_link_capacity_gbps
    for arr_sat, util in ((lo[loaded], st.edge_util[loaded]), (hi[loaded], st.edge_util[loaded]),
                          (tr.city_sat[served], tr.city_demand_gbps[served] / NET.ground_link_capacity_gbps)):
        np.maximum.at(want, arr_sat, util)
    assert np.allclose(st.sat_max_util, want, rtol=0, atol=1e-12)
    over = int((st.edge_util > 1).sum() + (tr.feeder_load_gbps > NET.ground_link_capacity_gbps).sum()
               + (tr.city_demand_gbps[served] > NET.ground_link_capacity_gbps).sum())
    assert st.overloaded == over
    assert np.array_equal(tr.overloaded_edges, np.flatnonzero(st.edge_load_gbps > NET.isl_capacity_gbps))


def _check_against_networkx(mesh: Mesh, st: MeshState, pos: np.ndarray) -> None:
    isl, feeder, user, gateway, unserved = _reference_loads(mesh, st, pos)
    got = {(int(a), int(b)): float(x) for (a, b), x in zip(st.edges, st.edge_load_gbps) if x > 0}
    assert set(got) == set(isl)
    assert max(abs(got[k] - isl[k]) for k in isl) < 1e-6
    tr = st.traffic
    assert {i: float(tr.feeder_load_gbps[i]) for i in np.flatnonzero(tr.feeder_load_gbps)} == pytest.approx(
        feeder, abs=1e-6)
    assert {i: float(tr.user_load_gbps[i]) for i in np.flatnonzero(tr.user_load_gbps)} == pytest.approx(
        user, abs=1e-6)
    assert {g: float(tr.gateway_load_gbps[g]) for g in np.flatnonzero(tr.gateway_load_gbps)} == pytest.approx(
        gateway, abs=1e-6)
    assert st.unserved_gbps == pytest.approx(unserved, abs=1e-6)


def test_conservation_and_loads_equal_a_networkx_accumulation(fleet: Fleet) -> None:
    mesh = fleet.mesh()
    pos = fleet.pos(300.0)
    st = mesh.step(300.0, pos, gmst_rad=fleet.gmst(300.0))
    tr = st.traffic
    assert tr.offered_gbps == pytest.approx(NET.offered_traffic_gbps, abs=TOL_GBPS)
    assert (tr.city_sat >= 0).sum() >= 95  # the shipped fleet serves (nearly) every city
    assert int((st.edge_load_gbps > 0).sum()) >= 10  # some traffic is relayed over lasers
    _check_conservation(st)
    _check_against_networkx(mesh, st, pos)
    # the default load (an estimate, 500 Gbit/s) runs the mesh below saturation
    assert st.overloaded == 0 and 0.1 < st.sat_max_util.max() < 1.0


def test_overloads_are_reported_not_clipped_when_the_offered_total_rises(fleet: Fleet) -> None:
    pos = fleet.pos(0.0)
    base = fleet.mesh().step(0.0, pos, gmst_rad=fleet.gmst(0.0))
    assert base.overloaded == 0
    factor = 20.0
    heavy_mesh = fleet.mesh(offered_traffic_gbps=factor * NET.offered_traffic_gbps)
    heavy = heavy_mesh.step(0.0, pos, gmst_rad=fleet.gmst(0.0))
    # the same paths carry factor times the load: nothing clipped, nothing dropped
    assert np.array_equal(heavy.edges, base.edges)
    assert np.allclose(heavy.edge_load_gbps, factor * base.edge_load_gbps, rtol=1e-12, atol=TOL_GBPS)
    assert np.allclose(heavy.sat_throughput_gbps, factor * base.sat_throughput_gbps, rtol=1e-12, atol=TOL_GBPS)
    assert heavy.traffic.carried_gbps == pytest.approx(factor * base.traffic.carried_gbps, rel=1e-12)
    assert heavy.edge_load_gbps.max() > NET.isl_capacity_gbps
    assert heavy.overloaded > 0 and heavy.traffic.overloaded_edges.size > 0
    assert np.all(heavy.edge_util[heavy.traffic.overloaded_edges] > 1.0)
    assert heavy.sat_max_util.max() == pytest.approx(factor * base.sat_max_util.max(), rel=1e-12)
    _check_conservation(heavy)


def test_a_link_outage_moves_its_load_in_the_tick(fleet: Fleet) -> None:
    mesh = fleet.mesh()
    pos = fleet.pos(0.0)
    base = mesh.step(0.0, pos, gmst_rad=fleet.gmst(0.0))
    k = int(np.argmax(base.edge_load_gbps))
    a, b = (int(x) for x in base.edges[k])
    moved = float(base.edge_load_gbps[k])
    assert moved > 1.0
    st = mesh.step(0.0, pos, gmst_rad=fleet.gmst(0.0), link_outages=[(a, b)])
    assert (a, b) not in {tuple(e) for e in st.edges.tolist()}
    # every city is still served, over other links: the same total, loads agree with networkx again
    assert st.traffic.carried_gbps == pytest.approx(base.traffic.carried_gbps, abs=TOL_GBPS)
    child = a if base.gw_next_sat[a] == b else b
    assert st.gw_next_sat[child] != base.gw_next_sat[child] or st.traffic.feeder_load_gbps[child] > 0
    _check_conservation(st)
    _check_against_networkx(mesh, st, pos)


def test_a_gateway_outage_moves_its_load_to_other_gateways_in_the_tick(fleet: Fleet) -> None:
    mesh = fleet.mesh()
    pos = fleet.pos(0.0)
    base = mesh.step(0.0, pos, gmst_rad=fleet.gmst(0.0))
    g = int(np.argmax(base.traffic.gateway_load_gbps))
    assert base.traffic.gateway_load_gbps[g] > 1.0
    gw_ok = np.ones(len(mesh.gateways), dtype=bool)
    gw_ok[g] = False
    st = mesh.step(0.0, pos, gateway_ok=gw_ok, gmst_rad=fleet.gmst(0.0))
    assert st.traffic.gateway_load_gbps[g] == 0.0
    assert st.traffic.carried_gbps == pytest.approx(base.traffic.carried_gbps, abs=TOL_GBPS)
    _check_conservation(st)
    _check_against_networkx(mesh, st, pos)


def test_no_gateway_in_service_leaves_every_city_unserved(fleet: Fleet) -> None:
    mesh = fleet.mesh()
    pos = fleet.pos(0.0)
    st = mesh.step(0.0, pos, gateway_ok=np.zeros(len(mesh.gateways), dtype=bool))
    assert st.unserved_gbps == pytest.approx(NET.offered_traffic_gbps, abs=TOL_GBPS)
    assert st.traffic.carried_gbps == 0.0 and np.all(st.traffic.city_sat == -1)
    assert not st.edge_load_gbps.any() and not st.sat_throughput_gbps.any() and st.overloaded == 0
    assert not st.sat_max_util.any() and not st.traffic.gateway_load_gbps.any()


def test_population_split() -> None:
    # rank-size rule p ~ rank^-0.5: rank 1 offers twice rank 4 and three times rank 9
    w = rank_size_weights(100)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    assert w[0] / w[3] == pytest.approx(2.0, rel=1e-12) and w[0] / w[8] == pytest.approx(3.0, rel=1e-12)
    d = city_demand_gbps(1000.0, [8e6, 2e6, 0.0])
    assert d.tolist() == pytest.approx([800.0, 200.0, 0.0], abs=TOL_GBPS)
    with pytest.raises(ValueError):
        city_demand_gbps(1.0, [1.0, -1.0])


def test_given_populations_set_the_split(fleet: Fleet) -> None:
    cities = fleet.mesh().cities
    assert cities is not None
    pop = np.ones(len(cities))
    pop[cities.index("London")] = 99.0
    mesh = Mesh.from_catalogue(fleet.cat, NET, 4, fleet.jd, cities=cities, city_weights=pop)
    london = cities.index("London")
    assert mesh.city_demand_gbps[london] == pytest.approx(NET.offered_traffic_gbps * 99 / 198, abs=TOL_GBPS)
    st = mesh.step(0.0, fleet.pos(0.0))
    sat = int(st.traffic.city_sat[london])
    assert sat >= 0 and st.traffic.user_load_gbps[sat] >= mesh.city_demand_gbps[london] - TOL_GBPS
    with pytest.raises(ValueError):
        Mesh.from_catalogue(fleet.cat, NET, 4, fleet.jd, cities=cities, city_weights=[1.0, 2.0])


def test_route_traffic_on_a_small_tree() -> None:
    """A hand-made chain 3 -> 2 -> 1 -> 0 -> gateway and a branch 4 -> 1; capacities 10 Gbit/s."""
    next_sat = np.array([-1, 0, 1, 2, 1], dtype=np.int64)
    edges = np.array([[0, 1], [1, 2], [2, 3], [1, 4], [3, 4]], dtype=np.int64)  # (3, 4) is up but unused
    tr = route_traffic(np.array([4.0, 8.0, 1.0]), np.array([3, 4, -1]), next_sat, edges, 10.0, 10.0,
                       np.array([1, 1, 1, 1, 1]), 2)
    assert tr.edge_load_gbps.tolist() == pytest.approx([12.0, 4.0, 4.0, 8.0, 0.0])
    assert tr.sat_throughput_gbps.tolist() == pytest.approx([12.0, 12.0, 4.0, 4.0, 8.0])
    assert tr.feeder_load_gbps.tolist() == pytest.approx([12.0, 0, 0, 0, 0])
    assert tr.gateway_load_gbps.tolist() == pytest.approx([0.0, 12.0])
    assert tr.user_load_gbps.tolist() == pytest.approx([0, 0, 0, 4.0, 8.0])
    assert tr.sat_max_util.tolist() == pytest.approx([1.2, 1.2, 0.4, 0.4, 0.8])
    assert tr.overloaded == 2 and tr.overloaded_edges.tolist() == [0]  # link 0-1 and the feeder of 0
    assert (tr.offered_gbps, tr.carried_gbps, tr.unserved_gbps) == pytest.approx((13.0, 12.0, 1.0))
    with pytest.raises(ValueError):
        route_traffic(np.array([1.0]), np.array([0]), np.array([1, 0]), edges[:1], 10.0, 10.0)
    # compute jobs' input arriving at satellites 2 (3 Gbit/s) and 4 (5): the same paths and feeder, no user
    # link; a satellite with no gateway (-1) gets none
    gw = np.array([1, 1, 1, 1, -1])
    tr2 = route_traffic(np.array([4.0, 8.0, 1.0]), np.array([3, 4, -1]), next_sat, edges, 10.0, 10.0, gw, 2,
                        sat_demand_gbps=np.array([0.0, 0.0, 3.0, 0.0, 0.0]))
    assert tr2.edge_load_gbps.tolist() == pytest.approx([15.0, 7.0, 4.0, 8.0, 0.0])
    assert tr2.feeder_load_gbps.tolist() == pytest.approx([15.0, 0, 0, 0, 0])
    assert tr2.user_load_gbps.tolist() == pytest.approx(tr.user_load_gbps.tolist())
    assert (tr2.offered_gbps, tr2.carried_gbps) == pytest.approx((13.0, 12.0))  # the cities' figures
    none = route_traffic(np.array([4.0, 8.0, 1.0]), np.array([3, 4, -1]), next_sat, edges, 10.0, 10.0, gw, 2,
                         sat_demand_gbps=np.array([0.0, 0.0, 0.0, 0.0, 5.0]))
    assert none.feeder_load_gbps.sum() == pytest.approx(12.0)


def test_access_candidates_give_exactly_the_satellites_in_view(fleet: Fleet) -> None:
    """The cached candidate pairs, re-listed as satellites move, give the exact visibility every tick."""
    mesh = fleet.mesh()
    cities = mesh.cities
    assert cities is not None
    e = math.radians(NET.user_min_elevation_deg)
    cand = AccessCandidates(cities, e)
    times = [*np.arange(0.0, 30.0, 1.0), 600.0, 601.0, 0.0]  # steps, a jump ahead and one back
    for t in times:
        pos = fleet.pos(float(t))
        if t in (0.0, 601.0):  # the access satellites: the same as from the exact visibility
            st = mesh.step(float(t), pos)
            ref = visible_pairs(cities, pos, e)
            want_sat = access_satellites(ref.site, ref.sat, ref.range_m / C_M_S, st.gw_delay_s, len(cities))
            assert np.array_equal(access_from_candidates(cand, pos, st.gw_delay_s), want_sat)
            assert np.array_equal(st.traffic.city_sat, want_sat) and (want_sat >= 0).sum() >= 95
        ok, d = cand.in_view(pos)
        ref = visible_pairs(cities, pos, e)
        got = set(zip(cand.site[ok].tolist(), cand.sat[ok].tolist()))
        assert got == set(zip(ref.site.tolist(), ref.sat.tolist()))
        want = dict(zip(zip(ref.site.tolist(), ref.sat.tolist()), ref.range_m.tolist()))
        assert max(abs(want[p] - r) for p, r in zip(zip(cand.site[ok].tolist(), cand.sat[ok].tolist()),
                                                     d[ok].tolist())) < 1e-6
    # re-listed when satellites have moved ~56 km (0.5 deg): every ~7 s at 7.6 km/s, plus the jumps
    assert 4 <= cand.refreshes <= 10


def test_flows_between_satellites_load_the_shortest_laser_path(fleet: Fleet) -> None:
    """Checkpoints moving between satellites: each flow's rate lands on every laser link and satellite of
    the shortest-delay path (networkx as the reference), utilisations and overloads follow."""
    import networkx as nx

    from twin.core.network.traffic import add_flows

    mesh = fleet.mesh()
    st = mesh.step(0.0, fleet.pos(0.0), gmst_rad=fleet.gmst(0.0))
    tr = st.traffic
    edges = st.edges
    g = nx.Graph()
    for (a, b), d in zip(edges, st.edge_length_m):
        g.add_edge(int(a), int(b), weight=float(d))
    comp = max(nx.connected_components(g), key=len)
    a, b = sorted(comp)[0], sorted(comp)[-1]
    path = nx.shortest_path(g, a, b, weight="weight")
    new, unrouted = add_flows(tr, edges, mesh._isl.graph(mesh.n), np.array([a]), np.array([b]), np.array([60.0]))
    assert unrouted == 0
    key = {(min(x, y), max(x, y)): k for k, (x, y) in enumerate(edges.tolist())}
    on_path = [key[(min(x, y), max(x, y))] for x, y in zip(path[:-1], path[1:])]
    delta = new.edge_load_gbps - tr.edge_load_gbps
    assert delta[on_path] == pytest.approx(60.0) and np.count_nonzero(delta) == len(on_path)
    assert (new.sat_throughput_gbps - tr.sat_throughput_gbps)[path] == pytest.approx(60.0)
    twice, _ = add_flows(new, edges, mesh._isl.graph(mesh.n), np.array([a]), np.array([b]), np.array([60.0]))
    assert twice.overloaded >= new.overloaded + len(on_path) - np.count_nonzero(new.edge_util[on_path] > 1.0)
    assert np.all(twice.edge_util[on_path] > 1.0)  # 120 Gbit/s over 100 Gbit/s links
    isolated = np.setdiff1d(np.arange(mesh.n), np.array(sorted(comp)))
    if isolated.size:
        _, none = add_flows(tr, edges, mesh._isl.graph(mesh.n), np.array([a]), isolated[:1], np.array([1.0]))
        assert none == 1

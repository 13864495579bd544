"""Closed forms of the network geometry, shells and planes, +Grid on an ideal Walker shell.

Figures from docs/physics.md#network and network.md (../shared/reference): 5,016.6 km longest laser
link at 550 km over an 80 km grazing altitude (5,410.5 km at 0 km); 1,123.4 km slant range at
25 deg (10/20/30/40 deg: 1,815.7 / 1,293.8 / 992.9 / 812.1 km); 1,971.95 km in-plane spacing for
22 satellites at 550 km.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.core.constants import R_EARTH_M
from twin.core.design import load_design
from twin.core.network import Mesh, load_cities, load_gateways
from twin.core.network.geometry import (
    C_M_S, fibre_rtt_s, great_circle_m, isl_feasible, light_bound_rtt_s, max_isl_range_m, max_slant_range_m,
)
from twin.core.network.ground import GroundSites, VisibilityCache, elevation_rad, ensure_index, parse_sites_csv, visible_pairs, GroundError
from twin.core.network.shells import MeanElements, group_planes
from twin.validation import network_checks
from twin.validation.network_checks import circular_positions_m, closed_form_checks, walker_elements

NET = load_design().network


# the ideal shells of ``orbitwin validate`` (one definition)
walker = walker_elements
positions = circular_positions_m


def test_longest_laser_link_matches_the_closed_form() -> None:
    assert max_isl_range_m(550e3, 80e3) == pytest.approx(5_016.6e3, abs=0.1e3)
    assert max_isl_range_m(550e3, 0.0) == pytest.approx(5_410.5e3, abs=0.1e3)
    assert max_isl_range_m(550e3, 80e3) / C_M_S == pytest.approx(16.73e-3, abs=0.01e-3)
    # a chord just shorter than the limit grazes above 80 km, just longer dips below it
    r = R_EARTH_M + 550e3
    half = math.asin(max_isl_range_m(550e3, 80e3) / 2 / r)
    for scale, ok in ((0.999, True), (1.001, False)):
        a = np.array([[r * math.cos(half * scale), r * math.sin(half * scale), 0.0]])
        b = np.array([[r * math.cos(half * scale), -r * math.sin(half * scale), 0.0]])
        closes, _ = isl_feasible(a, b, 1e9, 80e3)
        assert bool(closes[0]) is ok


@pytest.mark.parametrize(("elev_deg", "km"), [(25, 1_123.4), (10, 1_815.7), (20, 1_293.8), (30, 992.9), (40, 812.1)])
def test_slant_range_at_minimum_elevation(elev_deg: float, km: float) -> None:
    assert max_slant_range_m(550e3, math.radians(elev_deg)) == pytest.approx(km * 1e3, abs=0.1e3)


def test_visibility_agrees_with_brute_force_elevation_and_slant_range() -> None:
    el = walker(72, 22, 550e3, 53.0)
    pos = positions(el, 123.0)
    gw = load_gateways()
    e = math.radians(NET.gateway_min_elevation_deg)
    v = visible_pairs(gw, pos, e)
    s, k = np.nonzero(elevation_rad(gw, pos) >= e)
    assert set(zip(v.site.tolist(), v.sat.tolist())) == set(zip(s.tolist(), k.tolist()))
    assert v.sat.size > 500
    # no pair beyond the spherical slant range at 25 deg (+ ~25 km for ground points below the sphere)
    assert v.range_m.max() <= max_slant_range_m(550e3, e) + 25e3


def test_ground_site_files_and_errors() -> None:
    gw, cities = load_gateways(), load_cities()
    assert len(gw) == 214 and len(cities) == 100
    assert cities.names[0] == "Tokyo"
    with pytest.raises(GroundError, match="line 2"):
        parse_sites_csv("name,lat_deg,lon_deg\nx,91,0\n")
    with pytest.raises(GroundError, match="columns"):
        parse_sites_csv("a,b\n1,2\n")


def test_fibre_and_light_bounds() -> None:
    # London - New York ~5,570 km: fibre RTT ~54.6 ms at n = 1.468 (network.md: 9.81 ms per 1,000 km at 1.47)
    d = great_circle_m(51.5074, -0.1278, 40.7128, -74.0060)
    assert float(d) == pytest.approx(5_570e3, rel=0.005)
    assert float(fibre_rtt_s(1e6)) == pytest.approx(9.79e-3, abs=0.01e-3)
    sites = GroundSites.from_lat_lon(["a", "b"], [51.5074, 40.7128], [-0.1278, -74.0060])
    bound = light_bound_rtt_s(sites.pos_m[:1], sites.pos_m[1:])
    assert float(bound[0]) == pytest.approx(2 * float(d) / C_M_S, rel=0.01)  # ~37.2 ms


def test_shells_and_planes_of_an_irregular_catalogue() -> None:
    rng = np.random.default_rng(1)
    drop = rng.random(72 * 22) < 0.2  # unevenly filled planes
    a = walker(72, 22, 550e3, 53.0, drop=drop)
    b = walker(36, 20, 570e3, 70.0)
    raising = 60  # spread between 350 and 540 km: no shell
    inc = np.r_[a.inclination_rad, b.inclination_rad, np.full(raising, math.radians(53.0))]
    alt = np.r_[a.altitude_m, b.altitude_m, np.linspace(350e3, 540e3, raising)]
    raan = np.r_[a.raan_rad, b.raan_rad, rng.uniform(0, 2 * np.pi, raising)]
    u = np.r_[a.arg_latitude_rad, b.arg_latitude_rad, rng.uniform(0, 2 * np.pi, raising)]
    el = MeanElements(inc, alt, raan, u, np.zeros(inc.size))
    planes = group_planes(el)
    assert planes.n_shells == 2
    assert np.all(planes.shell[-raising:] == -1)
    assert np.all(planes.shell[: a.altitude_m.size] == planes.shell[0])
    assert planes.n_planes == 72 + 36
    # every plane's neighbour to the east is the next RAAN of the same shell, and the planes wrap
    shell0 = np.flatnonzero(planes.plane_shell == planes.shell[0])
    assert np.all(planes.right_plane[shell0] >= 0)
    assert sorted(planes.right_plane[shell0].tolist()) == sorted(shell0.tolist())


def test_ideal_walker_shell_links_closed_form() -> None:
    """72 x 22 at 550 km, 53 deg: in-plane links are 2 r sin(pi/22) long; every satellite has four links."""
    el = walker(72, 22, 550e3, 53.0)
    mesh = Mesh(el, NET, 4, load_gateways())
    st = mesh.step(0.0, positions(el, 0.0))
    assert np.all(st.links_up == 4)
    assert len(st.edges) == 2 * 72 * 22  # 3,168 links, as Hypatia's +Grid
    intra = st.partner[:, 0]
    d = np.linalg.norm(positions(el, 0.0) - positions(el, 0.0)[intra], axis=1)
    expected = 2 * (R_EARTH_M + 550e3) * math.sin(math.pi / 22)
    assert expected == pytest.approx(1_971.95e3, abs=0.1e3)
    assert np.abs(d - expected).max() < 1.0
    cross = st.edge_length_m[st.edge_length_m < expected - 1.0]
    # network.md: cross-plane 620-1,435 km over an orbit on Hypatia's shell
    assert cross.min() > 400e3 and cross.max() < 1_600e3


def test_validate_closed_forms_pass_and_catch_a_wrong_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """``orbitwin validate``'s closed forms: the model's own predicates (bisected) against the formulas and the
    network.md figures; a line-of-sight test 1 km too strict, or a visibility test 0.1 deg too strict, fails."""
    checks = closed_form_checks(NET, 4)
    assert [c.name for c in checks] == [
        "network: longest laser link at 550 km over 80 km (model)",
        "network: longest laser link at 550 km over 80 km (network.md)",
        "network: slant range at 25 deg, 550 km (model)",
        "network: slant range at 25 deg, 550 km (network.md)",
        "network: intra-plane link = 2 r sin(pi/N), 72 x 22 at 550 km",
    ]
    assert all(c.passed for c in checks), [c.detail for c in checks if not c.passed]
    assert checks[0].value == pytest.approx(5_016.6, abs=0.1) and checks[2].value == pytest.approx(1_123.4, abs=0.1)
    strict_los = lambda a, b, rng, g, r_m=R_EARTH_M: isl_feasible(a, b, rng, g + 1e3, r_m)  # noqa: E731
    monkeypatch.setattr(network_checks, "isl_feasible", strict_los)
    assert not closed_form_checks(NET, 4)[0].passed
    monkeypatch.undo()
    strict_view = lambda sites, pos, e, *a: visible_pairs(sites, pos, e + math.radians(0.1), *a)  # noqa: E731
    monkeypatch.setattr(network_checks, "visible_pairs", strict_view)
    assert not closed_form_checks(NET, 4)[2].passed


def test_visibility_cache_gives_exactly_the_pairs_of_visible_pairs() -> None:
    """The mesh's gateway view (a candidate list kept across ticks) equals visible_pairs tick by tick: same pairs,
    order and ranges, with satellites lost, coming back, jumping far away (absurd SGP4 output) and gateways out;
    the list is rebuilt only every ~15 s of motion."""
    el = walker(72, 22, 550e3, 53.0)
    gw = load_gateways()
    e = math.radians(NET.gateway_min_elevation_deg)
    cache = VisibilityCache(gw, e)
    index = ensure_index(None, gw, positions(el, 0.0), e)  # the reference's own index (rebuilt when needed)
    rng = np.random.default_rng(7)
    for t in np.arange(0.0, 120.0, 1.0):
        pos = positions(el, float(t))
        if t >= 40:
            pos[rng.integers(0, len(pos), 10)] = np.nan  # lost this tick, back the next
        if t >= 112:
            pos[:5] *= 1e3  # far beyond any orbit (visible_pairs then indexes every site for every satellite)
        ok = rng.random(len(gw)) > 0.05
        index = ensure_index(index, gw, pos, e)
        a, b = cache.visible(pos, ok), visible_pairs(gw, pos, e, ok, index)
        assert np.array_equal(a.site, b.site) and np.array_equal(a.sat, b.sat)
        assert np.array_equal(a.range_m, b.range_m)
    assert 4 <= cache.refreshes <= 12

"""Synthetic constellations (issue 18, item 1): Walker planes and phasing as specified, SGP4 against a
Keplerian circular orbit within what J2 explains, sun-synchronous closed forms, files refused by name,
joined to a TLE catalogue, and through the orbit worker bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.core.catalogue import load_catalogue
from twin.core.constellation import (
    J2_WGS72, MU_WGS72_M3_S2, R_WGS72_M, SHIPPED, ConstellationError, ConstellationSpec, Shell, build_catalogue,
    load_constellation, parse_constellation, sso_inclination_deg, sun_right_ascension_deg)
from twin.core.orbit import FleetPropagator
from twin.core.orbit_pipeline import PipelinedPropagator

EPOCH_JD = 2461377.5  # 2026-12-03 00:00 UTC


def _angle_diff_deg(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    return (np.asarray(a) - b + 180.0) % 360.0 - 180.0


def _plane_angles(cat, jd: float = EPOCH_JD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inclination, RAAN and argument of latitude [deg] of every satellite from its SGP4 state at ``jd`` (TEME)."""
    r, v, err = FleetPropagator(cat).teme(jd, 0.0)
    assert not err.any()
    h = np.cross(r, v)
    inc = np.degrees(np.arccos(h[:, 2] / np.linalg.norm(h, axis=1)))
    raan = np.degrees(np.arctan2(h[:, 0], -h[:, 1])) % 360.0
    node = np.stack([np.cos(np.radians(raan)), np.sin(np.radians(raan)), np.zeros(len(raan))], axis=1)
    cos_u = np.sum(r * node, axis=1) / np.linalg.norm(r, axis=1)
    u = np.degrees(np.arccos(np.clip(cos_u, -1, 1)))
    return inc, raan, np.where(r[:, 2] >= 0, u, 360.0 - u)


def test_starlink_shell_planes_and_phasing_match_the_spec() -> None:
    spec = load_constellation("starlink-gen1-shell1")
    cat = build_catalogue(spec, EPOCH_JD)
    assert len(cat) == 72 * 22 == spec.size
    inc, raan, u = _plane_angles(cat)
    # osculating elements from SGP4 states: within the J2 short-period amplitude of the mean ones
    assert np.max(np.abs(inc - 53.0)) < 0.1
    raan_pp = raan.reshape(72, 22)
    assert np.max(np.abs(_angle_diff_deg(raan_pp, raan_pp[:, :1]))) < 0.1  # one plane per row
    planes = raan_pp[:, 0]
    assert np.max(np.abs(_angle_diff_deg(np.diff(planes), 360.0 / 72))) < 0.1  # 5 deg apart
    u_pp = u.reshape(72, 22)
    assert np.max(np.abs(_angle_diff_deg(np.diff(u_pp, axis=1), 360.0 / 22))) < 0.2  # slots 16.4 deg apart
    # Walker phasing F = 1: slot 0 of each plane leads the previous plane's by F * 360 / T
    assert np.max(np.abs(_angle_diff_deg(np.diff(u_pp[:, 0]), 360.0 / 1584))) < 0.2
    assert cat.names[0] == "SL1-P00-S00" and cat.names[-1] == "SL1-P71-S21"
    assert len(set(cat.norad_ids.tolist())) == len(cat)


def test_star_pattern_and_cluster_spread_the_nodes_as_asked() -> None:
    star = build_catalogue(ConstellationSpec("x", (Shell("S", 780.0, 86.4, 6, 11, 2, "star"),)), EPOCH_JD)
    _, raan, _ = _plane_angles(star)
    assert np.allclose(_angle_diff_deg(raan.reshape(6, 11)[:, 0], 0.0), np.arange(6) * 30.0, atol=0.1)
    cluster = build_catalogue(load_constellation("dawn-dusk-cluster"), EPOCH_JD)
    _, raan, _ = _plane_angles(cluster)
    first = raan.reshape(4, 30)[:, 0]
    assert np.allclose(_angle_diff_deg(first, first[0]), [0.0, 1.0, 2.0, 3.0], atol=0.05)


def test_sgp4_matches_a_keplerian_circular_orbit_within_what_j2_explains() -> None:
    """Over one orbit the SGP4 track of a generated satellite differs from a circular Keplerian one by
    J2's secular drift (node regression, faster argument of latitude) plus its short-period terms; with
    the secular rates put in, only the short-period part (1.5 J2 (R/a)^2 a, about 9 km) remains."""
    alt_km, inc_deg = 550.0, 53.0
    cat = build_catalogue(ConstellationSpec("k", (Shell("K", alt_km, inc_deg, 1, 1, 0),)), EPOCH_JD)
    i = math.radians(inc_deg)
    # the mean motion given is read by SGP4 as Kozai's; its Brouwer mean motion and semi-major axis
    # (Hoots & Roehrich, Spacetrack Report No. 3, SGP4 initialisation; J2 only)
    n_kozai = cat.satrecs[0].no_kozai / 60.0
    k2 = 0.5 * J2_WGS72
    a1 = (MU_WGS72_M3_S2 / n_kozai**2) ** (1 / 3) / R_WGS72_M
    d1 = 1.5 * k2 * (3 * math.cos(i) ** 2 - 1) / a1**2
    a0 = a1 * (1 - d1 / 3 - d1**2 - 134 / 81 * d1**3)
    d0 = 1.5 * k2 * (3 * math.cos(i) ** 2 - 1) / a0**2
    n = n_kozai / (1 + d0)
    a = a0 / (1 - d0) * R_WGS72_M
    period_s = 2 * math.pi / n
    t = np.linspace(0.0, period_s, 121)
    prop = FleetPropagator(cat)
    r_sgp4 = np.array([prop.teme(EPOCH_JD, ti / 86400.0)[0][0] for ti in t])
    # J2's secular rates of the node, perigee and mean anomaly (Vallado, Fundamentals of Astrodynamics, 9-41)
    k = 1.5 * J2_WGS72 * (R_WGS72_M / a) ** 2 * n
    raan_dot, u_dot = -k * math.cos(i), n + k / 2 * (5 * math.cos(i) ** 2 - 1) + k / 2 * (3 * math.cos(i) ** 2 - 1)

    def circle(raan_rate: float, u_rate: float) -> np.ndarray:
        raan, u = raan_rate * t, u_rate * t
        return a * np.stack([np.cos(raan) * np.cos(u) - np.sin(raan) * np.sin(u) * math.cos(i),
                             np.sin(raan) * np.cos(u) + np.cos(raan) * np.sin(u) * math.cos(i),
                             np.sin(u) * math.sin(i)], axis=1)

    short_period_m = 1.5 * J2_WGS72 * (R_WGS72_M / a) ** 2 * a
    with_j2 = np.linalg.norm(r_sgp4 - circle(raan_dot, u_dot), axis=1)
    kepler = np.linalg.norm(r_sgp4 - circle(0.0, n), axis=1)
    assert with_j2.max() < 1.5 * short_period_m  # ~14 km
    secular_m = a * (abs(raan_dot) + abs(u_dot - n)) * period_s
    assert kepler.max() < secular_m + 1.5 * short_period_m
    assert kepler.max() > 2 * with_j2.max()  # J2's secular drift is there, and is what the corrected circle removes


def test_sun_synchronous_inclination_and_node_follow_the_sun() -> None:
    # published values: 98.6 deg at 800 km, 97.8 deg at 600 km (e.g. Wertz, Space Mission Engineering)
    assert sso_inclination_deg(800.0) == pytest.approx(98.6, abs=0.05)
    assert sso_inclination_deg(600.0) == pytest.approx(97.79, abs=0.05)
    with pytest.raises(ConstellationError, match="no sun-synchronous orbit"):
        sso_inclination_deg(7000.0)
    cat = build_catalogue(load_constellation("dawn-dusk-cluster"), EPOCH_JD).subset([0])
    _, raan0, _ = _plane_angles(cat, EPOCH_JD)
    _, raan10, _ = _plane_angles(cat, EPOCH_JD + 10)
    # SGP4's node turns with the mean Sun: 0.9856 deg/day
    assert _angle_diff_deg(raan10, raan0)[0] / 10 == pytest.approx(360 / 365.2564, abs=0.01)
    # ascending node at 18:00 local solar time: 90 deg east of the Sun's right ascension
    assert _angle_diff_deg(raan0, sun_right_ascension_deg(EPOCH_JD) + 90.0)[0] == pytest.approx(0.0, abs=0.1)


def test_sun_right_ascension_against_skyfield() -> None:
    from twin.core.ephemeris import skyfield_context

    ts, eph = skyfield_context()
    for jd in (2451545.0, 2461377.5, 2461500.25):
        t = ts.tt_jd(jd + 69.184 / 86400)
        ra, _, _ = (eph["earth"]).at(t).observe(eph["sun"]).apparent().radec(epoch="date")
        assert _angle_diff_deg(sun_right_ascension_deg(jd), ra._degrees) == pytest.approx(0.0, abs=0.02)


@pytest.mark.parametrize(("doc", "message"), [
    ({}, "no \\[\\[shell\\]\\] table"),
    ({"shell": [{"altitude_km": 550, "planes": 2, "sats_per_plane": 2}]}, "shell 1 \\(shell1\\): missing 'inclination_deg'"),
    ({"shell": [{"name": "A", "altitude_km": "low", "inclination_deg": 53, "planes": 2, "sats_per_plane": 2}]},
     "shell 1 \\(A\\): 'altitude_km' must be a number"),
    ({"shell": [{"name": "A", "altitude_km": 550, "inclination_deg": 53, "planes": 2.5, "sats_per_plane": 2}]},
     "'planes' must be a whole number"),
    ({"shell": [{"name": "A", "altitude_km": 550, "inclination_deg": 53, "planes": 4, "sats_per_plane": 2,
                 "phasing": 4}]}, "'phasing' = 4 outside \\[0, 3\\]"),
    ({"shell": [{"name": "A", "altitude_km": 550, "inclination_deg": 200, "planes": 4, "sats_per_plane": 2}]},
     "'inclination_deg' = 200 outside \\[0, 180\\]"),
    ({"shell": [{"name": "A", "altitude_km": 550, "inclination_deg": 53, "planes": 4, "sats_per_plane": 2,
                 "colour": "red"}]}, "unknown key\\(s\\) colour"),
    ({"shell": [{"name": "A", "altitude_km": 550, "inclination_deg": 53, "planes": 1, "sats_per_plane": 2},
                {"name": "A", "altitude_km": 560, "inclination_deg": 53, "planes": 1, "sats_per_plane": 2}]},
     "shell names repeat"),
    ({"epoch": "tomorrow", "shell": [{"name": "A", "altitude_km": 550, "inclination_deg": 53, "planes": 1,
                                      "sats_per_plane": 2}]}, "'epoch' must be an ISO 8601"),
    ({"shell": [{"name": "A B", "altitude_km": 550, "inclination_deg": 53, "planes": 1, "sats_per_plane": 2}]},
     "'name' must be a non-empty word"),
])
def test_a_broken_file_is_refused_naming_the_shell_and_key(doc: dict, message: str) -> None:
    with pytest.raises(ConstellationError, match=message):
        parse_constellation(doc, "bad.toml")


def test_missing_file_names_the_shipped_ones(tmp_path) -> None:
    with pytest.raises(ConstellationError, match="kuiper-shell1"):
        load_constellation(tmp_path / "nope.toml")


@settings(max_examples=25, deadline=None)
@given(planes=st.integers(1, 12), per=st.integers(1, 12), alt=st.floats(300, 2000), inc=st.floats(0, 180),
       data=st.data())
def test_any_valid_shell_gives_planes_times_slots_satellites(planes: int, per: int, alt: float, inc: float,
                                                             data: st.DataObject) -> None:
    phasing = data.draw(st.integers(0, planes - 1))
    spec = parse_constellation({"shell": [{"name": "H", "altitude_km": alt, "inclination_deg": inc,
                                           "planes": planes, "sats_per_plane": per, "phasing": phasing}]}, "h")
    cat = build_catalogue(spec, EPOCH_JD)
    assert len(cat) == planes * per == len(set(cat.names)) == len(set(cat.norad_ids.tolist()))
    assert np.allclose(cat.mean_altitude_m / 1e3, alt, atol=0.01)  # mean motion from the altitude (WGS-72 radius)


def test_the_million_layout_is_a_million_between_500_and_2000_km() -> None:
    spec = load_constellation("million")
    assert spec.size == 1_000_000
    alts = [s.altitude_km for s in spec.shells]
    assert 500.0 <= min(alts) and max(alts) <= 2000.0
    assert set(SHIPPED) == {"starlink-gen1-shell1", "kuiper-shell1", "dawn-dusk-cluster", "million"}


def test_joined_to_a_tle_catalogue_the_real_satellites_fly_as_before() -> None:
    tle = load_catalogue().select(count=20)
    synth = build_catalogue(load_constellation("kuiper-shell1"), tle.median_epoch_jd())
    joined = tle + synth
    assert len(joined) == 20 + 1156 and joined.names[:20] == tle.names
    assert joined.norad_ids[:20].tolist() == tle.norad_ids.tolist()
    jd = tle.median_epoch_jd() + 0.3
    r_tle, _, _ = FleetPropagator(tle).teme(jd, 0.0)
    r_joined, _, _ = FleetPropagator(joined).teme(jd, 0.0)
    assert np.max(np.abs(r_joined[:20] - r_tle)) < 1e-3  # re-initialised from the same elements: < 1 mm
    with pytest.raises(ValueError, match="in both catalogues"):
        _ = joined + synth


def test_the_orbit_worker_rebuilds_a_synthetic_catalogue_bit_for_bit() -> None:
    from twin.core.orbit import gmst82_rad

    cat = build_catalogue(load_constellation("dawn-dusk-cluster"), EPOCH_JD)
    local = FleetPropagator(cat)
    piped = PipelinedPropagator(cat)
    try:
        for k in range(3):
            fr = k * 10.0 / 86400
            gmst = gmst82_rad(EPOCH_JD, fr)
            piped.prefetch(EPOCH_JD, fr, gmst)
            got = piped.propagate(EPOCH_JD, fr, gmst)
            want = local.propagate(EPOCH_JD, fr, gmst)
            assert piped.fallback_reason is None
            np.testing.assert_array_equal(got.r_teme_m, want.r_teme_m)
    finally:
        piped.close()


def test_bench_fleet_of_a_constellation_reports_speed_memory_and_where_the_time_goes() -> None:
    from orbitwin.bench.scale import bench_scale

    calls: list[tuple[float, float]] = []
    out = bench_scale("dawn-dusk-cluster", steps=3, baseline=False, profile_steps=2,
                      progress=lambda d, t: calls.append((d, t)))
    run = out["run"]
    assert run["sats"] == 120 and run["lost_sats"] == 0
    assert run["step_ms_median"] > 0 and run["sat_steps_per_s"] == pytest.approx(120 / run["step_ms_median"] * 1e3,
                                                                                rel=0.05)
    assert run["parent_rss_mb"] > 0
    assert all(k.startswith("twin.core.") or k.startswith("waiting") or k.startswith("other")
               for k in run["profile_ms_per_step"])
    assert calls[-1] == (3, 3) and out["realtime"] == (run["step_ms_median"] <= 1000.0)


def test_the_scaling_plan_is_the_budget_arithmetic_on_measured_sizes_and_ceilings() -> None:
    from orbitwin.bench.scaling import SAT_STEPS_PER_CORE_S, scaling_plan

    out = scaling_plan(sizes=(100_000, 1_000_000))
    rows = {(r["sats"], r["policy"].split(":")[0]): r for r in out["rows"]}
    big, small = rows[(1_000_000, "default")], rows[(100_000, "default")]
    # per-satellite topics scale with the fleet: hk at 1 Hz plus the slower packets, ten times over
    assert big["mqtt_msgs_per_s"] - 7 == pytest.approx(10 * (small["mqtt_msgs_per_s"] - 7), rel=1e-6)
    assert big["mqtt_msgs_per_s"] > 1_000_000
    ceilings = out["ceilings"]
    assert big["broker_nodes"] >= math.ceil(big["mqtt_msgs_per_s"] / ceilings["mqtt_msgs_per_s"])
    assert big["influx_nodes"] == math.ceil(big["influx_values_per_s"] / ceilings["influx_values_per_s"])
    assert big["twin_cores_realtime"] == math.ceil(1_000_000 / SAT_STEPS_PER_CORE_S)
    watched = rows[(1_000_000, "watched plane")]
    assert watched["broker_nodes"] == watched["influx_nodes"] == 1
    assert rows[(1_000_000, "frames only")]["mqtt_msgs_per_s"] < 20

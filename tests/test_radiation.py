"""Tests for twin.radiation / twin.radiation_grid (AE8/AP8 grid, dose, SEU, SEL)."""

from __future__ import annotations

import dataclasses
import socket
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from twin.core import radiation_grid as rg
from twin.core.constants import MU_EARTH_M3_S2, R_EARTH_M, SECONDS_PER_YEAR
from twin.core.design import load_design
from twin.core.params import DesignError
from twin.core.sat_random import SEL, SEU, Draws, SatRandom
from twin.core.radiation import (
    RadiationEnvironment,
    RadiationParams,
    _Csda,
    bendel_shape,
    electron_range_g_cm2,
    fine_edges,
    fold_spectra,
    kernels,
    load_environment,
    load_grid,
    proton_range_g_cm2,
    sel_events,
    sel_hits,
    sel_rate_per_device_s,
    seu_events,
    seu_rate_per_device_s,
)

DATA = Path(__file__).resolve().parents[1] / "twin" / "data"
P = RadiationParams()
COVER_G_CM2 = load_design().solar_array.cover_glass_g_cm2  # shipped design: 100 um at 2.54 g/cm^3


def _draws(seed: int, n: int, stream: int = SEU) -> Draws:
    """Draws of ``n`` satellites keyed 0..n-1 at tick 0."""
    return SatRandom(seed, np.arange(n, dtype=np.uint64)).draws(stream, 0)


@pytest.fixture(scope="module")
def grid() -> rg.RadiationGrid:
    return load_grid(P)


@pytest.fixture(scope="module")
def env() -> RadiationEnvironment:
    return load_environment(P, COVER_G_CM2)


def _orbit_track(alt_m: float, inc_deg: float, days: float = 1.0, dt_s: float = 10.0) -> tuple[np.ndarray, ...]:
    """Circular orbit ground track: argument of latitude n t, Earth rotating under it."""
    t = np.arange(0.0, days * 86_400.0, dt_s)
    u = np.sqrt(MU_EARTH_M3_S2 / (R_EARTH_M + alt_m) ** 3) * t
    inc = np.radians(inc_deg)
    lat = np.arcsin(np.sin(inc) * np.sin(u))
    lon = np.arctan2(np.cos(inc) * np.sin(u), np.cos(u)) - 7.2921150e-5 * t
    return lat, np.mod(lon + np.pi, 2 * np.pi) - np.pi, np.full_like(t, alt_m)


def _orbit_dose_rad_per_year(params: RadiationParams, alt_m: float = 550e3, inc_deg: float = 53.0) -> float:
    local = load_environment(params, COVER_G_CM2).sample(*_orbit_track(alt_m, inc_deg))
    return float(local.dose_rate_rad_s.mean() * SECONDS_PER_YEAR)


def test_aep8_readme_checkpoint_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    # aep8 README: 15E, 45S, 300 km, 2025-01-01T18:37:22, protons > 10 MeV, integral, solar max.
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    f = rg.aep8_integral_flux(-45.0, 15.0, 300.0, 10.0, "p", "max", time_iso="2025-01-01T18:37:22")
    assert float(f) == pytest.approx(3.04495297, rel=1e-6)


def test_shipped_grid_is_default_small_spectral_grid(grid: rg.RadiationGrid) -> None:
    path = DATA / "radiation_grid_default.npz"
    assert path.stat().st_size < 3e6
    shipped = rg.RadiationGrid.load(path)
    assert shipped.spec == P.grid_spec() and shipped.log10_flux.dtype == np.float32
    assert shipped.log10_flux.shape[-1] == len(P.proton_spectrum_energies_mev) + len(P.electron_spectrum_energies_mev)
    assert grid.alt_km[0] <= 300.0 and grid.alt_km[-1] >= 1300.0
    # integral spectra fall with energy; AE8/AP8 break this only at a few faint belt-edge nodes
    # (~60 of 2.5 million steps per particle, all below ~300 /cm^2/s), which the fold floors at zero
    npr = shipped.n_protons
    for part in (shipped.log10_flux[..., :npr], shipped.log10_flux[..., npr:]):
        rising = np.diff(part, axis=-1) > 1.5e-3  # the int16 storage step is 1e-3 decade
        assert rising.mean() < 1e-4
        assert np.all(part[..., 1:][rising] < 2.5)


def test_grid_agrees_with_direct_aep8(grid: rg.RadiationGrid) -> None:
    # Grid: 2 deg lat x 4 deg lon x 50 km, trilinear in log10 flux. Where the flux is significant
    # (> 1% of the sample maximum) the log-linear error is set by curvature over one cell.
    # Measured over the 27 channels: median 1.01-1.05, 95th percentile 1.10-1.33, worst 1.13-2.06,
    # except at the steep belt edges of the two hardest electron channels kept (3 and 4 MeV, worst 6-9x,
    # a small share of any dose); the 5 and 6 MeV channels are almost everywhere zero at these altitudes.
    rng = np.random.default_rng(42)
    n = 600
    lat = rng.uniform(-60.0, 60.0, n)
    lon = rng.uniform(-180.0, 180.0, n)
    alt = rng.uniform(300.0, 1300.0, n)
    looked = grid.lookup(np.radians(lat), np.radians(lon), alt * 1e3)
    direct_p = rg.aep8_spectra(lat, lon, alt, P.proton_spectrum_energies_mev, "p", P.solar_phase_protons)
    direct_e = rg.aep8_spectra(lat, lon, alt, P.electron_spectrum_energies_mev, "e", P.solar_phase_electrons)
    energies = [("p", e) for e in P.proton_spectrum_energies_mev] + [("e", e) for e in P.electron_spectrum_energies_mev]
    checked = 0
    for c, direct in enumerate(np.concatenate([direct_p, direct_e], axis=1).T):
        direct = np.nan_to_num(direct)
        sig = direct > 0.01 * direct.max()
        if sig.sum() < 50:
            continue
        ratio = 10 ** np.abs(np.log10(looked[c][sig] / direct[sig]))
        assert np.median(ratio) < 1.1, energies[c]
        if sig.sum() >= 80:
            assert np.percentile(ratio, 95) < 1.35, energies[c]
        if energies[c][0] == "p" or energies[c][1] <= 2.5:
            assert ratio.max() < 2.1, energies[c]
        checked += 1
    assert checked == grid.n_channels - 2


def test_saa_emerges_from_ap8(env: RadiationEnvironment) -> None:
    lat = np.radians([-30.0, 30.0, -30.0])
    lon = np.radians([-45.0, -45.0, 135.0])
    local = env.sample(lat, lon, np.full(3, 550e3))
    corr, unc = seu_rate_per_device_s(local.seu_scale, P)
    for q in (local.proton_flux_cm2_s, local.dose_rate_rad_s, corr + unc):
        assert q[0] > 0
        assert q[0] > 10 * q[1] and q[0] > 10 * q[2]
    assert 300.0 < local.proton_flux_cm2_s[0] < 5000.0  # AP8-MIN > 10 MeV at the SAA core, 550 km, is ~1.5e3 /cm^2/s


# SPENVIS SHIELDOSE-2, 550 km, 5 years, AP8-MIN + AE8-MAX, centre of Al spheres [SPENVIS-leo]
# (leo-edge-failure-models compute-failure/cleaned/<inclination>.csv): (inclination, mm Al) -> rad(Si) in 5 years
SPENVIS_TOTAL_5YR = {(50.0, 2.5): 4935.5, (50.0, 10.0): 883.02, (55.0, 2.5): 6535.2, (55.0, 10.0): 764.84}
# 55 deg: mm Al -> (trapped electrons + bremsstrahlung, trapped protons), rad(Si) in 5 years
SPENVIS_55_BY_PARTICLE = {0.1: (9.1727e5 + 1.9022e3, 1.6068e4), 0.5: (7.6406e4 + 300.04, 3.3428e3),
                          1.0: (2.4114e4 + 134.2, 1.9933e3), 2.5: (5240.7 + 52.765, 1241.7),
                          5.0: (621.87 + 26.109, 950.67), 10.0: (3.8668 + 13.916, 747.05), 20.0: (8.2789, 543.65)}


def test_dose_5yr_550km_two_depths_within_factor_2_of_shieldose() -> None:
    # docs/physics.md#validation-radiation: the engine's per-node fold (local spectra) on circular
    # 550 km orbits, 5 days averaged, against both depths of the physics reference at 50 and 55 deg.
    ratios = {}
    for (inc, mm), ref in SPENVIS_TOTAL_5YR.items():
        dose = _orbit_dose_rad_per_year(dataclasses.replace(P, shield_thickness_mm_al=mm), inc_deg=inc) * 5.0
        ratios[(inc, mm)] = dose / ref
    assert all(0.5 <= r <= 2.0 for r in ratios.values()), ratios
    # measured: 0.97, 0.80, 1.02, 0.79: within 25 %
    assert all(0.75 <= r <= 1.25 for r in ratios.values()), ratios


def test_dose_depth_curve_and_particle_split_follow_shieldose() -> None:
    # Orbit-average spectrum at 55 deg folded through 0.1-20 mm: total within 25 % of SHIELDOSE-2 at
    # every depth, electrons dominate behind thin shields and protons behind thick ones, as there.
    from twin.validation.dose_split import dose_by_particle_5yr_rad

    totals = []
    for mm, (ref_e, ref_p) in SPENVIS_55_BY_PARTICLE.items():
        p, e = dose_by_particle_5yr_rad(dataclasses.replace(P, shield_thickness_mm_al=mm), 55.0, days=1.0)
        assert 0.75 < (p + e) / (ref_e + ref_p) < 1.25, mm
        assert 0.6 < p / ref_p < 1.25, mm  # Bragg-Kleeman fit: protons ~20 % low
        assert (e > p) == (ref_e > ref_p), mm
        totals.append(p + e)
    assert np.all(np.diff(totals) < 0)


def test_csda_kernel_closed_forms() -> None:
    a, b = P.proton_range_a_g_cm2, P.proton_range_b
    csda = _Csda(lambda e: proton_range_g_cm2(e, P))
    edges = np.array([20.0, 30.0, 50.0])
    # no shield: mean stopping power over a bin = [E^(2-b) / ((2-b) a b)] / dE for R = a E^b
    exact = np.diff(edges ** (2 - b) / ((2 - b) * a * b)) / np.diff(edges)
    np.testing.assert_allclose(csda.bin_dose(edges, 0.0), exact, rtol=2e-3)
    # behind 0.675 g/cm^2 (2.5 mm Al): residual energy from R(E') = R(E) - t, mean of S(E') by brute force
    t = 0.675
    e = np.linspace(30.0, 50.0, 200001)  # above the 22.1 MeV cutoff of 2.5 mm
    e_res = ((a * e**b - t) / a) ** (1 / b)
    brute = np.trapezoid(e_res ** (1 - b) / (a * b), e) / 20.0
    assert csda.bin_dose(edges[1:], t)[0] == pytest.approx(brute, rel=2e-3)
    # protons below the cutoff E_c = (t / a)^(1/b) deposit nothing; the bin across it stays finite
    e_c = (t / a) ** (1 / b)
    k = csda.bin_dose(np.array([e_c * 0.5, e_c * 0.99, e_c * 1.01, e_c * 1.5]), t)
    assert k[0] == 0.0 and np.all(np.isfinite(k)) and k[1] > 0  # 0.99 E_c..1.01 E_c holds the Bragg peak
    # Katz-Penfold: 0.412 g/cm^2 at 1 MeV; 2.5 mm of Al stops electrons below ~1.50 MeV (docs/physics.md#radiation)
    assert float(electron_range_g_cm2(np.array(1.0))) == pytest.approx(0.412)
    ecsda = _Csda(electron_range_g_cm2)
    assert float(ecsda.residual(np.array([1.45]), 0.675)[0]) == 0.0 and float(ecsda.residual(np.array([1.6]), 0.675)[0]) > 0.0


def test_fold_telescopes_and_slab_is_half_the_sphere_without_shield() -> None:
    thresholds = P.proton_spectrum_energies_mev
    edges = fine_edges(thresholds)
    log10_f = np.log10(1e4 * np.asarray(thresholds) ** -1.5)[None, :]
    # a response of 1 in every bin and the tail counts every particle once: F(> first threshold)
    ones = np.ones((edges.size, 1))
    assert fold_spectra(log10_f, thresholds, edges, ones)[0, 0] == pytest.approx(1e4, rel=1e-5)
    # log-log interpolation is exact for a power law: the flux in [10, 20] MeV
    inside = ((edges[:-1] > 10.0 * (1 - 1e-9)) & (edges[:-1] < 20.0 * (1 - 1e-9))).astype(float)[:, None]
    inside = np.vstack([inside, [[0.0]]])
    assert fold_spectra(log10_f, thresholds, edges, inside)[0, 0] == pytest.approx(1e4 * (10**-1.5 - 20**-1.5), rel=1e-4)
    bare = kernels(dataclasses.replace(P, shield_thickness_mm_al=0.0), 0.0)
    np.testing.assert_allclose(bare.proton_cover_dose, 0.5 * bare.proton_dose, rtol=1e-9)
    np.testing.assert_allclose(bare.electron_cover_dose, 0.5 * bare.electron_dose, rtol=1e-9)


def test_bendel_shape() -> None:
    a = P.seu_bendel_a_mev
    e = np.array([0.5 * a, a, 2 * a, 1e4])
    y = np.sqrt(18.0 / a) * a
    np.testing.assert_allclose(bendel_shape(e, a)[:3], [0.0, 0.0, (1 - np.exp(-0.18 * np.sqrt(y))) ** 4], atol=1e-15)
    assert 0.99 < bendel_shape(e, a)[3] <= 1.0


def test_seu_follows_the_spectrum_behind_the_shield(env: RadiationEnvironment) -> None:
    # The SEU scale averages to 1 on the Alsat-1 orbit (its per-bit rate's reference) and rises
    # with shielding less than the dose does: upsets come from the hard protons that pass the shield.
    lat, lon, alt = _orbit_track(686e3, 98.2)
    assert env.sample(lat, lon, alt).seu_scale.mean() == pytest.approx(1.0, rel=1e-6)
    thick = load_environment(dataclasses.replace(P, shield_thickness_mm_al=10.0), COVER_G_CM2)
    assert 0.5 * env.seu_reference_flux_cm2_s < thick.seu_reference_flux_cm2_s < env.seu_reference_flux_cm2_s
    saa = (np.radians([-30.0]), np.radians([-45.0]), np.array([550e3]))
    assert env.sample(*saa).seu_scale[0] > 10.0


def test_cover_glass_dose_is_far_above_the_shielded_dose(env: RadiationEnvironment) -> None:
    # Behind 100 um of cover glass (0.0254 g/cm^2, front only) the cells see ~30-40x the dose behind 2.5 mm Al;
    # SHIELDOSE-2 gives 1.87e5 rad/yr at the centre of a 0.1 mm Al sphere at 55 deg, and a front-only slab
    # sees between a quarter and a half of the sphere's dose at that depth.
    local = env.sample(*_orbit_track(550e3, 55.0))
    cover_yr = local.cover_dose_rate_rad_s.mean() * SECONDS_PER_YEAR
    assert 10.0 < cover_yr / (local.dose_rate_rad_s.mean() * SECONDS_PER_YEAR) < 100.0
    assert 0.1 * 1.87e5 < cover_yr < 0.5 * 1.87e5


def test_seu_reference_flux_is_alsat1_orbit_average(env: RadiationEnvironment) -> None:
    p_avg = rg.orbit_average(env.grid, 686e3, 98.2)[0]
    assert p_avg == pytest.approx(P.seu_reference_proton_flux_cm2_s, rel=0.02)
    # Direct AE8/AP8 along the same track agrees (grid consistency).
    lat, lon, alt = _orbit_track(686e3, 98.2, days=0.25, dt_s=20.0)
    direct = np.nan_to_num(rg.aep8_integral_flux(np.degrees(lat), np.degrees(lon), alt / 1e3, 10.0, "p", "min"))
    assert direct.mean() == pytest.approx(env.sample(lat, lon, alt).proton_flux_cm2_s.mean(), rel=0.1)


def test_seu_rates_reproduce_alsat1_at_reference_flux() -> None:
    sram = dataclasses.replace(P, memories=(P.memories[0],))
    corr, unc = seu_rate_per_device_s(np.array([1.0]), sram)
    per_bit_day = (corr + unc)[0] * 86_400.0 / P.memories[0].bits
    assert per_bit_day == pytest.approx(4.04e-7, rel=1e-12)
    assert unc[0] / (corr + unc)[0] == pytest.approx(0.014)


def test_seu_poisson_statistics() -> None:
    n, n_dev, dt = 20_000, 4, 10.0
    rng = _draws(7, n)
    scale = np.where(np.arange(n) % 2 == 0, 1500.0 / 80.0, 1.0)  # SEU rate over its Alsat-1 orbit average
    corr, unc = seu_events(rng, scale, dt, P, n_dev)
    assert corr.shape == unc.shape == (n, n_dev) and corr.dtype.kind == "i"
    rc, ru = seu_rate_per_device_s(scale, P)
    for counts, rate in ((corr, rc), (unc, ru)):
        expected = rate.sum() * dt * n_dev
        assert abs(counts.sum() - expected) < 3 * np.sqrt(expected)
        for dev in range(n_dev):  # devices are equally likely
            e_dev = rate.sum() * dt
            assert abs(counts[:, dev].sum() - e_dev) < 3 * np.sqrt(e_dev) + 3
    # Per-satellite mean follows the local rate (SAA satellites see ~19x more).
    hi, lo = corr[0::2].mean(), corr[1::2].mean()
    assert hi / lo == pytest.approx(1500.0 / 80.0, rel=0.1)


def test_seu_same_seed_same_events_and_zero_flux() -> None:
    flux = np.linspace(0.0, 3000.0, 9543)
    a = seu_events(_draws(123, flux.size), flux, 10.0, P, 3)
    b = seu_events(_draws(123, flux.size), flux, 10.0, P, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    z = seu_events(_draws(1, 3), np.array([0.0, np.nan, -5.0]), 1e6, P, 2)
    assert all(np.all(x == 0) for x in z)


def test_sel_rises_with_temperature() -> None:
    flux = np.full(50_000, 100.0)
    cold, hot = np.full((50_000, 2), 300.0), np.full((50_000, 2), 350.0)
    r_cold, r_hot = sel_rate_per_device_s(flux, cold, P), sel_rate_per_device_s(flux, hot, P)
    assert np.allclose(r_hot / r_cold, 2 ** (50.0 / P.sel_doubling_k))
    dt = 20.0 * 86_400.0  # long step so that events are numerous
    ev_cold = sel_events(_draws(6, flux.size), flux, cold, dt, P, 2)
    ev_hot = sel_events(_draws(6, flux.size), flux, hot, dt, P, 2)
    assert ev_cold.dtype == bool and ev_cold.shape == (50_000, 2)
    assert ev_hot.sum() > 2 * ev_cold.sum() > 0
    p_hot = -np.expm1(-r_hot[0, 0] * dt)
    assert abs(ev_hot.mean() - p_hot) < 3 * np.sqrt(p_hot * (1 - p_hot) / ev_hot.size)
    # More flux -> more latch-ups; NaN temperature -> no event.
    assert sel_rate_per_device_s(np.array([1500.0]), cold[:1], P)[0, 0] > r_cold[0, 0]
    assert not sel_events(_draws(0, 1), np.array([100.0]), np.array([[np.nan]]), dt, P, 1).any()


def test_sel_hits_devices_independent_with_the_per_device_probability() -> None:
    n, n_dev, dt = 200_000, 4, 300 * 86_400.0  # long step: P ~ 0.4 per device
    flux, temp = np.full(n, 100.0), np.full((n, 1), 400.0)  # devices share the node temperature
    rows, devs = sel_hits(_draws(1, n), flux, temp, dt, P, n_dev)
    ev = np.zeros((n, n_dev), dtype=bool)
    ev[rows, devs] = True
    assert np.all(np.diff(rows) >= 0)
    p = -np.expm1(-sel_rate_per_device_s(flux[:1], temp[:1], P)[0, 0] * dt)
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(ev.mean(axis=0) - p) < 4 * sigma)
    for a, b in ((0, 1), (0, 3), (2, 3)):  # pairs latch together as often as independence says
        assert abs((ev[:, a] & ev[:, b]).mean() - p * p) < 4 * np.sqrt(p * p * (1 - p * p) / n)
    assert abs((~ev.any(axis=1)).mean() - (1 - p) ** n_dev) < 4 * np.sqrt((1 - p) ** n_dev / n)
    # one NaN device temperature: that device never latches, the others still do
    temp4 = np.full((1000, n_dev), 400.0)
    temp4[:, 1] = np.nan
    r4, d4 = sel_hits(_draws(2, 1000), np.full(1000, 100.0), temp4, dt, P, n_dev)
    assert 1 not in set(d4.tolist()) and d4.size > 0


def test_lookup_invalid_and_out_of_range_inputs(grid: rg.RadiationGrid, env: RadiationEnvironment) -> None:
    lat = np.radians(np.array([-30.0, np.nan, -30.0, -30.0, -30.0, -30.0, 95.0, -30.0]))
    lon = np.array([np.radians(-45.0), 0.0, np.nan, np.radians(-45.0), np.radians(-45.0), np.radians(-45.0) + 4 * np.pi, 0.0, np.radians(-45.0)])
    alt = np.array([550e3, 550e3, 550e3, np.nan, -1e6, 550e3, 550e3, 1e9])
    for values in (grid.lookup(lat, lon, alt), np.stack(list(dataclasses.astuple(env.sample(lat, lon, alt))))):
        assert np.all(np.isfinite(values)) and np.all(values >= 0)
        assert np.all(values[:, 1:4] == 0.0)
        np.testing.assert_allclose(values[:, 5], values[:, 0], rtol=1e-9)  # longitude wraps
    p = env.sample(lat, lon, alt).proton_flux_cm2_s
    edge_lo = env.sample(lat[:1], lon[:1], np.array([grid.alt_km[0] * 1e3])).proton_flux_cm2_s
    edge_hi = env.sample(lat[:1], lon[:1], np.array([grid.alt_km[-1] * 1e3])).proton_flux_cm2_s
    assert p[4] == pytest.approx(edge_lo[0]) and p[7] == pytest.approx(edge_hi[0])  # clamped
    # Outside the belts (AP8 NaN/0 at the magnetic equator far from the SAA) -> exactly 0.
    assert env.sample(np.radians([0.0]), np.radians([120.0]), np.array([400e3])).proton_flux_cm2_s[0] == 0.0


def test_grid_cache_roundtrip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec = dataclasses.replace(P.grid_spec(), lat_step_deg=15.0, lon_step_deg=30.0, alt_step_km=550.0)
    monkeypatch.setattr(rg, "_LOADED", {})
    built = rg.get_grid(spec)
    files = list((tmp_path / "orbitwin").glob("radiation_grid_*.npz"))
    assert len(files) == 1 and spec.key() in files[0].name and "aep8-" in files[0].name
    monkeypatch.setattr(rg, "_LOADED", {})
    monkeypatch.setattr(rg, "build_grid", lambda s: (_ for _ in ()).throw(AssertionError("rebuilt")))
    again = rg.get_grid(spec)
    assert np.array_equal(again.log10_flux, built.log10_flux)
    # the build (one geomagnetic pass shared by AP8-MIN and AE8-MAX) equals direct per-particle aep8 calls
    lat, lon, alt = (x.ravel() for x in np.meshgrid(*spec.axes(), indexing="ij"))
    direct = np.concatenate([rg.aep8_spectra(lat, lon, alt, spec.proton_energies_mev, "p", spec.solar_phase_protons),
                             rg.aep8_spectra(lat, lon, alt, spec.electron_energies_mev, "e", spec.solar_phase_electrons)], axis=1)
    np.testing.assert_allclose(built.log10_flux.reshape(direct.shape), rg.to_log10(direct), rtol=0, atol=5.1e-4)


def test_toml_section_matches_defaults_and_validates() -> None:
    table = tomllib.loads((DATA / "v3_compute_sat.toml").read_text())["radiation"]
    assert RadiationParams.from_table(table) == P
    with pytest.raises(DesignError, match="radiation.solar_phase_protons"):
        RadiationParams.from_table({**table, "solar_phase_protons": "mid"})
    with pytest.raises(DesignError, match=r"radiation.memories\[0\]"):
        RadiationParams.from_table({**table, "memories": [{**table["memories"][0], "ecc_bits": 8}]})
    with pytest.raises(DesignError, match="multi_bit_fraction"):
        RadiationParams.from_table({**table, "memories": [{**table["memories"][0], "multi_bit_fraction": 1.5}]})
    with pytest.raises(DesignError, match="radiation.proton_energy_mev"):
        RadiationParams.from_table({**table, "proton_energy_mev": 12.0})  # not a stored threshold
    with pytest.raises(DesignError, match="radiation.electron_spectrum_energies_mev"):
        RadiationParams.from_table({**table, "electron_spectrum_energies_mev": [1.0, 0.5]})


def test_performance_n9543(env: RadiationEnvironment) -> None:
    rng = np.random.default_rng(0)
    n, n_dev = 9543, 4
    lat, lon = np.radians(rng.uniform(-70, 70, n)), np.radians(rng.uniform(-180, 180, n))
    alt, temp = rng.uniform(340e3, 1200e3, n), rng.uniform(280.0, 360.0, (n, n_dev))
    streams = SatRandom.for_names(0, [f"SAT-{i}" for i in range(n)])
    best = np.inf
    for _ in range(30):
        t0 = time.perf_counter()
        local = env.sample(lat, lon, alt)
        seu_events(streams.draws(SEU, 1), local.seu_scale, 10.0, P, n_dev)
        sel_events(streams.draws(SEL, 1), local.proton_flux_cm2_s, temp, 10.0, P, n_dev)
        best = min(best, time.perf_counter() - t0)
    # ~4.5 ms on a loaded 2-core machine (5-channel lookup ~2.6 ms, SEU ~0.8, SEL ~1.1); measured 10.2 ms once
    # while other suites ran on the same 2 cores, so the bound is 15 ms (a per-satellite loop would be ~100x slower)
    assert best < 0.015


def test_dose_split_by_region_is_consistent_with_shieldose_particle_split() -> None:
    # docs/physics.md#radiation: trapped protons reach 550 km only in the SAA, so the SAA share of the dose
    # is at least SHIELDOSE-2's proton share; behind 2.5 mm the outer-belt horns give most of the dose
    # (electrons, 81 % in SHIELDOSE-2), behind 10 mm the SAA gives nearly all of it.
    from twin.validation.dose_split import dose_split

    thin = dose_split(P, 2.5, 53.0, COVER_G_CM2, days=1.0)
    thick = dose_split(P, 10.0, 53.0, COVER_G_CM2, days=1.0)
    for s in (thin, thick):
        assert sum(s.share.values()) == pytest.approx(1.0)
        assert s.share["SAA"] >= s.protons_share_twin - 1e-9  # protons only in the SAA
        assert abs(s.protons_share_twin - s.protons_share_spenvis) < 0.05
    assert thin.share["horns"] > 0.5 and thin.share["horns"] > thin.share["SAA"]
    assert thick.share["SAA"] > 0.95
    assert 0.02 < thin.time_share["SAA"] < 0.15  # the SAA is crossed a few % of the time at 53 deg


def test_the_grid_build_command_reports_progress_with_the_time_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m twin.core.radiation`` prints a line per tenth of the nodes built, with the time left."""
    import twin.core.radiation as rad

    shipped = load_grid(P)

    def fake_build(spec, progress=None):  # the real build takes minutes: replay its progress calls
        for done in range(0, 1001, 50):
            progress(float(done), 1000.0)
        return shipped

    monkeypatch.setattr(rad, "build_grid", fake_build)
    rad.main(["--out", str(tmp_path / "grid.npz")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("grid: ")]
    assert len(lines) == 11  # 0 %, 10 %, ..., 100 %
    assert "time left ?" in lines[0] and lines[-1].startswith("grid: 1,000 of 1,000 nodes (100 %)")
    assert all("s left" in ln for ln in lines[1:])

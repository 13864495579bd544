"""Thermal network: closed-form cases (docs/physics.md#validation-thermal), stability, conservation, default design."""

import dataclasses
import re
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from twin.core import environment as env
from twin.core import thermal as th
from twin.core.constants import AU_M, SIGMA_W_M2_K4
from twin.core.design import load_design
from twin.core.params import DesignError, build

S = float(env.solar_flux_w_m2(AU_M))  # 1361 W/m^2
ALT = 550e3
TOML = Path(__file__).resolve().parents[1] / "twin" / "data" / "v3_compute_sat.toml"
P = load_design().thermal  # the array area comes from solar_array.area_m2


def _steady(net: th.NodeNetwork, heat_w: np.ndarray, t0_k: float, dt_s: float = 10.0, steps: int = 6000) -> np.ndarray:
    t = np.full(len(heat_w), t0_k)
    for _ in range(steps):
        t = net.step(t, heat_w, dt_s)
    return t


# --- closed-form cases 1-3: integrate the fleet integrator to steady state (alpha = eps) ----------
@pytest.mark.parametrize("alpha", [1.0, 0.6])
@pytest.mark.parametrize(
    ("absorbing_m2", "emitting_m2", "expected_k"),
    [(1.0, 1.0, 393.6), (1.0, 2.0, 331.0), (np.pi, 4 * np.pi, 278.3)],
    ids=["plate_insulated_back", "thin_plate", "isothermal_sphere"],
)
def test_radiative_equilibrium(alpha: float, absorbing_m2: float, emitting_m2: float, expected_k: float) -> None:
    net = th.NodeNetwork(np.array([9000.0 * emitting_m2]), np.zeros((1, 1)), np.array([alpha * emitting_m2]))
    for start in (200.0, 500.0):
        t = _steady(net, np.array([alpha * S * absorbing_m2]), start)
        assert abs(t[0] - expected_k) < 0.5


def test_closed_form_numbers_themselves() -> None:
    assert (S / SIGMA_W_M2_K4) ** 0.25 == pytest.approx(393.6, abs=0.05)
    assert (S / (2 * SIGMA_W_M2_K4)) ** 0.25 == pytest.approx(331.0, abs=0.05)
    assert (S / (4 * SIGMA_W_M2_K4)) ** 0.25 == pytest.approx(278.3, abs=0.05)


# --- case 4: pure radiative cooling ----------------------------------------------------------------
def test_radiative_cooling_matches_analytic() -> None:
    c, ea, t0, dt = 9000.0, 0.9, 400.0, 10.0  # 10 kg Al plate, 1 m^2, eps 0.9
    k = ea * SIGMA_W_M2_K4 / c
    net = th.NodeNetwork(np.array([c]), np.zeros((1, 1)), np.array([ea]))
    t = np.array([t0])
    worst = 0.0
    for i in range(1, 601):  # 6000 s: 400 K -> ~204 K
        t = net.step(t, np.zeros(1), dt)
        exact = t0 * (1 + 3 * k * t0**3 * i * dt) ** (-1 / 3)
        worst = max(worst, abs(t[0] / exact - 1))
    assert exact < 210.0  # the interval is meaningful: the node lost half its temperature
    assert worst < 0.005


# --- case 5: two conductively coupled nodes ------------------------------------------------------
def test_two_node_conduction_time_constant() -> None:
    c1, c2, g = 1.0e5, 3.0e5, 20.0
    tau = c1 * c2 / (g * (c1 + c2))  # 3750 s
    net = th.NodeNetwork(np.array([c1, c2]), np.array([[0.0, g], [g, 0.0]]), np.zeros(2))
    t = np.array([350.0, 250.0])
    t_mean = (c1 * 350.0 + c2 * 250.0) / (c1 + c2)
    dt, d0 = 10.0, 100.0
    for i in range(1, 1501):  # 4 tau
        t = net.step(t, np.zeros(2), dt)
        if i % 375 == 0:
            tau_fit = -i * dt / np.log((t[0] - t[1]) / d0)
            assert tau_fit == pytest.approx(tau, rel=0.005)
            assert (t[0] - t_mean) * c1 == pytest.approx((t_mean - t[1]) * c2, rel=1e-9)
    assert t[0] - t[1] == pytest.approx(d0 * np.exp(-4.0), rel=0.02)


# --- the fleet solver -------------------------------------------------------------------------------
def _fleet_inputs(n: int, payload_w: float = 15000.0, lit: float = 1.0, cos_z: float = 0.26):
    ones = np.ones(n)
    ab = th.absorbed_environment_w(
        P, S * ones, lit * ones, ones, env.albedo_flux_w_m2(S, cos_z * ones, ALT), env.earth_ir_flux_w_m2(ALT * ones)
    )
    q = np.zeros((n, 5))
    q[:, th.PAYLOAD], q[:, th.AVIONICS], q[:, th.BATTERY] = payload_w, 2000.0, 50.0 if lit else 150.0
    q[:, th.ARRAY] = -0.20 * S * 105.0 * lit  # electric output leaves the array
    return q, ab


def test_fleet_step_matches_dense_solve() -> None:
    rng = np.random.default_rng(1)
    n, dt = 7, 37.0
    temp = rng.uniform(150, 400, (n, 5))
    q, ab = _fleet_inputs(n)
    rad_eff, hp_eff = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    got = th.thermal_step(temp, q, ab, dt, P, rad_eff, hp_eff)
    for s in range(n):
        g = P.conductance_w_k.copy()
        g[0, 1] = g[1, 0] = g[0, 1] * hp_eff[s]
        ks = SIGMA_W_M2_K4 * P.eps_area_m2 * np.array([1, rad_eff[s], 1, 1, 1])
        m = np.diag(P.heat_capacity_j_k / dt + 4 * ks * temp[s] ** 3 + g.sum(1)) - g
        r = P.heat_capacity_j_k / dt * temp[s] + ks * (3 * temp[s] ** 4 + 2.7**4) + q[s] + ab[s]
        np.testing.assert_allclose(got[s], np.linalg.solve(m, r), atol=1e-9)


def test_energy_conservation_conduction_only() -> None:
    rng = np.random.default_rng(2)
    no_rad = dataclasses.replace(P, **{f"{nm}_radiating_area_m2": 0.0 for nm in th.NODE_NAMES if nm != "array"},
                                 array_radiating_faces=0.0)
    n = 50
    temp = rng.uniform(100, 400, (n, 5))
    c = P.heat_capacity_j_k
    e0 = temp @ c
    hp = rng.uniform(0.0, 1.0, n)
    for dt in (10.0, 60.0, 3600.0, 1.0e5):
        for _ in range(200):
            temp = th.thermal_step(temp, np.zeros((n, 5)), np.zeros((n, 5)), dt, no_rad, None, hp)
        np.testing.assert_allclose(temp @ c, e0, rtol=1e-9)
    assert np.ptp(temp, axis=1).max() < 5.0  # and it really did equilibrate


def _equilibrium(q: np.ndarray, ab: np.ndarray) -> np.ndarray:
    t = np.full(q.shape, 300.0)
    for _ in range(60):  # dt -> huge: Newton on the steady-state balance
        t = th.thermal_step(t, q, ab, 1e7, P)
    return t


@pytest.mark.parametrize("t0_k", [380.0, 150.0], ids=["hot", "cold"])
def test_stability_no_numerical_overshoot(t0_k: float) -> None:
    q, ab = _fleet_inputs(1)
    t_eq = _equilibrium(q, ab)[0]
    lo, hi = np.minimum(t0_k, t_eq), np.maximum(t0_k, t_eq)

    def run(dt: float) -> np.ndarray:
        t, tr = np.full((1, 5), t0_k), [np.full(5, t0_k)]
        for _ in range(int(8 * 3600 / dt)):
            t = th.thermal_step(t, q, ab, dt, P)
            tr.append(t[0])
        return np.array(tr)

    def excursion(tr: np.ndarray) -> np.ndarray:
        return np.maximum(tr - hi, 0).max(0) + np.maximum(lo - tr, 0).max(0)

    def turns(tr: np.ndarray) -> list[int]:
        d = np.diff(tr, axis=0)
        out = []
        for col in d.T:
            s = np.sign(col[np.abs(col) > 1e-9])
            out.append(int(np.count_nonzero(np.diff(s))))
        return out

    ref = run(1.0)  # physics: the payload may dip ~1.6 K below its equilibrium from a hot start
    for dt in (10.0, 60.0):
        tr = run(dt)
        assert np.all(np.isfinite(tr)) and tr.min() > 0
        assert np.all(excursion(tr) <= excursion(ref) + 0.05), dt
        assert all(a <= b for a, b in zip(turns(tr), turns(ref))), dt
        assert np.abs(tr[-1] - ref[-1]).max() < 0.5  # dt=60 tracks the dt=1 solution


def test_huge_step_converges_and_newton_iterations_remove_overshoot() -> None:
    q, ab = _fleet_inputs(1)
    t_eq = _equilibrium(q, ab)
    balance = q + ab - SIGMA_W_M2_K4 * P.eps_area_m2 * t_eq**4 - t_eq @ (np.diag(P.conductance_w_k.sum(1)) - P.conductance_w_k)
    assert np.abs(balance).max() < 1e-3  # W: a true steady state
    t = np.full((1, 5), 80.0)
    for _ in range(40):
        t = th.thermal_step(t, q, ab, 600.0, P, iterations=3)
        assert np.all(t <= t_eq + 0.05)


def test_default_design_full_sun_orbit_average() -> None:
    period, dt = 95.65 * 60, 60.0
    t = P.initial_temp_k[None].copy()
    hist = []
    for i in range(int(30 * period / dt)):
        u = 2 * np.pi * i * dt / period
        q, ab = _fleet_inputs(1, 15000.0, 1.0, np.cos(np.radians(75)) * np.cos(u))  # beta 75: no eclipse
        h = th.heater_power_w(t, None, np.array([True]), P)
        t = th.thermal_step(t, q + h, ab, dt, P)
        hist.append(t[0])
    avg = np.mean(hist[-int(period / dt):], axis=0)
    assert 280.0 <= avg[th.PAYLOAD] <= 360.0
    assert 273.0 <= avg[th.BATTERY] <= 313.0
    assert avg[th.RADIATOR] < avg[th.PAYLOAD]
    assert 293.0 <= avg[th.ARRAY] <= 358.0  # LEO arrays run 20-85 C in sun (docs/physics.md#thermal)


def test_default_design_eclipse_orbit_battery_held_by_heater() -> None:
    period, dt, f_ecl = 95.65 * 60, 30.0, 0.372  # beta 0 at 550 km
    cold = dataclasses.replace(P, battery_radiating_area_m2=1.5)  # a colder design needs its heater
    t = cold.initial_temp_k[None].copy()
    hist, heat = [], []
    for i in range(int(60 * period / dt)):
        u = (2 * np.pi * i * dt / period + np.pi) % (2 * np.pi) - np.pi
        lit = 0.0 if abs(u) > np.pi * (1 - f_ecl) else 1.0
        q, ab = _fleet_inputs(1, 15000.0, lit, np.cos(u))
        ab = th.absorbed_environment_w(cold, S * np.ones(1), lit * np.ones(1), np.ones(1),
                                       env.albedo_flux_w_m2(S, np.cos(u) * np.ones(1), ALT), env.earth_ir_flux_w_m2(ALT))
        h = th.heater_power_w(t, None, np.array([True]), cold)
        t = th.thermal_step(t, q + h, ab, dt, cold)
        hist.append(t[0])
        heat.append(h[0, th.BATTERY])
    last = np.array(hist[-int(period / dt):])
    assert 273.0 <= last[:, th.BATTERY].min() and last[:, th.BATTERY].max() <= 313.0
    assert np.mean(heat[-int(period / dt):]) > 10.0  # the heater is doing the work
    assert 280.0 <= last[:, th.PAYLOAD].mean() <= 360.0
    assert last[:, th.ARRAY].min() < 220.0 < 320.0 < last[:, th.ARRAY].max()  # array swings with eclipse


def test_faults_heat_the_payload() -> None:
    q, ab = _fleet_inputs(3)
    t = np.tile(P.initial_temp_k, (3, 1))
    for _ in range(400):
        t = th.thermal_step(t, q, ab, 60.0, P, np.array([1.0, 0.5, 1.0]), np.array([1.0, 1.0, 0.2]))
    nominal, degraded_radiator, weak_loop = t[:, th.PAYLOAD]
    assert degraded_radiator > nominal + 15.0
    assert weak_loop - t[2, th.RADIATOR] == pytest.approx(15000 / (0.2 * P.g_payload_radiator_w_k), rel=0.05)


def test_heater_power() -> None:
    sp = P.battery_setpoint_k
    temp = np.full((4, 5), 400.0)
    temp[:, th.BATTERY] = [sp + 1, sp - 1, sp - 5, sp - 5]
    h = th.heater_power_w(temp, None, np.array([True, True, True, False]), P)
    assert h[:, th.BATTERY] == pytest.approx([0.0, 0.5 * P.battery_heater_w, P.battery_heater_w, 0.0])
    assert np.all(h[:, [th.PAYLOAD, th.RADIATOR, th.AVIONICS, th.ARRAY]] == 0.0)
    cold = th.heater_power_w(np.full((1, 5), 100.0), None, np.array([True]), P)[0]
    np.testing.assert_allclose(cold, [P.payload_heater_w, 0, P.battery_heater_w, P.avionics_heater_w, 0])
    custom = th.heater_power_w(np.full((1, 5), 100.0), np.full(5, 50.0), np.array([True]), P)
    assert np.all(custom == 0.0)


def test_absorbed_environment() -> None:
    ab = th.absorbed_environment_w(P, np.full(2, S), np.array([1.0, 0.5]), np.array([0.8, -0.3]), np.zeros(2), np.zeros(2))
    assert ab.shape == (2, 5)
    assert ab[0, th.ARRAY] == pytest.approx(P.array_absorptivity * P.array_area_m2 * S * 0.8)
    assert ab[1, th.ARRAY] == 0.0  # back-lit array gets no direct sun
    assert ab[0, th.RADIATOR] == 0.0  # edge-on to the sun
    assert ab[1, th.AVIONICS] == pytest.approx(0.5 * ab[0, th.AVIONICS])
    ir = th.absorbed_environment_w(P, np.full(1, S), np.zeros(1), np.ones(1), np.zeros(1), np.full(1, 201.0))
    assert ir[0, th.RADIATOR] == pytest.approx(P.radiator_emissivity * P.radiator_earth_area_m2 * 201.0)


def test_toml_section_round_trips_with_sources() -> None:
    full = TOML.read_text()
    doc = tomllib.loads(full)
    area = doc["solar_array"]["area_m2"]
    assert th.ThermalParams.from_table(doc["thermal"], "thermal", array_area_m2=area) == P
    assert th.ThermalParams(array_area_m2=area) == P  # the defaults are the shipped design
    text = full.split("[thermal]", 1)[1].split("\n[", 1)[0]
    keys = [ln for ln in text.splitlines() if re.match(r"^\w+\s*=", ln)]
    assert len(keys) == len(dataclasses.fields(th.ThermalParams)) - 1  # array_area_m2 is solar_array.area_m2
    assert all(re.search(r"#.*(estimate|physics\.md)", ln) for ln in keys)
    assert all(re.search(r"estimate|physics\.md", f.metadata["description"]) for f in dataclasses.fields(th.ThermalParams))
    with pytest.raises(DesignError, match="thermal.battery_heat_capacity_j_k"):
        build(th.ThermalParams, {"battery_heat_capacity_j_k": -1.0}, "thermal")
    with pytest.raises(DesignError, match="thermal.array_area_m2"):
        th.ThermalParams.from_table({**doc["thermal"], "array_area_m2": 105.0}, "thermal", array_area_m2=area)


def test_radiator_sized_like_starcloud() -> None:
    # Starcloud: ~633 W/m^2 net per m^2 of two-sided panel at 20 C -> ~24 m^2 per 15 kW
    panel_m2 = P.radiator_radiating_area_m2 / 2
    assert 15000.0 / 633.0 <= panel_m2 <= 20000.0 / 633.0 * 1.2


def test_step_time_full_fleet() -> None:
    n = 9543
    rng = np.random.default_rng(3)
    t = np.tile(P.initial_temp_k, (n, 1)) + rng.normal(0, 5, (n, 5))
    q, ab = _fleet_inputs(n)
    re_, hp = rng.uniform(0.5, 1, n), rng.uniform(0.5, 1, n)
    best = np.inf
    for _ in range(30):
        t0 = time.perf_counter()
        th.thermal_step(t, q, ab, 10.0, P, re_, hp)
        best = min(best, time.perf_counter() - t0)
    assert best < 3e-3

"""Physics validation cases: closed forms and authorities, with tolerances in physical units.

Each case returns a :class:`Check`; ``orbitwin validate`` prints them and the test suite asserts
them, so what users see and what CI proves are the same computations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from twin.core.constants import (
    MU_EARTH_M3_S2, R_EARTH_M, SECONDS_PER_DAY, SECONDS_PER_YEAR, SIGMA_W_M2_K4, SOLAR_CONSTANT_W_M2,
)
from twin.core.eclipse import cylindrical_eclipse_fraction, illumination_fraction

if TYPE_CHECKING:
    from twin.validation.nominal_day import NominalDayResult

#: ``progress(done, total)``: how far a long case is, in units of its own (documented per function).
ProgressFn = Callable[[float, float], None]


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    expected: float
    tolerance: float
    unit: str
    passed: bool
    detail: str


def _check(name: str, value: float, expected: float, tol: float, unit: str, note: str = "") -> Check:
    ok = bool(abs(value - expected) <= tol)
    return Check(name, value, expected, tol, unit, ok,
                 f"{value:.6g} {unit} vs {expected:.6g} +/- {tol:.3g} {unit}{' ' + note if note else ''}")


# --- eclipse -------------------------------------------------------------------------------
def eclipse_minutes_conical(alt_m: float, beta_deg: float, step_s: float = 1.0) -> float:
    """Time per orbit (min) with less than half the Sun visible, on a circular orbit at ``beta``."""
    r = R_EARTH_M + alt_m
    period = 2 * np.pi * np.sqrt(r**3 / MU_EARTH_M3_S2)
    beta = np.radians(beta_deg)
    sun_m = 1.495978707e11 * np.array([np.cos(beta), 0.0, np.sin(beta)])  # orbit in the x-y plane
    t = np.arange(0.0, period, step_s)
    u = 2 * np.pi * t / period
    pos = r * np.stack([np.cos(u), np.sin(u), np.zeros_like(u)], axis=1)
    illum = illumination_fraction(pos, sun_m)
    return float(np.sum(illum < 0.5) * step_s / 60.0)


def eclipse_checks() -> list[Check]:
    out = []
    r = R_EARTH_M + 550e3
    period_min = 2 * np.pi * np.sqrt(r**3 / MU_EARTH_M3_S2) / 60
    for beta, ref in ((0.0, 35.6), (30.0, 33.6), (53.0, 26.3), (60.0, 20.5)):
        closed = cylindrical_eclipse_fraction(550e3, np.radians(beta)) * period_min
        sim = eclipse_minutes_conical(550e3, beta)
        out.append(_check(f"eclipse 550 km beta {beta:g} deg", sim, closed, 0.01 * closed, "min",
                          f"(docs/physics.md#eclipse: {ref} min)"))
    return out


def sunlit_vs_skyfield(sample: int | None = None, start_jd: float | None = None,
                       progress: ProgressFn | None = None) -> Check:
    """Conical sunlit state (illumination > 0.5) vs skyfield ``is_sunlit`` over the shipped fleet.

    ``progress(done, total)``: satellites compared.
    """
    from skyfield.api import EarthSatellite

    from twin.core.catalogue import load_catalogue
    from twin.core.ephemeris import SunEphemeris, jd_to_utc_tuple, skyfield_context
    from twin.core.orbit import FleetPropagator

    cat = load_catalogue()
    jd = cat.median_epoch_jd() if start_jd is None else start_jd
    prop = FleetPropagator(cat)
    whole = np.floor(jd - 0.5) + 0.5
    sun_m, _ = SunEphemeris().at(whole, jd - whole)
    r_m, _, err = prop.teme(whole, jd - whole)
    illum = illumination_fraction(r_m, sun_m)
    ts, eph = skyfield_context()
    t = ts.utc(*jd_to_utc_tuple(np.array([jd])))
    idx = np.flatnonzero(err == 0)
    if sample is not None:
        idx = idx[np.linspace(0, idx.size - 1, min(sample, idx.size)).astype(int)]
    mismatch = penumbra = 0
    for done, i in enumerate(idx, 1):
        if progress is not None:
            progress(done, idx.size)
        sat = EarthSatellite(cat.line1[i], cat.line2[i], cat.names[i], ts)
        sunlit = bool(sat.at(t).is_sunlit(eph)[0])
        if 0.0 < illum[i] < 1.0:
            penumbra += 1
            continue
        mismatch += sunlit != (illum[i] >= 0.5)
    return Check("sunlit state vs skyfield is_sunlit", float(mismatch), 0.0, 0.0, "sats", mismatch == 0,
                 f"{mismatch} disagreements over {idx.size - penumbra} satellites ({penumbra} in penumbra skipped)")


def positions_vs_skyfield(sample: int = 200, hours: float = 6.0, progress: ProgressFn | None = None) -> Check:
    """Fleet TEME positions rotated to GCRS vs skyfield ``EarthSatellite.at``: worst error (m).

    ``progress(done, total)``: instants compared (4, each with ``sample`` satellites).
    """
    from skyfield.api import EarthSatellite
    from skyfield.sgp4lib import TEME

    from twin.core.catalogue import load_catalogue
    from twin.core.ephemeris import jd_to_utc_tuple, skyfield_context
    from twin.core.orbit import FleetPropagator

    cat = load_catalogue()
    idx = np.linspace(0, len(cat) - 1, sample).astype(int)
    sub = cat.subset(idx)
    prop = FleetPropagator(sub)
    ts, _ = skyfield_context()
    jd0 = cat.median_epoch_jd()
    worst = 0.0
    for n_time, h in enumerate(np.linspace(0.0, hours, 4)):
        jd = jd0 + h / 24.0
        whole = np.floor(jd - 0.5) + 0.5
        r_teme, _, err = prop.teme(whole, jd - whole)
        t = ts.utc(*jd_to_utc_tuple(np.array([jd])))
        rot = TEME.rotation_at(t)[:, :, 0]  # GCRS -> TEME
        ours_gcrs = r_teme @ rot  # row vectors: TEME -> GCRS is rot.T
        for k in np.flatnonzero(err == 0):
            sat = EarthSatellite(sub.line1[k], sub.line2[k], sub.names[k], ts)
            ref = sat.at(t).position.m[:, 0]
            worst = max(worst, float(np.linalg.norm(ours_gcrs[k] - ref)))
        if progress is not None:
            progress(n_time + 1, 4)
    return _check("fleet positions vs skyfield EarthSatellite", worst, 0.0, 1.0, "m", f"(worst of {sample} sats x 4 times)")


# --- thermal closed forms (docs/physics.md#validation-thermal), integrated by the fleet's own solver
def _steady(network, temp0: float, heat_w: float, dt: float = 200.0, steps: int = 3000) -> float:  # type: ignore[no-untyped-def]
    t = np.array([[temp0]])
    for _ in range(steps):
        t = network.step(t, np.array([[heat_w]]), dt)
    return float(t[0, 0])


def thermal_checks() -> list[Check]:
    from twin.core.thermal import NodeNetwork

    s, a, eps = SOLAR_CONSTANT_W_M2, 0.9, 0.9
    out = []
    for name, emit_area, absorb_area, ref in (
        ("sun-facing plate, insulated back", 1.0, 1.0, 393.6),
        ("thin plate radiating both sides", 2.0, 1.0, 331.0),
        ("isothermal sphere", 4.0, 1.0, 278.3),
    ):
        net = NodeNetwork(np.array([5000.0]), np.zeros((1, 1)), np.array([eps * emit_area]))
        value = _steady(net, 300.0, a * s * absorb_area)
        out.append(_check(f"thermal: {name}", value, ref, 0.5, "K"))
    # radiative cooling, T(t) = T0 (1 + 3 k T0^3 t)^(-1/3)
    c, ea, t0 = 2000.0, 0.8, 400.0
    net = NodeNetwork(np.array([c]), np.zeros((1, 1)), np.array([ea]))
    temp = np.array([[t0]])
    for _ in range(600):
        temp = net.step(temp, np.zeros((1, 1)), 10.0)
    k = ea * SIGMA_W_M2_K4 / c
    exact = t0 * (1 + 3 * k * t0**3 * 6000.0) ** (-1 / 3)
    out.append(_check("thermal: radiative cooling after 6000 s", float(temp[0, 0]), exact, 0.005 * exact, "K"))
    # two nodes, conduction only: tau = C1 C2 / (G (C1 + C2))
    c1, c2, g = 1000.0, 3000.0, 0.2
    net = NodeNetwork(np.array([c1, c2]), np.array([[0.0, g], [g, 0.0]]), np.zeros(2))
    temp = np.array([[400.0, 300.0]])
    tau = c1 * c2 / (g * (c1 + c2))
    for _ in range(int(tau / 5.0)):
        temp = net.step(temp, np.zeros((1, 2)), 5.0)
    diff = float(temp[0, 0] - temp[0, 1])
    out.append(_check("thermal: two-node conduction after tau", diff, 100.0 * np.exp(-1.0), 0.005 * 100 * np.exp(-1),
                      "K", f"(tau {tau:.0f} s)"))
    return out


# --- engine-level: energy balance, radiation, reproducibility --------------------------------
def orbit_energy_balance(dt_s: float = 1.0, count: int = 20, progress: ProgressFn | None = None) -> Check:
    """Over one orbit: generated - loads - shunt - battery losses vs change in stored energy (J).

    ``progress(done, total)``: sim seconds flown of the orbit's.
    """
    from twin.core.battery import stored_energy_j
    from twin.core.catalogue import load_catalogue
    from twin.core.design import load_design
    from twin.core.engine import FleetTwin

    twin = FleetTwin(load_catalogue().select(alt_km=(540, 560), inc_deg=(52.5, 53.5), count=count), load_design(),
                     dt_s=dt_s, seed=1)
    b = twin.design.battery
    e0 = stored_energy_j(twin.soc, b, twin.faults.battery_strings_failed, twin.v_rc_v)
    gen = loads = shunt = heat = np.zeros(twin.n)
    steps = int(5740 / dt_s)
    for k in range(steps):
        twin.step()
        if progress is not None:
            progress((k + 1) * dt_s, steps * dt_s)
        tm = twin.tm
        gen = gen + tm["array_power_w"] * dt_s
        loads = loads + tm["load_power_w"] * dt_s
        shunt = shunt + tm["shunt_power_w"] * dt_s
        heat = heat + twin.last_battery_heat_w * dt_s
    e1 = stored_energy_j(twin.soc, b, twin.faults.battery_strings_failed, twin.v_rc_v)
    residual = (gen - loads - shunt - heat) - (e1 - e0)
    throughput = np.maximum(np.abs(e1 - e0), 1.0)
    worst = float(np.max(np.abs(residual) / np.maximum(gen, 1.0)))
    return _check("battery energy balance over one orbit", worst * 100, 0.0, 0.1, "% of generated",
                  f"(max |delta E| {float(throughput.max()) / 3.6e6:.2f} kWh)")


def radiation_checks(days: float = 1.0, dt_s: float = 10.0) -> list[Check]:
    """SAA dose/SEU contrast at one altitude, and the yearly dose of a 550 km / 53 deg orbit."""
    from twin.core.design import load_design
    from twin.core.radiation import load_environment, seu_rate_per_device_s
    from twin.core.radiation_grid import orbit_average

    design = load_design()
    rp = design.radiation
    env = load_environment(rp, design.solar_array.cover_glass_g_cm2)
    lat = np.radians(np.array([-30.0, 30.0, -30.0]))
    lon = np.radians(np.array([-45.0, -45.0, 135.0]))
    local = env.sample(lat, lon, np.full(3, 550e3))
    dose = local.dose_rate_rad_s
    seu_c, seu_u = seu_rate_per_device_s(local.seu_scale, rp)
    seu = seu_c + seu_u
    out = []
    contrast = float(min(dose[0] / max(dose[1], 1e-30), dose[0] / max(dose[2], 1e-30)))
    out.append(Check("SAA dose-rate contrast at 550 km", contrast, 10.0, 0.0, "x", contrast > 10.0,
                     f"inside {dose[0] * 3600:.3g} rad/h vs outside {max(dose[1], dose[2]) * 3600:.3g} rad/h"))
    contrast = float(min(seu[0] / max(seu[1], 1e-30), seu[0] / max(seu[2], 1e-30)))
    out.append(Check("SAA SEU-rate contrast at 550 km", contrast, 10.0, 0.0, "x", contrast > 10.0,
                     f"inside {seu[0] * SECONDS_PER_DAY:.3g} vs outside "
                     f"{max(seu[1], seu[2]) * SECONDS_PER_DAY:.3g} upsets/device/day"))
    yearly = float(orbit_average(env.grid, 550e3, 53.0, days * SECONDS_PER_DAY)[2] * SECONDS_PER_YEAR)
    ok = 1.0e3 / 2 <= yearly <= 1.3e3 * 2
    out.append(Check("dose 550 km / 53 deg behind shielding", yearly, 1150.0, 0.0, "rad(Si)/yr", ok,
                     f"{yearly:.0f} rad(Si)/yr behind {rp.shield_thickness_mm_al:g} mm Al "
                     "(docs/physics.md#validation-radiation: 1.0-1.3 krad/yr behind 2.5 mm; pass within a factor of 2)"))
    return out


def reproducibility_check(steps: int = 120, progress: ProgressFn | None = None) -> Check:
    """Two runs with the same seed, faults and commands give bit-identical telemetry.

    ``progress(done, total)``: steps of the two runs.
    """
    from twin.core.catalogue import load_catalogue
    from twin.core.design import load_design
    from twin.core.engine import FleetTwin

    def run(first: int) -> dict[str, np.ndarray]:
        twin = FleetTwin(load_catalogue().select(count=300), load_design(), dt_s=5.0, seed=42)
        twin.submit("fault", "sensor_noise", {"field": "battery_temp_k", "sigma": 0.5}, twin.names[3], at_s=50)
        twin.submit("fault", "seu_burst", {"count": 500}, "*", at_s=100)
        twin.submit("command", "set_payload_load", {"load": 0.3}, twin.names[:10], at_s=200)
        for k in range(steps):
            twin.step()
            if progress is not None:
                progress(first + k + 1, 2 * steps)
        return twin.tm

    a, b = run(0), run(steps)
    differ = [k for k in a if not np.array_equal(a[k], b[k], equal_nan=True)]
    return Check("reproducibility: same seed, same telemetry", float(len(differ)), 0.0, 0.0, "fields", not differ,
                 "bit-identical" if not differ else f"differ: {', '.join(differ)}")


def nominal_day_checks(result: NominalDayResult) -> list[Check]:
    """The nominal day's verdicts (docs/physics.md#validation-nominal-day)."""
    from twin.validation.nominal_day import ENERGY_TOL_FRACTION, GREEN_FIELDS, PERIODIC_TOL_K

    h = f"{result.hours:g} h, {len(result.sats)} satellites, dt {result.dt_s:g} s"
    red = [w for w in result.worst if w.state == 2]
    out = [Check("nominal day: no telemetry field in red", float(len(red)), 0.0, 0.0, "fields", not red,
                 f"({h}) " + ("every limited field stayed out of red" if not red else
                             "red: " + ", ".join(f"{w.name} {w.side} {w.value:.4g} {w.unit} on {w.sat}" for w in red)))]
    not_green = [w for w in result.worst if w.name in GREEN_FIELDS and w.state != 0]
    bt = [w for w in result.worst if w.name == "battery_temp_k"]
    out.append(Check("nominal day: battery green", float(len(not_green)), 0.0, 0.0, "fields", not not_green,
                     "battery_temp_k " + " .. ".join(f"{w.value:.2f}" for w in bt) + " K, battery_soc >= "
                     + " ".join(f"{w.value:.3f}" for w in result.worst if w.name == "battery_soc" and w.side == "low")
                     + (" (not green: " + ", ".join(w.name for w in not_green) + ")" if not_green else "")))
    judged = result.periodic_change_k[:, result.judged_nodes]
    worst = float(judged.max()) if judged.size else 0.0
    from twin.core.thermal import NODE_NAMES
    names = [n for n, j in zip(NODE_NAMES, result.judged_nodes) if j]
    other = [f"{n} {float(result.periodic_change_k[:, k].max()):.2f} K (tau {result.tau_s[k]:.0f} s, not judged)"
             for k, n in enumerate(NODE_NAMES) if not result.judged_nodes[k]]
    out.append(_check("nominal day: periodic thermal steady state", worst, 0.0, PERIODIC_TOL_K, "K/orbit",
                      f"(orbit-mean change between the last two orbits, {', '.join(names)}; {'; '.join(other)})"))
    e = float(np.max(np.abs(result.energy_residual_fraction)))
    out.append(_check("nominal day: energy balance over the day", e * 100, 0.0, ENERGY_TOL_FRACTION * 100,
                      "% of generated", f"(generated {float(result.energy_generated_kwh.min()):.0f}-"
                      f"{float(result.energy_generated_kwh.max()):.0f} kWh per satellite)"))
    return out


CASES: dict[str, Callable[[bool, ProgressFn | None], list[Check]]] = {
    "eclipse": lambda quick, progress: eclipse_checks(),
    "sunlit": lambda quick, progress: [sunlit_vs_skyfield(500 if quick else None, progress=progress)],
    "positions": lambda quick, progress: [positions_vs_skyfield(50 if quick else 200, progress=progress)],
    "thermal": lambda quick, progress: thermal_checks(),
    "energy": lambda quick, progress: [orbit_energy_balance(progress=progress)],
}


def run_validation(
    quick: bool = False,
    only: list[str] | None = None,
    on_day: Callable[[NominalDayResult], None] | None = None,
    day_hours: float = 24.0,
    progress: Callable[[str], ProgressFn | None] | None = None,
) -> list[Check]:
    """Run every validation case (or ``only`` those named) and return the checks.

    The ``day`` case flies the nominal day (``day_hours`` of sim time, 10 s steps, 30 s with
    ``quick``); ``on_day`` receives its full result (``orbitwin validate`` prints its table).
    ``progress(case)``: the progress callback for a case about to run (None: no progress); the
    long cases (sunlit, positions, energy, reproducibility, day) report through it.
    """
    cases = dict(CASES)
    cases["radiation"] = lambda q, p: radiation_checks()
    cases["reproducibility"] = lambda q, p: [reproducibility_check(progress=p)]

    def day(q: bool, p: ProgressFn | None) -> list[Check]:
        from twin.validation.nominal_day import run_nominal_day

        result = run_nominal_day(day_hours, 30.0 if q else 10.0, progress=p)
        if on_day is not None:
            on_day(result)
        return nominal_day_checks(result)

    cases["day"] = day
    out: list[Check] = []
    for name, fn in cases.items():
        if only is None or name in only:
            out.extend(fn(quick, None if progress is None else progress(name)))
    return out

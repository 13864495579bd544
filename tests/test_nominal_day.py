"""The nominal day (docs/physics.md#validation-nominal-day): the default design for 24 h of sim time.

The suite flies the same representative satellites as ``orbitwin validate`` over the full day,
with 60 s steps instead of 10 s (the engine at 60 s ends within 0.5 K of 1 s steps, see
docs/physics.md#validation-thermal; energy closes exactly at any step).
"""

import dataclasses

import numpy as np
import pytest

from twin.core import thermal
from twin.core.catalogue import load_catalogue
from twin.core.constants import R_EARTH_M
from twin.core.design import load_design
from twin.validation import nominal_day as nd
from twin.validation.physics_checks import nominal_day_checks
from twin.schema.telemetry import LIMITED_FIELDS

CAT = load_catalogue()


@pytest.fixture(scope="module")
def reps():
    return nd.representative_satellites(CAT)


@pytest.fixture(scope="module")
def day(reps):
    return nd.run_nominal_day(24.0, 60.0, catalogue=CAT, sats=reps)


def test_representatives_cover_every_main_shell_at_both_betas_and_full_sun(reps):
    labels = np.array(nd.shell_label(CAT.mean_altitude_m, CAT.inclination_deg))
    shells, counts = np.unique(labels, return_counts=True)
    main = set(shells[counts >= nd.MAIN_SHELL_SHARE * len(CAT)])
    assert {"480km-53deg", "540km-53deg", "570km-70deg", "550km-98deg"} <= main
    by_shell = {}
    for r in reps:
        by_shell.setdefault(r.shell, []).append(r)
    assert main <= set(by_shell)
    for shell in main:
        betas = sorted(abs(r.beta_deg) for r in by_shell[shell] if r.role != "full sun")
        assert betas[0] < 20.0, shell  # the polar shell's nearest to 0 is ~19 deg on this epoch
        assert abs(betas[-1] - 60.0) < 8.0, shell  # 43-deg shells reach only ~53 deg
    sun = [r for r in reps if r.role == "full sun"]
    assert len(sun) == 1
    alt = CAT.mean_altitude_m[sun[0].index]
    assert abs(sun[0].beta_deg) > np.degrees(np.arcsin(R_EARTH_M / (R_EARTH_M + alt)))


#: Red in nominal operation, not a thermal or power field: the trapped-belt peaks behind 2.5 mm Al
#: (outer-belt horns, SAA) exceed the schema's dose-rate red limit of 1e-3 rad/s under the dose
#: model; the limit or the model is being revisited with issue 13 items 4-5 (radiation).
DOSE_RATE = "dose_rate_rad_s"


def test_nominal_day_default_design(day):
    """No limited field red, battery green, periodic steady state,
    energy balanced: for 24 h."""
    red = [w for w in day.worst if w.state == 2]
    assert not red, [(w.name, w.side, w.value, w.sat) for w in red]
    for check in nominal_day_checks(day)[1:]:
        assert check.passed, check.detail
    assert not day.events.get("mode:not_nominal_at_end")
    # the battery's own margins, the failure: 322.6 K and rising at 24 h
    bt = {w.side: w for w in day.worst if w.name == "battery_temp_k"}
    assert bt["high"].value < bt["high"].yellow - 3.0
    assert bt["low"].value > bt["low"].yellow + 3.0


def test_dose_rate_stays_out_of_red_over_the_nominal_day(day):
    """Trapped-belt peaks (SAA and horns) stay below the red limit (docs/physics.md#dose-rate-limits), and
    reach at least a tenth of it, so the limit is not set out of reach."""
    (dose,) = [w for w in day.worst if w.name == DOSE_RATE]
    assert dose.state < 2, dose
    assert 0.1 * 1e-2 < dose.value < 1e-2


def test_full_sun_satellite_never_sees_eclipse_and_its_heater_holds_the_battery(day):
    k = next(i for i, r in enumerate(day.sats) if r.role == "full sun")
    assert day.illumination_min[k] == 1.0
    assert 50.0 < day.heater_mean_w[k, thermal.BATTERY] < load_design().thermal.battery_heater_w
    others = [i for i, r in enumerate(day.sats) if r.role == "beta ~0 deg"]
    assert np.all(day.illumination_min[others] == 0.0)


def test_table_lists_every_limited_field_with_its_limits(day):
    table = nd.format_table(day)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["field", "worst", "side"]
    for f in LIMITED_FIELDS:
        assert any(line.startswith(f.name + " ") for line in lines[2:]), f.name
    bt = next(line for line in lines if line.startswith("battery_temp_k") and " high " in line)
    assert "308.15" in bt and "318.15" in bt and "green" in bt
    # nominal operation needs no onboard response at all
    assert lines[-1] == "onboard FDIR actions over the day: none"
    assert not [k for k in day.events if k.startswith("fdir:")]


def test_checks_fail_on_a_red_field_a_drift_and_an_energy_leak(day):
    """The verdicts can fail: doctored results trip each check."""
    green = dataclasses.replace(day, worst=[dataclasses.replace(w, state=0) for w in day.worst])
    assert nominal_day_checks(green)[0].passed and nominal_day_checks(green)[1].passed
    red = dataclasses.replace(green, worst=[dataclasses.replace(w, state=2) if w.name == "avionics_temp_k" else w
                                            for w in green.worst])
    assert not nominal_day_checks(red)[0].passed
    warm = dataclasses.replace(green, worst=[dataclasses.replace(w, state=1) if w.name == "battery_temp_k" else w
                                             for w in green.worst])
    checks = nominal_day_checks(warm)
    assert checks[0].passed and not checks[1].passed
    drift = dataclasses.replace(day, periodic_change_k=day.periodic_change_k + np.array([0, 0, 0.6, 0, 0]))
    assert not nominal_day_checks(drift)[2].passed
    leak = dataclasses.replace(day, energy_residual_fraction=day.energy_residual_fraction + 2e-3)
    assert not nominal_day_checks(leak)[3].passed


def test_the_old_battery_radiator_drifts_out_of_its_periodic_state():
    """The shipped design before issue 13 (0.5 m^2 nadir-viewing battery radiator): the pack is
    still warming by more than the tolerance per orbit after 6 h (it crossed red at 16.6 h)."""
    des = load_design()
    old = dataclasses.replace(des, thermal=dataclasses.replace(
        des.thermal, battery_radiating_area_m2=0.5, battery_earth_area_m2=0.4))
    beta0 = [r for r in nd.representative_satellites(CAT) if r.shell == "540km-53deg" and r.role == "beta ~0 deg"]
    res = nd.run_nominal_day(6.0, 60.0, design=old, catalogue=CAT, sats=beta0)
    assert res.periodic_change_k[0, thermal.BATTERY] > nd.PERIODIC_TOL_K
    assert not res.periodic


def test_relaxation_times_match_a_single_node_closed_form():
    """An isolated node's relaxation time is C / (4 eps A sigma T^3) (no conductance)."""
    from twin.core.constants import SIGMA_W_M2_K4

    des = load_design().thermal
    lone = dataclasses.replace(des, g_avionics_battery_w_k=0.0)
    tau = nd.relaxation_time_s(lone, 300.0)
    expected = lone.battery_heat_capacity_j_k / (4 * lone.eps_area_m2[thermal.BATTERY] * SIGMA_W_M2_K4 * 300.0**3)
    assert tau[thermal.BATTERY] == pytest.approx(expected, rel=1e-9)
    assert tau[thermal.ARRAY] < 0.1 * 5700.0 < tau[thermal.PAYLOAD]

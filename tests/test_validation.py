"""The physics validation cases of ``orbitwin validate``, asserted (tolerances in physical units)."""

import pytest

from twin.validation import physics_checks as validate


@pytest.mark.parametrize("check", validate.eclipse_checks(), ids=lambda c: c.name)
def test_eclipse_duration_matches_cylindrical_closed_form(check):
    assert check.passed, check.detail


def test_eclipse_reference_values_from_physics_md():
    minutes = {0.0: 35.6, 53.0: 26.3}
    for beta, ref in minutes.items():
        assert validate.eclipse_minutes_conical(550e3, beta) == pytest.approx(ref, rel=0.01)


def test_sunlit_state_agrees_with_skyfield_for_whole_fleet():
    check = validate.sunlit_vs_skyfield(sample=None)
    assert check.passed, check.detail


def test_fleet_positions_within_one_metre_of_skyfield():
    check = validate.positions_vs_skyfield(sample=200)
    assert check.passed, check.detail


@pytest.mark.parametrize("check", validate.thermal_checks(), ids=lambda c: c.name)
def test_thermal_closed_forms(check):
    assert check.passed, check.detail


@pytest.mark.parametrize("dt_s", [1.0, 10.0])
def test_battery_energy_balance_over_an_orbit(dt_s):
    check = validate.orbit_energy_balance(dt_s=dt_s)
    assert check.passed, check.detail


@pytest.mark.parametrize("check", validate.radiation_checks(), ids=lambda c: c.name)
def test_radiation_saa_and_dose(check):
    assert check.passed, check.detail


def test_reproducible_bit_for_bit():
    check = validate.reproducibility_check()
    assert check.passed, check.detail

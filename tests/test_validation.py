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


def test_validate_cli_prints_the_nominal_day_table_and_its_verdicts(capsys):
    """``orbitwin validate --only day``: the satellites, the table (field, worst, limits), four verdicts.

    Two hours hold fewer than two complete orbits of every satellite, so the periodic steady state
    cannot be shown and the command fails (exit 1) naming that check.
    """
    from orbitwin.cli.main import main
    from twin.schema.telemetry import LIMITED_FIELDS

    code = main(["validate", "--only", "day", "--day-hours", "2", "--quick"])
    out = capsys.readouterr().out
    assert "nominal day: 2 h of sim time, dt 30 s" in out and "(full sun)" in out
    assert out.count("(beta ~0 deg)") >= 4
    header = next(line for line in out.splitlines() if line.startswith("field "))
    assert header.split()[:6] == ["field", "worst", "side", "yellow", "red", "limit"]
    for f in LIMITED_FIELDS:
        assert any(line.startswith(f.name + " ") for line in out.splitlines()), f.name
    verdicts = [line for line in out.splitlines() if line[:4] in ("PASS", "FAIL")]
    assert [v.split("  ")[1].strip() for v in verdicts] == [
        "nominal day: no telemetry field in red", "nominal day: battery green",
        "nominal day: periodic thermal steady state", "nominal day: energy balance over the day"]
    assert verdicts[1].startswith("PASS") and verdicts[3].startswith("PASS")
    assert verdicts[2].startswith("FAIL") and "inf" in verdicts[2]
    assert code == 1


def test_validate_cli_rejects_an_unknown_case_and_a_bad_horizon(capsys):
    from orbitwin.cli.main import main

    assert main(["validate", "--only", "nosuchcase"]) == 2
    assert main(["validate", "--only", "day", "--day-hours", "0"]) == 2

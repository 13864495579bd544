"""The ``orbitwin`` console script, run as a user would."""

import json
import subprocess
import sys

import pytest

from orbitwin.cli.main import main


def orbitwin(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "orbitwin.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_run_steps_the_fleet_and_prints_the_status_table():
    r = orbitwin("run", "--count", "40", "--duration", "60", "--speed", "max", "--plain", "--dt", "2",
                 "--broker-port", "0")
    assert r.returncode == 0, r.stderr
    assert "40 satellites" in r.stdout
    assert "STARLINK-1008" in r.stdout
    assert "done: 30 ticks" in r.stdout
    assert "nominal" in r.stdout and "mean SoC" in r.stdout


def test_run_selects_by_shell_and_start_time():
    r = orbitwin("run", "--alt-km", "565:575", "--inc-deg", "69:71", "--count", "5", "--start",
                 "2026-03-01T00:00:00Z", "--duration", "10", "--speed", "max", "--plain", "--broker-port", "0")
    assert r.returncode == 0, r.stderr
    assert "5 satellites" in r.stdout and "sim 2026-03-01 00:00:10 UTC" in r.stdout


def test_schema_as_json_and_markdown(capsys):
    assert main(["schema"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [f["name"] for f in data["fields"]]
    assert "battery_soc" in names and data["schema_version"] == 1
    assert main(["schema", "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "| `payload_temp_k` | K |" in md


@pytest.mark.parametrize("args,needle", [
    (["run", "--tle", "/nonexistent.tle", "--duration", "1"], "cannot read TLE file"),
    (["run", "--names", "NOPE*", "--duration", "1"], "no satellite matches"),
    (["run", "--alt-km", "550", "--duration", "1"], "expected LO:HI"),
])
def test_bad_input_gives_a_clear_error_and_exit_2(args, needle, capsys):
    assert main(args) == 2
    assert needle in capsys.readouterr().err


def test_broken_design_file_names_the_key(tmp_path, capsys):
    bad = tmp_path / "d.toml"
    from importlib import resources

    text = resources.files("twin").joinpath("data", "v3_compute_sat.toml").read_text()
    bad.write_text(text.replace("n_devices = 8", "n_devices = -1"))
    assert main(["run", "--design", str(bad), "--count", "1", "--duration", "1"]) == 2
    assert "payload.n_devices" in capsys.readouterr().err


def test_catalogue_listing(capsys):
    assert main(["catalogue", "--names", "STARLINK-100*", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "STARLINK-1008" in out and "km-" in out


def test_gateway_and_endpoint_files_replace_the_shipped_sites(tmp_path, capsys):
    """--gateways/--endpoints: the mesh uses exactly the sites of the files (non-operational rows left out);
    a broken file is a one-line error naming the file and line, exit code 2."""
    from orbitwin.cli.fleet_options import add_fleet_options, fleet_options
    from twin.runtime.run_loop import build_twin
    import argparse

    gw = tmp_path / "gw.csv"
    gw.write_text("name,lat_deg,lon_deg,type,status\nHawthorne,33.92,-118.33,gateway,operational\n"
                  "Planned,10.0,10.0,gateway,planned\nRedmond,47.67,-122.12,gateway,operational\n")
    ends = tmp_path / "ends.csv"
    ends.write_text("name,lat_deg,lon_deg\nLab A,52.0,4.4\nLab B,-33.9,18.4\n")
    p = argparse.ArgumentParser()
    add_fleet_options(p)
    twin = build_twin(fleet_options(p.parse_args(["--count", "30", "--gateways", str(gw), "--endpoints", str(ends)])))
    assert twin.mesh is not None
    assert list(twin.mesh.gateways.names) == ["Hawthorne", "Redmond"]
    assert list(twin.mesh.cities.names) == ["Lab A", "Lab B"]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,lat_deg,lon_deg\nX,95.0,0.0\n")
    assert main(["run", "--count", "1", "--duration", "1", "--gateways", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv: line 2: latitude/longitude out of range" in err


@pytest.mark.parametrize("args,option,allowed", [
    (["run", "--count", "0"], "--count", "a whole number >= 1"),
    (["run", "--duration", "-5"], "--duration", "a finite number of seconds > 0"),
    (["run", "--dt", "nan"], "--dt", "a finite number of seconds > 0"),
    (["run", "--speed", "inf"], "--speed", "real, max or xN"),
    (["run", "--speed", "warp"], "--speed", "real, max or xN"),
    (["run", "--start", "yesterday"], "--start", "an ISO 8601 UTC time"),
    (["run", "--compute", "aware", "--compute-demand", "-1"], "--compute-demand", "a finite number >= 0"),
    (["bridge", "influx", "--influx", "localhost:8086"], "--influx", "an http:// or https:// URL"),
    (["bridge", "influx", "--influx", "http://:8086"], "--influx", "an http:// or https:// URL"),
])
def test_a_bad_option_value_is_named_with_what_is_allowed(args, option, allowed, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be {allowed}" in err and repr(args[-1]) in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("orbitwin ")


def test_dimensionless_limits_have_no_unit_and_others_keep_theirs():
    from twin.schema.commands import COMMANDS, CommandError, validate

    with pytest.raises(CommandError) as exc:
        validate(COMMANDS, "throttle", {"factor": 2.0})
    assert exc.value.message == "factor=2.0 outside [0, 1]"
    with pytest.raises(CommandError) as exc:
        validate(COMMANDS, "set_power_cap", {"power_w": -1.0})
    assert exc.value.message.endswith("outside [0, 1e+06] W")

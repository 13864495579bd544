"""Scenario files: the shipped example, validation errors, replay with a seed."""

from pathlib import Path

import numpy as np
import pytest

from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.runtime.scenario import ScenarioError, apply_scenario, load_scenario, scenario_from_dict


def _run(seed):
    sc = load_scenario(Path(__file__).resolve().parents[1] / "examples" / "scenario.toml")
    twin = FleetTwin(load_catalogue().select(count=10), load_design(), dt_s=10.0, seed=seed)
    queued = apply_scenario(twin, sc)
    for _ in range(70):
        twin.step()
    return sc, twin, queued


def test_example_scenario_runs_and_replays_bit_for_bit():
    sc, a, queued = _run(7)
    assert sc.seed == 7 and len(queued) == 4
    names = [e.name for e in a.drain_events()]
    assert names.count("fault_applied") == 3 and "command_completed" in names
    assert a.tm["array_strings_failed"][2] == 200
    assert a.tm["payload_load_setpoint"][0] == 0.5
    _, b, _ = _run(7)
    for k in a.tm:
        assert np.array_equal(a.tm[k], b.tm[k], equal_nan=True), k


@pytest.mark.parametrize("data,needle", [
    ({"request": [{"at": 1, "fault": "latchup"}]}, "exactly one of sat or select"),
    ({"request": [{"at": 1, "sat": "X", "fault": "latchup", "command": "throttle"}]}, "exactly one of command or fault"),
    ({"request": [{"at": -1, "sat": "X", "fault": "latchup"}]}, "at must be >= 0"),
    ({"seed": "x"}, "seed must be an integer"),
    ({"bogus": 1}, "unknown key 'bogus'"),
])
def test_invalid_scenarios_name_the_problem(data, needle):
    with pytest.raises(ScenarioError, match=needle):
        scenario_from_dict(data, "s.toml")


def test_unknown_satellite_is_named_with_the_step(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[[request]]\nat = 5\nsat = "NOPE"\nfault = "latchup"\n')
    twin = FleetTwin(load_catalogue().select(count=2), load_design())
    with pytest.raises(ScenarioError, match=r"request\[0\].*unknown satellite"):
        apply_scenario(twin, load_scenario(p))


def test_scenario_published_over_mqtt_to_a_running_twin(mosquitto, tmp_path):
    import subprocess
    import sys

    from mqtt_helpers import Recorder, start_twin, wait_for

    rec = Recorder(mosquitto.host, mosquitto.port, ["orbitwin/v1/sat/+/event", "orbitwin/v1/fleet/event"])
    twin = start_twin(mosquitto.url, "--count", "10", "--speed", "x40", "--dt", "5", state_dir=str(tmp_path))
    try:
        wait_for(lambda: rec.connected.is_set(), 10)
        import time
        time.sleep(1.0)
        out = subprocess.run([sys.executable, "-m", "orbitwin.cli", "scenario", "publish",
                              str(Path(__file__).resolve().parents[1] / "examples" / "scenario.toml"),
                              "--mqtt", mosquitto.url], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        statuses = [__import__("json").loads(line)["status"] for line in out.stdout.splitlines()]
        assert statuses == ["accepted"] * 4
        wait_for(lambda: len(rec.find(lambda t, p: p.get("name") == "fault_applied")) >= 3, 30)
    finally:
        twin.terminate()
        twin.wait(20)
        rec.close()

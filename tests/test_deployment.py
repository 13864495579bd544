"""A constellation that changes: launch, orbit raising, spares, deorbit and re-entry (twin.core.deployment)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.core.constants import R_EARTH_M
from twin.core.constellation import build_catalogue, parse_constellation
from twin.core.deployment import (LOWERING, ON_STATION, PARKED, PENDING, RAISING, REENTERED, Deployment,
                                  DeploymentError, DeploymentParams)
from twin.core.design import load_design
from twin.core.engine import FleetTwin

DAY = 86_400.0
# an operational shell and a second one, interleaved (planes 18 deg apart), still on the ground
SHELLS = {
    "name": "two-shells",
    "epoch": "2026-12-01T00:00:00Z",
    "shell": [
        {"name": "OPS", "altitude_km": 550.0, "inclination_deg": 53.0, "planes": 10, "sats_per_plane": 10},
        {"name": "NEW", "altitude_km": 550.0, "inclination_deg": 53.0, "planes": 10, "sats_per_plane": 10,
         "raan0_deg": 18.0, "pending": True},
    ],
}


def test_phases_move_at_the_stated_rates() -> None:
    p = DeploymentParams()
    dep = Deployment(np.full(4, 550e3), np.array([True, True, True, False]), p)
    assert dep.counts()["pending"] == 3 and not dep.all_on_station
    dep.launch(np.array([0]))
    dep.launch(np.array([1]), hold=True)
    assert dep.phase.tolist() == [RAISING, PARKED, PENDING, ON_STATION]
    assert dep.alt_m[0] == dep.alt_m[1] == p.parking_alt_m
    with pytest.raises(DeploymentError, match="launch needs satellites that are pending"):
        dep.launch(np.array([1, 2]))
    assert dep.phase[2] == PENDING  # all or nothing
    dt = 600.0
    days = (550e3 - p.parking_alt_m) / p.raise_rate_m_s / DAY  # closed form: 200 km at 5 km/day = 40 days
    ticks = 0
    while dep.phase[0] != ON_STATION:
        moves = dep.advance(dt)
        ticks += 1
    assert ticks * dt / DAY == pytest.approx(days, abs=dt / DAY) and days == pytest.approx(40.0)
    assert moves.arrived.tolist() == [0] and dep.alt_m[0] == 550e3
    dep.deorbit(np.array([3]))
    while dep.phase[3] != REENTERED:
        dep.advance(dt)
        assert dep.phase[3] in (LOWERING, REENTERED)
    assert dep.alt_m[3] <= p.reentry_alt_m and not dep.in_orbit[3]
    dep.raise_to(np.array([1]), slot_alt_m=600e3)
    assert dep.phase[1] == RAISING and dep.slot_alt_m[1] == 600e3
    with pytest.raises(DeploymentError, match="deorbit"):
        dep.deorbit(np.array([2]))


def test_element_sets_follow_the_altitude_every_step() -> None:
    dep = Deployment(np.full(3, 550e3), np.ones(3, bool), DeploymentParams(reelement_step_m=1e3))
    dep.launch(np.arange(3))
    first = dep.advance(60.0)
    assert first.launched.tolist() == [0, 1, 2] and first.reelement.tolist() == [0, 1, 2]  # into parking at once
    steps = [dep.advance(60.0).reelement.size for _ in range(int(DAY / 60))]
    assert sum(1 for k in steps if k) == pytest.approx(5, abs=1)  # 5 km in a day, a new set each km


def _twin(**kw: object) -> FleetTwin:
    cat = build_catalogue(parse_constellation(SHELLS, "test"))
    return FleetTwin(cat, load_design(None), seed=2, **kw)  # type: ignore[arg-type]


def _radius_alt_km(tw: FleetTwin, rows: np.ndarray) -> np.ndarray:
    """Mean of |r| - R over the last ticks' positions is close to the mean altitude; here |r| - R now."""
    r = tw._r_last[rows]
    return (np.linalg.norm(r, axis=1) - R_EARTH_M) / 1e3


def test_a_launch_raises_into_the_mesh_and_a_deorbit_leaves_it() -> None:
    tw = _twin(dt_s=300.0, network=True)
    tw.deployment.params = DeploymentParams(raise_rate_m_s=100e3 / DAY, lower_rate_m_s=500e3 / DAY)
    new = np.flatnonzero(np.char.startswith(np.array(tw.names), "NEW"))
    ops = np.flatnonzero(np.char.startswith(np.array(tw.names), "OPS"))
    assert new.size == ops.size == 100 and np.all(tw.deployment.phase[new] == PENDING)
    for _ in range(10):
        tw.step()
    assert tw.net is not None and tw.net.links_up[new].sum() == 0 and tw.net.links_up[ops].sum() > 0
    assert not any(e.sat in set(new.tolist()) for e in tw.drain_events())
    tw.submit("command", "launch", {}, new)
    tw.step()
    tw.step()
    ev = tw.drain_events()
    assert sum(1 for e in ev if e.name == "launched") == 100
    assert np.all(np.abs(_radius_alt_km(tw, new) - 350.0) < 30.0)  # parking orbit, oblateness and J2 aside
    assert tw.net.links_up[new].sum() == 0  # raising satellites do not link
    while not np.all(tw.deployment.phase[new] == ON_STATION):
        tw.step()
    assert 1.9 < tw.t_s / DAY < 2.2  # 200 km at 100 km/day
    assert sum(1 for e in tw.drain_events() if e.name == "on_station") == 100
    assert np.all(np.abs(_radius_alt_km(tw, new) - 550.0) < 30.0)
    for _ in range(3):  # acquisition time of the new links
        tw.step()
    assert tw.net.links_up[new].sum() > 0  # the mesh took them in without a restart
    gone = new[:5]
    tw.submit("command", "deorbit", {}, gone)
    while not np.all(tw.deployment.phase[gone] == REENTERED):
        tw.step()
    assert tw.net.links_up[gone].sum() == 0
    assert sum(1 for e in tw.drain_events() if e.name == "reentered") == 5


def test_a_spare_waits_parked_then_takes_a_failed_satellites_slot() -> None:
    tw = _twin(dt_s=300.0, network=False)
    tw.deployment.params = DeploymentParams(raise_rate_m_s=100e3 / DAY)
    spare, failed = tw.index["NEW-P0-S0"], tw.index["OPS-P3-S4"]
    tw.deployment.slot_alt_m[failed] = 600e3  # the failed satellite's slot: higher than the spare's own
    tw.submit("command", "launch", {"hold": True, "parking_alt_km": 400.0}, np.array([spare]))
    for _ in range(int(DAY / 300)):
        tw.step()
    assert tw.deployment.phase[spare] == PARKED and abs(_radius_alt_km(tw, np.array([spare]))[0] - 400.0) < 30
    tw.submit("command", "raise_orbit", {"slot_of": "NOPE"}, np.array([spare]))
    tw.step()
    refused = [e.detail["result"] for e in tw.drain_events() if e.name == "command_failed"]
    assert refused == [{"reason": "unknown_satellite", "message": "unknown satellite 'NOPE'", "field": "slot_of"}]
    tw.submit("command", "deorbit", {}, np.array([failed]))
    tw.submit("command", "raise_orbit", {"slot_of": "OPS-P3-S4"}, np.array([spare]))
    while tw.deployment.phase[spare] != ON_STATION:
        tw.step()
    assert tw.deployment.alt_m[spare] == 600e3 and tw.deployment.phase[failed] in (LOWERING, REENTERED)
    # a command out of phase fails with a reason, and the twin goes on
    tw.submit("command", "launch", {}, np.array([spare]))
    tw.step()
    failed_cmds = [e for e in tw.drain_events() if e.name == "command_failed"]
    assert failed_cmds and "pending" in failed_cmds[-1].detail["result"]["message"]


def test_pending_slots_come_from_the_constellation_file(tmp_path: Path) -> None:
    cat = build_catalogue(parse_constellation(SHELLS, "test"))
    assert cat.pending is not None and int(cat.pending.sum()) == 100
    assert cat.subset(np.arange(95, 105)).pending.tolist() == [False] * 5 + [True] * 5  # type: ignore[union-attr]
    bad = {**SHELLS, "shell": [{**SHELLS["shell"][0], "pending": "yes"}]}  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="'pending' must be true or false"):
        parse_constellation(bad, "bad")


def test_the_orbit_worker_follows_the_manoeuvres_bit_for_bit() -> None:
    """The orbit worker (a child process) gets the new element sets too: the same telemetry as in-process."""
    runs = []
    for worker in (False, True):
        tw = _twin(dt_s=600.0, network=False, orbit_worker=worker)
        try:
            tw.deployment.params = DeploymentParams(raise_rate_m_s=200e3 / DAY)
            new = np.flatnonzero(np.char.startswith(np.array(tw.names), "NEW"))
            tw.submit("command", "launch", {}, new[:20], at_s=1800.0)
            alts = []
            for _ in range(200):
                tw.step()
                alts.append(tw.tm["alt_m"].copy())
            runs.append(np.array(alts))
            assert np.all(tw.deployment.phase[new[:20]] == ON_STATION)
        finally:
            tw.close()
    np.testing.assert_array_equal(runs[0], runs[1])


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "deployment"


def test_a_launch_over_mqtt_from_a_scenario(mosquitto: object, tmp_path: Path) -> None:
    """``orbitwin run`` with a constellation being built: nothing of a pending satellite until its launch,
    then its telemetry from sequence 0, its events, and the catalogue and summary saying its phase."""
    from tests.mqtt_helpers import Recorder, start_twin, stop_process, wait_for

    scenario = tmp_path / "launch.toml"
    scenario.write_text('[[request]]\nat = 600\nselect = { names = "B-P00-*" }\ncommand = "launch"\n'
                        'args = { hold = true, parking_alt_km = 380.0 }\n')
    host, port, url = mosquitto.host, mosquitto.port, mosquitto.url  # type: ignore[attr-defined]
    rec = Recorder(host, port, ["orbitwin/v1/sat/+/tm/hk", "orbitwin/v1/sat/+/event", "orbitwin/v1/fleet/catalogue",
                                "orbitwin/v1/fleet/summary"])
    twin = start_twin(url, "--constellation", str(EXAMPLES / "constellation.toml"), "--scenario", str(scenario),
                      "--no-network", "--dt", "60", "--speed", "max", "--duration", "1800", "--frames", "off",
                      state_dir=str(tmp_path))
    try:
        assert twin.wait(120) == 0
        wait_for(lambda: rec.find(lambda t, p: t.endswith("/summary") and p.get("t_s") == 1800.0), 60, what="the end")
    finally:
        stop_process(twin)
        rec.close()
    hk = rec.find(lambda t, p: "/tm/" in t)
    launched = [p for _, p in hk if p["sat"].startswith("B-P00-")]
    assert not [p for _, p in hk if p["sat"].startswith("B-") and not p["sat"].startswith("B-P00-")]
    assert launched and min(p["t_s"] for p in launched) == 600.0
    first = {p["sat"]: p["seq"] for p in sorted(launched, key=lambda p: p["t_s"], reverse=True)}
    assert len(first) == 20 and set(first.values()) == {0}
    events = [p for _, p in rec.find(lambda t, p: t.endswith("/event") and p.get("kind") == "deployment")]
    assert sorted(p["sat"] for p in events if p["name"] == "launched") == sorted(first)
    phases = {s["sat"]: s.get("phase") for s in rec.find(lambda t, p: t.endswith("/catalogue"))[-1][1]["sats"]}
    assert {phases[s] for s in first} == {"parked"} and phases["B-P05-S03"] == "pending"
    assert phases["A-P00-S00"] == "on_station"
    last = rec.find(lambda t, p: t.endswith("/summary"))[-1][1]
    assert last["deploy_parked"] == 20 and last["deploy_pending"] == 220 and last["sats"] == 260


def test_the_shipped_year_of_deployment_replays(tmp_path: Path) -> None:
    """The example year's scenario applies to the example constellation, and its first launch rises."""
    from twin.runtime.run_loop import FleetOptions, build_twin
    from twin.runtime.scenario import apply_scenario, load_scenario

    tw = build_twin(FleetOptions(constellation=str(EXAMPLES / "constellation.toml"), dt_s=3600.0, network=False,
                                 start="2026-12-01T00:00:00Z"))
    queued = apply_scenario(tw, load_scenario(str(EXAMPLES / "year.toml")))
    assert len(queued) == 12 and tw.deployment.counts()["pending"] == 240
    tw.deployment.params = DeploymentParams(raise_rate_m_s=50e3 / DAY)  # a faster climb: 4 days instead of 40
    for _ in range(35 * 24):
        tw.step()
    counts = tw.deployment.counts()
    assert counts["on_station"] == 300 and counts["pending"] == 180


def test_the_scheduler_places_jobs_only_on_satellites_on_station() -> None:
    tw = _twin(dt_s=20.0, network=False, compute_policy="nearest", compute_demand_scale=30.0)
    tw.deployment.params = DeploymentParams(raise_rate_m_s=200e3 / 600.0)  # minutes, not weeks
    new = np.flatnonzero(np.char.startswith(np.array(tw.names), "NEW"))
    ops = np.flatnonzero(np.char.startswith(np.array(tw.names), "OPS"))
    ran = np.zeros(tw.n, dtype=np.int64)
    for _ in range(30):
        tw.step()
        ran += tw.tm["jobs_running"]
    assert ran[ops].sum() > 0 and ran[new].sum() == 0  # pending slots take no jobs
    tw.submit("command", "launch", {}, new)
    ran[:] = 0
    raising_ticks = 0
    while not np.all(tw.deployment.phase[new] == ON_STATION):
        tw.step()
        raising = new[tw.deployment.phase[new] == RAISING]
        raising_ticks += bool(raising.size)
        assert tw.tm["jobs_running"][raising].sum() == 0  # nor do raising ones
    assert raising_ticks > 10
    for _ in range(30):
        tw.step()
        ran += tw.tm["jobs_running"]
    assert ran[new].sum() > 0  # on station: the scheduler uses them without a restart

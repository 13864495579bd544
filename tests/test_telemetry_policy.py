"""The telemetry policy: budget arithmetic, the refusal, watched selections, set_watch and aggregates on a real broker."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from mqtt_helpers import Recorder, wait_for
from test_asyncapi import payload_validator
from twin.contract.fleet_aggregates import AGG_FIELDS, COUNTS, catalogue_groups
from twin.contract.telemetry_encoder import PacketSchedule
from twin.contract.telemetry_policy import (
    Ceilings, MessageSizes, PolicyError, budget, check_budget, load_ceilings, make_policy,
)
from twin.contract.topics import Topics
from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.runtime.telemetry_out import prune_schedule
from twin.runtime.telemetry_budget import measure_sizes, plan_policy
from twin.schema.telemetry import LIMIT_RED, LIMIT_YELLOW, MODE_LOST, MODE_NOMINAL, MODE_SAFE, PACKET_FIELDS

P = "orbitwin/v1"
CAT = load_catalogue()
DESIGN = load_design()


def _twin(count: int) -> FleetTwin:
    return FleetTwin(CAT.select(count=count), DESIGN, network=False, orbit_worker=False)


# --- budget arithmetic -------------------------------------------------------------------------


def test_budget_messages_and_field_values_follow_the_closed_form():
    n = 1000
    sched = PacketSchedule(n, 1.0, {"hk": 2.0, "orbit": 0.5, "power": 0.0, "summary": 0.0, "status": 0.0,
                                    "topology": 0.0})
    for p in ("thermal", "payload", "radiation", "net", "compute"):
        sched.drop(p)
    sizes = MessageSizes({"hk": 300.0, "orbit": 400.0}, {"hk": 100.0, "orbit": 100.0}, {"hk": 50.0, "orbit": 60.0})
    watched = np.zeros(n, dtype=bool)
    watched[:100] = True
    # hk at 2 Hz with dt 1 s is one message per tick (the period cannot be below one tick)
    hk_rate, orbit_rate = 1.0, 0.5
    b = budget(sched, watched, "all", sizes)
    frames = 1.0 + 1.0  # every tick has due rows of both packets
    assert b.msgs_per_s == pytest.approx(100 * (hk_rate + orbit_rate) + frames)
    assert b.bytes_per_s == pytest.approx(100 * hk_rate * 300 + 100 * orbit_rate * 400 + 2 * 100
                                          + n * hk_rate * 50 + n * orbit_rate * 60)
    fields = len(PACKET_FIELDS["hk"]) + 3, len(PACKET_FIELDS["orbit"]) + 3
    assert b.influx_values_per_s == pytest.approx(n * hk_rate * fields[0] + n * orbit_rate * fields[1])
    w = budget(sched, watched, "watched", sizes)
    assert w.influx_values_per_s == pytest.approx(100 * hk_rate * fields[0] + 100 * orbit_rate * fields[1])
    off = budget(sched, watched, "off", sizes, aggregate_groups=7, aggregates_hz=0.5)
    assert off.influx_values_per_s == 0
    assert off.msgs_per_s == pytest.approx(100 * (hk_rate + orbit_rate) + 7 * 0.5)


def test_budget_of_the_default_policy_matches_the_schedule_and_real_encodes():
    twin = _twin(200)
    try:
        sched = prune_schedule(PacketSchedule(twin.n, twin.dt_s), twin)
        plan = plan_policy(twin, sched, make_policy(), load_ceilings(), Topics())
        per_sat = sched.messages_per_s()
        parts = plan.budget.parts
        assert sum(parts[p]["msgs"] for p in sched.period) == pytest.approx(per_sat + len(sched.period), rel=1e-9)
        # bytes: a whole tick encoded for real (messages and frames) against the budget's per-tick figure
        from twin.contract.telemetry_encoder import FrameEncoder, PacketEncoder

        seq = np.full(twin.n, 3600, dtype=np.int64)
        real = 0
        ticks = 20  # the slowest packet's period: every satellite sends every packet once
        for tick in range(ticks):
            for packet, rows in sched.due(tick).items():
                enc = PacketEncoder(packet, twin.names, twin.catalogue.norad_ids, Topics())
                real += sum(len(t.encode()) + len(p) for t, p in enc.encode(twin.tm, rows, seq[rows], 1, "x" * 24, 3600.0, 1))
                topic, frame = FrameEncoder(packet, twin.names, twin.catalogue.norad_ids, Topics()).encode(
                    twin.tm, rows, seq[rows], 1, "x" * 24, 3600.0, 1)
                real += len(topic.encode()) + len(frame)
        estimate = sum(parts[p]["bytes"] for p in sched.period) * ticks
        assert estimate == pytest.approx(real, rel=0.05)
        assert plan.budget.influx_values_per_s == pytest.approx(
            sum(twin.n * sched.rates[p] * (len(PACKET_FIELDS[p]) + 3) for p in sched.period)
            + plan.budget.parts["summary"]["influx"], rel=1e-6)
    finally:
        twin.close()


def test_check_budget_names_the_budget_the_figure_the_ceiling_and_what_to_change():
    from twin.contract.telemetry_policy import Budget

    over = check_budget(Budget(500.0, 1e3, 10.0), Ceilings(100.0, 1e6, 1e6, "c.toml"))
    assert len(over) == 1
    assert "500 MQTT messages/s" in over[0] and "ceiling of 100" in over[0] and "--watch" in over[0]
    assert check_budget(Budget(50.0, 1e3, 10.0), Ceilings(100.0, 1e6, 1e6)) == []


# --- invalid policies and ceilings ---------------------------------------------------------------


@pytest.mark.parametrize("kw, option", [
    ({"watch": "alt_km=500"}, "--watch"), ({"watch": "colour=red"}, "--watch"), ({"watch": "{bad json"}, "--watch"),
    ({"watch": '{"shell": 3}'}, "--watch"), ({"frames": "some"}, "--frames"), ({"aggregates": "fast"}, "--aggregates"),
    ({"aggregates": "-1"}, "--aggregates"),
])
def test_invalid_policies_are_refused_naming_the_option(kw, option):
    with pytest.raises(PolicyError, match=option):
        make_policy(**kw)


def test_bad_ceilings_file_is_refused_naming_the_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[mqtt]\nmessages_per_s = 10\n")
    with pytest.raises(PolicyError, match=r"--sink-ceilings .*\[mqtt\] bytes_per_s"):
        load_ceilings(f)
    shipped = load_ceilings()
    assert shipped.mqtt_msgs_per_s > 0 and shipped.influx_values_per_s > 0


def test_a_watch_selection_matching_no_satellite_is_refused():
    twin = _twin(5)
    try:
        sched = prune_schedule(PacketSchedule(twin.n, twin.dt_s), twin)
        with pytest.raises(PolicyError, match="--watch 'NOPE-\\*'.*matches no satellite"):
            plan_policy(twin, sched, make_policy(watch="NOPE-*"), load_ceilings(), Topics())
    finally:
        twin.close()


# --- the CLI refuses a policy over budget -----------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orbitwin.cli", "run", "--count", "3", "--duration", "1",
                           "--speed", "max", "--plain", "--refresh", "0", "--broker-port", "0", *args],
                          capture_output=True, text=True, timeout=120)


def test_run_refuses_a_policy_over_a_ceiling_with_exit_2(tmp_path):
    f = tmp_path / "tiny.toml"
    f.write_text("[mqtt]\nmessages_per_s = 1000\nbytes_per_s = 1e9\n[influx]\nfield_values_per_s = 40\n")
    res = _run("--sink-ceilings", str(f))
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("orbitwin: error: the telemetry policy needs ")
    assert "InfluxDB field values/s, above the ceiling of 40" in err[0] and "--frames watched" in err[0]
    assert "budget: " in res.stdout and "connected" not in res.stdout  # refused before connecting
    ok = _run("--sink-ceilings", str(f), "--frames", "off")
    assert ok.returncode == 0, ok.stderr
    warned = _run("--sink-ceilings", str(f), "--over-budget")
    assert warned.returncode == 0 and "warning: the telemetry policy needs" in warned.stdout
    bad = _run("--aggregates", "often")
    assert bad.returncode == 2 and "--aggregates 'often'" in bad.stderr


# --- on a real broker ------------------------------------------------------------------------------


class Driven:
    """A TwinService whose ticks the test drives (no clock, no thread): requests, step, publish."""

    def __init__(self, twin: FleetTwin, url: str, state_dir: str, **policy: str) -> None:
        from twin.mqtt import MqttSettings
        from twin.runtime.mqtt_link import LinkSettings, MqttLink
        from twin.runtime.mqtt_service import TwinService

        self.twin = twin
        self.link = MqttLink(MqttSettings(url), LinkSettings(state_dir=state_dir))
        self.service = TwinService(twin, self.link, policy=make_policy(**policy))
        self.link.start(wait_s=10)

    def tick(self) -> None:
        self.service.process_requests()
        self.twin.step()
        self.service.publish_tick()
        wait_for(lambda: self.link.outstanding == 0, 10, what="tick acknowledged")

    def close(self) -> None:
        self.link.stop()
        self.twin.close()


def _per_sat(rec: Recorder, t_s: float) -> set[str]:
    return {t.split("/")[3] for t, p in rec.find(lambda t, p: "/sat/" in t and "/tm/" in t and p["t_s"] == t_s)}


def _frame_sats(rec: Recorder, t_s: float) -> set[str]:
    return {s for _, p in rec.find(lambda t, p: t == f"{P}/fleet/tm/hk" and p["t_s"] == t_s) for s in p["sats"]}


def test_watched_selection_publishes_per_sat_topics_only_for_watched_and_set_watch_changes_it(mosquitto, tmp_path):
    twin = _twin(5)
    names = list(twin.names)
    d = Driven(twin, mosquitto.url, str(tmp_path), watch=f"sats={names[0]},{names[1]}")
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/#"])
    try:
        birth = wait_for(lambda: [p for t, p in rec.find(lambda t, p: t == f"{P}/state")], 10)[-1]
        assert birth["telemetry"] == {"watch": f"sats={names[0]},{names[1]}", "frames": "all",
                                      "aggregates_hz": 0.0, "events": "always", "watched": 2}
        payload_validator("state").validate(birth)
        d.tick()
        t1 = twin.t_s
        wait_for(lambda: _frame_sats(rec, t1) == set(names), 10, what="the hk frame of every satellite")
        assert _per_sat(rec, t1) == {names[0], names[1]}
        # set_watch over MQTT: the fleet command with a select, signed rights and ACL as every command
        rec.publish(f"{P}/fleet/cmd", {"command": "set_watch", "select": {"names": f"{names[3]},{names[4]}"},
                                       "id": "watch-1"})
        wait_for(lambda: not d.link.inbox.empty(), 10, what="the request in the twin's inbox")
        d.tick()  # takes the request; the engine runs it in this tick's step
        replies = wait_for(lambda: [p for _, p in rec.find(lambda t, p: t == f"{P}/fleet/reply"
                                                           and p.get("id") == "watch-1")]
                           if len(rec.find(lambda t, p: t == f"{P}/fleet/reply")) >= 2 else None, 10)
        assert [r["status"] for r in replies] == ["accepted", "completed"]
        assert replies[1]["result"] == {"action": "set", "sats": 2, "watched": 2}
        d.tick()
        t3 = twin.t_s
        wait_for(lambda: _frame_sats(rec, t3) == set(names), 10)
        assert _per_sat(rec, t3) == {names[3], names[4]}
        # add one, then a bad action is rejected naming the argument
        rec.publish(f"{P}/sat/{names[0]}/cmd", {"command": "set_watch", "args": {"action": "add"}, "id": "watch-2"})
        rec.publish(f"{P}/fleet/cmd", {"command": "set_watch", "select": "*", "args": {"action": "all"}, "id": "bad"})
        wait_for(lambda: d.link.inbox.qsize() >= 2, 10)
        d.tick()
        d.tick()
        t5 = twin.t_s
        wait_for(lambda: _frame_sats(rec, t5) == set(names), 10)
        assert _per_sat(rec, t5) == {names[0], names[3], names[4]}
        bad = wait_for(lambda: [p for _, p in rec.find(lambda t, p: t.endswith("/reply") and p.get("id") == "bad")], 10)
        assert bad[0]["status"] == "rejected" and bad[0]["field"] == "action"
        assert d.service.status()["watched"] == 3
    finally:
        rec.close()
        d.close()


def test_frames_watched_carry_only_the_watched_rows(mosquitto, tmp_path):
    twin = _twin(4)
    names = list(twin.names)
    d = Driven(twin, mosquitto.url, str(tmp_path), watch=names[2], frames="watched")
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/#"])
    try:
        d.tick()
        t1 = twin.t_s
        frame = wait_for(lambda: [p for _, p in rec.find(lambda t, p: t == f"{P}/fleet/tm/hk" and p["t_s"] == t1)], 10)
        assert frame[0]["sats"] == [names[2]]
        assert _per_sat(rec, t1) == {names[2]}
    finally:
        rec.close()
        d.close()


def test_aggregates_match_numpy_over_the_twins_telemetry(mosquitto, tmp_path):
    twin = FleetTwin(CAT.select(names="STARLINK-1*"), DESIGN, network=False, orbit_worker=False)
    d = Driven(twin, mosquitto.url, str(tmp_path), watch="none", frames="off", aggregates="on")
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/fleet/agg/#", f"{P}/sat/+/tm/+"])
    try:
        groups = catalogue_groups(twin.catalogue, twin.now_jd)
        d.tick()
        t1 = twin.t_s
        msgs = wait_for(lambda: (lambda m: m if len(m) == groups.count else None)(
            rec.find(lambda t, p: p["t_s"] == t1)), 15, what="every shell and plane aggregate")
        assert not rec.find(lambda t, p: "/sat/" in t)  # watch none: no per-satellite topic
        tm, mode = twin.tm, twin.mode
        live = mode != MODE_LOST
        checked: Counter[str] = Counter()
        for topic, p in msgs:
            payload_validator("aggregate").validate(p)
            if p["level"] == "shell":
                s = groups.shell_names.index(p["shell"])
                assert topic == f"{P}/fleet/agg/shell/{p['shell']}"
                members = groups.shell == s
            else:
                k = [i for i, (sh, pl) in enumerate(zip(groups.plane_shell, groups.plane_names))
                     if groups.shell_names[sh] == p["shell"] and pl == p["plane"]][0]
                assert topic == f"{P}/fleet/agg/plane/{p['shell']}/{p['plane']}"
                members = groups.plane == k
            ls = tm["limit_state"]
            want = {"nominal": members & (mode == MODE_NOMINAL) & (ls == 0),
                    "yellow": members & live & (ls == LIMIT_YELLOW), "red": members & live & (ls == LIMIT_RED),
                    "safe": members & (mode == MODE_SAFE), "lost": members & ~live}
            assert p["sats"] == int(members.sum())
            assert p["counts"] == {c: int(want[c].sum()) for c in COUNTS}
            for f in AGG_FIELDS:
                v = np.asarray(tm[f], dtype=float)[members & live]
                v = v[np.isfinite(v)]
                if v.size == 0:
                    assert p["fields"][f] == {"mean": None, "min": None, "max": None}
                    continue
                assert p["fields"][f]["mean"] == pytest.approx(float(v.mean()), rel=1e-9)
                assert p["fields"][f]["min"] == pytest.approx(float(v.min()))
                assert p["fields"][f]["max"] == pytest.approx(float(v.max()))
            checked[p["level"]] += 1
        assert checked["shell"] == len(groups.shell_names) and checked["plane"] == len(groups.plane_names) > 0
    finally:
        rec.close()
        d.close()


def test_measure_sizes_are_real_encodes():
    twin = _twin(30)
    try:
        sched = prune_schedule(PacketSchedule(twin.n, twin.dt_s), twin)
        sizes = measure_sizes(twin, sched, Topics())
        assert set(sizes.sat_msg) == set(sched.period)
        assert all(250 < v < 1500 for v in sizes.sat_msg.values())
        assert sizes.summary > 100 and sizes.summary_values > 5
    finally:
        twin.close()

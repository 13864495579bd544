"""The InfluxDB bridge stores only telemetry consistent with the twin's births (run, bseq, satellites, sim time).

A unit level for :class:`bridges.influx.birth_guard.BirthGuard`, then forged frames and forged
per-satellite messages against a real twin, Mosquitto and influxd: refused, counted, dead-lettered
with the reason, and the stored points unchanged.
"""

from __future__ import annotations

import copy
import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridges.influx.birth_guard import BirthGuard
from bridges.influx.line_protocol import time_ns
from mqtt_helpers import Recorder, wait_for
from pipeline import bridge_proc, last_status, twin_proc
from twin.core.catalogue import load_catalogue

T0 = "2026-02-23T00:00:00.000Z"
T0_NS = time_ns(T0)


def _born(run: int = 3, bseq: int = 5, sats: tuple[str, ...] = ("A", "B")) -> BirthGuard:
    g = BirthGuard(window_s=100.0, default_rate=10.0)
    g.on_state(json.dumps({"v": 1, "state": "online", "run": run, "bseq": run}).encode())
    g.on_state(json.dumps({"v": 1, "state": "online", "run": run, "bseq": bseq}).encode())
    g.on_catalogue(json.dumps({"v": 1, "sats": [{"sat": s} for s in sats]}).encode())
    assert g.check(run, bseq, ["A"], T0_NS, 0.0, 1000.0) is None
    g.accept(run, T0_NS, 0.0, 1000.0)
    return g


def test_guard_accepts_the_births_connections_and_refuses_the_rest():
    g = _born()
    sec = 1_000_000_000
    assert g.check(3, 5, ["A", "B"], T0_NS + 10 * sec, 10.0, 1000.0) is None
    assert g.check(3, 4, ["B"], T0_NS + 5 * sec, 5.0, 1000.0) is None  # an earlier connection (a replay)
    assert g.check(3, 3, ["B"], T0_NS, 0.0, 1000.0) is None
    assert g.check(4, 5, ["A"], T0_NS, 0.0, 1000.0).startswith("run:")
    assert g.check(3, 6, ["A"], T0_NS, 0.0, 1000.0).startswith("bseq:")
    assert g.check(3, 2, ["A"], T0_NS, 0.0, 1000.0).startswith("bseq:")
    assert g.check(3, 5, ["A", "GHOST"], T0_NS, 0.0, 1000.0).startswith("satellite:")
    year_2099 = time_ns("2099-01-01T00:00:00.000Z")
    assert g.check(3, 5, ["A"], year_2099, 10.0, 1000.0).startswith("sim_window:")  # not the run's epoch
    far = (year_2099 - T0_NS) / 1e9
    assert g.check(3, 5, ["A"], year_2099, far, 1000.0).startswith("sim_window:")  # beyond the run's clock
    assert g.check(3, 5, ["A"], T0_NS, -1.0, 1000.0).startswith("sim_window:")
    assert g.check(3, 5, ["A"], T0_NS, float("nan"), 1000.0).startswith("sim_window:")
    # the clock moves on with the wall clock: 200 s later at the default rate 10, 2,100 s ahead is plausible
    assert g.check(3, 5, ["A"], T0_NS + 2000 * sec, 2000.0, 1200.0) is None
    assert set(g.refused) == {"run", "bseq", "satellite", "sim_window"} and sum(g.refused.values()) == 8
    # a death changes nothing; a new run is a new birth, the old run's data stays consistent
    g.on_state(json.dumps({"v": 1, "state": "offline", "bseq": 5}).encode())
    assert g.check(3, 5, ["A"], T0_NS, 0.0, 1000.0) is None
    assert g.on_state(json.dumps({"v": 1, "state": "online", "run": 9, "bseq": 9}).encode()) == 9
    assert (g.run, g.bseq) == (9, 9)
    assert g.check(3, 5, ["A"], T0_NS, 0.0, 1000.0) is None
    assert g.check(9, 9, ["ANY"], T0_NS + 50 * sec, 0.0, 1000.0) is None  # no catalogue of run 9 yet


def test_guard_state_round_trips():
    g = _born()
    g.accept(3, T0_NS + 40 * 1_000_000_000, 40.0, 1004.0)
    h = BirthGuard(window_s=100.0, default_rate=10.0)
    h.load_state(json.loads(json.dumps(g.to_state())))
    assert h.to_state() == g.to_state()
    assert h.check(3, 5, ["GHOST"], T0_NS, 0.0, 1000.0).startswith("satellite:")


@settings(max_examples=200, deadline=None)
@given(run=st.integers(-2**63, 2**63), bseq=st.integers(-2**63, 2**63))
def test_guard_refuses_every_run_and_bseq_never_born(run, bseq):
    g = _born()
    ok = run == 3 and 3 <= bseq <= 5
    assert (g.check(run, bseq, ["A"], T0_NS, 0.0, 1000.0) is None) == ok


SATS = 5
NAMES = list(load_catalogue().select(count=SATS).names)
P = "orbitwin/v1"


@pytest.fixture
def db(influxd):
    name = f"t{uuid.uuid4().hex[:10]}"
    influxd.create_database(name)
    return name


def _soc(influxd, db: str, sat: str, t_ns: int) -> list[float]:  # type: ignore[no-untyped-def]
    res = influxd.query(f"SELECT battery_soc FROM hk WHERE sat='{sat}' AND time = {t_ns}", db=db)
    return [v[1] for s in res["results"][0].get("series", []) for v in s["values"]]


def test_forged_frames_and_messages_are_refused_and_stored_values_unchanged(tmp_path, mosquitto, influxd, db):
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    twin = twin_proc(tmp_path, mosquitto.url, SATS, "--speed", "x5", "--duration", "3000").start()
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/fleet/tm/hk"])
    try:
        frame = wait_for(lambda: next((p for t, p in rec.find(lambda t, p: True)), None), 30, 0.1, what="a frame")
        t_ns = time_ns(frame["t"])
        wait_for(lambda: all(_soc(influxd, db, s, t_ns) for s in frame["sats"]), 30, 0.2, what="the frame stored")
        before = {s: _soc(influxd, db, s, t_ns) for s in frame["sats"]}

        def forged(**changes):  # type: ignore[no-untyped-def]
            f = copy.deepcopy(frame)
            f["fields"]["battery_soc"] = [0.01] * len(f["sats"])
            f.update(changes)
            return f
        ghost = forged(t="2099-01-01T00:00:00.000Z", sats=["GHOST-1"], norad=[1], seq=[0],
                       fields={k: v[:1] for k, v in forged()["fields"].items()})
        one = {"v": 1, "sat": frame["sats"][0], "norad": frame["norad"][0], "packet": "hk", "t": frame["t"],
               "t_s": frame["t_s"], "seq": frame["seq"][0], "run": frame["run"], "bseq": frame["bseq"],
               "fields": {k: v[0] for k, v in forged()["fields"].items()}}
        attacks = [
            (f"{P}/fleet/tm/hk", forged(run=frame["run"] + 1)),  # a run never born
            (f"{P}/fleet/tm/hk", forged(bseq=frame["bseq"] + 1)),  # a connection not born yet
            (f"{P}/fleet/tm/hk", ghost),  # a satellite not in the catalogue, dated 2099
            (f"{P}/fleet/tm/hk", forged(t="2099-01-01T00:00:00.000Z")),  # not the run's sim clock
            (f"{P}/replay/{one['sat']}/tm/hk", dict(one, run=one["run"] + 7)),
            (f"{P}/replay/{one['sat']}/tm/hk", dict(one, bseq=one["bseq"] + 3)),
            (f"{P}/replay/{one['sat']}/tm/hk", dict(one, t="2099-01-01T00:00:00.000Z", t_s=2.3e9)),
        ]
        for topic, body in attacks:
            rec.publish(topic, body)
        wait_for(lambda: last_status(bridge).get("refused_telemetry", 0) >= len(attacks), 30, 0.2,
                 what="every forgery refused")
        st = last_status(bridge)
        assert st["refused_telemetry"] == len(attacks), st
        assert st["refused"] == {"run": 2, "bseq": 2, "satellite": 1, "sim_window": 2}, st
        assert {s: _soc(influxd, db, s, t_ns) for s in frame["sats"]} == before
        ghosts = influxd.query("SELECT count(seq) FROM hk WHERE sat='GHOST-1'", db=db)
        assert not ghosts["results"][0].get("series"), ghosts
        late = influxd.query("SELECT count(seq) FROM hk WHERE time > '2098-01-01T00:00:00Z'", db=db)
        assert not late["results"][0].get("series"), late
        dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
        assert sorted(d["detail"].split(":")[0] for d in dead if d["reason"] == "inconsistent") == \
            sorted(["run", "run", "bseq", "bseq", "satellite", "sim_window", "sim_window"])
        # the twin's own telemetry keeps flowing and is stored
        written = st["points_written"]
        wait_for(lambda: last_status(bridge).get("points_written", 0) > written + SATS, 30, 0.2, what="live data")
        assert last_status(bridge)["refused_telemetry"] == len(attacks)
    finally:
        rec.close()
        twin.stop()
        bridge.stop()


def test_known_satellite_follows_the_catalogue():
    g = _born(sats=("A", "B"))
    assert g.known_satellite("A") is True and g.known_satellite("NOPE") is False
    assert BirthGuard().known_satellite("A") is None  # no catalogue yet: cannot tell


def test_unknown_satellite_topics_add_no_series(tmp_path, mosquitto, influxd, db):
    """Requests on 2,000 made-up sat/{name}/cmd topics are answered unknown_satellite; their replies are
    stored under the one tag value ``unknown`` (the name kept in ``sat_given``), never as new series."""
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    twin = twin_proc(tmp_path, mosquitto.url, SATS, "--speed", "x5", "--duration", "3000").start()
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/sat/+/reply"])
    n = 2000
    try:
        wait_for(lambda: last_status(bridge).get("points_written", 0) > SATS, 30, 0.2, what="live data")
        for k in range(n):
            rec.publish(f"{P}/sat/MADE-UP-{uuid.uuid4().hex[:10]}/cmd", {"command": "throttle", "args": {"factor": 0.5},
                                                                      "id": f"r{k}"})
        wait_for(lambda: len(rec.find(lambda t, p: "MADE-UP" in t)) >= n, 60, 0.2, what="every reply")
        assert all(p["reason"] == "unknown_satellite" for t, p in rec.find(lambda t, p: "MADE-UP" in t))

        def stored() -> int:
            rows = influxd.query("SELECT count(seq) FROM replies WHERE sat='unknown'", db=db)
            series = rows["results"][0].get("series")
            return int(series[0]["values"][0][1]) if series else 0
        wait_for(lambda: stored() >= n, 60, 0.5, what="the replies stored")
        tags = influxd.query('SHOW TAG VALUES FROM replies WITH KEY = "sat"', db=db)
        values = {v[1] for s in tags["results"][0].get("series", []) for v in s["values"]}
        assert values <= set(load_catalogue().select(count=SATS).names) | {"unknown", "fleet"}, sorted(values)[:5]
        given = influxd.query("SELECT sat_given FROM replies WHERE sat='unknown' LIMIT 1", db=db)
        assert given["results"][0]["series"][0]["values"][0][1].startswith("MADE-UP-")
    finally:
        rec.close()
        twin.stop()
        bridge.stop()

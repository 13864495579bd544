"""Counted reliability of the MQTT -> InfluxDB bridge against real Mosquitto and influxd 1.6.7.

Each test runs the twin and the bridge as child processes, breaks something, and then asserts
that every (satellite, sequence) the twin published is stored exactly once, or, when the bounded
spool had to drop, that what is missing is exactly what the bridge says it dropped.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt_helpers import Recorder, wait_for
from orbitwin.bench.influxd import InfluxdProcess
from pipeline import (bridge_proc, check_exactly_once, expected_counts, last_status, status_reports, ticks_done,
                      twin_proc, wait_settled)
from twin.core.catalogue import load_catalogue
from twin.schema.telemetry import PACKET_BY_NAME

SATS = 12
ALL_PACKETS = ", ".join(PACKET_BY_NAME)  # seq counts a satellite's messages over all its packets
NAMES = list(load_catalogue().select(count=SATS).names)


@pytest.fixture
def db(influxd):
    name = f"t{uuid.uuid4().hex[:10]}"
    influxd.create_database(name)
    return name


@pytest.fixture
def own_influxd() -> Iterator[InfluxdProcess]:
    """A private influxd for tests that stall or stop it (the session's one is shared), with database ``t``."""
    server = InfluxdProcess().start()
    try:
        server.create_database("t")
        yield server
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        server.cleanup()


def _finish(tmp, twin, bridge, influxd, db):  # type: ignore[no-untyped-def]
    twin.popen.wait(120)
    counts = expected_counts(SATS, ticks_done(twin))
    result = {}

    def settled():
        nonlocal result
        st = last_status(bridge)
        result = check_exactly_once(influxd, db, NAMES, counts)
        return result["lost"] == 0 and st.get("spool_points", 1) == 0 and st.get("inbox", 1) == 0

    try:
        wait_for(settled, 60, 1.0)
    except AssertionError:
        pass
    return result


def test_broker_restarted_with_sigterm_then_sigkill(tmp_path, mosquitto, influxd, db):
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    twin = twin_proc(tmp_path, mosquitto.url, SATS, "--speed", "x4", "--duration", "100").start()
    try:
        wait_for(lambda: last_status(bridge).get("telemetry_rows", 0) > SATS * 10, 60, 0.2)
        mosquitto.restart(signal.SIGTERM)
        wait_for(lambda: last_status(bridge).get("telemetry_rows", 0) > SATS * 40, 60, 0.2)
        mosquitto.restart(signal.SIGKILL)
        result = _finish(tmp_path, twin, bridge, influxd, db)
        assert result["lost"] == 0 and result["duplicates"] == 0, (result, last_status(bridge))
        assert result["stored"] == result["published"]
    finally:
        twin.stop()
        bridge.stop()


def test_influxdb_down_then_back_spools_and_drains_in_order(tmp_path, mosquitto, influxd, db):
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    twin = twin_proc(tmp_path, mosquitto.url, SATS, "--speed", "x4", "--duration", "80").start()
    try:
        wait_for(lambda: last_status(bridge).get("points_written", 0) > SATS * 10, 60, 0.2)
        influxd.stop()
        wait_for(lambda: last_status(bridge).get("spool_points", 0) > SATS * 10, 60, 0.2)
        influxd.start()
        wait_for(lambda: last_status(bridge).get("spool_points", 1) == 0, 60, 0.2)
        result = _finish(tmp_path, twin, bridge, influxd, db)
        assert result["lost"] == 0 and result["duplicates"] == 0, (result, last_status(bridge))
    finally:
        twin.stop()
        bridge.stop()


def test_bridge_killed_with_sigkill_and_restarted(tmp_path, mosquitto, influxd, db):
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    twin = twin_proc(tmp_path, mosquitto.url, SATS, "--speed", "x4", "--duration", "80").start()
    try:
        wait_for(lambda: last_status(bridge).get("points_written", 0) > SATS * 10, 60, 0.2)
        bridge.signal(signal.SIGKILL)
        # the twin keeps publishing while no bridge runs (the broker queues for the bridge's session)
        watch = Recorder(mosquitto.host, mosquitto.port, ["orbitwin/v1/fleet/tm/hk"])
        wait_for(lambda: len(watch.find(lambda t, p: True)) >= 8, 30)
        watch.close()
        bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
        result = _finish(tmp_path, twin, bridge, influxd, db)
        assert result["lost"] == 0 and result["duplicates"] == 0, (result, last_status(bridge))
    finally:
        twin.stop()
        bridge.stop()


def test_spool_overflow_drops_exactly_the_overflow_and_reports_it(tmp_path, mosquitto, influxd, db):
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db, "--spool-max-mb", "0.05").start()
    twin = twin_proc(tmp_path, mosquitto.url, SATS, "--speed", "x4", "--duration", "100").start()
    try:
        wait_for(lambda: last_status(bridge).get("points_written", 0) > SATS * 5, 60, 0.2)
        influxd.stop()
        wait_for(lambda: last_status(bridge).get("spool_dropped_points", 0) > 0, 60, 0.2)
        twin.popen.wait(120)
        influxd.start()
        counts = expected_counts(SATS, ticks_done(twin))
        wait_settled(bridge)
        # dropped lines whose write failed ambiguously (influxd answers 500 or resets while it stops,
        # yet has the batch in its WAL) are looked up once it is back; wait for that look-up
        wait_for(lambda: last_status(bridge).get("spool_dropped_unverified_points", 1) == 0, 60, 0.2)
        st = last_status(bridge)
        result = check_exactly_once(influxd, db, NAMES, counts)
        assert result["duplicates"] == 0
        assert result["lost"] > 0
        # what is missing is exactly what the bridge says it dropped (telemetry points of the spool)
        assert result["lost"] == st["spool_dropped_telemetry_points"], (result, st)
        assert st["spool_dropped_unverified_points"] == 0 and st["spool_drop_audit_overflow"] == 0
        dropped_lines = st["spool_dropped_points"]  # every line the spool deleted, telemetry or not
        assert st["spool_dropped_telemetry_points"] + st["spool_dropped_then_stored_points"] <= dropped_lines
    finally:
        twin.stop()
        bridge.stop()


def _in_process_bridge(tmp: Path, mqtt_url: str, writer, **settings):  # type: ignore[no-untyped-def]
    from bridges.influx.bridge import BridgeSettings, InfluxBridge

    bridge = InfluxBridge(BridgeSettings(mqtt_url, client_id=f"b-{uuid.uuid4().hex[:6]}", spool_dir=str(tmp / "spool"),
                                         dead_letter_path=str(tmp / "dead.jsonl"), report_every_s=0.5, **settings),
                          writer)
    bridge.start()
    return bridge


def test_spool_overflow_while_influxd_stalls_counts_only_what_is_missing(tmp_path, mosquitto, own_influxd):
    """influxd stops answering (SIGSTOP) but keeps its connections: writes time out at the bridge, and
    influxd stores them when it resumes. The spool drops those batches first (they are its oldest), so
    counting deleted lines would report points as lost that are in the database (the flaky failure of
    the overflow test, where influxd answered 500 while stopping and still had the batch in its WAL)."""
    from bridges.influx.writer import InfluxV1Writer

    bridge = _in_process_bridge(tmp_path, mosquitto.url, InfluxV1Writer(own_influxd.url, "t", timeout_s=0.5),
                                spool_max_bytes=int(0.05 * 2**20), drop_audit_delay_s=2.0)
    twin = twin_proc(tmp_path, mosquitto.url, SATS, "--speed", "x4", "--duration", "60").start()
    try:
        wait_for(lambda: bridge.status()["points_written"] > SATS * 5, 60, 0.1)
        own_influxd.proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: bridge.status()["spool_dropped_points"] > SATS * 10, 60, 0.1)
        twin.popen.wait(120)
        own_influxd.proc.send_signal(signal.SIGCONT)
        counts = expected_counts(SATS, ticks_done(twin))
        wait_for(lambda: bridge.status()["spool_points"] == 0 and bridge.inbox.empty()
                 and bridge.status()["spool_dropped_unverified_points"] == 0, 60, 0.2)
        st = bridge.status()
        result = check_exactly_once(own_influxd, "t", NAMES, counts)
        assert result["duplicates"] == 0 and result["lost"] > 0
        assert result["lost"] == st["spool_dropped_telemetry_points"], (result, st)
        assert st["spool_dropped_then_stored_points"] > 0, st  # timed-out writes that influxd stored
        assert bridge.counters["write_retries"] > 0
    finally:
        own_influxd.proc.send_signal(signal.SIGCONT)
        twin.stop()
        bridge.stop()


def test_spool_overflow_after_influxd_stops_mid_write_counts_only_what_is_missing(tmp_path, mosquitto, own_influxd):
    """The flaky failure of the overflow test, made likely: a write is in flight when influxd gets
    SIGTERM. influxd then answers 500 or resets the connection, and about every other time it has the
    batch in its WAL all the same; the bridge spools it and the overflow drops it first. The drop
    count must not include those points (they are looked up once influxd is back)."""
    bridge = bridge_proc(tmp_path, mosquitto.url, own_influxd.url, "t", "--spool-max-mb", "0.05").start()
    twin = twin_proc(tmp_path, mosquitto.url, SATS, "--speed", "x4", "--duration", "50").start()
    try:
        wait_for(lambda: last_status(bridge).get("points_written", 0) > SATS * 5, 60, 0.2)
        own_influxd.proc.send_signal(signal.SIGSTOP)
        time.sleep(0.7)  # the bridge's next write waits for an answer
        own_influxd.proc.send_signal(signal.SIGTERM)
        own_influxd.proc.send_signal(signal.SIGCONT)
        own_influxd.stop()
        wait_for(lambda: last_status(bridge).get("spool_dropped_points", 0) > 0, 60, 0.2)
        twin.popen.wait(120)
        own_influxd.start()
        counts = expected_counts(SATS, ticks_done(twin))
        wait_settled(bridge)
        wait_for(lambda: last_status(bridge).get("spool_dropped_unverified_points", 1) == 0, 60, 0.2)
        st = last_status(bridge)
        result = check_exactly_once(own_influxd, "t", NAMES, counts)
        assert result["duplicates"] == 0 and result["lost"] > 0
        assert result["lost"] == st["spool_dropped_telemetry_points"], (result, st)
    finally:
        twin.stop()
        bridge.stop()


def test_spool_overflow_with_redelivered_copies_counts_each_missing_point_once(tmp_path, mosquitto, own_influxd):
    """Copies of messages (a broker redelivery, a replay) reach the spool while influxd is down: a
    dropped copy of a stored point loses nothing, two dropped copies are one lost point, and a point
    counted as dropped whose copy is stored later is taken off the count."""
    from bridges.influx.writer import InfluxV1Writer

    bridge = _in_process_bridge(tmp_path, mosquitto.url, InfluxV1Writer(own_influxd.url, "t"),
                                spool_max_bytes=2_000, drop_audit_delay_s=0.5)
    rec = Recorder(mosquitto.host, mosquitto.port, ["orbitwin/v1/bridge/#"])
    fields = {"mode": 0, "limit_state": 0, "fault_flags": 0, "battery_soc": 0.9, "payload_util": 0.5,
              "payload_temp_k": 300.0, "illumination": 1.0}

    def send(seqs: range) -> None:
        """One replayed hk message per sequence number, in groups of 4 (a spool segment each)."""
        for k in range(0, len(seqs), 4):
            before = bridge.counters["messages"]
            group = seqs[k:k + 4]
            for seq in group:
                msg = {"v": 1, "sat": "SAT-A", "norad": 1, "packet": "hk", "t": f"2026-02-23T00:00:{seq:02d}.000Z",
                       "t_s": float(seq), "seq": seq, "run": 7, "bseq": 7, "fields": fields}
                rec.publish("orbitwin/v1/replay/SAT-A/tm/hk", json.dumps(msg))
            wait_for(lambda: bridge.counters["messages"] >= before + len(group), 10, 0.02)
            wait_for(lambda: bridge.inbox.empty(), 10, 0.02)
            time.sleep(0.3)  # let the bridge close the batch

    try:
        wait_for(lambda: bridge.connected.is_set(), 30, 0.1)
        _announce(rec, "orbitwin/v1", run=7, bseq=7, sats=["SAT-A"])  # the bridge stores only a born run's
        wait_for(lambda: bridge.guard.run == 7, 10, 0.05)
        send(range(0, 1))
        wait_for(lambda: bridge.status()["points_written"] >= 1, 10, 0.1)
        own_influxd.stop()
        send(range(1, 31))  # originals: the spool keeps ~12, the rest is dropped
        send(range(0, 31))  # copies of all of them, seq 0 (stored) included: they displace the originals
        assert bridge.tracker.duplicates >= 31
        own_influxd.start()
        wait_for(lambda: bridge.status()["spool_points"] == 0
                 and bridge.status()["spool_dropped_unverified_points"] == 0, 30, 0.1)
        st = bridge.status()
        res = own_influxd.query('SELECT "seq" FROM hk WHERE sat=\'SAT-A\'', db="t")
        stored = {v[1] for s in res["results"][0].get("series", []) for v in s["values"]}
        lost = len(set(range(31)) - stored)
        assert 0 < lost < 30 and 0 in stored
        assert lost == st["spool_dropped_telemetry_points"], (sorted(stored), st)
        assert st["spool_dropped_then_stored_points"] > 0, st
    finally:
        rec.close()
        bridge.stop()


def _announce(rec: Recorder, prefix: str, run: int, bseq: int, sats: list[str]) -> None:
    """Publish a twin's retained birth and catalogue (what a twin announces on every connection)."""
    birth = {"v": 1, "state": "online", "bseq": bseq, "run": run, "sats": len(sats), "dt_s": 1.0}
    catalogue = {"v": 1, "sats": [{"sat": s, "norad": k, "shell": "x"} for k, s in enumerate(sats)]}
    for topic, body in ((f"{prefix}/state", birth), (f"{prefix}/fleet/catalogue", catalogue)):
        rec.client.publish(topic, json.dumps(body), qos=1, retain=True).wait_for_publish(5)


def test_malformed_input_is_dead_lettered_and_good_lines_land(tmp_path, mosquitto, influxd, db):
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    rec = Recorder(mosquitto.host, mosquitto.port, ["orbitwin/v1/bridge/#"])
    try:
        wait_for(lambda: last_status(bridge).get("connected"), 30, 0.2)
        P = "orbitwin/v1"
        _announce(rec, P, run=1, bseq=1, sats=["SAT-A"])
        wait_for(lambda: last_status(bridge).get("birth_run") == 1, 30, 0.2)
        good = {"v": 1, "sat": "SAT-A", "norad": 1, "packet": "hk", "t": "2026-02-23T00:00:00.000Z", "t_s": 0.0,
                "seq": 0, "run": 1, "bseq": 1,
                "fields": {"mode": 0, "limit_state": 0, "fault_flags": 0, "battery_soc": 0.9,
                           "payload_util": 0.5, "payload_temp_k": 300.0, "illumination": 1.0}}
        # time outside InfluxDB's range: valid JSON and line protocol, rejected by the server (HTTP 400)
        # (the first message of a new run: the bridge's birth guard has no clock for that run yet)
        bad_time = dict(good, seq=1, t="2300-01-01T00:00:00.000Z", run=2, bseq=2)
        msgs = [
            (f"{P}/replay/SAT-A/tm/hk", good),
            (f"{P}/state", {"v": 1, "state": "online", "bseq": 2, "run": 2, "sats": 1, "dt_s": 1.0}),
            (f"{P}/replay/SAT-A/tm/hk", bad_time),
            (f"{P}/replay/SAT-A/tm/hk", dict(good, seq=2, t="2026-02-23T00:00:01.000Z")),
            (f"{P}/replay/SAT-A/tm/hk", b"not json"),
            (f"{P}/replay/SAT-A/tm/hk", dict(good, fields={**good["fields"], "mode": "safe"})),
            (f"{P}/replay/SAT-A/tm/hk", dict(good, fields={**good["fields"], "bogus": 1.0})),
            (f"{P}/replay/SAT-A/tm/hk", b"{" * 100_000),
        ]
        for topic, payload in msgs:
            rec.publish(topic, payload if isinstance(payload, bytes) else json.dumps(payload))
        wait_for(lambda: last_status(bridge).get("dead_letters", 0) >= 5, 30, 0.2)
        res = influxd.query('SELECT "seq" FROM hk WHERE sat=\'SAT-A\'', db=db)
        seqs = sorted(v[1] for s in res["results"][0].get("series", []) for v in s["values"])
        assert seqs == [0, 2]
        dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
        reasons = sorted(d["reason"] for d in dead)
        details = " ".join(str(d.get("detail")) for d in dead)
        assert reasons == ["rejected", "unmappable", "unmappable", "unmappable", "unmappable"]
        assert "not JSON" in details and "bogus" in details and "mode" in details
        reports = status_reports(bridge)
        wait_for(lambda: status_reports(bridge) > reports + 1, 10, 0.1)  # still running and reporting
        assert bridge.popen.poll() is None
    finally:
        rec.close()
        bridge.stop()


def test_v2_path_through_the_bridge_against_a_protocol_level_fake(tmp_path, mosquitto):
    """InfluxDB 2.x cannot run here: a protocol-level fake of /api/v2/write records what the bridge sends.

    The same frames and mapping as v1; a scripted 503 with Retry-After is spooled and retried.
    """
    from bridges.influx.bridge import BridgeSettings, InfluxBridge
    from bridges.influx.writer import InfluxV2Writer
    from influx2_fake import FakeInfluxDB2

    fake = FakeInfluxDB2(token="tok", org="orbitwin", buckets=("telemetry",)).start()
    bridge = InfluxBridge(BridgeSettings(mosquitto.url, client_id="v2-bridge", spool_dir=str(tmp_path / "spool"),
                                         dead_letter_path=str(tmp_path / "dead.jsonl"), report_every_s=0.5),
                          InfluxV2Writer(fake.url, "orbitwin", "telemetry", "tok"))
    bridge.start()
    twin = twin_proc(tmp_path, mosquitto.url, SATS, "--speed", "x8", "--duration", "40").start()
    try:
        wait_for(lambda: bridge.status()["points_written"] > SATS * 5, 30, 0.1)
        fake.script_write(503, b"busy", headers={"Retry-After": "1"}, times=2)
        twin.popen.wait(60)
        counts = expected_counts(SATS, ticks_done(twin))
        wait_for(lambda: bridge.status()["telemetry_rows"] >= counts.sum() and bridge.status()["spool_points"] == 0
                 and bridge.inbox.empty(), 30, 0.2)
        writes = fake.writes()
        assert writes and all(w.headers.get("Authorization") == "Token tok" for w in writes)
        assert all(w.query.get("bucket") == "telemetry" and w.query.get("org") == "orbitwin"
                   and w.query.get("precision") == "ns" for w in writes)
        assert bridge.counters["write_retries"] >= 1
        def stored() -> int:
            return sum(1 for k in list(fake.points["telemetry"]) if k[0] in PACKET_BY_NAME)
        try:
            wait_for(lambda: stored() >= int(counts.sum()), 20, 0.2)  # the last batch may still be in flight
        except AssertionError:
            pass
        assert stored() == int(counts.sum())
    finally:
        twin.stop()
        bridge.stop()
        fake.stop()


def _per_run(influxd, db: str, q: str) -> dict[str, list[list]]:  # type: ignore[no-untyped-def]
    """Rows of ``q`` (which groups by ``run`` among others) per run tag value."""
    out: dict[str, list[list]] = {}
    for s in influxd.query(q, db=db)["results"][0].get("series", []):
        out.setdefault(s["tags"]["run"], []).extend(s["values"])
    return out


def test_two_runs_with_identical_inputs_are_both_retrievable(tmp_path, mosquitto, influxd, db):
    """Issue 12: the second run used to overwrite the first (same sim timestamps, no run in storage).

    Two twin processes with identical inputs (start, seed, selection, scenario) and each a fresh
    state directory (a persisted birth counter alone would give both run 1): every point carries
    its run, both runs' telemetry, events, fleet summaries, twin status and ``runs`` rows are stored
    and each run's sequences are complete and stored once.
    """
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(f'seed = 5\n[[request]]\nat = 10\nsat = "{NAMES[0]}"\nfault = "latchup"\nargs = {{ device = 2 }}\n')
    args = ("--speed", "max", "--duration", "40", "--start", "2026-02-23T00:00:00Z", "--scenario", str(scenario),
            "--rates", "status=1")
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    try:
        wait_for(lambda: last_status(bridge).get("connected"), 30, 0.2)
        runs_seen = []
        for k in range(2):
            state = tmp_path / f"state{k}"
            state.mkdir()
            twin = twin_proc(state, mosquitto.url, SATS, *args).start()
            assert twin.popen.wait(120) == 0, twin.text()[-2000:]
            runs_seen.append(int((state / "orbitwin" / "bseq").read_text()))
            wait_settled(bridge)
        assert runs_seen[0] != runs_seen[1] and runs_seen[1] > runs_seen[0]
        counts = expected_counts(SATS, ticks_done(twin))
        per_run = _per_run(influxd, db, f'SELECT "seq" FROM {ALL_PACKETS} '
                                        'GROUP BY "sat", "run"')
        assert sorted(per_run) == sorted(map(str, runs_seen))
        for run in per_run:
            got: dict[str, list[int]] = {}
            for s in influxd.query(f'SELECT "seq" FROM {ALL_PACKETS} '
                                   f'WHERE "run" = \'{run}\' GROUP BY "sat"', db=db)["results"][0]["series"]:
                got.setdefault(s["tags"]["sat"], []).extend(v[1] for v in s["values"])
            for name, count in zip(NAMES, counts):
                assert sorted(got[name]) == list(range(int(count))), (run, name)  # complete, once
        # the same sim timestamps and values in both runs, kept apart by the tag
        soc = {run: [(t, v) for t, v in rows] for run, rows in _per_run(
            influxd, db, f'SELECT "battery_soc" FROM hk WHERE "sat" = \'{NAMES[0]}\' GROUP BY "run"').items()}
        a, b = (soc[str(r)] for r in runs_seen)
        assert a == b and len(a) == ticks_done(twin)  # hk at 1 Hz
        for meas, q in (("events", 'SELECT "name" FROM events WHERE "kind" = \'sel\' GROUP BY "run"'),
                        ("fleet", 'SELECT "sats" FROM fleet GROUP BY "run"'),
                        ("twin", 'SELECT "tick" FROM twin GROUP BY "run"')):
            rows = _per_run(influxd, db, q)
            assert set(rows) == set(map(str, runs_seen)), meas
            assert len(rows[str(runs_seen[0])]) == len(rows[str(runs_seen[1])]) > 0, meas
        runs = _per_run(influxd, db, 'SELECT "sim_start_ms", "sim_latest_ms", "sats" FROM runs GROUP BY "run"')
        start_ms = 1771804800000  # 2026-02-23T00:00:00Z
        for run in runs_seen:
            (row,) = runs[str(run)]
            assert row[1] == start_ms and row[2] == start_ms + (ticks_done(twin)) * 1000 and row[3] == SATS, row
        assert influxd.query('SELECT count("seq") FROM hk WHERE "run" = \'none\'', db=db)["results"][0].get(
            "series") is None
    finally:
        bridge.stop()

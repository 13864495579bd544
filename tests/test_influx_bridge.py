"""Counted reliability of the MQTT -> InfluxDB bridge against real Mosquitto and influxd 1.6.7.

Each test runs the twin and the bridge as child processes, breaks something, and then asserts
that every (satellite, sequence) the twin published is stored exactly once.
"""

from __future__ import annotations

import json
import signal
import uuid

import pytest

from mqtt_helpers import Recorder, wait_for
from pipeline import (bridge_proc, check_exactly_once, expected_counts, last_status, status_reports, ticks_done,
                      twin_proc, wait_settled)
from twin.core.catalogue import load_catalogue

SATS = 12
NAMES = list(load_catalogue().select(count=SATS).names)


@pytest.fixture
def db(influxd):
    name = f"t{uuid.uuid4().hex[:10]}"
    influxd.create_database(name)
    return name


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
        st = wait_settled(bridge)
        result = check_exactly_once(influxd, db, NAMES, counts)
        assert result["duplicates"] == 0
        assert result["lost"] > 0
        # what is missing is exactly what the bridge says it dropped (telemetry points of the spool)
        assert result["lost"] == st["spool_dropped_telemetry_points"], (result, st)
    finally:
        twin.stop()
        bridge.stop()


def test_malformed_input_is_dead_lettered_and_good_lines_land(tmp_path, mosquitto, influxd, db):
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    rec = Recorder(mosquitto.host, mosquitto.port, ["orbitwin/v1/bridge/#"])
    try:
        wait_for(lambda: last_status(bridge).get("connected"), 30, 0.2)
        P = "orbitwin/v1"
        good = {"v": 1, "sat": "SAT-A", "norad": 1, "packet": "hk", "t": "2026-02-23T00:00:00.000Z", "t_s": 0.0,
                "seq": 0, "run": 1, "bseq": 1,
                "fields": {"mode": 0, "limit_state": 0, "fault_flags": 0, "battery_soc": 0.9,
                           "payload_util": 0.5, "payload_temp_k": 300.0, "illumination": 1.0}}
        # time outside InfluxDB's range: valid JSON and line protocol, rejected by the server (HTTP 400)
        bad_time = dict(good, seq=1, t="2300-01-01T00:00:00.000Z")
        msgs = [
            (f"{P}/replay/SAT-A/tm/hk", good),
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
            return sum(1 for k in list(fake.points["telemetry"]) if k[0] in ("hk", "orbit", "power", "thermal",
                                                                            "payload", "radiation"))
        try:
            wait_for(lambda: stored() >= int(counts.sum()), 20, 0.2)  # the last batch may still be in flight
        except AssertionError:
            pass
        assert stored() == int(counts.sum())
    finally:
        twin.stop()
        bridge.stop()
        fake.stop()

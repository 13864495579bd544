"""Every dashboard, variable, annotation and alert query against InfluxDB filled by the real pipeline.

The twin (with faults and commands injected over MQTT and a firmware-sim board bound through
``orbitwin bridge serial``) runs against Mosquitto; ``orbitwin bridge influx`` stores what it
publishes in influxd 1.6.7. Then the dashboards' queries run with Grafana's variables substituted.
Also: values a panel shows equal what the twin published (a short deterministic run).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from bridges.board.bridge import SerialBridge, SerialBridgeSettings
from dashboard_data import Filled
from mqtt_helpers import Recorder, wait_for
from orbitwin_fw_host import start_sims, stop_sims
from pipeline import bridge_proc, last_status, twin_proc, wait_settled
from test_dashboards import DASHBOARDS, _run_panel_query, all_rules, dashboard_queries, expected_columns, series_of
from twin.core.catalogue import load_catalogue

P = "orbitwin/v1"
COUNT = 30
DURATION, SPEED = 240, 12
def _alive_at_start(count: int, start: dt.datetime) -> list[str]:
    """Satellites SGP4 still propagates at the start (months after the TLE epoch some have decayed)."""
    from twin.core.engine import julian_split
    from twin.core.orbit import FleetPropagator
    from twin.core.ephemeris import iso_to_jd

    cat = load_catalogue().select(count=4 * count)
    jd, fr = julian_split(iso_to_jd(start.isoformat()))
    _, _, err = FleetPropagator(cat).teme(jd, fr)
    return [n for n, e in zip(cat.names, err) if e == 0][:count]


NAMES: list[str] = []  # filled by the fixture: the run starts (and ends) around the wall clock of the test


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, influxd):
    from twin.runtime.embedded_broker import MosquittoProcess

    tmp = tmp_path_factory.mktemp("pipe")
    broker = MosquittoProcess().start()
    db = f"pipe{uuid.uuid4().hex[:8]}"
    influxd.create_database(db)
    # sim time ends near wall time, so that windows relative to now() (alert rules) and the
    # bridge's own wall-clock points fall inside the dashboards' time range
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=DURATION - DURATION // SPEED)
    NAMES[:] = _alive_at_start(COUNT, start)
    rec = Recorder(broker.host, broker.port, [f"{P}/sat/{NAMES[1]}/tm/hk"])
    sims = start_sims(1, seed=2, mode="thread")
    bridge = bridge_proc(tmp, broker.url, influxd.url, db).start()
    wait_for(lambda: last_status(bridge).get("connected"), 30, 0.1)
    serial = SerialBridge(SerialBridgeSettings(sims[0].port_path, NAMES[2], broker.url)).start()
    twin = twin_proc(tmp, broker.url, COUNT, "--names", ",".join(NAMES), "--speed", f"x{SPEED}", "--duration", str(DURATION), "--seed", "11", "--sat-rates", f"{NAMES[4]}:payload=1;{NAMES[2]}:payload=1",
                     "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ")).start()
    try:
        wait_for(lambda: rec.find(lambda t, p: True), 30)
        for topic, body in (
            (f"{P}/sat/{NAMES[0]}/fault", {"fault": "latchup", "args": {"device": 1}}),
            (f"{P}/sat/{NAMES[0]}/fault", {"fault": "heatpipe_degradation", "args": {"efficiency": 0.05}}),
            (f"{P}/sat/{NAMES[3]}/cmd", {"command": "throttle", "args": {"factor": 0.5}}),
            (f"{P}/sat/{NAMES[2]}/fault", {"fault": "seu_burst", "args": {"count": 2}}),
            (f"{P}/sat/{NAMES[4]}/fault", {"fault": "payload_hang"}),
            (f"{P}/board/{NAMES[2]}/cmd", {"command": "set_load", "args": {"load": 0.05}}),  # board departs: divergence
            (f"{P}/sat/{NAMES[5]}/fault", {"fault": "sensor_bias", "args": {"field": "payload_temp_k", "bias": 80}}),
        ):
            rec.publish(topic, body)
        twin.popen.wait(DURATION / SPEED + 60)
        wait_settled(bridge)
        yield influxd, db, start, rec
    finally:
        serial.stop()
        twin.stop()
        bridge.stop()
        stop_sims(sims)
        rec.close()
        broker.stop()


def _filled(start: dt.datetime) -> Filled:
    start_ns = int(start.timestamp() * 1e9)
    return Filled(start_ns, start_ns + int((DURATION + 5) * 1e9), NAMES, NAMES[0], NAMES[2])


def test_every_dashboard_query_returns_data_from_the_real_pipeline(pipeline):
    influxd, db, start, _ = pipeline
    f = _filled(start)
    checked = 0
    for name, d in DASHBOARDS.items():
        for title, q in dashboard_queries(d):
            series = _run_panel_query(influxd, db, f, q)
            assert series, f"{name} / {title}: no data from the real pipeline for {q}"
            for s in series:
                assert s["columns"] == ["time", *expected_columns(q)], (title, s["columns"])
            checked += 1
        for var in d.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                q = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
                assert series_of(influxd, db, q), f"{name}: variable {var['name']} lists nothing"
    assert checked > 60


def test_every_alert_rule_query_runs_on_the_real_pipeline(pipeline):
    influxd, db, _, _ = pipeline
    for rule in all_rules():
        q = rule["data"][0]["model"]["query"]
        res = influxd.query(q, db)
        assert "error" not in res["results"][0], (rule["title"], res)


def test_panel_values_equal_what_the_twin_published(pipeline):
    influxd, db, start, rec = pipeline
    published = [p for _, p in rec.find(lambda t, p: True)]
    assert len(published) >= DURATION * 0.9
    soc = {p["t"]: p["fields"]["battery_soc"] for p in published}
    rows = series_of(influxd, db, f"SELECT \"battery_soc\" FROM hk WHERE \"sat\" = '{NAMES[1]}'")[0]["values"]
    assert len(rows) == len(soc)
    stored = {r[0]: r[1] for r in rows}
    for t, v in soc.items():
        ts = dt.datetime.fromisoformat(t.replace("Z", "+00:00")).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"
        assert stored.get(ts) == pytest.approx(v, abs=0.0), t
    mean = series_of(influxd, db, f"SELECT mean(\"payload_util\") FROM hk WHERE \"sat\" = '{NAMES[1]}'")[0]["values"][0][1]
    assert mean == pytest.approx(sum(p["fields"]["payload_util"] for p in published) / len(published), rel=1e-9)
    ev = series_of(influxd, db, f"SELECT \"name\" FROM events WHERE \"sat\" = '{NAMES[0]}' AND \"kind\" = 'sel'")
    assert ev and any(v[1] == "latchup" for v in ev[0]["values"])

"""Every dashboard, variable, annotation and alert query against InfluxDB filled by the real pipeline.

The twin (with faults and commands injected over MQTT and a firmware-sim board bound through
``orbitwin bridge serial``) runs against Mosquitto; ``orbitwin bridge influx`` stores what it
publishes in influxd 1.6.7. Then the dashboards' queries run with Grafana's variables substituted
(``$run`` the latest run, the time range the run's sim window from the ``runs`` measurement), and
the alert rules' queries run as Grafana evaluates them: with the wall clock's ``now()``. The run
is what a user gets from the README: no ``--start`` (the sim clock starts at the wall clock) at
x10, so its sim time runs ahead of the wall clock; with compute placement on (``--compute aware``) so
the compute dashboard and rules read a real run's jobs.
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
from twin.schema.telemetry import FIELD_BY_NAME

P = "orbitwin/v1"
COUNT = 30
DURATION, SPEED = 240, 10
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
    # no --start: the twin starts its sim clock at the wall clock (a paced run's default)
    NAMES[:] = _alive_at_start(COUNT, dt.datetime.now(dt.timezone.utc))
    rec = Recorder(broker.host, broker.port, [f"{P}/sat/{NAMES[1]}/tm/hk"])
    sims = start_sims(1, seed=2, mode="thread")
    bridge = bridge_proc(tmp, broker.url, influxd.url, db).start()
    wait_for(lambda: last_status(bridge).get("connected"), 30, 0.1)
    serial = SerialBridge(SerialBridgeSettings(sims[0].port_path, NAMES[2], broker.url)).start()
    twin = twin_proc(tmp, broker.url, COUNT, "--names", ",".join(NAMES), "--speed", f"x{SPEED}", "--duration",
                     str(DURATION), "--seed", "11", "--sat-rates", f"{NAMES[4]}:payload=1;{NAMES[2]}:payload=1",
                     "--compute", "aware", "--compute-demand", "1").start()
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
            (f"{P}/sat/{NAMES[6]}/fault", {"fault": "sensor_stuck", "args": {"field": "battery_soc", "value": 0.3}}),
        ):
            rec.publish(topic, body)
        twin.popen.wait(DURATION / SPEED + 60)
        wait_settled(bridge)
        wait_for(lambda: _run_window(influxd, db)[2] >= _run_window(influxd, db)[1] + DURATION * 1000, 10, 0.5,
                 what="the run's sim window stored")
        yield influxd, db, _run_window(influxd, db), rec
    finally:
        serial.stop()
        twin.stop()
        bridge.stop()
        stop_sims(sims)
        rec.close()
        broker.stop()


def _run_window(influxd, db: str) -> tuple[str, int, int]:  # type: ignore[no-untyped-def]
    """(latest run, sim start ms, latest sim ms) from the ``runs`` measurement, as the Runs table shows them."""
    runs = series_of(influxd, db, 'SELECT last("sim_start_ms"), last("sim_latest_ms") FROM "runs" GROUP BY "run"')
    if not runs:
        return "", 0, -1
    latest = max(runs, key=lambda s: int(s["tags"]["run"]))
    return latest["tags"]["run"], int(latest["values"][0][1] or 0), int(latest["values"][0][2] or -1)


def _filled(window: tuple[str, int, int]) -> Filled:
    """The dashboards' time range: the run's sim window (what the Runs table's link opens)."""
    _, start_ms, latest_ms = window
    return Filled(start_ms * 10**6, (latest_ms + 5000) * 10**6, NAMES, NAMES[0], NAMES[2])


def test_the_run_starts_at_the_wall_clock_and_runs_ahead_of_it(pipeline):
    influxd, db, window, _ = pipeline
    run, start_ms, latest_ms = window
    wall_start_ms = series_of(influxd, db, f'SELECT "wall_start_ms" FROM "runs" WHERE "run" = \'{run}\'')[0]["values"][0][1]
    assert abs(start_ms - wall_start_ms) < 30_000  # the sim clock started at the wall clock (+ fleet build time)
    assert latest_ms - start_ms == DURATION * 1000
    now_ms = dt.datetime.now(dt.timezone.utc).timestamp() * 1000
    assert latest_ms > now_ms + 60_000  # x10: its latest samples lie ahead of the wall clock
    assert series_of(influxd, db, 'SHOW TAG VALUES FROM "runs" WITH KEY = "run"')[0]["values"] == [["run", run]]


def test_every_dashboard_query_returns_data_from_the_real_pipeline(pipeline):
    influxd, db, window, _ = pipeline
    f = _filled(window)
    run = window[0]
    checked = 0
    for name, d in DASHBOARDS.items():
        for title, q in dashboard_queries(d):
            series = _run_panel_query(influxd, db, f, q, run)
            assert series, f"{name} / {title}: no data from the real pipeline for {q}"
            for s in series:
                assert s["columns"] == ["time", *expected_columns(q)], (title, s["columns"])
            checked += 1
        for var in d.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                q = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
                assert series_of(influxd, db, q.replace("$run", run)), f"{name}: variable {var['name']} lists nothing"
    assert checked > 60


def test_every_alert_rule_query_runs_on_the_real_pipeline(pipeline):
    influxd, db, _, _ = pipeline
    for rule in all_rules():
        q = rule["data"][0]["model"]["query"]
        res = influxd.query(q, db)
        assert "error" not in res["results"][0], (rule["title"], res)


def _latest_beyond(influxd, db: str, run: str, rule: dict) -> set[str]:  # type: ignore[no-untyped-def]
    """Satellites whose last sample of the run is beyond the rule's limit, by a plain query and Python."""
    field, side = rule["uid"].removeprefix("orbitwin-").rsplit("-red-", 1)
    f = FIELD_BY_NAME[field]
    limit = f.limits.red_high if side == "high" else f.limits.red_low  # type: ignore[union-attr]
    rows = series_of(influxd, db, f'SELECT last("{field}") FROM "{f.packet}" WHERE "run" = \'{run}\' GROUP BY "sat"')
    last = {s["tags"]["sat"]: s["values"][0][1] for s in rows}
    if f.dtype == "bool":
        return {sat for sat, v in last.items() if v is True}
    return {sat for sat, v in last.items() if (v > limit if side == "high" else v < limit)}


def test_alert_rules_evaluated_at_wall_clock_now_fire_for_the_faults_of_an_x10_run(pipeline):
    """Issue 12: every rule filtered ``time > now() - Ns`` and found nothing of a run whose sim clock
    was elsewhere. Now, evaluated with the wall clock's now() as Grafana does, after a default-start
    x10 run: a rule returns rows (alert instances labelled sat and run) exactly for the satellites
    whose latest sample of the run is beyond its red limit, and the injected faults are among them."""
    influxd, db, window, _ = pipeline
    run = window[0]
    firing: dict[str, set[str]] = {}
    for rule in all_rules():
        series = series_of(influxd, db, rule["data"][0]["model"]["query"])
        assert all(s["tags"]["run"] == run for s in series if "run" in s.get("tags", {})), rule["uid"]
        if rule["labels"]["scope"] == "satellite":
            got = {s["tags"]["sat"] for s in series}
            assert got == _latest_beyond(influxd, db, run, rule), rule["uid"]
            if got:
                firing[rule["uid"]] = got
        elif rule["uid"].startswith("orbitwin-fleet-") and rule["uid"] != "orbitwin-fleet-silent":
            fld = expected_columns(rule["data"][0]["model"]["query"])[0]
            (last,) = series_of(influxd, db, f'SELECT last("{fld}") FROM "fleet" WHERE "run" = \'{run}\'')[0]["values"]
            assert bool(series) and (series[0]["values"][0][1] > 0) == (last[1] > 0), rule["uid"]
            if last[1] > 0:
                firing[rule["uid"]] = {"fleet"}
        elif rule["uid"] == "orbitwin-fleet-silent":
            assert series and series[0]["values"][0][1] > 0  # the x10 run's summaries lie ahead: not silent
    # the lasting faults injected over MQTT: +80 K bias on a payload temperature sensor, a battery
    # SoC sensor stuck at 0.3 (the hang and the latch-up were over: FDIR power-cycled them)
    assert NAMES[5] in firing.get("orbitwin-payload_temp_k-red-high", set()), firing
    assert NAMES[6] in firing.get("orbitwin-battery_soc-red-low", set()), firing
    assert "orbitwin-fleet-red" in firing, firing
    quiet = [r["uid"] for r in all_rules() if r["labels"]["scope"] == "satellite" and r["uid"] not in firing]
    assert "orbitwin-dose_total_rad-red-high" in quiet and len(quiet) >= len(firing), (firing, quiet)


def test_replies_and_events_of_the_run_carry_its_run(pipeline):
    influxd, db, window, _ = pipeline
    run = window[0]
    for meas in ("replies", "events", "fleet", "twin", "bridge", "hk"):
        tags = series_of(influxd, db, f'SHOW TAG VALUES FROM "{meas}" WITH KEY = "run"')
        values = {v[1] for v in tags[0]["values"]} if tags else set()
        # the bridge reports from its start, before it has seen the twin's birth: run "none"
        assert run in values and values <= ({run, "none"} if meas == "bridge" else {run}), (meas, values)


def test_panel_values_equal_what_the_twin_published(pipeline):
    influxd, db, _, rec = pipeline
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

"""Compute jobs on the contract (issue 16): the ``compute`` packet, the fleet summary's compute keys,
MQTT, InfluxDB and the compute alert rules' arithmetic.

The packet's values are :meth:`ComputeCoupling.telemetry` of a real tick of a real twin with compute
placement on (20 satellites, the aware policy at the default demand: jobs run and complete); a
twin without compute publishes no packet and no compute keys; a real twin process and bridge land
the packet and the summary (its string ``compute_policy`` and no NaN) in influxd, where the alert
rules' queries give the rates the stored totals say.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bridges.influx.line_protocol import SUMMARY_TEXT_FIELDS, MappingError, frame_lines, summary_lines
from twin.schema.compute_summary import latency_region_keys
from dashboards.compute import COMPUTE_FLEET_FIELDS, COMPUTE_POLICY_FIELD, battery_power_query, deadline_miss_rate_query
from mqtt_helpers import Recorder, wait_for
from pipeline import bridge_proc, expected_counts, ticks_done, twin_proc
from twin.contract.asyncapi import asyncapi_document
from twin.contract.asyncapi_payloads import compute_summary_props
from twin.contract.telemetry_encoder import FrameEncoder, PacketEncoder, PacketSchedule
from twin.contract.topics import Topics, dumps, header
from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.core.telemetry_assembly import compute_fields
from twin.runtime.status_table import fleet_summary
from twin.schema.codec import CODECS
from twin.schema.telemetry import FIELD_BY_NAME, PACKET_FIELDS

DESIGN = load_design()
CAT = load_catalogue().select(count=20)
T_ISO = "2026-02-23T00:00:01.000Z"
DOC = asyncapi_document()
_BASE = "urn:orbitwin-asyncapi"
_REGISTRY = Registry().with_resource(_BASE, Resource.from_contents(DOC, default_specification=DRAFT7))
COMPUTE = PACKET_FIELDS["compute"]


def _validator(message: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator({"$ref": f"{_BASE}#/components/messages/{message}/payload"}, registry=_REGISTRY)


def _twin(compute: bool = True, dt_s: float = 5.0) -> FleetTwin:
    return FleetTwin(CAT, DESIGN, dt_s=dt_s, orbit_worker=False, network=False,
                     compute_policy="aware" if compute else None, compute_demand_scale=1.0)


@pytest.fixture(scope="module")
def twin() -> Iterator[FleetTwin]:
    with _twin() as tw:
        for _ in range(30):  # 150 s: jobs placed, running and completed
            tw.step()
        yield tw


# --- the packet ---------------------------------------------------------------------------------
def test_compute_packet_is_the_couplings_telemetry(twin: FleetTwin) -> None:
    assert twin.compute is not None
    want, tm = twin.compute.telemetry(), twin.tm
    assert set(want) == set(COMPUTE)
    for f in COMPUTE:
        assert np.array_equal(tm[f], want[f]), f
        assert tm[f].dtype == CODECS[FIELD_BY_NAME[f].dtype].numpy, f
        assert np.all(np.isfinite(tm[f])) and np.all(tm[f] >= 0), f
    # jobs ran: power drawn, completions counted; the battery gives at most the jobs' power
    assert tm["jobs_running"].sum() > 0 and tm["compute_power_w"].max() > 0 and tm["jobs_completed_total"].sum() > 0
    assert np.all(tm["compute_battery_w"] <= tm["compute_power_w"] * (1 + 1e-12))
    assert np.all(tm["jobs_corrupted_total"] <= tm["jobs_completed_total"])
    # the packet agrees with the fleet summary it is a breakdown of
    s = fleet_summary(twin, with_grid=False)
    assert tm["jobs_running"].sum() == s["jobs_running"] and tm["jobs_completed_total"].sum() == s["jobs_completed"]


def test_compute_packet_json_and_line_protocol(twin: FleetTwin) -> None:
    rows = np.flatnonzero(twin.tm["jobs_running"] > 0)[:2]
    names, ids = twin.names, twin.catalogue.norad_ids
    msgs = PacketEncoder("compute", names, ids, Topics()).encode(twin.tm, rows, np.zeros(2, np.int64), 1, T_ISO,
                                                                   twin.t_s, 5)
    (topic, payload), _ = msgs
    assert topic == f"orbitwin/v1/sat/{names[rows[0]]}/tm/compute"
    fields = json.loads(payload)["fields"]
    assert set(fields) == set(COMPUTE) and fields["jobs_running"] == int(twin.tm["jobs_running"][rows[0]])
    assert _validator("telemetry_compute").is_valid(json.loads(payload))
    _, frame = FrameEncoder("compute", names, ids, Topics()).encode(twin.tm, rows, np.zeros(2, np.int64), 1, T_ISO,
                                                                    twin.t_s, 5)
    (_, _, line), _ = frame_lines(json.loads(frame))
    assert line.startswith(f"compute,sat={names[rows[0]]},run=5 ".encode())
    assert f"jobs_running={int(twin.tm['jobs_running'][rows[0]])}i".encode() in line
    assert f"compute_power_w={float(twin.tm['compute_power_w'][rows[0]])!r}".encode() in line


# --- the fleet summary ----------------------------------------------------------------------------
def test_fleet_summary_carries_the_couplings_summary_everywhere(twin: FleetTwin) -> None:
    assert twin.compute is not None
    want = twin.compute.summary()
    s = fleet_summary(twin, with_grid=False)
    for k, v in want.items():
        assert s[k] == v or (v != v and s[k] != s[k]), k  # NaN: a percentile of no interactive job
    assert s["compute_policy"] == "aware" and s["jobs_completed"] > 0
    # one list of keys: the coupling, the dashboards, the AsyncAPI document, the bridge's string fields
    assert set(want) == {COMPUTE_POLICY_FIELD, *COMPUTE_FLEET_FIELDS} == set(compute_summary_props())
    assert {k for k, v in want.items() if isinstance(v, str)} == set(SUMMARY_TEXT_FIELDS)
    # the message validates against the contract, and so does one whose latency percentiles are NaN (null)
    body = json.loads(dumps(header(None, T_ISO, twin.t_s, 1, tick=twin.tick, **s)))
    _validator("summary").validate(body)
    nan = body | dict.fromkeys(["interactive_latency_p50_ms", "interactive_latency_p99_ms", *latency_region_keys()])
    _validator("summary").validate(nan)
    assert not _validator("summary").is_valid(body | {"compute_policy": "greedy"})
    # line protocol: compute_policy a string field, NaN left out, counts as integers
    (fleet, *_) = summary_lines(nan | {"interactive_latency_p50_ms": float("nan")}, 10**18, {"run": "5"})
    assert any(np.isfinite(s[k]) for k in latency_region_keys())  # by region: from the cities' continents
    assert b'compute_policy="aware"' in fleet and b"interactive_latency" not in fleet and b"nan" not in fleet.lower()
    assert f"jobs_completed={s['jobs_completed']}i".encode() in fleet
    for bad in (5, "x" * 65):  # another type, or text beyond the bound: refused (dead letters), never a type clash
        with pytest.raises(MappingError):
            summary_lines(body | {"compute_policy": bad}, 10**18, {"run": "5"})
    assert b'compute_policy="a\\"b"' in summary_lines(body | {"compute_policy": 'a"b'}, 1, {"run": "5"})[0]


def test_the_compute_dashboard_shows_every_compute_field_and_summary_key() -> None:
    from dashboards import build as gen

    d = json.loads(gen.build()["json/compute.json"])
    queries = [t["query"] for p in d["panels"] if p["type"] != "row" for t in p["targets"]]
    per_sat = " ".join(q for q in queries if 'FROM "compute"' in q)
    fleet = " ".join(q for q in queries if 'FROM "fleet"' in q)
    assert {f for f in COMPUTE if f'"{f}"' in per_sat} == set(COMPUTE), "every compute field shown"
    keys = {COMPUTE_POLICY_FIELD, *COMPUTE_FLEET_FIELDS}
    assert {f for f in keys if f'"{f}"' in fleet} == keys, "every summary key shown"
    assert d["title"] == "Orbitwin / Compute" and "compute.json" in gen.dashboards()


def test_a_twin_without_compute_publishes_no_compute_packet_and_no_compute_keys(tmp_path: Path) -> None:
    from twin.mqtt import MqttSettings
    from twin.runtime.mqtt_link import LinkSettings, MqttLink
    from twin.runtime.mqtt_service import TwinService

    with _twin(compute=False) as tw:
        link = MqttLink(MqttSettings("mqtt://127.0.0.1:1"), LinkSettings(state_dir=str(tmp_path)))  # never started
        service = TwinService(tw, link)
        assert "compute" not in service.schedule.rates and "compute" not in service.encoders
        assert "compute" not in link.birth_extra["packets"]
        s = fleet_summary(tw, with_grid=False)
        assert not set(s) & {COMPUTE_POLICY_FIELD, *COMPUTE_FLEET_FIELDS}
        # the packet's fields exist (the schema is one) but say nothing: zeros, no NaN
        tw.step()
        for f in COMPUTE:
            assert not tw.tm[f].any() and tw.tm[f].dtype == CODECS[FIELD_BY_NAME[f].dtype].numpy, f
        assert set(compute_fields(None, 4)) == set(COMPUTE)


# --- MQTT: the packets a twin publishes are the coupling's ------------------------------------------
def test_compute_packets_on_mqtt_equal_the_coupling(mosquitto: Any, tmp_path: Path) -> None:
    from twin.mqtt import MqttSettings
    from twin.runtime.mqtt_link import LinkSettings, MqttLink
    from twin.runtime.mqtt_service import TwinService

    tw = _twin()
    rates = {p: 0.0 for p in PACKET_FIELDS} | {"compute": 1.0, "status": 0.0}
    link = MqttLink(MqttSettings(mosquitto.url), LinkSettings(state_dir=str(tmp_path)))
    service = TwinService(tw, link, PacketSchedule(tw.n, tw.dt_s, rates), status_every_s=1e9, frames=False)
    rec = Recorder(mosquitto.host, mosquitto.port, ["orbitwin/v1/sat/+/tm/+", "orbitwin/v1/fleet/summary"])
    link.start()
    try:
        assert "compute" in link.birth_extra["packets"]
        sent: list[dict[str, np.ndarray]] = []
        for _ in range(12):  # dt 5 s: a compute packet of every satellite every tick
            service.process_requests()
            tw.step()
            assert tw.compute is not None
            sent.append(tw.compute.telemetry() | {"t_s": np.array(tw.t_s)})
            service.publish_tick()
        wait_for(lambda: len(rec.find(lambda t, p: t.endswith("/tm/compute"))) >= 12 * tw.n, 20,
                 what="every compute packet")
        got = rec.find(lambda t, p: "/tm/" in t)
        assert {t.rsplit("/", 1)[1] for t, _ in got} == {"compute"}  # only the packet asked for
        by = {(p["sat"], round(p["t_s"])): p["fields"] for _, p in got}
        assert len(by) == 12 * tw.n
        for tick in sent:
            for i, name in enumerate(tw.names):
                fields = by[(name, round(float(tick["t_s"])))]
                for f in COMPUTE:
                    assert fields[f] == tick[f][i], (name, f)
        assert any(p["fields"]["jobs_completed_total"] > 0 for _, p in got)
        (summary,) = [p for _, p in wait_for(lambda: rec.find(lambda t, p: t.endswith("/summary") and
                                                              p["tick"] == tw.tick), 20, what="the last summary")]
        assert summary["compute_policy"] == "aware" and summary["jobs_completed"] == int(sent[-1]["jobs_completed_total"].sum())
        _validator("summary").validate(summary)
    finally:
        rec.close()
        link.stop()
        tw.close()


# --- InfluxDB: a real twin and bridge; the alert rules' arithmetic on what they stored ---------------
def _series(influxd: Any, db: str, q: str) -> list[dict[str, Any]]:
    return influxd.query(q, db)["results"][0].get("series", [])


def test_a_twin_run_lands_compute_in_influxdb_and_the_rules_read_its_rates(tmp_path: Path, mosquitto: Any,
                                                                          influxd: Any) -> None:
    db = f"t{uuid.uuid4().hex[:10]}"
    influxd.create_database(db)
    duration = 120
    # sim time ends at the wall clock's now: the rules' "time > now() - 600s" holds the whole run
    start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=duration)).replace(microsecond=0)
    rates = "hk=0,orbit=0,power=0,thermal=0,payload=0,radiation=0,net=0,compute=1"  # every satellite every tick
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    twin = twin_proc(tmp_path, mosquitto.url, len(CAT), "--rates", rates, "--speed", "max", "--duration",
                     str(duration), "--start", start.isoformat(), "--no-network", "--compute", "aware",
                     "--compute-demand", "1").start()
    try:
        twin.popen.wait(120)
        ticks = ticks_done(twin)
        counts = {p: 0.0 for p in PACKET_FIELDS} | {"compute": 1.0}
        expected = int(expected_counts(len(CAT), ticks, rates=counts, compute=True).sum())
        assert expected == len(CAT) * ticks
        assert int(expected_counts(len(CAT), ticks, rates=counts).sum()) == 0  # a twin without compute: none

        def stored() -> bool:
            pts = _series(influxd, db, 'SELECT count("jobs_running") FROM "compute"')
            fleet = _series(influxd, db, 'SELECT count("jobs_completed") FROM "fleet"')
            return bool(pts and fleet and pts[0]["values"][0][1] == expected and fleet[0]["values"][0][1] >= ticks)
        wait_for(stored, 60, 0.5, what="compute and fleet points stored")
    finally:
        twin.stop()
        bridge.stop()
    # the policy as a string field, the fleet totals = the packets' sums at the same sim time
    ((_, policy),) = _series(influxd, db, 'SELECT last("compute_policy") FROM "fleet"')[0]["values"]
    assert policy == "aware"
    (row,) = _series(influxd, db, 'SELECT "jobs_completed", "jobs_running" FROM "fleet" ORDER BY time DESC '
                                  'LIMIT 1')[0]["values"]
    t_last = row[0]
    per_sat = _series(influxd, db, f'SELECT sum("jobs_completed_total"), sum("jobs_running") FROM "compute" '
                                   f"WHERE time = '{t_last}'")
    assert per_sat and per_sat[0]["values"][0][1:] == row[1:] and row[1] > 0
    kinds = dict(_series(influxd, db, 'SHOW FIELD KEYS FROM "fleet"')[0]["values"])
    assert (kinds["compute_policy"], kinds["jobs_completed"], kinds["compute_battery_wh"]) == ("string", "integer",
                                                                                               "float")
    # the rules: mean point-to-point derivative over the window = (last - first) / elapsed, per hour
    raw = _series(influxd, db, 'SELECT "jobs_deadline_missed", "compute_battery_wh", "sats", "lost" FROM "fleet"')
    values = raw[0]["values"]
    span_h = (dt.datetime.fromisoformat(values[-1][0].replace("Z", "+00:00"))
              - dt.datetime.fromisoformat(values[0][0].replace("Z", "+00:00"))).total_seconds() / 3600
    misses = (values[-1][1] - values[0][1]) / span_h
    live = values[-1][3] - values[-1][4]
    assert all(v[3] - v[4] == live for v in values)  # no satellite lost: the per-satellite division is exact
    battery_w = (values[-1][2] - values[0][2]) / live / span_h
    ((_, got_misses),) = _series(influxd, db, deadline_miss_rate_query())[0]["values"]
    ((_, got_w),) = _series(influxd, db, battery_power_query())[0]["values"]
    assert got_misses == pytest.approx(misses, rel=1e-9, abs=1e-9)
    assert got_w == pytest.approx(battery_w, rel=1e-6) and battery_w > 0

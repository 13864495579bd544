"""The network on the contract: the ``net`` packet, the fleet summary's network aggregates, the
topology and city-latency frames, and InfluxDB (issue 15 item 6).

The packet's values are the engine's MeshState for a real tick of a real shell (the 53 deg,
530-550 km shell of the shipped catalogue: 1,360 satellites); faults sent over MQTT show in the
next ``net`` packet; a real twin and bridge land the packet and the ``city_rtt`` points in influxd.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bridges.influx.line_protocol import frame_lines, latency_lines
from mqtt_helpers import Recorder, wait_for
from pipeline import bridge_proc, expected_counts, ticks_done, twin_proc
from twin.contract.asyncapi import asyncapi_document
from twin.contract.network_frames import LatencyEncoder, TopologyEncoder
from twin.contract.telemetry_encoder import FrameEncoder, PacketEncoder, PacketSchedule
from twin.contract.topics import Topics
from twin.core.catalogue import load_catalogue
from twin.core.constants import R_EARTH_M
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.core.network.geometry import C_M_S
from twin.runtime.status_table import fleet_summary
from twin.schema.telemetry import MODE_LOST, PACKET_FIELDS

DESIGN = load_design()
SHELL = {"alt_km": (530.0, 550.0), "inc_deg": (53.1, 53.3)}
CAT = load_catalogue().select(**SHELL)
T_ISO = "2026-02-23T00:00:01.000Z"
DOC = asyncapi_document()
_BASE = "urn:orbitwin-asyncapi"
_REGISTRY = Registry().with_resource(_BASE, Resource.from_contents(DOC, default_specification=DRAFT7))


def _validator(message: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator({"$ref": f"{_BASE}#/components/messages/{message}/payload"}, registry=_REGISTRY)


def _slant_range_m(alt_m: float, min_elevation_deg: float) -> float:
    """Longest ground-satellite range at a minimum elevation (closed form, spherical Earth)."""
    r, e = R_EARTH_M + alt_m, math.radians(min_elevation_deg)
    return math.sqrt(r * r - (R_EARTH_M * math.cos(e)) ** 2) - R_EARTH_M * math.sin(e)


@pytest.fixture(scope="module")
def twin() -> Iterator[FleetTwin]:
    with FleetTwin(CAT, DESIGN, dt_s=1.0, orbit_worker=False, network=True) as tw:
        tw.step()
        yield tw


# --- the packet ---------------------------------------------------------------------------------
def test_net_packet_is_the_mesh_state_of_the_tick(twin: FleetTwin) -> None:
    net, tm = twin.net, twin.tm
    assert net is not None and twin.n == 1360
    assert np.array_equal(tm["links_up"], net.links_up)
    assert np.array_equal(tm["gateways_visible"], net.gateways_visible)
    assert np.array_equal(tm["gw_hops"], net.gw_hops)
    routed = net.gw_hops >= 0
    assert routed.mean() > 0.9  # a dense shell: nearly every satellite reaches a gateway
    assert np.array_equal(routed, np.isfinite(tm["gw_delay_ms"]))
    np.testing.assert_allclose(tm["gw_delay_ms"][routed], net.gw_delay_s[routed] * 1e3, rtol=1e-12)
    assert np.array_equal(tm["max_link_util"], net.sat_max_util)
    assert np.array_equal(tm["throughput_gbps"], net.sat_throughput_gbps)
    # physics: a satellite with a gateway in view downlinks at most one slant range at the minimum elevation away
    direct = net.gw_hops == 1
    assert direct.sum() > 100 and np.all(net.gateways_visible[direct] > 0)
    top_m = float(np.nanmax(tm["alt_m"]))
    longest_ms = _slant_range_m(top_m, DESIGN.network.gateway_min_elevation_deg) / C_M_S * 1e3
    assert tm["gw_delay_ms"][direct].max() <= longest_ms + 1e-6
    # and never nearer than straight down
    assert tm["gw_delay_ms"][routed].min() >= float(np.nanmin(tm["alt_m"])) / C_M_S * 1e3 - 1e-6
    assert np.all(tm["links_up"] <= DESIGN.power.isl_terminal_count)


def test_net_packet_json_and_line_protocol_leave_out_unrouted_delays(twin: FleetTwin) -> None:
    net, tm = twin.net, twin.tm
    assert net is not None
    unrouted = np.flatnonzero(net.gw_hops < 0)
    routed = np.flatnonzero(net.gw_hops >= 0)
    if unrouted.size == 0:  # make one: the encoders must handle it whatever this tick's geometry is
        tm = dict(tm) | {"gw_hops": tm["gw_hops"].copy(), "gw_delay_ms": tm["gw_delay_ms"].copy()}
        unrouted = routed[:1]
        routed = routed[1:]
        tm["gw_hops"][unrouted], tm["gw_delay_ms"][unrouted] = -1, np.nan
    rows = np.array([unrouted[0], routed[0]])
    names, ids = twin.names, twin.catalogue.norad_ids
    msgs = PacketEncoder("net", names, ids, Topics()).encode(tm, rows, np.array([0, 0]), 1, T_ISO, twin.t_s, 5)
    (topic_a, a), (topic_b, b) = msgs
    assert topic_a == f"orbitwin/v1/sat/{names[rows[0]]}/tm/net"
    fa, fb = json.loads(a)["fields"], json.loads(b)["fields"]
    assert fa["gw_hops"] == -1 and fa["gw_delay_ms"] is None
    assert fb["gw_hops"] == int(tm["gw_hops"][rows[1]]) and fb["gw_delay_ms"] == float(tm["gw_delay_ms"][rows[1]])
    assert set(fa) == set(PACKET_FIELDS["net"])
    assert _validator("telemetry_net").is_valid(json.loads(a))
    _, frame = FrameEncoder("net", names, ids, Topics()).encode(tm, rows, np.array([0, 0]), 1, T_ISO, twin.t_s, 5)
    (_, _, line_a), (_, _, line_b) = frame_lines(json.loads(frame))
    assert b"gw_hops=-1i" in line_a and b"gw_delay_ms" not in line_a and b"nan" not in line_a.lower()
    assert f"gw_delay_ms={float(tm['gw_delay_ms'][rows[1]])!r}".encode() in line_b
    assert line_a.startswith(f"net,sat={names[rows[0]]},run=5 ".encode())


def test_fleet_summary_network_aggregates(twin: FleetTwin) -> None:
    net = twin.net
    assert net is not None
    s = fleet_summary(twin, with_grid=False)
    live = twin.mode != MODE_LOST
    assert s["net_partitioned"] == int(np.sum(live & (net.gw_hops < 0)))
    assert s["net_links_up"] == net.edges.shape[0] == int(net.links_up.sum()) // 2  # every link has two ends
    assert s["net_overloaded_links"] == net.overloaded
    d_ms = np.sort(net.gw_delay_s[live & np.isfinite(net.gw_delay_s)] * 1e3)
    # the median and 99th percentile lie between the order statistics around them
    assert d_ms[(d_ms.size - 1) // 2] <= s["net_gw_delay_p50_ms"] <= d_ms[d_ms.size // 2]
    k = 0.99 * (d_ms.size - 1)
    assert d_ms[int(k)] <= s["net_gw_delay_p99_ms"] <= d_ms[min(int(k) + 1, d_ms.size - 1)]
    assert s["net_gw_delay_p50_ms"] < s["net_gw_delay_p99_ms"]


# --- the frames ---------------------------------------------------------------------------------
def test_topology_frame_is_the_edge_list(twin: FleetTwin) -> None:
    net = twin.net
    assert net is not None
    topic, payload = TopologyEncoder(twin.names, Topics()).encode(net, T_ISO, twin.t_s, 5, 2, twin.tick)
    assert topic == "orbitwin/v1/fleet/topology"
    frame = json.loads(payload)
    _validator("topology").validate(frame)
    assert frame["sats"] == list(twin.names) and frame["links_up"] == net.edges.shape[0]
    assert frame["overloaded"] == net.overloaded and frame["run"] == 5 and frame["tick"] == twin.tick
    e = frame["edges"]
    assert np.array_equal(np.stack([e["a"], e["b"]], axis=1), net.edges)
    assert all(a < b for a, b in zip(e["a"], e["b"]))
    np.testing.assert_allclose(e["delay_ms"], net.edge_length_m / C_M_S * 1e3, atol=5e-5)
    np.testing.assert_allclose(e["util"], net.edge_util, atol=5e-5)
    # physics: no link is longer than the design's maximum range
    assert max(e["delay_ms"]) <= DESIGN.network.isl_max_range_m / C_M_S * 1e3


def test_latency_frame_and_city_rtt_points(twin: FleetTwin) -> None:
    rtt = twin.city_rtt
    assert rtt is not None
    topic, payload = LatencyEncoder(Topics()).encode(rtt, T_ISO, 5, 2, twin.tick)
    assert topic == "orbitwin/v1/fleet/latency"
    frame = json.loads(payload)
    _validator("latency").validate(frame)
    c = len(rtt.names)
    p = frame["pairs"]
    assert frame["cities"] == list(rtt.names) and len(p["src"]) == c * (c - 1) // 2 == 4950
    i, j = np.array(p["src"]), np.array(p["dst"])
    assert np.all(i < j)
    ok = np.isfinite(rtt.rtt_s[i, j])
    assert frame["reachable_pairs"] == int(ok.sum()) > 4000
    got = np.array([np.nan if v is None else v for v in p["rtt_ms"]])
    np.testing.assert_allclose(got[ok], rtt.rtt_s[i, j][ok] * 1e3, atol=5e-5)
    assert np.all(np.isnan(got[~ok]))
    # physics: a route is never faster than light along the great circle; fibre is slower by its group index
    fibre = np.array(p["fibre_rtt_ms"])
    stretch = np.array([np.nan if v is None else v for v in p["stretch"]])
    np.testing.assert_allclose(stretch[ok], rtt.stretch[i, j][ok], atol=5e-5)
    far = ok & (fibre > 1.0)  # the stretch of the rounded values (10 km apart: 0.1 ms of fibre)
    np.testing.assert_allclose(stretch[far], got[far] / fibre[far], rtol=2e-4, atol=1e-4)
    assert np.all(got[ok] >= fibre[ok] / 1.47 - 1e-3)
    lon, nyc = rtt.names.index("London"), rtt.names.index("New-York-Newark")
    k = int(np.flatnonzero((i == min(lon, nyc)) & (j == max(lon, nyc)))[0])
    assert 35.0 < got[k] < 60.0  # +Grid London-New York: ~42-46 ms (docs/network.md#measured)
    # InfluxDB: one city_rtt point per pair; a pair without a route keeps only fibre_rtt_ms and reachable=false
    frame["pairs"]["rtt_ms"][0] = frame["pairs"]["stretch"][0] = None
    lines = latency_lines(frame)
    assert len(lines) == 4950
    name = [n.replace(" ", r"\ ").replace(",", r"\,") for n in rtt.names]
    assert lines[0].startswith(f"city_rtt,src={name[p['src'][0]]},dst={name[p['dst'][0]]},run=5 ".encode())
    assert b"rtt_ms=" not in lines[0].split(b" fibre")[0] and b"reachable=false" in lines[0]
    assert b"stretch=" not in lines[0]
    assert lines[k].split(b" ")[-1] == lines[0].split(b" ")[-1]  # the matrix's time
    assert f"rtt_ms={p['rtt_ms'][k]!r}".encode() in lines[k] and b"reachable=true" in lines[k]


# --- faults over MQTT show in the next net packet ------------------------------------------------
def test_faults_show_in_the_next_net_packet(mosquitto: Any, tmp_path: Path) -> None:
    from twin.mqtt import MqttSettings
    from twin.runtime.mqtt_link import LinkSettings, MqttLink
    from twin.runtime.mqtt_service import TwinService

    tw = FleetTwin(CAT, DESIGN, dt_s=1.0, orbit_worker=False, network=True)
    rates = {p: 0.0 for p in PACKET_FIELDS} | {"net": 1.0, "summary": 0.0, "topology": 1.0}
    link = MqttLink(MqttSettings(mosquitto.url), LinkSettings(state_dir=str(tmp_path)))
    service = TwinService(tw, link, PacketSchedule(tw.n, tw.dt_s, rates), status_every_s=1e9, frames=False)
    rec = Recorder(mosquitto.host, mosquitto.port, ["orbitwin/v1/sat/+/tm/net", "orbitwin/v1/fleet/topology",
                                                    "orbitwin/v1/fleet/latency", "orbitwin/v1/sat/+/reply"])
    link.start()

    def tick() -> None:
        service.process_requests()
        tw.step()
        service.publish_tick()

    def packet(sat: str, tick_no: int) -> dict[str, Any]:
        def found() -> list[tuple[str, Any]]:
            return rec.find(lambda t, p: t == f"orbitwin/v1/sat/{sat}/tm/net" and round(p["t_s"]) == tick_no)
        return dict(wait_for(found, 20, what=f"net packet of {sat} at t={tick_no}")[0][1]["fields"])

    try:
        tick()
        net = tw.net
        assert net is not None
        # a satellite with four links that others route through, and one that downlinks to one gateway itself
        users = np.bincount(net.gw_next_sat[net.gw_next_sat >= 0], minlength=tw.n)
        relay = tw.names[int(np.flatnonzero((net.links_up == 4) & (users > 0))[0])]
        before = packet(relay, 1)
        assert before["links_up"] == 4
        rec.publish(f"orbitwin/v1/sat/{relay}/fault", {"fault": "laser_terminal_failure", "args": {"terminals": 4},
                                                       "id": "ltf"})
        wait_for(lambda: link.stats.received >= 1, 10)
        tick()
        after = packet(relay, 2)
        assert after["links_up"] == 0 and after["throughput_gbps"] <= before["throughput_gbps"]
        assert tw.net is not None and int(tw.net.links_up[tw.index[relay]]) == 0
        # the topology frame of that tick has no link of the relay
        topo = wait_for(lambda: rec.find(lambda t, p: t.endswith("/topology") and p["tick"] == 2), 20)[0][1]
        k = tw.index[relay]
        assert k not in topo["edges"]["a"] and k not in topo["edges"]["b"]
        assert len(rec.find(lambda t, p: t.endswith("/latency"))) == 1  # the matrix of t = 0, once
        # a gateway outage: a satellite that downlinked to that gateway alone loses it in the next packet
        net = tw.net
        direct = np.flatnonzero((net.gw_hops == 1) & (net.gateways_visible == 1) & (net.links_up > 0))
        s = int(direct[0])
        gateway = tw.mesh.gateways.names[int(net.gw_index[s])] if tw.mesh is not None else ""
        before = packet(tw.names[s], 2)
        assert before["gw_hops"] == 1 and before["gateways_visible"] == 1
        rec.publish(f"orbitwin/v1/sat/{tw.names[s]}/fault", {"fault": "gateway_outage", "args": {"gateway": gateway},
                                                             "id": "gwo"})
        wait_for(lambda: link.stats.received >= 2, 10)
        tick()
        after = packet(tw.names[s], 3)
        assert after["gateways_visible"] == 0 and after["gw_hops"] >= 2  # through a neighbour to another gateway
        # at least the laser hop to a neighbour longer (1 s of motion moves a satellite ~7.6 km: 0.03 ms)
        assert after["gw_delay_ms"] > before["gw_delay_ms"] - 0.03
        assert tw.net is not None and not np.any(tw.net.gw_index == tw.mesh.gateways.names.index(gateway))
    finally:
        rec.close()
        link.stop()
        tw.close()


# --- InfluxDB: a real twin and bridge ------------------------------------------------------------
@pytest.fixture
def db(influxd: Any) -> str:
    name = f"t{uuid.uuid4().hex[:10]}"
    influxd.create_database(name)
    return name


def _one(influxd: Any, db: str, q: str) -> list[Any]:
    series = influxd.query(q, db)["results"][0].get("series", [])
    assert series, f"no data: {q}"
    return list(series[0]["values"][0][1:])


def test_a_twin_run_lands_the_net_packet_and_city_rtt_in_influxdb(tmp_path: Path, mosquitto: Any, influxd: Any,
                                                                  db: str) -> None:
    rates = "hk=0,orbit=0,power=0,thermal=0,payload=0,radiation=0,net=1"
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    twin = twin_proc(tmp_path, mosquitto.url, 1360, "--alt-km", "530:550", "--inc-deg", "53.1:53.3",
                     "--rates", rates, "--speed", "max", "--duration", "4").start()
    try:
        twin.popen.wait(180)
        ticks = ticks_done(twin)
        n = len(CAT)
        expected = int(expected_counts(n, ticks, rates={p: 0.0 for p in PACKET_FIELDS} | {"net": 1.0}).sum())
        assert expected == n * ticks

        def stored() -> bool:
            res = influxd.query('SELECT count("links_up") FROM "net"', db)["results"][0].get("series", [])
            pairs = influxd.query('SELECT count("fibre_rtt_ms") FROM "city_rtt"', db)["results"][0].get("series", [])
            return bool(res and pairs and res[0]["values"][0][1] == expected and pairs[0]["values"][0][1] >= 4950)
        wait_for(stored, 90, 1.0, what="net points and city_rtt points stored")
    finally:
        twin.stop()
        bridge.stop()
    # no route: gw_hops -1 and no gw_delay_ms field (no NaN in InfluxDB); routed: both
    (routed,) = _one(influxd, db, 'SELECT count("gw_hops") FROM "net" WHERE "gw_hops" >= 0')
    (delays,) = _one(influxd, db, 'SELECT count("gw_delay_ms") FROM "net"')
    unrouted = influxd.query('SELECT count("gw_hops") FROM "net" WHERE "gw_hops" = -1', db)["results"][0]
    n_unrouted = unrouted["series"][0]["values"][0][1] if unrouted.get("series") else 0
    assert delays == routed and routed + n_unrouted == expected and routed > 0.9 * expected
    # physics in the stored values: direct downlinks within the slant range at the minimum elevation
    (direct_max,) = _one(influxd, db, 'SELECT max("gw_delay_ms") FROM "net" WHERE "gw_hops" = 1')
    assert direct_max <= _slant_range_m(560e3, DESIGN.network.gateway_min_elevation_deg) / C_M_S * 1e3
    (util_max, links_max) = _one(influxd, db, 'SELECT max("max_link_util"), max("links_up") FROM "net"')
    assert util_max >= 0 and 0 < links_max <= DESIGN.power.isl_terminal_count
    # one run tag, satellites as the sat tag
    runs = influxd.query('SHOW TAG VALUES FROM "net" WITH KEY = "run"', db)["results"][0]["series"][0]["values"]
    assert len(runs) == 1
    # city pairs: every pair of the matrix at t = 0 (the engine's interval is 60 s: one matrix in 4 s)
    (pairs, reachable) = _one(influxd, db, 'SELECT count("fibre_rtt_ms"), count("rtt_ms") FROM "city_rtt"')
    assert pairs == 4950 and 4000 < reachable <= 4950
    res = influxd.query('SELECT "rtt_ms", "stretch", "fibre_rtt_ms" FROM "city_rtt" WHERE '
                        '("src" = \'London\' AND "dst" = \'New-York-Newark\') OR '
                        '("src" = \'New-York-Newark\' AND "dst" = \'London\')',
                        db)["results"][0]["series"][0]
    (_, rtt_ms, stretch, fibre_ms), = res["values"]
    assert fibre_ms / 1.47 < rtt_ms < 60.0 and stretch == pytest.approx(rtt_ms / fibre_ms, abs=2e-4)
    (flags,) = _one(influxd, db, 'SELECT count("reachable") FROM "city_rtt"')
    assert flags == 4950


def test_a_twin_without_the_network_publishes_no_net_packet_and_no_frames(tmp_path: Path) -> None:
    from twin.mqtt import MqttSettings
    from twin.runtime.mqtt_link import LinkSettings, MqttLink
    from twin.runtime.mqtt_service import TwinService

    cat = load_catalogue().select(count=3)
    with FleetTwin(cat, DESIGN, dt_s=1.0, orbit_worker=False, network=False) as tw:
        link = MqttLink(MqttSettings("mqtt://127.0.0.1:1"), LinkSettings(state_dir=str(tmp_path)))  # never started
        service = TwinService(tw, link)
        assert "net" not in service.schedule.rates and "net" not in service.encoders
        assert "net" not in link.birth_extra["packets"]
        assert not any(k.startswith("net_") for k in fleet_summary(tw, with_grid=False))
        sent: list[str] = []
        link.publish = lambda topic, payload, **kw: sent.append(topic) or True  # type: ignore[method-assign]
        tw.step()
        service.net_out.publish(tw, T_ISO, tw.t_s, 1, 1)
        assert sent == [] and tw.city_rtt is None
        # the packet's fields exist (the schema is one) but say nothing: no links, no route, no values
        assert tw.tm["gw_hops"].tolist() == [-1, -1, -1] and np.isnan(tw.tm["gw_delay_ms"]).all()

"""Route requests over real MQTT (issue 15 item 6): ``{prefix}/fleet/route`` against a twin with the network.

A real Mosquitto and a real twin (one shell of the shipped catalogue, 1,360 satellites at
530-550 km and 53.1-53.3 deg, with its +Grid mesh) whose sim clock the test drives: requests are
published, the twin takes them at the start of a tick (``process_requests``) and the reply must
equal :meth:`Mesh.route` over the mesh of the tick the engine stepped last, field by field; the next
tick's answer is that tick's. Bad requests of every kind are rejected with a reason and a field,
counted, audited, and never stop the twin; a twin without the network model answers ``not_now``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from mqtt_helpers import Recorder, SteppingTwin, wait_for
from twin.contract.asyncapi import asyncapi_document
from twin.contract.request_parser import MAX_REQUEST_BYTES
from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.core.network import Endpoint
from twin.core.request_limits import RequestLimits

P = "orbitwin/v1"
ROUTE = f"{P}/fleet/route"
DESIGN = load_design()
SHELL = load_catalogue().select(alt_km=(530.0, 550.0), inc_deg=(53.1, 53.3))
DOC = asyncapi_document()
BASE = "urn:orbitwin-asyncapi"
REGISTRY = Registry().with_resource(BASE, Resource.from_contents(DOC, default_specification=DRAFT7))
ROUTE_REPLY = jsonschema.Draft7Validator({"$ref": f"{BASE}#/components/schemas/RouteReply"}, registry=REGISTRY)
ROUTE_REQUEST = jsonschema.Draft7Validator({"$ref": f"{BASE}#/components/schemas/RouteRequest"}, registry=REGISTRY)
FIELDS = ("reachable", "path", "hops", "one_way_ms", "rtt_ms", "bottleneck_gbps", "fibre_rtt_ms", "stretch",
          "bound_rtt_ms")


class Bench:
    """A TwinService over ``twin`` on the broker (not stepping by itself) and a client recording replies."""

    def __init__(self, twin: FleetTwin, broker: Any, state_dir: Path) -> None:
        from twin.mqtt import MqttSettings
        from twin.runtime.mqtt_link import LinkSettings, MqttLink
        from twin.runtime.mqtt_service import TwinService

        self.twin = twin
        self.link = MqttLink(MqttSettings(broker.url), LinkSettings(state_dir=str(state_dir)))
        self.service = TwinService(twin, self.link)
        self.link.start()
        self.rec = Recorder(broker.host, broker.port, [f"{P}/fleet/reply", f"{P}/errors", f"{P}/audit",
                                                       f"{P}/sat/+/reply", "me/route/+", "clients/#"])
        self.sent = 0

    def send(self, body: Any, topic: str = ROUTE, props: Properties | None = None) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.rec.publish(topic, payload, properties=props)
        self.sent += 1

    def take(self) -> None:
        """The twin takes every request sent so far (at the start of a tick, before stepping)."""
        wait_for(lambda: self.link.stats.received >= self.sent, 10, what="requests at the twin")
        while self.service.process_requests():
            pass

    def tick(self) -> None:
        self.twin.step()
        self.service.publish_tick()

    def replies(self, rid: str, n: int = 1) -> list[tuple[str, dict[str, Any], Any]]:
        """(topic, body, properties) of the replies with id ``rid`` (waits for ``n``)."""
        def found() -> list[tuple[str, dict[str, Any], Any]]:
            with self.rec.lock:
                return [(t, p, props) for t, p, props, _ in self.rec.messages
                        if isinstance(p, dict) and "status" in p and p.get("id") == rid]
        wait_for(lambda: len(found()) >= n, 10, what=f"{n} replies to {rid}")
        return found()

    def reply(self, rid: str) -> dict[str, Any]:
        ((_, body, _),) = self.replies(rid)
        return body

    def close(self) -> None:
        self.rec.close()
        self.link.stop()
        self.twin.close()


@pytest.fixture
def bench(mosquitto: Any, tmp_path: Path) -> Iterator[Bench]:
    b = Bench(FleetTwin(SHELL, DESIGN, dt_s=1.0, orbit_worker=False, network=True,
                        limits=RequestLimits(routes_per_tick=8)), mosquitto, tmp_path)
    try:
        b.tick()
        yield b
    finally:
        b.close()


def expected(twin: FleetTwin, a: Endpoint, b: Endpoint) -> dict[str, Any]:
    """What the reply must say: Mesh.route over the twin's last mesh, as the contract's fields."""
    assert twin.mesh is not None
    r = twin.mesh.route(a, b)
    return {"reachable": r.reachable, "path": list(r.path), "hops": r.hops, "one_way_ms": r.one_way_s * 1e3,
            "rtt_ms": r.rtt_s * 1e3, "bottleneck_gbps": r.bottleneck_gbps, "fibre_rtt_ms": r.fibre_rtt_s * 1e3,
            "stretch": r.stretch, "bound_rtt_ms": r.bound_rtt_s * 1e3}


def same(got: Any, want: Any) -> bool:
    """Equal, with JSON's null for a non-finite float."""
    if isinstance(want, float) and not math.isfinite(want):
        return got is None
    return bool(got == want)


def check_equal(result: dict[str, Any], want: dict[str, Any]) -> None:
    for k in FIELDS:
        assert same(result[k], want[k]), (k, result[k], want[k])


def test_replies_equal_the_mesh_route_of_the_tick(bench: Bench) -> None:
    twin = bench.twin
    mesh = twin.mesh
    assert mesh is not None and mesh.cities is not None
    cities, gateways = list(mesh.cities.names), list(mesh.gateways.names)
    london, new_york = cities.index("London"), cities.index("New-York-Newark")
    net = twin.net
    assert net is not None
    # a satellite that reaches a gateway now, and the gateway the per-tick routing names for it
    sat = int(np.flatnonzero(np.isfinite(net.gw_delay_s) & (net.gw_hops >= 2))[0])
    gw = int(net.gw_index[sat])
    other = int(np.flatnonzero(net.links_up == 4)[-1])
    asks: dict[str, tuple[dict[str, Any], dict[str, Any], Endpoint, Endpoint]] = {
        "ldn-nyc": ({"city": "London"}, {"city": "New York"}, Endpoint.city(london), Endpoint.city(new_york)),
        "sat-gw": ({"sat": twin.names[sat]}, {"gateway": gateways[gw]}, Endpoint.sat(sat), Endpoint.gateway(gw)),
        "sat-sat": ({"sat": twin.names[sat]}, {"sat": twin.names[other]}, Endpoint.sat(sat), Endpoint.sat(other)),
        "pt-city": ({"lat": 48.8566, "lon": 2.3522}, {"city": "tokyo"}, Endpoint.point(48.8566, 2.3522),
                    Endpoint.city(cities.index("Tokyo"))),
        "gw-pt": ({"gateway": gateways[gw]}, {"lat": 40.4168, "lon": -3.7038}, Endpoint.gateway(gw),
                  Endpoint.point(40.4168, -3.7038)),
    }
    for rid, (a, b, _, _) in asks.items():
        body = {"from": a, "to": b, "id": rid}
        assert ROUTE_REQUEST.is_valid(body)
        bench.send(body)
    # MQTT 5 response topic and correlation data; MQTT 3.1.1-style reply_to: as for every other request
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic, props.CorrelationData = "clients/ops/replies", b"corr-route"
    bench.send({"from": {"city": "London"}, "to": {"city": "New York"}}, props=props)
    bench.send({"from": {"city": "London"}, "to": {"city": "New York"}, "id": "rt-reply-to",
                "reply_to": "me/route/replies"})
    bench.take()
    t_s = twin.t_s
    assert twin.net is not None and twin.net.t_s == t_s  # answered from the mesh of the tick just stepped
    for rid, (a, b, ea, eb) in asks.items():
        body = bench.reply(rid)
        ROUTE_REPLY.validate(body)
        assert (body["status"], body["request"], body["t_s"]) == ("completed", "route", t_s)
        assert body["authenticated"] is False  # a read-only query: not signed
        check_equal(body["result"], expected(twin, ea, eb))
    ldn = bench.reply("ldn-nyc")["result"]
    assert (ldn["from"], ldn["to"]) == ({"city": "London"}, {"city": "New-York-Newark"})
    assert ldn["reachable"] and ldn["path"][0] == "city:London" and ldn["path"][-1] == "city:New-York-Newark"
    assert ldn["hops"] == len(ldn["path"]) - 1 >= 3
    assert ldn["rtt_ms"] >= ldn["bound_rtt_ms"] > 0 and ldn["rtt_ms"] == pytest.approx(2 * ldn["one_way_ms"])
    # the fibre figure is a great circle (IUGG mean sphere) in glass, group index 1.468 (docs/network.md)
    lat1, lon1, lat2, lon2 = np.radians([51.50853, -0.12574, 40.717042, -74.003663])  # the cities' file
    hav = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    gc_m = 2 * 6_371_008.8 * np.arcsin(np.sqrt(hav))  # ~5,570 km
    assert ldn["fibre_rtt_ms"] == pytest.approx(2 * gc_m * 1.468 / 299_792_458.0 * 1e3, abs=1e-6)
    assert 5.5e6 < gc_m < 5.6e6
    assert ldn["stretch"] == pytest.approx(ldn["rtt_ms"] / ldn["fibre_rtt_ms"], rel=1e-12)
    assert 0.5 < ldn["stretch"] < 1.2 and 35.0 < ldn["rtt_ms"] < 60.0
    assert len(bench.replies("sat-gw")[0][1]["result"]["path"]) == net.gw_hops[sat] + 1  # the per-tick route
    ((topic, corr_reply, p),) = bench.replies("corr-route")  # no id: the correlation data is the id
    assert topic == "clients/ops/replies" and p.CorrelationData == b"corr-route"
    check_equal(corr_reply["result"], ldn)
    ((topic, _, _),) = bench.replies("rt-reply-to")
    assert topic == "me/route/replies"
    # the next tick's answer is the next tick's mesh
    bench.tick()
    bench.send({"from": {"city": "London"}, "to": {"city": "New York"}, "id": "ldn-nyc-2"})
    bench.take()
    later = bench.reply("ldn-nyc-2")
    assert later["t_s"] == t_s + 1.0
    check_equal(later["result"], expected(twin, Endpoint.city(london), Endpoint.city(new_york)))
    assert later["result"]["one_way_ms"] != ldn["one_way_ms"]  # the satellites moved in that second
    c = bench.service.counters
    assert (c["route_requests"], c["routes_completed"], c["routes_rejected"]) == (len(asks) + 3, len(asks) + 3, 0)
    def route_audits() -> list[Any]:
        return [p for t, p in bench.rec.find(lambda t, p: t == f"{P}/audit" and isinstance(p, dict))
                if p.get("request") == "route"]
    wait_for(lambda: len(route_audits()) >= len(asks) + 3, 10, what="every route audited")
    audits = route_audits()
    assert len(audits) == len(asks) + 3 and all(a["result"] == "accepted" for a in audits)


BAD: list[tuple[str, Any, str, str | None]] = [
    # (id, payload, reason, field): the payload gets the id when it is an object
    ("garbage", b"\xff\xfe not json", "malformed", "payload"),
    ("not-object", b"[1, 2]", "malformed", "payload"),
    ("oversize", b'{"from": {"city": "' + b"x" * MAX_REQUEST_BYTES + b'"}}', "malformed", "payload"),
    ("no-to", {"from": {"city": "London"}}, "bad_argument", "to"),
    ("extra-key", {"from": {"city": "London"}, "to": {"city": "Paris"}, "via": "x"}, "bad_argument", "via"),
    ("string-end", {"from": "London", "to": {"city": "Paris"}}, "bad_argument", "from"),
    ("two-kinds", {"from": {"city": "London", "sat": "X"}, "to": {"city": "Paris"}}, "bad_argument", "from"),
    ("empty-name", {"from": {"city": ""}, "to": {"city": "Paris"}}, "bad_argument", "from.city"),
    ("name-not-str", {"from": {"gateway": 7}, "to": {"city": "Paris"}}, "bad_argument", "from.gateway"),
    ("long-name", {"from": {"city": "L" * 300}, "to": {"city": "Paris"}}, "bad_argument", "from.city"),
    ("unknown-sat", {"from": {"sat": "STARLINK-0"}, "to": {"city": "Paris"}}, "unknown_satellite", "from.sat"),
    ("unknown-city", {"from": {"city": "London"}, "to": {"city": "Atlantis"}}, "bad_argument", "to.city"),
    ("ambiguous", {"from": {"gateway": "CA"}, "to": {"city": "Paris"}}, "bad_argument", "from.gateway"),
    ("lat-91", {"from": {"lat": 91, "lon": 0}, "to": {"city": "Paris"}}, "out_of_range", "from.lat"),
    ("lon-181", {"from": {"city": "Paris"}, "to": {"lat": 0, "lon": -181}}, "out_of_range", "to.lon"),
    ("lat-nan", b'{"from": {"lat": NaN, "lon": 0}, "to": {"city": "Paris"}, "id": "lat-nan"}', "bad_argument",
     "from.lat"),
    ("lat-bool", {"from": {"lat": True, "lon": 0}, "to": {"city": "Paris"}}, "bad_argument", "from.lat"),
    ("lat-only", {"from": {"lat": 10}, "to": {"city": "Paris"}}, "bad_argument", "from"),
    ("bad-reply-to", {"from": {"city": "London"}, "to": {"city": "Paris"}, "reply_to": "a/+/b"}, "bad_argument",
     "reply_to"),
]


def test_bad_requests_are_rejected_with_reasons_counted_and_the_twin_steps_on(bench: Bench) -> None:
    for rid, payload, _, _ in BAD:
        bench.send(payload if isinstance(payload, bytes) else payload | {"id": rid})
    bench.send({"from": {"city": "London"}, "to": {"city": "Paris"}, "id": "wrong-topic"},
               topic=f"{P}/sat/{bench.twin.names[0]}/route")
    bench.send({"from": {"city": "London"}, "to": {"city": "Paris"}, "id": "fine"})
    bench.take()
    tick = bench.twin.tick
    bench.tick()
    assert bench.twin.tick == tick + 1
    expected_reasons: dict[str, int] = {}
    for rid, payload, reason, field in BAD:
        if rid in ("garbage", "not-object", "oversize"):
            continue  # no id to match: checked by count below
        body = bench.reply(rid)
        ROUTE_REPLY.validate(body)
        assert (body["status"], body["reason"], body.get("field"), body["request"]) == (
            "rejected", reason, field, "route"), (rid, body)
        assert body["message"]
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    ambiguous = bench.reply("ambiguous")["message"]
    assert "ambiguous" in ambiguous and ", CA'" in ambiguous
    wrong = bench.reply("wrong-topic")
    assert (wrong["status"], wrong["reason"], wrong["field"]) == ("rejected", "unknown_command", "topic")
    assert bench.reply("fine")["status"] == "completed"
    malformed = [p for t, p in bench.rec.find(lambda t, p: t == f"{P}/fleet/reply" and isinstance(p, dict)
                                              and p.get("reason") == "malformed")]
    assert len(malformed) == 3 and all(p["request"] == "route" for p in malformed)
    c = bench.service.counters
    n_bad = len(BAD) + 1  # the wrong topic too
    assert c["route_requests"] == n_bad + 1 and c["routes_completed"] == 1 and c["routes_rejected"] == n_bad
    assert c["rejected_malformed"] == 3 and c["malformed"] == 3
    for reason, n in expected_reasons.items():
        assert c[f"rejected_{reason}"] == n + (reason == "unknown_command"), reason
    assert c["internal_errors"] == 0

    def rejected_audits() -> int:
        found = bench.rec.find(lambda t, p: t == f"{P}/audit" and isinstance(p, dict) and p.get("request") == "route")
        return sum(1 for _, a in found if a["result"] == "rejected")
    wait_for(lambda: rejected_audits() >= n_bad, 10, what="every rejection audited")
    assert rejected_audits() == n_bad


def test_routes_per_tick_are_bounded_and_repeats_are_free(bench: Bench) -> None:
    """At most ``routes_per_tick`` distinct routes are computed per tick; more are rejected queue_full, the
    same pair again in the tick is answered from the first answer; the next tick has its own allowance."""
    limit = bench.twin.limits.routes_per_tick
    assert bench.twin.mesh is not None and bench.twin.mesh.cities is not None
    cities = list(bench.twin.mesh.cities.names)
    for k in range(limit + 3):
        bench.send({"from": {"city": cities[k]}, "to": {"city": cities[k + 1]}, "id": f"r{k}"})
    bench.send({"from": {"city": cities[0]}, "to": {"city": cities[1]}, "id": "again"})
    bench.take()
    statuses = [bench.reply(f"r{k}")["status"] for k in range(limit + 3)]
    assert statuses == ["completed"] * limit + ["rejected"] * 3
    assert {bench.reply(f"r{k}")["reason"] for k in range(limit, limit + 3)} == {"queue_full"}
    assert bench.reply("again")["result"] == bench.reply("r0")["result"]
    bench.tick()
    bench.send({"from": {"city": cities[limit]}, "to": {"city": cities[limit + 1]}, "id": "next-tick"})
    bench.take()
    assert bench.reply("next-tick")["status"] == "completed"


def test_a_twin_without_the_network_answers_not_now(mosquitto: Any, tmp_path: Path) -> None:
    b = Bench(FleetTwin(SHELL.select(count=3), DESIGN, dt_s=1.0, orbit_worker=False, network=False), mosquitto, tmp_path)
    try:
        b.send({"from": {"city": "London"}, "to": {"city": "New York"}, "id": "no-net"})
        b.take()
        body = b.reply("no-net")
        ROUTE_REPLY.validate(body)
        assert (body["status"], body["reason"], body["request"]) == ("rejected", "not_now", "route")
        assert "network" in body["message"]
        assert b.service.counters["rejected_not_now"] == 1
    finally:
        b.close()


def test_orbitwin_send_route(mosquitto: Any, tmp_path: Path) -> None:
    """``orbitwin send route --from city:London --to "city:New York"`` prints the completed reply."""
    twin = FleetTwin(SHELL, DESIGN, dt_s=1.0, orbit_worker=False, network=True)
    stepping = SteppingTwin(twin, mosquitto.url, str(tmp_path), period_s=0.05)
    try:
        stepping.running(2)
        cmd = [sys.executable, "-m", "orbitwin.cli", "send", "route", "--from", "city:London", "--to",
               "city:New York", "--mqtt", mosquitto.url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        body = json.loads(out.stdout.strip().splitlines()[-1])
        ROUTE_REPLY.validate(body)
        r = body["result"]
        assert body["status"] == "completed" and r["to"] == {"city": "New-York-Newark"} and r["reachable"]
        assert r["rtt_ms"] >= r["bound_rtt_ms"]
        bad = subprocess.run([*cmd[:5], "--from", "city:Atlantis", "--to", "lat:1,2", "--mqtt", mosquitto.url],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "lat:1,2" in bad.stderr  # the CLI checks the shape of an end first
        bad = subprocess.run([*cmd[:5], "--from", "city:Atlantis", "--to", "point:1,2", "--mqtt", mosquitto.url],
                             capture_output=True, text=True, timeout=60)
        reply = json.loads(bad.stdout.strip().splitlines()[-1])
        assert bad.returncode == 1 and (reply["status"], reply["field"]) == ("rejected", "from.city")
        assert stepping.error is None
    finally:
        stepping.close()


def test_a_thousand_hostile_route_requests_are_all_answered_and_the_twin_steps_on(mosquitto: Any,
                                                                                   tmp_path: Path) -> None:
    """Over 1,000 requests: random bytes, random JSON and endpoints of every wrong shape (names of any text
    and length, numbers of any size, NaN, nested objects), published as fast as paho goes at a twin with the
    network stepping in a thread: every request gets exactly one reply (completed or rejected), nothing is an
    internal error, and the twin keeps stepping."""
    from collections import Counter

    import paho.mqtt.client as mqtt
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    twin = FleetTwin(SHELL.select(count=40), DESIGN, dt_s=1.0, orbit_worker=False, network=True)
    stepping = SteppingTwin(twin, mosquitto.url, str(tmp_path), period_s=0.01)
    replies: Counter[str] = Counter()
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/fleet/reply"])
    rec.client.on_message = lambda c, u, m: replies.update([json.loads(m.payload)["status"]])
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.max_inflight_messages_set(1000)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    sent = 0

    def send(payload: bytes) -> None:
        nonlocal sent
        info = pub.publish(ROUTE, payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        sent += 1

    fuzz = settings(max_examples=340, deadline=None, database=None, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck))
    scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=40)
               | st.floats(allow_nan=True, allow_infinity=True))
    values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                         max_size=3), max_leaves=6)
    names = st.text(max_size=20) | st.text(min_size=120, max_size=140) | st.sampled_from(["London", "New York", "CA", "STARLINK-1008", "", "\x00"])
    ends = (st.builds(lambda k, v: {k: v}, st.sampled_from(["sat", "gateway", "city", "lat", "lon", "x"]),
                      names | values)
            | st.builds(lambda a, b: {"lat": a, "lon": b}, values, values) | values)
    try:
        stepping.running(2)

        @fuzz
        @given(data=st.binary(max_size=300))
        def random_bytes(data: bytes) -> None:
            send(data)

        @fuzz
        @given(value=values)
        def random_json(value: Any) -> None:
            if isinstance(value, dict):
                value.pop("reply_to", None)  # replies must come to the default topic to be counted
            send(json.dumps(value).encode())

        @fuzz
        @given(a=ends, b=ends)
        def endpoints(a: Any, b: Any) -> None:
            send(json.dumps({"from": a, "to": b}).encode())  # NaN and Infinity as Python writes them

        random_bytes()
        random_json()
        endpoints()
        for city in ("Paris", "Tokyo", "Delhi", "Lagos", "Lima"):  # among them, good ones (at most 10 a tick)
            send(json.dumps({"from": {"city": "London"}, "to": {"city": city}}).encode())
        wait_for(lambda: sum(replies.values()) >= sent, 120, what=f"{sent} replies")
        stepping.running(3)
        c = stepping.service.counters
        assert sum(replies.values()) == sent == c["route_requests"] >= 1000
        assert c["routes_completed"] + c["routes_rejected"] == sent and c["internal_errors"] == 0
        assert replies["completed"] == c["routes_completed"] >= 5 and replies["rejected"] == c["routes_rejected"]
        assert stepping.error is None
        print(f"{sent} hostile route requests: {dict(replies)}; rejections by reason:",
              {k: v for k, v in c.items() if k.startswith("rejected_")})
    finally:
        pub.loop_stop()
        pub.disconnect()
        rec.close()
        stepping.close()


def test_site_names_match_as_documented() -> None:
    """Exact, then ignoring case, accents and punctuation, then a run of whole words; several: ambiguous."""
    from twin.core.network.ground import load_cities, load_gateways
    from twin.core.site_names import SiteNames
    from twin.schema.commands import CommandError

    cities = SiteNames(load_cities().names, "city")
    gateways = SiteNames(load_gateways().names, "gateway")
    for query, name in (("London", "London"), ("New York", "New-York-Newark"), ("sao paulo", "São-Paulo"),
                        ("SÃO-PAULO", "São-Paulo"), ("Mexico City", "Ciudad-de-México-(Mexico-City)"),
                        ("Osaka", "Kinki-M.M.A.-(Osaka)"), ("Bombay", "Mumbai-(Bombay)")):
        assert cities.names[cities.find(query, "to.city")] == name, query
    assert gateways.names[gateways.find("Adelanto", "g")] == "Adelanto, CA"
    for sites, query, what in ((cities, "York New", "unknown"), (cities, "Lond", "unknown"), (cities, "-", "unknown"),
                               (gateways, "CA", "ambiguous")):
        with pytest.raises(CommandError) as exc:
            sites.find(query, "from.x")
        assert exc.value.reason.value == "bad_argument" and exc.value.field == "from.x"
        assert what in exc.value.message, exc.value.message


def test_a_route_in_a_jurisdiction_reaches_the_ground_only_through_its_gateways(bench: Bench) -> None:
    """Data sovereignty for routes: with a jurisdiction, {"gateway": "*"} is the nearest reachable gateway in it
    (the same as a multi-gateway Mesh.route over exactly those gateways), a named gateway outside it is refused,
    and a jurisdiction without a gateway of the twin is refused."""
    from twin.core.compute.territory import Jurisdiction

    twin = bench.twin
    mesh = twin.mesh
    assert mesh is not None
    gw = mesh.gateways
    inside_eu = tuple(int(i) for i in np.flatnonzero(Jurisdiction.parse(["EU"]).gateways_allowed(gw.lat_deg, gw.lon_deg)))
    net = twin.net
    assert net is not None
    sat = int(np.flatnonzero(np.isfinite(net.gw_delay_s))[0])
    bench.send({"from": {"sat": twin.names[sat]}, "to": {"gateway": "*"}, "jurisdiction": "EU", "id": "eu"})
    bench.send({"from": {"sat": twin.names[sat]}, "to": {"gateway": "*"}, "id": "any"})
    bench.send({"from": {"city": "Paris"}, "to": {"gateway": "Adelanto"}, "jurisdiction": "EU", "id": "outside"})
    bench.send({"from": {"city": "Paris"}, "to": {"gateway": "*"}, "jurisdiction": "MNG", "id": "none"})
    bench.send({"from": {"city": "Paris"}, "to": {"gateway": "*"}, "jurisdiction": "Atlantis", "id": "bad"})
    bench.take()
    eu = bench.reply("eu")
    ROUTE_REPLY.validate(eu)
    result = eu["result"]
    check_equal(result, expected(twin, Endpoint.sat(sat), Endpoint.gateways(inside_eu)))
    assert result["jurisdiction"] == "EU" and result["reachable"]
    used = result["path"][-1].removeprefix("gateway:")
    assert gw.names.index(used) in inside_eu  # the ground hop is a gateway in the EU
    anyg = bench.reply("any")["result"]
    assert anyg["one_way_ms"] <= result["one_way_ms"]  # the constraint can only lengthen the route
    for rid, field in (("outside", "to.gateway"), ("none", "jurisdiction"), ("bad", "jurisdiction")):
        r = bench.reply(rid)
        assert (r["status"], r["reason"], r["field"]) == ("rejected", "bad_argument", field), rid

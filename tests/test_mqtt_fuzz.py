"""Malformed requests over real MQTT: every one is rejected (or counted), none stops the twin.

Over 10,000 hypothesis-generated payloads — random bytes, random JSON, wrong argument types,
unknown commands, out-of-range and non-finite numbers, deep nesting, oversize payloads, wrong
topics under the prefix — are published as fast as paho goes at a twin stepping in a thread.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from twin.schema.commands import COMMANDS, FAULTS, Spec
from twin.contract.request_parser import MAX_REPLAY_SPAN, MAX_REQUEST_BYTES
from mqtt_helpers import SteppingTwin, wait_for

P = "orbitwin/v1"
SAT = "STARLINK-1008"
OUTPUT_LEAVES = ("event", "status", "summary", "catalogue")  # counted by the twin, not answered


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck))


def Twin(url: str, state_dir: str) -> SteppingTwin:
    """Three satellites ticking every 10 ms in a thread (see :class:`SteppingTwin`)."""
    from twin.runtime.run_loop import FleetOptions, build_twin

    return SteppingTwin(build_twin(FleetOptions(count=3, dt_s=1.0, seed=2)), url, state_dir)


class Replies:
    """Counts reply statuses on the default reply topics and the errors topic; watches one hk topic."""

    def __init__(self, host: str, port: int) -> None:
        self.status: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.hk_ticks: list[float] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe([(f"{P}/sat/+/reply", 1), (f"{P}/fleet/reply", 1), (f"{P}/errors", 1),
                               (f"{P}/sat/{SAT}/tm/hk", 1)])
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        if msg.topic.endswith("/tm/hk"):
            self.hk_ticks.append(body["t_s"])
            return
        self.status[body["status"]] += 1
        if body["status"] == "rejected":
            self.reasons[body["reason"]] += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Publisher:
    """Publishes (topic, payload) pairs with QoS 1 as fast as paho takes them; counts them."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(host, port)
        self.client.loop_start()
        self.sent: Counter[str] = Counter()
        self.last: mqtt.MQTTMessageInfo | None = None

    def send(self, category: str, topic: str, payload: bytes) -> None:
        self.last = self.client.publish(topic, payload, qos=1)
        assert self.last.rc == mqtt.MQTT_ERR_SUCCESS
        self.sent[category] += 1

    def flush(self) -> None:
        if self.last is not None:
            self.last.wait_for_publish(30)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def rig(mosquitto: Any, tmp_path: Path) -> Iterator[tuple[SteppingTwin, Replies, Publisher]]:
    twin = Twin(mosquitto.url, str(tmp_path))
    replies = Replies(mosquitto.host, mosquitto.port)
    pub = Publisher(mosquitto.host, mosquitto.port)
    try:
        yield twin, replies, pub
    finally:
        pub.close()
        replies.close()
        twin.close()


# --- strategies ------------------------------------------------------------------------------
SPECS: list[tuple[str, str, Spec]] = ([("command", "cmd", s) for s in COMMANDS.values()]
                                      + [("fault", "fault", s) for s in FAULTS.values()])
json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=20)
                | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                              max_size=4),
                           max_leaves=8)
request_topics = st.sampled_from([f"{P}/sat/{SAT}/cmd", f"{P}/sat/{SAT}/fault", f"{P}/fleet/cmd",
                                  f"{P}/fleet/fault", f"{P}/fleet/replay"])
# a valid topic level: no separator or wildcard, and no character mosquitto refuses in a topic (it drops
# the publisher's connection for NUL, controls, surrogates and non-characters)
topic_level = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="/+#"),
                      max_size=12)


def _valid_args(spec: Spec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in spec.args:
        if a.choices:
            out[a.name] = a.choices[0]
        elif a.type == "str":
            out[a.name] = "battery_soc"
        elif a.required or a.name == "device":
            out[a.name] = 0 if a.type == "int" else (a.min or 0.0)
    return out


def _envelope(kind: str, spec: Spec, args: Any, fleet: bool, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {kind: spec.name, "args": args, "id": f"fz{n}"}
    if fleet:
        body["select"] = "*"
    return body


# --- the test ----------------------------------------------------------------------------------
def test_ten_thousand_malformed_requests(rig: tuple[SteppingTwin, Replies, Publisher]) -> None:
    twin, replies, pub = rig
    n = iter(range(10**9))
    wait_for(lambda: twin.twin.tick > 2 and replies.hk_ticks, 10, what="twin running")

    @fuzz_settings(3000)
    @given(topic=request_topics, data=st.binary(max_size=300))
    def random_bytes(topic: str, data: bytes) -> None:
        pub.send("random_bytes", topic, data)

    @fuzz_settings(2000)
    @given(topic=request_topics, value=json_values)
    def random_json(topic: str, value: Any) -> None:
        if isinstance(value, dict):
            value.pop("reply_to", None)  # replies must come to the default topics to be counted
        pub.send("random_json", topic, json.dumps(value).encode())

    # a value of the wrong JSON type for one argument (null is "use the default" for optional ones)
    wrong_number = st.text(max_size=5) | st.lists(st.integers(), max_size=2) | st.booleans() | st.just({})
    wrong_string = st.integers() | st.floats(allow_nan=False) | st.booleans() | st.lists(st.text(), max_size=2)
    wrong_bool = st.integers() | st.text(max_size=5) | st.just({})  # 0 and 1 are not true and false either

    @fuzz_settings(2000)
    @given(which=st.sampled_from([(k, l, s, a) for k, l, s in SPECS for a in s.args]), fleet=st.booleans(),
           data=st.data())
    def wrong_types(which: tuple[str, str, Spec, Any], fleet: bool, data: st.DataObject) -> None:
        kind, leaf, spec, arg = which
        bad = data.draw(wrong_string if arg.type == "str" else wrong_bool if arg.type == "bool" else wrong_number)
        args = _valid_args(spec) | {arg.name: bad}
        topic = f"{P}/fleet/{leaf}" if fleet else f"{P}/sat/{SAT}/{leaf}"
        pub.send("wrong_types", topic, json.dumps(_envelope(kind, spec, args, fleet, next(n))).encode())

    @fuzz_settings(1000)
    @given(leaf=st.sampled_from(["cmd", "fault"]), name=json_values, fleet=st.booleans())
    def unknown_commands(leaf: str, name: Any, fleet: bool) -> None:
        if isinstance(name, str) and (name in COMMANDS or name in FAULTS):
            name = f"not-{name}"
        kind = "command" if leaf == "cmd" else "fault"
        body = {kind: name, "args": {}} | ({"select": "*"} if fleet else {})
        pub.send("unknown_commands", f"{P}/fleet/{leaf}" if fleet else f"{P}/sat/{SAT}/{leaf}",
                 json.dumps(body).encode())

    ranged = [(k, l, s, a) for k, l, s in SPECS for a in s.args if a.max is not None or a.min is not None]
    # beyond float range is left to test_known_crashers below
    huge = st.floats(min_value=1.0, max_value=1e308) | st.integers(1, 10**300) | st.sampled_from(
        [math.inf, math.nan])

    @fuzz_settings(1000)
    @given(which=st.sampled_from(ranged), mag=huge, where=st.sampled_from(["arg", "at", "duration", "replay"]))
    def huge_numbers(which: tuple[str, str, Spec, Any], mag: float, where: str) -> None:
        kind, leaf, spec, arg = which
        body = _envelope(kind, spec, _valid_args(spec), False, next(n))
        topic = f"{P}/sat/{SAT}/{leaf}"
        if where == "arg":
            hi = arg.max if arg.max is not None else None
            body["args"][arg.name] = (hi + 1 + mag) if hi is not None else -(abs(arg.min) + 1 + mag)
        elif where == "at":
            body["at"] = -mag
        elif where == "duration" and kind == "fault":
            body["duration_s"] = -mag
        else:
            lo = int(min(mag, 1e18)) if not math.isnan(mag) and mag != math.inf else 0
            body, topic = {"sat": SAT, "from_seq": lo, "to_seq": lo + MAX_REPLAY_SPAN + 1}, f"{P}/fleet/replay"
        pub.send("huge_numbers", topic, json.dumps(body).encode())  # NaN/Infinity: Python's JSON extension

    @fuzz_settings(300)
    @given(depth=st.integers(50, 30_000), opener=st.sampled_from(["[", '{"a":']), where=st.sampled_from(
        ["top", "args", "select", "id"]), topic=request_topics)
    def deep_nesting(depth: int, opener: str, where: str, topic: str) -> None:
        closer = "]" if opener == "[" else "}"
        depth = min(depth, (MAX_REQUEST_BYTES - 100) // (len(opener) + 1))
        nested = opener * depth + "0" + closer * depth
        if where == "top":
            text = nested
        else:
            fleet = "/fleet/" in topic and not topic.endswith("replay")
            text = json.dumps({"command": "throttle", "args": {"factor": 0.5}} | ({"select": "*"} if fleet else {}))
            text = text[:-1] + f',"{where}":{nested}}}'
            if where == "select" and fleet:
                text = text.replace('"select": "*", ', "")
        pub.send("deep_nesting", topic, text.encode())

    @fuzz_settings(100)
    @given(extra=st.integers(1, 8192), valid=st.booleans(), topic=request_topics)
    def oversize(extra: int, valid: bool, topic: str) -> None:
        head = b'{"command":"throttle","args":{"factor":0.5},"id":"' if valid else b"\x00\xff"
        pub.send("oversize", topic, head + b"x" * (MAX_REQUEST_BYTES + extra - len(head)) + b'"}')

    @fuzz_settings(700)
    @given(scope=st.sampled_from(["sat", "fleet", "unknown_sat", "sat_replay", "output"]), leaf=topic_level,
           out=st.sampled_from(OUTPUT_LEAVES), sat=topic_level)
    def wrong_topics(scope: str, leaf: str, out: str, sat: str) -> None:
        body = json.dumps({"command": "throttle", "args": {"factor": 0.5}, "id": f"fz{next(n)}"}).encode()
        if leaf in ("cmd", "fault", "replay", *OUTPUT_LEAVES):
            leaf = f"x{leaf}"
        if scope == "sat":
            topic = f"{P}/sat/{SAT}/{leaf}"
        elif scope == "fleet":
            topic = f"{P}/fleet/{leaf}"
        elif scope == "unknown_sat":
            topic = f"{P}/sat/{'' if sat == SAT else sat}/cmd"
        elif scope == "sat_replay":
            topic = f"{P}/sat/{SAT}/replay"
        else:
            topic, body = f"{P}/{'fleet' if leaf.startswith('f') else 'sat/' + SAT}/{out}", b"not a reply"
            pub.send("unanswered", topic, body)
            return
        pub.send("wrong_topics", topic, body)

    t0 = time.monotonic()
    for fuzz in (random_bytes, random_json, wrong_types, unknown_commands, huge_numbers, deep_nesting, oversize,
                 wrong_topics):
        fuzz()
    pub.flush()
    sent = sum(pub.sent.values())
    answered = sent - pub.sent["unanswered"]
    assert sent >= 10_000, pub.sent
    gen_s = time.monotonic() - t0

    svc = twin.service
    try:
        wait_for(lambda: svc.counters["requests"] >= sent or twin.error, 30, what="all requests handled")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: sent {dict(pub.sent)}, counters {dict(svc.counters)}") from None
    assert twin.error is None, f"the twin stopped stepping: {twin.error!r}"
    wait_for(lambda: replies.status["rejected"] >= answered, 30, what="every rejection received")

    c = svc.counters
    assert c["requests"] == sent
    assert replies.status["rejected"] == c["rejected"] == answered, (replies.status, c, pub.sent)
    assert replies.status["completed"] == 0 and c.get("replies_completed", 0) == 0
    assert c["replies_accepted"] == replies.status["accepted"] == c["accepted"]
    assert sum(v for k, v in c.items() if k.startswith("rejected_")) == c["rejected"]
    assert c["unknown_topic"] + c["output_topic_echo"] >= pub.sent["unanswered"] and c["malformed"] >= pub.sent["oversize"]
    # "unauthenticated": a random object that happens to carry an "auth" key is verified as a signed request
    # (hypothesis draws string constants of the code under test, "auth" among them) and refused as unsigned
    assert set(replies.reasons) <= {"malformed", "bad_argument", "out_of_range", "unknown_command",
                                    "unknown_satellite", "not_now", "unauthenticated"}

    # the twin kept stepping and publishing
    tick, seen = twin.twin.tick, len(replies.hk_ticks)
    wait_for(lambda: twin.twin.tick > tick + 5 and len(replies.hk_ticks) > seen + 5, 10, what="telemetry after flood")
    assert twin.error is None and twin.link.stats.disconnects == 0
    print(f"\nfuzz: {dict(pub.sent)} sent in {gen_s:.1f} s; counters {dict(c)}")


# --- requests that stop the twin today (bugs in twin/schema/commands.py, twin/contract/request_parser.py, twin/runtime/mqtt_service.py) ---
BIG = "1" + "0" * 400  # an integer beyond float range: valid JSON, Python parses it exactly
CRASHERS = {
    "float_arg_bigint": (f"{P}/sat/{SAT}/cmd", '{"command":"throttle","args":{"factor":%s}}' % BIG),
    "at_bigint": (f"{P}/sat/{SAT}/cmd", '{"command":"throttle","args":{"factor":0.5},"at":%s}' % BIG),
    "duration_bigint": (f"{P}/sat/{SAT}/fault", '{"fault":"latchup","duration_s":%s}' % BIG),
    "shell_band_bigint": (f"{P}/fleet/cmd", '{"command":"throttle","args":{"factor":0.5},'
                                            '"select":{"shell":{"alt_km":[0,%s]}}}' % BIG),
    "reply_to_surrogate": (f"{P}/sat/{SAT}/cmd", '{"command":"throttle","args":{"factor":0.5},"reply_to":"\\ud800"}'),
    "reply_to_nul": (f"{P}/sat/{SAT}/cmd", '{"command":"throttle","args":{"factor":0.5},"reply_to":"a\\u0000b"}'),
}


@pytest.mark.parametrize("case", list(CRASHERS))
def test_known_crashers(case: str, rig: tuple[SteppingTwin, Replies, Publisher]) -> None:
    """Regressions found by fuzzing: integers beyond float range (OverflowError in float()/isfinite),
    and a reply_to that is not a valid MQTT topic (lone surrogate: UnicodeEncodeError in paho; NUL:
    the broker drops the connection). Each must get a rejected reply on the default topic while
    the twin keeps stepping on the same connection."""
    twin, replies, pub = rig
    wait_for(lambda: twin.twin.tick > 2, 10, what="twin running")
    topic, payload = CRASHERS[case]
    pub.send("crasher", topic, payload.encode())
    pub.flush()
    wait_for(lambda: twin.service.counters["requests"] >= 1 or twin.error, 10, what="request handled")
    time.sleep(0.2)  # a short grace for a disconnect to show
    assert twin.error is None, f"the twin stopped stepping: {twin.error!r}"
    wait_for(lambda: replies.status["rejected"] >= 1, 5, what="a rejection")
    assert twin.link.stats.disconnects == 0

"""Hostile signed requests: forged, mutated, replayed, stale, beyond their key's rights.

``hostile_cases()`` makes them, each with the one reason it must be rejected for (legitimate
requests mixed in must be accepted): at least 10,000 go through the pure verifier in
``test_ten_thousand_hostile_requests_through_the_verifier``; a representative few hundred go
through a real twin on a real Mosquitto in ``test_hostile_requests_through_a_real_twin``, which
checks every reply, the twin's counters, the audit trail (MQTT and the InfluxDB ``audit``
measurement) and that telemetry keeps flowing at its rate meanwhile.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from twin.contract.request_auth import (Key, KeyRights, RequestVerifier, canonical, mac_hex, sign, signing_input)
from twin.schema.commands import Reason

PREFIX = "orbitwin/v1"
SATS = ("STARLINK-1008", "STARLINK-1012", "STARLINK-1017", "STARLINK-1019", "STARLINK-1020")
WINDOW_S = 30.0
KEYS = {
    "ops-1": Key("ops-1", b"ops-secret-0123456789abcdef-0123456789", KeyRights(frozenset({"*"}), frozenset({"*"}), True)),
    "alerts": Key("alerts", b"alerts-secret-0123456789abcdef-012345", KeyRights(frozenset({"throttle"}), frozenset(), False)),
    "bench": Key("bench", b"bench-secret-0123456789abcdef-0123456", KeyRights(frozenset(), frozenset({"latchup"}), False)),
}
U = Reason.UNAUTHENTICATED


@dataclass(frozen=True)
class Case:
    category: str
    topic: str
    payload: bytes
    expected: Reason | None  # None: legitimate, must be accepted
    delay_s: float = 0.0  # checked this long after the case's "now"

    @property
    def leaf(self) -> str:
        return self.topic.rsplit("/", 1)[1]

    @property
    def fleet(self) -> bool:
        return self.topic.startswith(f"{PREFIX}/fleet/")


def topic(sat: str | None, leaf: str) -> str:
    return f"{PREFIX}/fleet/{leaf}" if sat is None else f"{PREFIX}/sat/{sat}/{leaf}"


def raw_signed(t: str, body: dict[str, Any], secret: bytes) -> bytes:
    """``body`` (with an ``auth`` lacking ``sig``) signed as given, bypassing the signer's own checks."""
    body = json.loads(json.dumps(body))
    body["auth"]["sig"] = mac_hex(secret, signing_input(t, body))
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def hostile_cases(rng: random.Random, now: int, per_category: int, legit: int) -> list[Case]:
    """``per_category`` cases of every hostile category and ``legit`` legitimate ones (some of whose bytes
    are then replayed), in the order they must be checked; issue times around ``now`` (Unix s)."""
    nonce_n = [0]

    def nonce() -> str:
        nonce_n[0] += 1
        return f"{rng.getrandbits(64):016x}{nonce_n[0]:08d}"

    def request(kind: str = "command") -> tuple[str | None, str, dict[str, Any]]:
        sat = rng.choice(SATS)
        if kind == "fault":
            return sat, "fault", {"fault": "latchup", "args": {"device": rng.randrange(4)}, "id": f"f-{nonce_n[0]}"}
        if rng.random() < 0.5:
            return sat, "cmd", {"command": "throttle", "args": {"factor": rng.choice([0.25, 0.5, 0.75, 1])},
                                "id": f"t-{nonce_n[0]}"}
        return sat, "cmd", {"command": "set_payload_load", "args": {"load": rng.choice([0.2, 0.6, 0.8])},
                            "id": f"l-{nonce_n[0]}"}

    def good(kid: str = "ops-1", kind: str = "command", iat: int | None = None) -> tuple[str, dict[str, Any], bytes]:
        sat, leaf, req = request(kind)
        t = topic(sat, leaf)
        key = KEYS[kid]
        return t, req, sign(t, req, kid, key.secret, iat=now if iat is None else iat, nonce=nonce(),
                            client=f"client-{rng.randrange(100)}")

    def with_auth(payload: bytes, **changes: Any) -> dict[str, Any]:
        body = json.loads(payload)
        body["auth"].update(changes)
        return body

    def canon(obj: Any) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    makers: dict[str, Callable[[], tuple[str, bytes, Reason]]] = {}

    def maker(name: str) -> Callable[[Callable[[], tuple[str, bytes, Reason]]], Any]:
        def put(f: Callable[[], tuple[str, bytes, Reason]]) -> Any:
            makers[name] = f
            return f
        return put

    @maker("bad_mac_flip")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        sig = json.loads(p)["auth"]["sig"]
        k = rng.randrange(64)
        flipped = sig[:k] + rng.choice([c for c in "0123456789abcdef" if c != sig[k]]) + sig[k + 1:]
        return t, p.replace(sig.encode(), flipped.encode()), U

    @maker("bad_mac_random")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        return t, canon(with_auth(p, sig=f"{rng.getrandbits(256):064x}")), U

    @maker("wrong_secret")
    def _() -> tuple[str, bytes, Reason]:
        sat, leaf, req = request()
        t = topic(sat, leaf)
        return t, sign(t, req, "ops-1", rng.randbytes(32), iat=now, nonce=nonce(), client="mallory"), U

    @maker("other_keys_secret")
    def _() -> tuple[str, bytes, Reason]:  # signed with alerts' secret but claiming ops-1 (more rights)
        sat, leaf, req = request()
        t = topic(sat, leaf)
        return t, sign(t, {**req, "command": "enter_safe_mode", "args": {}}, "ops-1", KEYS["alerts"].secret,
                       iat=now, nonce=nonce(), client="alerts-bridge"), U

    @maker("unknown_kid")
    def _() -> tuple[str, bytes, Reason]:
        sat, leaf, req = request()
        t = topic(sat, leaf)
        kid = rng.choice(["ops-2", "root", "admin", "ops-1.", "OPS-1", "ops_1"])
        return t, sign(t, req, kid, KEYS["ops-1"].secret, iat=now, nonce=nonce(), client="c"), U

    @maker("lookalike_kid")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        body = with_auth(p, kid=rng.choice(["\u043eps-1", "op\u0455-1", "ops\u20111", "ops-\u0661"]))
        del body["auth"]["sig"]
        return t, raw_signed(t, body, KEYS["ops-1"].secret), U

    @maker("topic_swap")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        sat = t.split("/")[3]
        others = [topic(s, "cmd") for s in SATS if s != sat] + [topic(None, "cmd"), topic(sat, "fault"),
                                                                  topic(sat.replace("I", "\u0406"), "cmd")]
        return rng.choice(others), p, U

    @maker("body_tamper")
    def _() -> tuple[str, bytes, Reason]:
        t, req, p = good()
        body = json.loads(p)
        choice = rng.randrange(4)
        if choice == 0:
            body["command"] = "enter_safe_mode"
        elif choice == 1:
            body["args"] = {"factor": 0.01}
        elif choice == 2:
            body["id"] = body["id"] + "x"
        else:
            body["at"] = rng.randrange(10**6)
        return t, canon(body), U

    @maker("stale_past")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good(iat=now - int(WINDOW_S) - rng.randrange(1, 10**7))
        return t, p, Reason.STALE

    @maker("stale_future")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good(iat=now + int(WINDOW_S) + rng.randrange(1, 10**7))
        return t, p, Reason.STALE

    @maker("forbidden_command")
    def _() -> tuple[str, bytes, Reason]:
        sat = rng.choice(SATS)
        t = topic(sat, "cmd")
        req = rng.choice([{"command": "enter_safe_mode"}, {"command": "set_payload_load", "args": {"load": 1}}])
        kid = rng.choice(["alerts", "bench"])
        return t, sign(t, req, kid, KEYS[kid].secret, iat=now, nonce=nonce(), client="c"), Reason.FORBIDDEN

    @maker("forbidden_fault")
    def _() -> tuple[str, bytes, Reason]:
        sat = rng.choice(SATS)
        t = topic(sat, "fault")
        req = rng.choice([{"fault": "seu_burst", "args": {"count": 5}}, {"fault": "latchup", "args": {"device": 1}}])
        kid = "bench" if req["fault"] != "latchup" else "alerts"
        return t, sign(t, req, kid, KEYS[kid].secret, iat=now, nonce=nonce(), client="c"), Reason.FORBIDDEN

    @maker("forbidden_fleet")
    def _() -> tuple[str, bytes, Reason]:
        t = topic(None, "cmd")
        req = {"command": "throttle", "args": {"factor": 0.5}, "select": "*"}
        return t, sign(t, req, "alerts", KEYS["alerts"].secret, iat=now, nonce=nonce(), client="c"), Reason.FORBIDDEN

    @maker("forbidden_lookalike_command")
    def _() -> tuple[str, bytes, Reason]:
        t = topic(rng.choice(SATS), "cmd")
        name = rng.choice(["thr\u043ettle", "\u0442hrottle", "throttle\u200b", "thrott\u217ce"])
        return t, sign(t, {"command": name, "args": {"factor": 0.5}}, "alerts", KEYS["alerts"].secret, iat=now,
                       nonce=nonce(), client="c"), Reason.FORBIDDEN

    @maker("oversized_field")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        field, value = rng.choice([("nonce", "n" * rng.randrange(65, 5000)), ("kid", "k" * rng.randrange(65, 5000)),
                                   ("client", "c" * rng.randrange(129, 5000)),
                                   ("sig", "a" * rng.randrange(65, 5000))])
        body = with_auth(p, **{field: value})
        if field != "sig":
            del body["auth"]["sig"]
            return t, raw_signed(t, body, KEYS["ops-1"].secret), U
        return t, canon(body), U

    @maker("oversized_payload")
    def _() -> tuple[str, bytes, Reason]:
        sat, leaf, req = request()
        t = topic(sat, leaf)
        req["args"]["pad"] = "x" * rng.randrange(64 * 1024, 80 * 1024)
        body = {**req, "auth": {"client": "c", "iat": now, "kid": "ops-1", "nonce": nonce()}}
        return t, raw_signed(t, body, KEYS["ops-1"].secret), U

    @maker("truncated_payload")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        return t, p[:rng.randrange(len(p))], U

    @maker("truncated_sig")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        sig = json.loads(p)["auth"]["sig"]
        return t, canon(with_auth(p, sig=sig[:rng.randrange(64)])), U

    @maker("extra_or_missing_auth_field")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        body = json.loads(p)
        if rng.random() < 0.5:
            body["auth"][rng.choice(["alg", "exp", "role", "sig2"])] = "x"
        else:
            del body["auth"][rng.choice(["client", "iat", "kid", "nonce", "sig"])]
        return t, canon(body), U

    @maker("wrong_auth_types")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        body = json.loads(p)
        k = rng.randrange(5)
        if k == 0:
            body["auth"] = "ops-1:" + body["auth"]["sig"]
        elif k == 1:
            body["auth"]["iat"] = str(now)
        elif k == 2:
            body["auth"]["iat"] = now + 0.5
        elif k == 3:
            body["auth"]["iat"] = -now
        else:
            body["auth"] = [body["auth"]]
        return t, canon(body), U

    @maker("reordered_keys")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        body = json.loads(p)
        keys = list(body)
        while keys == sorted(keys):
            rng.shuffle(keys)
        return t, json.dumps({k: body[k] for k in keys}, separators=(",", ":"), ensure_ascii=False).encode(), U

    @maker("duplicate_keys")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        extra = rng.choice([b',"command":"enter_safe_mode"', b',"args":{"factor":0.01}', b',"select":"*"',
                            b',"auth":null', b',"id":"x"'])
        if rng.random() < 0.5:
            return t, p[:-1] + extra + b"}", U
        return t, b"{" + extra[1:] + b"," + p[1:], U

    @maker("whitespace")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        body = json.loads(p)
        spaced = json.dumps(body, sort_keys=True, ensure_ascii=False, indent=rng.choice([None, 0, 2]))
        if spaced.encode() == p:
            spaced = " " + spaced
        return t, spaced.encode(), U

    @maker("needless_escape")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        return t, p.replace(b'"command"', b'"\\u0063ommand"').replace(b'"fault"', b'"\\u0066ault"'), U

    @maker("non_nfc_text")
    def _() -> tuple[str, bytes, Reason]:
        sat, leaf, req = request()
        t = topic(sat, leaf)
        req["id"] = rng.choice(["cafe\u0301", "A\u030a", "\u1100\u1161", "e\u0301t\u0301e\u0301"])
        body = {**req, "auth": {"client": "c", "iat": now, "kid": "ops-1", "nonce": nonce()}}
        return t, raw_signed(t, body, KEYS["ops-1"].secret), U

    @maker("number_spelling")
    def _() -> tuple[str, bytes, Reason]:
        t, _, p = good()
        for a, b in ((b'"factor":0.5', b'"factor":0.50'), (b'"factor":0.25', b'"factor":2.5e-1'),
                     (b'"factor":0.75', b'"factor":0.750'), (b'"factor":1', b'"factor":1.0E0'),
                     (b'"load":0.2', b'"load":2E-1'), (b'"load":0.6', b'"load":0.60'), (b'"load":0.8', b'"load":8e-1'),
                     (b'"device":', b'"device":-0+')):
            if a in p:
                q = p.replace(a, b)
                if b == b'"device":-0+':
                    q = p.replace(b'"device":', b'"device":0') if b'"device":0' not in p else p.replace(
                        b'"device":0', b'"device":-0')
                return t, q, U
        return t, p.replace(b"{", b"{ ", 1), U

    @maker("unsigned")
    def _() -> tuple[str, bytes, Reason]:
        sat, leaf, req = request(rng.choice(["command", "fault"]))
        t = topic(sat, leaf)
        return t, rng.choice([canon(req), json.dumps(req).encode(), canon({**req, "auth": None})]), U

    @maker("garbage")
    def _() -> tuple[str, bytes, Reason]:
        t = topic(rng.choice(SATS), "cmd")
        return t, rng.choice([rng.randbytes(rng.randrange(1, 300)), b"", b"null", b"[]", b'"auth"', b"\xff\xfe{}",
                              b'{"auth":{}}', b'{"a":NaN}', b"{" * 5000]), U

    cases: list[Case] = []
    for k in range(legit):  # legitimate requests, within their rights; a third are replayed later
        kid = rng.choice(["ops-1", "alerts", "bench"])
        kind = "fault" if kid == "bench" else "command"
        if kid == "alerts":
            t = topic(rng.choice(SATS), "cmd")
            p = sign(t, {"command": "throttle", "args": {"factor": 1}, "id": f"legit-{k}"}, kid, KEYS[kid].secret,
                     iat=now - rng.randrange(int(WINDOW_S) - 5), nonce=nonce(), client="grafana-bridge")
        else:
            t, _, p = good(kid, kind, iat=now + rng.randrange(-int(WINDOW_S) + 5, int(WINDOW_S) - 5))
        cases.append(Case("legit", t, p, None))
    originals = [c for c in cases if c.expected is None][: max(1, legit // 3)]
    for name, make in makers.items():
        for _ in range(per_category):
            t, p, why = make()
            cases.append(Case(name, t, p, why))
    for k in range(per_category):  # the same bytes again, and a new request reusing a seen nonce
        c = originals[k % len(originals)]
        cases.append(Case("replayed_bytes", c.topic, c.payload, Reason.REPLAYED, delay_s=rng.uniform(0, 5)))
        body = json.loads(c.payload)
        kid = body["auth"]["kid"]
        body["id"] = f"reuse-{k}"
        del body["auth"]["sig"]
        cases.append(Case("reused_nonce", c.topic, raw_signed(c.topic, body, KEYS[kid].secret), Reason.REPLAYED))
    return cases


def run_pure(cases: list[Case], now: int) -> tuple[Counter[str], list[tuple[Case, Any]]]:
    """Every case through one verifier; (tally, wrong outcomes)."""
    v = RequestVerifier(KEYS, window_s=WINDOW_S)
    tally: Counter[str] = Counter()
    wrong = []
    for c in cases:
        out = v.verify(c.topic, c.leaf, c.fleet, c.payload, now + c.delay_s)
        if c.expected is None:
            tally["legit_accepted" if out.ok else "legit_refused"] += 1
            if not out.ok:
                wrong.append((c, out))
            continue
        tally["tried"] += 1
        if out.ok:
            tally["wrongly_accepted"] += 1
            wrong.append((c, out))
        else:
            tally[f"rejected_{out.reason.value}"] += 1
            if out.reason != c.expected:
                wrong.append((c, out))
    return tally, wrong


def test_ten_thousand_hostile_requests_through_the_verifier() -> None:
    now = 1_796_000_000
    cases = hostile_cases(random.Random(14), now, per_category=350, legit=600)
    tally, wrong = run_pure(cases, now)
    by_category = Counter(c.category for c in cases if c.expected is not None)
    print(f"\nhostile requests through the verifier: {dict(tally)}\nper category: {dict(by_category)}")
    assert tally["tried"] >= 10_000
    assert not wrong, [(c.category, c.expected, out.reason, out.message, c.payload[:120]) for c, out in wrong[:5]]
    assert tally["wrongly_accepted"] == 0 and tally["legit_accepted"] == 600
    assert sum(v for k, v in tally.items() if k.startswith("rejected_")) == tally["tried"]
    expected = Counter(f"rejected_{c.expected.value}" for c in cases if c.expected is not None)
    assert {k: v for k, v in tally.items() if k.startswith("rejected_")} == expected
    assert set(expected) == {"rejected_unauthenticated", "rejected_stale", "rejected_replayed", "rejected_forbidden"}


# --- the same through a real twin on a real Mosquitto -----------------------------------------
def test_hostile_requests_through_a_real_twin(mosquitto: Any, influxd: Any, tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from mqtt_helpers import Recorder, wait_for
    from pipeline import bridge_proc
    from twin.mqtt import MqttSettings
    from twin.runtime.clock import Pacer
    from twin.runtime.mqtt_link import LinkSettings, MqttLink
    from twin.runtime.mqtt_service import TwinService
    from twin.runtime.run_loop import FleetOptions, build_twin

    db = f"audit_{uuid.uuid4().hex[:8]}"
    bridge = bridge_proc(tmp_path, mosquitto.url, influxd.url, db).start()
    twin = build_twin(FleetOptions(count=5, dt_s=1.0, seed=14))
    assert tuple(twin.names) == SATS
    link = MqttLink(MqttSettings(mosquitto.url), LinkSettings(state_dir=str(tmp_path)))
    service = TwinService(twin, link, auth=RequestVerifier(KEYS, window_s=WINDOW_S))
    replies_topic = f"h8/{uuid.uuid4().hex[:6]}/replies"
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{PREFIX}/audit", f"{PREFIX}/sat/+/tm/hk", replies_topic])
    link.start()
    stop = threading.Event()
    error: list[BaseException] = []

    def loop() -> None:
        try:
            service.run(Pacer(1.0), should_stop=stop.is_set)  # real time: hk at 1 Hz per satellite
        except BaseException as exc:  # noqa: BLE001 - reported below
            error.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="h8-hostile", protocol=mqtt.MQTTv5)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()

    def messages() -> list[tuple[str, Any, Any, float]]:
        with rec.lock:
            return list(rec.messages)

    try:
        wait_for(lambda: twin.tick >= 3, 30, what="twin stepping")
        t_start = time.monotonic()
        cases = hostile_cases(random.Random(1408), int(time.time()), per_category=12, legit=30)
        # the replays of the real run are sent at once (delay_s is for the pure verifier's clock)
        for k, c in enumerate(cases):
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic, props.CorrelationData = replies_topic, str(k).encode()
            props.UserProperty = [("client_id", "h8-hostile")]
            client.publish(c.topic, c.payload, qos=1, properties=props).wait_for_publish(10)
        sent_s = time.monotonic() - t_start
        wait_for(lambda: service.counters["audited"] >= len(cases), 60, what="every request audited")
        n_legit = sum(c.expected is None for c in cases)
        wait_for(lambda: sum(1 for t, p, _, _ in messages() if t == replies_topic and p["status"] == "completed")
                 >= n_legit, 30, what="legit requests completed")
        time.sleep(2.5)  # telemetry after the flood
        t_end = time.monotonic()
        msgs = messages()
        status = service.status()
    finally:
        client.loop_stop()
        client.disconnect()
        stop.set()
        thread.join(10)
    try:
        assert not error, f"the twin died: {error[0]!r}"
        # every request: exactly the reply it must get
        first: dict[int, dict[str, Any]] = {}
        statuses: dict[int, list[str]] = {}
        for t, body, props, _ in msgs:
            if t != replies_topic:
                continue
            k = int(props.CorrelationData)
            first.setdefault(k, body)
            statuses.setdefault(k, []).append(body["status"])
        tally: Counter[str] = Counter()
        for k, c in enumerate(cases):
            body = first.get(k)
            assert body is not None, f"no reply to case {k} ({c.category})"
            if c.expected is None:
                assert statuses[k] == ["accepted", "completed"] and body["authenticated"] is True, (c, statuses[k])
                continue
            tally["tried"] += 1
            assert statuses[k] == ["rejected"], (c.category, statuses[k], body)
            assert body["reason"] == c.expected.value, (c.category, c.expected, body, c.payload[:200])
            assert body["authenticated"] is False and "kid" not in body
            tally[f"rejected_{body['reason']}"] += 1
        expected = Counter(f"rejected_{c.expected.value}" for c in cases if c.expected is not None)
        assert {k: v for k, v in tally.items() if k != "tried"} == expected
        # the twin counted them
        counters = status["counters"]
        for reason in ("unauthenticated", "stale", "replayed", "forbidden"):
            assert counters.get(f"rejected_{reason}", 0) == expected[f"rejected_{reason}"], reason
        assert counters["accepted"] == n_legit and counters["audited"] == len(cases)
        # and audited every one, accepted or not, with the client id it claimed (or its user property)
        audit = [p for t, p, _, _ in msgs if t == f"{PREFIX}/audit"]
        assert len(audit) == len(cases) and [a["seq"] for a in audit] == list(range(len(cases)))
        assert Counter((a["result"], a["reason"]) for a in audit) == Counter(
            ("accepted", None) if c.expected is None else ("rejected", c.expected.value) for c in cases)
        assert all(a["topic"] == c.topic[:512] for a, c in zip(audit, cases))
        assert all(a["authenticated"] is (c.expected is None) for a, c in zip(audit, cases))
        assert all(a["client"] for a in audit)
        # telemetry kept its rate: no satellite's hk silent for more than 2 s, during and after the flood
        times: dict[str, list[float]] = {}
        for t, _, _, wall in msgs:
            if t.endswith("/tm/hk") and t_start - 1.0 <= wall <= t_end:
                times.setdefault(t.split("/")[3], []).append(wall)
        assert set(times) == set(SATS)
        worst = max(max(b - a for a, b in zip(ts, ts[1:])) for ts in times.values())
        assert worst <= 2.0, f"telemetry silent for {worst:.2f} s"
        print(f"\nreal twin: {dict(tally)} of {len(cases)} requests ({n_legit} legitimate) sent in {sent_s:.1f} s; "
              f"wrongly accepted 0; longest hk gap {worst:.2f} s; ticks {twin.tick}")
        # the InfluxDB bridge stored the audit trail as measurement audit, tagged by result and reason
        stored: Counter[tuple[str, str]] = Counter()

        def count_stored() -> int:
            stored.clear()
            res = influxd.query('SELECT count("seq") FROM "audit" GROUP BY "result", "reason"', db=db)
            for r in res.get("results", []):
                for series in r.get("series", []):
                    stored[(series["tags"]["result"], series["tags"]["reason"])] = int(series["values"][0][1])
            return sum(stored.values())

        wait_for(lambda: count_stored() >= len(cases), 60, what="audit records in InfluxDB")
        assert stored == Counter(("accepted", "none") if c.expected is None else ("rejected", c.expected.value)
                                 for c in cases)
    finally:
        rec.close()
        link.stop()
        twin.close()
        bridge.stop()

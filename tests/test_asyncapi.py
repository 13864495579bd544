"""The AsyncAPI document: committed copy is current, structure is sound, it covers the whole
contract, and what a running twin really publishes validates against it."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from twin.contract.asyncapi import asyncapi_document, request_example, to_yaml
from twin.schema.commands import COMMANDS, FAULTS, CommandError, Reason, validate
from twin.contract.request_parser import parse_request
from twin.schema.telemetry import FIELDS, PACKETS
from mqtt_helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "docs" / "asyncapi.yaml"
DOC = asyncapi_document()
BASE = "urn:orbitwin-asyncapi"
REGISTRY = Registry().with_resource(BASE, Resource.from_contents(DOC, default_specification=DRAFT7))


def resolve(pointer: str) -> Any:
    """The object at a local JSON pointer ``#/a/b`` of the document."""
    node: Any = DOC
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(node["$ref"])
    return node


def validator(pointer: str) -> jsonschema.Draft7Validator:
    """A validator for the schema at ``pointer`` with every $ref resolved inside the document."""
    return jsonschema.Draft7Validator({"$ref": f"{BASE}{pointer}"}, registry=REGISTRY)


def payload_validator(message_id: str) -> jsonschema.Draft7Validator:
    return validator(f"#/components/messages/{message_id}/payload")


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


# --- the document itself ------------------------------------------------------------------
def test_committed_yaml_matches_generator() -> None:
    assert YAML_PATH.read_text() == to_yaml(DOC), (
        "docs/asyncapi.yaml is out of date: regenerate it with `python -m twin.contract.asyncapi > docs/asyncapi.yaml`")


def test_structure() -> None:
    # No installed package ships the AsyncAPI 3.0.0 JSON Schema (checked the PyPI list for
    # asyncapi packages): check the rules that matter by hand.
    assert DOC["asyncapi"] == "3.0.0"
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert all(s["host"] and s["protocol"] == "mqtt" for s in DOC["servers"].values())
    for ref in refs(DOC):
        assert ref.startswith("#/"), ref
        resolve(ref)  # raises KeyError if dangling
    ident = re.compile(r"^[\w\d.\-_]+$")
    for cid, ch in DOC["channels"].items():
        assert ident.match(cid)
        params = set(re.findall(r"\{(\w+)\}", ch["address"] or ""))
        assert params == set(ch.get("parameters", {})), cid
        assert ch["messages"], cid
    for oid, op in DOC["operations"].items():
        assert ident.match(oid) and op["action"] in ("send", "receive")
        cref = op["channel"]["$ref"]
        assert cref.startswith("#/channels/") and cref.removeprefix("#/channels/") in DOC["channels"], oid
        for m in op["messages"]:
            assert m["$ref"].startswith(cref + "/messages/"), (oid, m)  # a message of that very channel
        if "reply" in op:
            rc = op["reply"]["channel"]["$ref"]
            assert all(m["$ref"].startswith(rc + "/messages/") for m in op["reply"]["messages"])
            assert re.match(r"^\$message\.(header|payload)#(/[^/~]*)*$", op["reply"]["address"]["location"])
        assert op["bindings"]["mqtt"]["qos"] in (0, 1, 2)
    used = {op["channel"]["$ref"].removeprefix("#/channels/") for op in DOC["operations"].values()}
    assert used == set(DOC["channels"]), "a channel no operation uses"
    for name, schema in DOC["components"]["schemas"].items():
        jsonschema.Draft7Validator.check_schema(schema)


def test_operations_by_direction() -> None:
    ops = DOC["operations"].values()
    sent = {op["channel"]["$ref"].rsplit("/", 1)[1] for op in ops if op["action"] == "send"}
    taken = {op["channel"]["$ref"].rsplit("/", 1)[1] for op in ops if op["action"] == "receive"}
    assert taken == {"satCommand", "satFault", "fleetCommand", "fleetFault", "fleetReplay", "fleetRoute", "boardState",
                     "boardTelemetry", "boardJob"}
    assert {f"satTelemetry_{p.name}" for p in PACKETS} | {"state", "satEvent", "satReply", "errors"} <= sent
    bindings = {op["channel"]["$ref"].rsplit("/", 1)[1]: op["bindings"]["mqtt"] for op in ops}
    assert bindings["state"]["retain"] is True and bindings["catalogue"]["retain"] is True
    assert bindings["boardState"]["retain"] is True
    assert not any(b["retain"] for c, b in bindings.items() if c not in ("state", "catalogue", "boardState"))
    mqtt_req = DOC["components"]["messages"]["command"]["bindings"]["mqtt"]
    assert "responseTopic" in mqtt_req and "correlationData" in mqtt_req


def test_every_field_in_exactly_one_telemetry_message_with_its_unit() -> None:
    seen: dict[str, list[str]] = {}
    for mid, msg in DOC["components"]["messages"].items():
        if not mid.startswith("telemetry_"):
            continue
        fields = deref(msg["payload"])["properties"]["fields"]
        for name, s in fields["properties"].items():
            seen.setdefault(name, []).append(mid)
    for f in FIELDS:
        assert seen.get(f.name) == [f"telemetry_{f.packet}"], f.name
        s = deref(DOC["components"]["messages"][f"telemetry_{f.packet}"]["payload"])["properties"]["fields"]
        s = s["properties"][f.name]
        assert s["x-unit"] == f.unit and s["description"] == f.description
        if f.limits is not None:
            assert s["x-limits"] == {k: v for k, v in vars(f.limits).items() if v is not None}
    assert set(seen) == {f.name for f in FIELDS}


def _names(schema_id: str, key: str) -> list[str]:
    return [v["properties"][key]["const"] for v in DOC["components"]["schemas"][schema_id]["oneOf"]]


def test_every_command_fault_and_reason_appears() -> None:
    assert _names("CommandRequest", "command") == list(COMMANDS) == _names("FleetCommandRequest", "command")
    assert _names("FaultRequest", "fault") == list(FAULTS) == _names("FleetFaultRequest", "fault")
    reasons = DOC["components"]["schemas"]["ReplyRejected"]["properties"]["reason"]["enum"]
    assert reasons == [r.value for r in Reason]
    for table, sid in ((COMMANDS, "CommandRequest"), (FAULTS, "FaultRequest")):
        for variant, spec in zip(DOC["components"]["schemas"][sid]["oneOf"], table.values()):
            args = variant["properties"]["args"]["properties"]
            assert list(args) == [a.name for a in spec.args]
            for a in spec.args:
                assert args[a.name].get("minimum") == a.min and args[a.name].get("maximum") == a.max
                if a.choices:
                    assert args[a.name]["enum"] == list(a.choices)


def test_schema_and_code_agree_on_requests() -> None:
    """Examples valid for the schema are accepted by the parser, and out-of-range ones rejected by both."""
    for kind, table, leaf in (("command", COMMANDS, "cmd"), ("fault", FAULTS, "fault")):
        v = validator(f"#/components/schemas/{kind.capitalize()}Request")
        for spec in table.values():
            ok = request_example(spec, kind)
            v.validate(ok)
            req = parse_request(ok, leaf, fleet=False)
            validate(table, req.name, req.args)
            for a in spec.args:
                if a.max is None:
                    continue
                bad = ok | {"args": dict(ok.get("args", {})) | {a.name: a.max * 2 + 1}}
                assert not v.is_valid(bad), (spec.name, a.name)
                with pytest.raises(CommandError) as exc:
                    validate(table, spec.name, bad["args"])
                assert exc.value.reason is Reason.OUT_OF_RANGE
        assert not v.is_valid({kind: "no_such_thing"})
        assert not v.is_valid({kind: next(iter(table)), "bogus": 1})
    for mid, msg in DOC["components"]["messages"].items():
        for ex in msg.get("examples", []):
            payload_validator(mid).validate(ex["payload"])


# --- what a running twin publishes -------------------------------------------------------
class Recorder:
    """An MQTT 5 client recording every message under a topic filter (with its properties)."""

    def __init__(self, host: str, port: int, topics: tuple[str, ...]) -> None:
        self.messages: list[tuple[str, bytes, Any]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.ready = threading.Event()
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.connect(host, port)
        self.client.subscribe([(t, 1) for t in topics])
        self.client.loop_start()
        assert self.ready.wait(5)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, getattr(msg, "properties", None)))

    def snapshot(self) -> list[tuple[str, bytes, Any]]:
        with self.lock:
            return list(self.messages)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def channel_of(topic: str, response_topic: str) -> str | None:
    """The id of the document channel whose address matches ``topic``."""
    if topic == response_topic:
        return "responseTopic"
    for cid, ch in DOC["channels"].items():
        addr = ch["address"]
        if addr and re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(addr)), topic):
            return cid
    return None


def test_live_messages_validate(mosquitto: Any, tmp_path: Path) -> None:
    from twin.mqtt import MqttSettings
    from twin.runtime.mqtt_link import LinkSettings, MqttLink
    from twin.runtime.run_loop import FleetOptions, build_twin
    from twin.runtime.mqtt_service import TwinService

    # compute placement on: the compute packet and the summary's compute keys are among the messages validated
    twin = build_twin(FleetOptions(count=3, dt_s=1.0, seed=3, compute_policy="aware"))
    link = MqttLink(MqttSettings(mosquitto.url), LinkSettings(state_dir=str(tmp_path)))
    service = TwinService(twin, link, status_every_s=2.0)
    rec = Recorder(mosquitto.host, mosquitto.port, ("orbitwin/v1/#", "me/replies"))
    link.start()
    sat = twin.names[0]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic, props.CorrelationData = "me/replies", b"corr-7"
    requests = [
        (f"orbitwin/v1/sat/{sat}/fault", {"fault": "latchup", "args": {"device": 3}, "id": "sel"}, None),
        (f"orbitwin/v1/sat/{sat}/cmd", {"command": "throttle", "args": {"factor": 0.5}}, props),
        (f"orbitwin/v1/sat/{sat}/cmd", {"command": "throttle", "args": {"factor": 2}, "id": "bad"}, None),
        ("orbitwin/v1/fleet/cmd", {"command": "enter_safe_mode", "select": "*", "id": "safe"}, None),
        ("orbitwin/v1/fleet/fault", {"fault": "seu_burst", "select": {"names": "STARLINK-10*"}, "at": 3}, None),
        (f"orbitwin/v1/sat/{sat}/nope", {"command": "throttle"}, None),
        (f"orbitwin/v1/sat/{sat}/cmd", b"\xff not json", None),
    ]
    try:
        # the twin subscribes before it publishes its birth (one connection, in order): once the birth is
        # here, requests published now reach it
        wait_for(lambda: any(t == "orbitwin/v1/state" for t, *_ in rec.snapshot()), 20, what="the twin's birth")
        for topic, body, p in requests:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            client.publish(topic, payload, qos=1, properties=p).wait_for_publish(5)
        wait_for(lambda: link.stats.received >= len(requests))
        for _ in range(22):
            service.process_requests()
            twin.step()
            service.publish_tick()
        client.publish("orbitwin/v1/fleet/replay", json.dumps({"sat": sat, "from_seq": 0, "to_seq": 3}), qos=1)
        # a time-tagged request whose time has passed: executes at once and says how late
        client.publish(f"orbitwin/v1/sat/{sat}/cmd", json.dumps(
            {"command": "throttle", "args": {"factor": 0.8}, "at": 5, "id": "late"}), qos=1)
        wait_for(lambda: link.stats.received >= len(requests) + 2)
        service.process_requests()
        twin.step()
        service.publish_tick()  # replays are served after the tick's live telemetry
        wait_for(lambda: sum(1 for t, *_ in rec.snapshot() if t == "orbitwin/v1/fleet/reply") >= 5)
        wait_for(lambda: link.outstanding == 0)
        msgs = rec.snapshot()
    finally:
        client.loop_stop()
        client.disconnect()
        rec.stop()
        link.stop()
        twin.close()

    sent_by_twin = {op["channel"]["$ref"].rsplit("/", 1)[1] for op in DOC["operations"].values()
                    if op["action"] == "send"}
    checked: dict[str, int] = {}
    for topic, payload, _ in msgs:
        cid = channel_of(topic, "me/replies")
        assert cid is not None or topic.endswith("/nope"), topic
        if cid not in sent_by_twin:
            continue
        body = json.loads(payload)
        candidates = [payload_validator(r["$ref"].rsplit("/", 1)[1]) for r in DOC["channels"][cid]["messages"].values()]
        if not any(v.is_valid(body) for v in candidates):
            best = min(candidates, key=lambda v: len(list(v.iter_errors(body))))
            best.validate(body)  # raises with the closest message's errors
        key = cid if cid not in ("satReply", "fleetReply", "responseTopic", "errors") else f"{cid}:{body['status']}"
        checked[key] = checked.get(key, 0) + 1
    expected = {f"satTelemetry_{p.name}" for p in PACKETS} | {
        "state", "catalogue", "summary", "status", "satEvent", "fleetEvent", "satReply:accepted",
        "satReply:completed", "satReply:rejected", "fleetReply:accepted", "fleetReply:completed",
        "responseTopic:accepted", "responseTopic:completed", "errors:rejected",
        "fleetTopology", "fleetLatency"} | (
        {"fleetFrame", "replayedTelemetry"} & set(DOC["channels"]))
    assert expected <= set(checked), expected - set(checked)
    corr = [p.CorrelationData for t, _, p in msgs if t == "me/replies"]
    assert corr and all(c == b"corr-7" for c in corr)
    # the request that violates the schema is the one the twin rejected
    assert not payload_validator("command").is_valid({"command": "throttle", "args": {"factor": 2}, "id": "bad"})
    (late,) = [b for t, p, _ in msgs if t.endswith("/reply") and (b := json.loads(p)).get("id") == "late"
               and b["status"] == "accepted"]
    assert late["execute_t_s"] == twin.t_s - twin.dt_s and late["late_s"] == late["execute_t_s"] - 5.0 > 0
    events = [json.loads(p) for t, p, _ in msgs if t.endswith("/event")]
    assert any(e["kind"] == "sel" and e["name"] == "latchup" for e in events)

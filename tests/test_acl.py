"""Roles and ACLs on the real broker: the Docker stack's Mosquitto (docker/mosquitto: config, entrypoint, ACL)
started with the files scripts/gen-env.sh generates (passwords, CA, broker certificate), TLS only.

The expected rights below are written out by hand, topic by topic, from each role's job (issue 14): they
are not read from ``twin/contract/roles.py``, so a role that gains or loses a topic there fails here.
Denied publishes are seen two ways: the MQTT 5 PUBACK reason of a QoS 1 publish (0x87 not authorised)
and what a subscriber with read rights on everything (the observer) receives (Mosquitto drops a denied
QoS 0 publish silently).
"""

from __future__ import annotations

import importlib.util
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from mqtt_helpers import stop_process, wait_for
from stack_broker import ACL, REPO, Client, StackBroker, connack, start_stack_broker
from twin.contract.roles import acl_text, roles
from twin.contract.topics import DEFAULT_PREFIX

P = DEFAULT_PREFIX
SAT, BOARD, PACKET = "STARLINK-1008", "bench0", "hk"
ROLES = ("twin", "influx-bridge", "grafana-bridge", "serial-bridge", "operator", "observer")
NOT_AUTHORISED = 0x87

# concrete topic -> roles that may publish on it (hand-written from the roles' jobs)
PUBLISH: dict[str, set[str]] = {
    f"{P}/sat/{SAT}/cmd": {"grafana-bridge", "operator"},
    f"{P}/fleet/cmd": {"grafana-bridge", "operator"},
    f"{P}/sat/{SAT}/fault": {"operator"},
    f"{P}/fleet/fault": {"operator"},
    f"{P}/board/{BOARD}/cmd": {"twin", "operator"},
    f"{P}/board/{BOARD}/fault": {"twin", "operator"},
    f"{P}/fleet/replay": {"influx-bridge", "operator"},
    f"{P}/fleet/route": {"operator", "observer"},  # a read-only query: viewers may ask for routes too
    f"{P}/state": {"twin"},
    f"{P}/fleet/catalogue": {"twin"},
    f"{P}/fleet/status": {"twin"},
    f"{P}/fleet/summary": {"twin"},
    f"{P}/sat/{SAT}/tm/{PACKET}": {"twin"},
    f"{P}/fleet/tm/{PACKET}": {"twin"},
    f"{P}/replay/{SAT}/tm/{PACKET}": {"twin"},
    f"{P}/sat/{SAT}/event": {"twin"},
    f"{P}/fleet/event": {"twin"},
    f"{P}/sat/{SAT}/reply": {"twin"},
    f"{P}/fleet/reply": {"twin"},
    f"{P}/errors": {"twin"},
    f"{P}/scenario/op-1/reply": {"twin"},
    f"{P}/bridge/grafana/orbitwin-grafana-bridge/reply": {"twin"},
    f"{P}/board/{BOARD}/state": {"serial-bridge"},
    f"{P}/board/{BOARD}/tm": {"serial-bridge"},
    f"{P}/board/{BOARD}/job": {"serial-bridge"},
    f"{P}/board/{BOARD}/event": {"twin", "serial-bridge"},
    f"{P}/board/{BOARD}/reply": {"twin", "serial-bridge"},
    f"{P}/bridge/influx/status": {"influx-bridge"},
    f"{P}/bridge/influx/event": {"influx-bridge"},
    f"{P}/bridge/grafana/event": {"grafana-bridge"},
    f"{P}/bridge/other/event": set(),
    f"{P}/sat/{SAT}/tm/{PACKET}/extra": set(),
    f"{P}/anything": set(),
    "elsewhere/sat/x/cmd": set(),
}
PUBLISH[f"{P}/audit"] = {"twin"}  # the request audit trail: the twin writes it, the archive keeps it
S = f"{P}/shard/2"  # a shard of a sharded twin: its fleet-level topics (orbitwin run --shard 2/N)
PUBLISH |= {
    f"{S}/fleet/cmd": {"operator"}, f"{S}/fleet/fault": {"operator"},
    f"{S}/fleet/replay": {"influx-bridge", "operator"}, f"{S}/fleet/route": {"operator", "observer"},
    f"{S}/state": {"twin"}, f"{S}/fleet/catalogue": {"twin"}, f"{S}/fleet/status": {"twin"},
    f"{S}/fleet/summary": {"twin"}, f"{S}/fleet/tm/{PACKET}": {"twin"}, f"{S}/fleet/event": {"twin"},
    f"{S}/fleet/reply": {"twin"}, f"{S}/errors": {"twin"}, f"{S}/audit": {"twin"},
    f"{S}/bridge/influx/status": {"influx-bridge"}, f"{S}/bridge/influx/event": {"influx-bridge"},
    f"{S}/bridge/other/event": set(),
    f"{S}/mesh": {"twin"},
    f"{S}/anything": set(), f"{P}/shard/2/sat/{SAT}/cmd": set(),
}
# role -> the topics of PUBLISH it receives when subscribed to everything (besides operator and observer: all)
READ: dict[str, set[str]] = {
    "twin": {f"{P}/sat/{SAT}/cmd", f"{P}/fleet/cmd", f"{P}/sat/{SAT}/fault", f"{P}/fleet/fault", f"{P}/fleet/replay",
             f"{P}/fleet/route", f"{P}/state", f"{P}/board/{BOARD}/state", f"{P}/board/{BOARD}/tm",
             f"{P}/board/{BOARD}/job", f"{S}/fleet/cmd", f"{S}/fleet/fault", f"{S}/fleet/replay", f"{S}/fleet/route",
             f"{S}/state", f"{S}/mesh"},
    "influx-bridge": {f"{P}/fleet/tm/{PACKET}", f"{P}/replay/{SAT}/tm/{PACKET}", f"{P}/sat/{SAT}/event",
                      f"{P}/fleet/event", f"{P}/bridge/influx/event", f"{P}/bridge/grafana/event",
                      f"{P}/sat/{SAT}/reply", f"{P}/fleet/reply", f"{P}/errors", f"{P}/fleet/summary",
                      f"{P}/fleet/status", f"{P}/state", f"{P}/fleet/catalogue", f"{P}/bridge/influx/status",
                      f"{P}/audit", f"{S}/fleet/tm/{PACKET}", f"{S}/fleet/event", f"{S}/fleet/reply", f"{S}/errors",
                      f"{S}/audit", f"{S}/fleet/summary", f"{S}/fleet/status", f"{S}/state", f"{S}/fleet/catalogue",
                      f"{S}/bridge/influx/status", f"{S}/bridge/influx/event"},
    "grafana-bridge": {f"{P}/bridge/grafana/orbitwin-grafana-bridge/reply"},
    "serial-bridge": {f"{P}/board/{BOARD}/cmd", f"{P}/board/{BOARD}/fault", f"{P}/fleet/catalogue",
                      f"{S}/fleet/catalogue"},
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackBroker]:
    b = start_stack_broker(tmp_path_factory.mktemp("stack-broker"))
    yield b
    b.stop()


def test_the_acl_is_generated_from_the_contract_and_covers_every_role() -> None:
    assert ACL.read_text() == acl_text(), "stale: python -m twin.contract.roles > docker/mosquitto/acl"
    assert [r.name for r in roles()] == list(ROLES)
    users = [line.split()[1] for line in ACL.read_text().splitlines() if line.startswith("user ")]
    assert users == list(ROLES)
    # nothing is granted outside a user section (such lines would apply to every client)
    before_first_user = ACL.read_text().split("\nuser ", 1)[0]
    assert "topic" not in before_first_user.replace("twin/contract/topics.py", "")


def test_anonymous_clients_and_wrong_passwords_are_refused(broker: StackBroker) -> None:
    for protocol in (mqtt.MQTTv5, mqtt.MQTTv311):
        assert connack(broker, None, None, protocol) not in (0, None), "anonymous client accepted"
        assert connack(broker, "twin", "wrong-password", protocol) not in (0, None)
        assert connack(broker, "nobody", broker.password("operator"), protocol) not in (0, None)
    assert connack(broker, "operator", broker.password("observer")) not in (0, None), "a password of another role"
    for role in ROLES:
        assert connack(broker, role, broker.password(role)) == 0, role


def test_the_broker_speaks_tls_only(broker: StackBroker) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain", protocol=mqtt.MQTTv5)
    c.username_pw_set("operator", broker.password("operator"))
    rc: list[int] = []
    c.on_connect = lambda cl, ud, flags, reason, props: rc.append(reason.value)
    try:
        c.connect("127.0.0.1", broker.port, keepalive=5)
        deadline = time.monotonic() + 3
        while not rc and time.monotonic() < deadline:
            c.loop(0.05)
    except OSError:
        pass
    assert rc != [0], "a plain-text MQTT client was accepted on the stack's listener"
    # and a client that does not trust the stack's CA does not get through the handshake
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="untrusting", protocol=mqtt.MQTTv5)
    c.tls_set(cert_reqs=ssl.CERT_REQUIRED)  # the system's CA store only
    with pytest.raises(ssl.SSLError, match="certificate verify failed"):
        c.connect("127.0.0.1", broker.port, keepalive=5)


def test_each_role_publishes_exactly_its_topics(broker: StackBroker) -> None:
    watcher = Client(broker, "observer", (f"{P}/#", "elsewhere/#"))
    try:
        for role in ROLES:
            pub = Client(broker, role)
            try:
                sent = {}
                for topic in PUBLISH:
                    payload = f"{role} {topic} {uuid.uuid4().hex}".encode()
                    sent[topic] = (pub.publish(topic, payload), payload)
                wait_for(lambda: len(pub.acks) == len(sent), 10, what=f"PUBACKs for {role}")
                for topic, (mid, payload) in sent.items():
                    allowed = role in PUBLISH[topic]
                    reason = pub.acks[mid]
                    if allowed:
                        assert reason in (0x00, 0x10), (role, topic, hex(reason))  # 0x10: no subscriber (outside P)
                        if topic.startswith(P + "/"):
                            wait_for(lambda: watcher.got(payload), 5, what=f"{role} -> {topic} delivered")
                    else:
                        assert reason == NOT_AUTHORISED, (role, topic, hex(reason))
                # a denied publish reaches nobody
                time.sleep(0.3)
                for topic, (mid, payload) in sent.items():
                    if role not in PUBLISH[topic]:
                        assert not watcher.got(payload), (role, topic, "delivered although denied")
            finally:
                pub.close()
    finally:
        watcher.close()


def test_a_denied_qos0_publish_is_dropped_silently(broker: StackBroker) -> None:
    watcher = Client(broker, "operator", (f"{P}/#",))
    observer = Client(broker, "observer")
    bridge = Client(broker, "influx-bridge")
    try:
        marks = []
        for c, topic in ((observer, f"{P}/fleet/cmd"), (observer, f"{P}/sat/{SAT}/fault"),
                         (bridge, f"{P}/sat/{SAT}/cmd"), (bridge, f"{P}/fleet/fault")):
            payload = f"qos0 {c.role} {uuid.uuid4().hex}".encode()
            c.publish(topic, payload, qos=0)
            marks.append(payload)
        ok = f"qos0 operator {uuid.uuid4().hex}".encode()
        watcher.publish(f"{P}/fleet/cmd", ok, qos=0)  # sent after the denied ones: when it arrives, they would have
        wait_for(lambda: watcher.got(ok), 5, what="the operator's own QoS 0 command")
        time.sleep(0.2)
        assert not any(watcher.got(m) for m in marks)
    finally:
        for c in (watcher, observer, bridge):
            c.close()


def test_each_role_reads_exactly_its_topics(broker: StackBroker) -> None:
    readers = {role: Client(broker, role, (f"{P}/#",)) for role in ROLES}
    publishers = {role: Client(broker, role) for role in ROLES}
    try:
        payloads = {}
        for topic, allowed in PUBLISH.items():
            if not allowed or not topic.startswith(P + "/"):
                continue
            payload = f"read {topic} {uuid.uuid4().hex}".encode()
            publishers[sorted(allowed)[0]].publish(topic, payload)
            payloads[topic] = payload
        for topic, payload in payloads.items():
            wait_for(lambda: readers["observer"].got(payload), 5, what=f"{topic} delivered")
        time.sleep(0.3)
        for role, reader in readers.items():
            got = {t for t, p in payloads.items() if reader.got(p)}
            want = set(payloads) if role in ("operator", "observer") else READ[role]
            assert got == want, (role, sorted(got ^ want))
    finally:
        for c in (*readers.values(), *publishers.values()):
            c.close()


def test_the_observer_may_read_the_brokers_own_topics(broker: StackBroker) -> None:
    obs = Client(broker, "observer", ("$SYS/broker/uptime",))
    twin = Client(broker, "twin", ("$SYS/broker/uptime",))
    try:
        wait_for(lambda: any(t == "$SYS/broker/uptime" for t, _ in obs.received), 15, what="$SYS for the observer")
        assert not twin.received
    finally:
        obs.close()
        twin.close()


def test_the_roles_table_of_the_security_guide_is_current() -> None:
    from twin.contract.roles import markdown_table

    doc = (ACL.parents[2] / "docs" / "security.md").read_text()
    table = doc.split("<!-- roles table: python -m twin.contract.roles --markdown -->\n", 1)[1]
    assert table.split("<!-- end roles table -->", 1)[0] == markdown_table(), \
        "stale: python -m twin.contract.roles --markdown, into docs/security.md"


# --- each role's real component at its job, on the stack's broker -----------------------------------------
def _cli(log: Path, *args: str, role: str, broker: StackBroker, extra_env: dict[str, str] | None = None
         ) -> subprocess.Popen[str]:
    """``orbitwin ARGS`` as ``role`` over TLS (credentials in the environment, as in the compose stack)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBITWIN_", "MQTT_", "GRAFANA_"))}
    env |= {"ORBITWIN_MQTT_USERNAME": role, "ORBITWIN_MQTT_PASSWORD": broker.password(role), **(extra_env or {})}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "orbitwin.cli", *args, "--mqtt", broker.url.replace(
            "127.0.0.1", "localhost"), "--mqtt-ca", str(broker.ca)], stdout=out, stderr=subprocess.STDOUT, text=True,
            env=env)




@pytest.fixture(scope="module")
def twin(broker: StackBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("twin")
    watcher = Client(broker, "observer", (f"{P}/#",))
    proc = _cli(d / "twin.log", "run", "--count", "3", "--dt", "0.25", "--sat-rates", f"{SAT}:payload=4,hk=4",
                "--plain", "--refresh", "0", "--state-dir", str(d), "--client-id", "orbitwin-twin", role="twin",
                broker=broker)
    try:
        wait_for(lambda: any(t == f"{P}/state" and b'"online"' in p for t, p in watcher.received)
                 or proc.poll() is not None, 90, 0.1, what="twin birth")
        assert proc.poll() is None, (d / "twin.log").read_text()
        yield {"watcher": watcher, "dir": d}
    finally:
        stop_process(proc)
        watcher.close()


def _json(c: Client, topic: str) -> list[dict[str, Any]]:
    with c.lock:
        return [json.loads(p) for t, p in c.received if t == topic]


def test_the_operator_commands_and_injects_faults_the_observer_cannot(broker: StackBroker, twin: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    scenario = tmp_path / "ops.toml"
    scenario.write_text(f'[[request]]\nsat = "{SAT}"\ncommand = "throttle"\nargs = {{ factor = 0.75 }}\n\n'
                        f'[[request]]\nsat = "{SAT}"\nfault = "seu_burst"\nargs = {{ count = 3 }}\n')
    op = _cli(tmp_path / "op.log", "scenario", "publish", str(scenario), role="operator", broker=broker)
    assert op.wait(60) == 0, (tmp_path / "op.log").read_text()
    statuses = [json.loads(line)["status"] for line in (tmp_path / "op.log").read_text().splitlines()
                if line.startswith("{")]
    assert statuses == ["accepted", "accepted"]
    # the twin may write its audit trail: both requests are on it
    audited = wait_for(lambda: {(a["topic"], a["result"]) for a in _json(twin["watcher"], f"{P}/audit")} >=
                       {(f"{P}/sat/{SAT}/cmd", "accepted"), (f"{P}/sat/{SAT}/fault", "accepted")}, 10, 0.1,
                       what="audit records of the operator's requests")
    assert audited
    # the observer (and a bridge) sending the same: refused by the broker, so the twin never answers
    for role in ("observer", "influx-bridge", "serial-bridge"):
        c = Client(broker, role, ())
        try:
            rid = f"{role}-{uuid.uuid4().hex[:6]}"
            mid = c.publish(f"{P}/sat/{SAT}/cmd", json.dumps({"command": "enter_safe_mode", "id": rid}).encode())
            wait_for(lambda: mid in c.acks, 5, what="PUBACK")
            assert c.acks[mid] == NOT_AUTHORISED, role
        finally:
            c.close()
    # a marker request from the operator after them: once its reply is out, any reply to theirs would be too
    op_client = Client(broker, "operator", ())
    try:
        marker = f"marker-{uuid.uuid4().hex[:6]}"
        op_client.publish(f"{P}/sat/{SAT}/cmd", json.dumps({"command": "throttle", "args": {"factor": 0.8},
                                                            "id": marker}).encode())
        wait_for(lambda: any(r.get("id") == marker for r in _json(twin["watcher"], f"{P}/sat/{SAT}/reply")), 10,
                 what="the marker's reply")
    finally:
        op_client.close()
    replies = _json(twin["watcher"], f"{P}/sat/{SAT}/reply") + [
        json.loads(p) for t, p in list(twin["watcher"].received) if t.endswith("/reply")]
    assert not any(str(r.get("id", "")).startswith(("observer-", "influx-bridge-", "serial-bridge-")) for r in replies)


def test_the_serial_bridge_binds_a_board_to_the_twin(broker: StackBroker, twin: dict[str, Any],
                                                     tmp_path: Path) -> None:
    from orbitwin_fw_host import start_sims, stop_sims

    watcher = twin["watcher"]
    sims = start_sims(1, seed=7, mode="thread")
    bridge = _cli(tmp_path / "serial.log", "bridge", "serial", "--port", sims[0].port_path, "--sat", SAT,
                  "--report-every", "1", role="serial-bridge", broker=broker)
    try:
        wait_for(lambda: any(s.get("linked") for s in _json(watcher, f"{P}/board/{SAT}/state"))
                 or bridge.poll() is not None, 30, 0.1, what="board online")
        assert bridge.poll() is None, (tmp_path / "serial.log").read_text()
        # the twin read the board's state and measurements: its payload is the board's
        wait_for(lambda: any(m["fields"]["payload_source"] == 1 for m in _json(watcher, f"{P}/sat/{SAT}/tm/payload")),
                 30, 0.1, what="payload from the board")
    finally:
        stop_process(bridge)
        stop_sims(sims)


def test_the_influx_bridge_stores_and_its_health_check_passes(broker: StackBroker, twin: dict[str, Any],
                                                              influxd: Any, tmp_path: Path) -> None:
    db = f"acl{uuid.uuid4().hex[:6]}"
    influxd.create_database(db)
    bridge = _cli(tmp_path / "influx.log", "bridge", "influx", "--influx", influxd.url, "--db", db,
                  "--spool-dir", str(tmp_path / "spool"), "--dead-letter", str(tmp_path / "dead.jsonl"),
                  "--report-every", "0.5", role="influx-bridge", broker=broker)
    try:
        def stored() -> int:
            rows = influxd.points(f"SELECT count(\"seq\") AS n FROM hk WHERE sat='{SAT}'", db)
            return int(rows[0]["n"]) if rows else 0

        wait_for(lambda: stored() >= 5 or bridge.poll() is not None, 60, 0.2, what="points stored")
        assert bridge.poll() is None, (tmp_path / "influx.log").read_text()
        # the compose health check of the influx bridge, with the bridge's own credentials
        spec = importlib.util.spec_from_file_location("orbitwin_healthcheck", REPO / "docker" / "healthcheck.py")
        assert spec and spec.loader
        hc = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(hc)
        env = {"MQTT_URL": broker.url.replace("127.0.0.1", "localhost"), "MQTT_CA": str(broker.ca),
               "ORBITWIN_MQTT_USERNAME": "influx-bridge", "ORBITWIN_MQTT_PASSWORD": broker.password("influx-bridge"),
               "MQTT_USER_ENV": "ORBITWIN_MQTT_USERNAME", "MQTT_PASSWORD_ENV": "ORBITWIN_MQTT_PASSWORD"}
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            assert hc.main(["mqtt-bridge-status", "influx"]) == 0
            os.environ["ORBITWIN_MQTT_USERNAME"] = "grafana-bridge"  # may not read it: unhealthy
            os.environ["ORBITWIN_MQTT_PASSWORD"] = broker.password("grafana-bridge")
            hc.TIMEOUT_S = 3.0
            assert hc.main(["mqtt-bridge-status", "influx"]) == 1
        finally:
            os.environ.clear()
            os.environ.update(saved)
    finally:
        stop_process(bridge)

"""The twin on a real Mosquitto: requests and replies, liveness, broker restarts with nothing lost."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from bridges.mqtt_consumer import LivenessTracker, SequenceTracker
from mqtt_helpers import Recorder, start_twin, wait_for

SAT = "STARLINK-1008"
P = "orbitwin/v1"


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _hk(rec: Recorder, sat: str = SAT) -> list[dict]:
    return [p for _, p in rec.find(lambda t, p: t == f"{P}/sat/{sat}/tm/hk")]


def test_cli_fault_and_commands_with_mosquitto_clients(mosquitto, state_dir):
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/#"])
    twin = start_twin(mosquitto.url, "--count", "3", "--speed", "x4", state_dir=state_dir)
    try:
        wait_for(lambda: len(_hk(rec)) >= 2, 30)
        pub = ["mosquitto_pub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-q", "1"]
        sub = subprocess.Popen(["mosquitto_sub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-v",
                                "-t", f"{P}/sat/{SAT}/reply", "-t", f"{P}/sat/{SAT}/event", "-W", "5"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)  # let mosquitto_sub subscribe before anything is published
        subprocess.run(pub + ["-t", f"{P}/sat/{SAT}/fault", "-m",
                              '{"fault":"payload_hang","id":"hang-1"}'], check=True)
        subprocess.run(pub + ["-t", f"{P}/sat/{SAT}/cmd", "-m",
                              '{"command":"set_payload_load","args":{"load":0.3},"id":"load-1"}'], check=True)
        subprocess.run(pub + ["-t", f"{P}/sat/STARLINK-1012/cmd", "-m",
                              '{"command":"set_payload_load","args":{"load":3},"id":"bad-1"}'], check=True)
        replies = wait_for(lambda: [p for _, p in rec.find(lambda t, p: t.endswith("/reply"))]
                           if len(rec.find(lambda t, p: t.endswith("/reply"))) >= 5 else None, 20)
        by_id: dict[str, list[str]] = {}
        for r in replies:
            by_id.setdefault(r["id"], []).append(r["status"])
        assert by_id["hang-1"] == ["accepted", "completed"]
        assert by_id["load-1"] == ["accepted", "completed"]
        bad = [r for r in replies if r["id"] == "bad-1"][0]
        assert bad["status"] == "rejected" and bad["reason"] == "out_of_range" and bad["field"] == "load"
        # the fault shows up in events, and in the 1 Hz hk telemetry within two ticks
        applied = wait_for(lambda: rec.find(lambda t, p: t == f"{P}/sat/{SAT}/event" and p["name"] == "fault_started"), 10)
        t_fault = applied[0][1]["t_s"]
        hung = wait_for(lambda: [p for p in _hk(rec) if p["fields"]["payload_util"] == 0.0], 10)
        assert hung[0]["t_s"] - t_fault <= 2 * 1.0
        out, _ = sub.communicate(timeout=30)
        assert f"{P}/sat/{SAT}/reply" in out and '"status":"completed"' in out and '"name":"fault_started"' in out
    finally:
        _stop(twin)
        rec.close()


def test_death_within_1_5_keepalive_after_kill9_then_rebirth_and_stale_death(mosquitto, state_dir):
    keepalive = 2
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/state"])
    live = LivenessTracker()
    twin = start_twin(mosquitto.url, "--count", "2", "--keepalive", str(keepalive), state_dir=state_dir)
    try:
        birth = wait_for(lambda: [p for _, p in rec.find(lambda t, p: p.get("state") == "online")], 30)[0]
        live.update(birth)
        assert live.online
        twin.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        twin.wait()

        def death():
            with rec.lock:
                return [(p, at) for t, p, _, at in rec.messages if p.get("state") == "offline"]
        (payload, at), *_ = wait_for(death, 3 * keepalive)
        assert payload["bseq"] == birth["bseq"]
        assert at - t_kill <= 1.5 * keepalive + 0.5  # broker checks keepalive with sub-second granularity
        live.update(payload)
        assert not live.online

        twin = start_twin(mosquitto.url, "--count", "2", "--keepalive", str(keepalive), state_dir=state_dir)
        reborn = wait_for(lambda: [p for _, p in rec.find(lambda t, p: p.get("state") == "online"
                                                            and p["bseq"] != birth["bseq"])], 30)[0]
        assert reborn["bseq"] > birth["bseq"]
        live.update(reborn)
        # a stale death (the old birth's) arriving now: consumers ignore it, the twin re-asserts its birth
        rec.publish(f"{P}/state", {"v": 1, "state": "offline", "bseq": birth["bseq"]}, qos=1)
        wait_for(lambda: len(rec.find(lambda t, p: p.get("state") == "online" and p["bseq"] == reborn["bseq"])) >= 2, 10)
        assert live.update({"v": 1, "state": "offline", "bseq": birth["bseq"]}) is True
        assert live.stale_deaths == 1
        # the retained state a newcomer sees is the birth
        late = Recorder(mosquitto.host, mosquitto.port, [f"{P}/state"])
        retained = wait_for(lambda: late.find(lambda t, p: True), 5)
        assert retained[-1][1]["state"] == "online" and retained[-1][1]["bseq"] == reborn["bseq"]
        late.close()
    finally:
        _stop(twin)
        rec.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_broker_restart_loses_no_telemetry(mosquitto, state_dir, sig):
    sats = 30
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/sat/+/tm/+", f"{P}/replay/+/tm/+", f"{P}/fleet/reply"],
                   client_id="gap-checker", persistent=True)
    twin = start_twin(mosquitto.url, "--count", str(sats), "--speed", "x5", "--rates", "hk=1,orbit=1,power=1",
                      state_dir=state_dir, client_id="twin-under-test")
    tracker = SequenceTracker()
    seen = 0

    def consume() -> None:
        nonlocal seen
        with rec.lock:
            new = rec.messages[seen:]
            seen = len(rec.messages)
        for topic, p, _, _ in new:
            if "/tm/" in topic:
                tracker.observe(p["sat"], p["run"], p["seq"])

    try:
        wait_for(lambda: len(rec.find(lambda t, p: "/tm/" in t)) > sats * 20, 60)
        mosquitto.restart(sig)
        before = len(rec.messages)
        wait_for(lambda: rec.connected.is_set(), 15)
        wait_for(lambda: len(rec.messages) > before + sats * 40, 60)
        # close the gaps a SIGKILL may leave with replay requests to the twin's buffer
        for attempt in range(5):
            consume()
            if tracker.missing_count == 0:
                break
            for k, req in enumerate(tracker.replay_requests()):
                rec.publish(f"{P}/fleet/replay", {**req, "id": f"replay-{attempt}-{k}"})
            time.sleep(1.0)
        consume()
        assert tracker.received > sats * 40
        assert tracker.missing_count == 0, f"missing {tracker.missing_count} after replay"
        assert tracker.abandoned == 0
        if sig == signal.SIGTERM:
            assert tracker.filled == 0  # a graceful restart needs no replay at all
    finally:
        _stop(twin)
        rec.close()


def test_malformed_and_unknown_topics_do_not_stop_the_twin(mosquitto, state_dir):
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/#"])
    twin = start_twin(mosquitto.url, "--count", "2", "--speed", "x4", state_dir=state_dir)
    try:
        wait_for(lambda: _hk(rec), 30)
        rec.publish(f"{P}/sat/{SAT}/cmd", b"\xff\xfe")
        rec.publish(f"{P}/sat/{SAT}/cmd", b"x" * 70_000)
        rec.publish(f"{P}/sat/{SAT}/bogus", {"command": "throttle"})
        rec.publish(f"{P}/sat/NOPE/cmd", {"command": "throttle", "args": {"factor": 0.5}})
        rec.publish(f"{P}/fleet/cmd", {"command": "throttle", "args": {"factor": 0.5}})
        reasons = wait_for(lambda: [p["reason"] for _, p in rec.find(lambda t, p: isinstance(p, dict)
                                    and p.get("status") == "rejected")] if len(rec.find(
                                    lambda t, p: isinstance(p, dict) and p.get("status") == "rejected")) >= 5 else None, 20)
        assert sorted(reasons) == sorted(["malformed", "malformed", "unknown_command", "unknown_satellite",
                                          "bad_argument"])
        n = len(_hk(rec))
        wait_for(lambda: len(_hk(rec)) > n + 3, 10)  # still stepping and publishing
    finally:
        _stop(twin)
        rec.close()


def test_in_process_amqtt_fallback_broker_over_mqtt_311(state_dir):
    """Without mosquitto the embedded broker is amqtt (MQTT 3.1.1): telemetry flows, requests get replies."""
    from twin.runtime.embedded_broker import AmqttBroker

    broker = AmqttBroker().start()
    twin = start_twin(broker.url, "--count", "2", "--speed", "x4", "--mqtt-protocol", "3.1.1", state_dir=state_dir)
    try:
        import paho.mqtt.client as mqtt

        got: list = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        c.on_message = lambda cl, u, m: got.append((m.topic, json.loads(m.payload)))
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"{P}/#", 1)
        c.connect(broker.host, broker.port)
        c.loop_start()
        wait_for(lambda: any(t.endswith("/tm/hk") for t, _ in got), 30)
        c.publish(f"{P}/sat/{SAT}/cmd", json.dumps({"command": "throttle", "args": {"factor": 0.5}, "id": "t1"}), qos=1)
        replies = wait_for(lambda: [p["status"] for t, p in got if t.endswith("/reply") and p.get("id") == "t1"]
                           if len([1 for t, p in got if t.endswith("/reply")]) >= 2 else None, 20)
        assert replies == ["accepted", "completed"]
        c.disconnect()
        c.loop_stop()
    finally:
        _stop(twin)
        broker.stop()


def test_twin_over_tls_with_username_and_password(tmp_path):
    """``--mqtt mqtts://user:pass@host:port --mqtt-ca CA``: a broker that requires TLS and a password."""
    from private_ca import secure_mosquitto

    secure = secure_mosquitto(tmp_path, {"twin": "s3cret-pw"})
    broker, tls_port, ca = secure.broker, secure.tls_port, secure.ca.ca
    twin = start_twin(f"mqtts://twin:s3cret-pw@127.0.0.1:{tls_port}", "--count", "2", "--mqtt-ca",
                      str(ca), state_dir=str(tmp_path))
    bad = start_twin(f"mqtts://twin:wrong@127.0.0.1:{tls_port}", "--count", "2", "--mqtt-ca",
                     str(ca), "--connect-timeout", "3", state_dir=str(tmp_path))
    try:
        import paho.mqtt.client as mqtt

        got: list = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.username_pw_set("twin", "s3cret-pw")
        c.tls_set(ca_certs=str(ca))
        c.on_message = lambda cl, u, m: got.append((m.topic, json.loads(m.payload)))
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"{P}/#", 1)
        c.connect("127.0.0.1", tls_port)
        c.loop_start()
        wait_for(lambda: any(t.endswith("/tm/hk") for t, _ in list(got)), 30)
        assert any(t == f"{P}/state" and p["state"] == "online" for t, p in list(got))
        assert bad.wait(30) == 2  # refused credentials: a clear error and exit code 2
        c.disconnect()
        c.loop_stop()
    finally:
        _stop(twin)
        _stop(bad)
        broker.stop()

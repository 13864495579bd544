"""The MQTT door: settings parsing, and every connecting subcommand through a broker with a private CA.

The broker is a real Mosquitto with a password file and TLS listeners whose certificates come
from a CA made for the test (``private_ca.py``). The twin, the InfluxDB, serial and Grafana
bridges and ``scenario publish`` each run as ``orbitwin ...`` child processes with
``--mqtt mqtts://... --mqtt-ca CA`` and credentials from the environment, a password file or the
URL, and each does real work through it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt_client
import pytest

from mqtt_helpers import stop_process, wait_for
from private_ca import SecureBroker, secure_mosquitto
from servers import find_mosquitto, free_port
from twin.mqtt import (ENV_PASSWORD, ENV_PASSWORD_FILE, ENV_USERNAME, MqttConfigError, MqttConnectError,
                       MqttConnection, MqttSettings)

P = "orbitwin/v1"
SAT = "STARLINK-1008"
USERS = {name: f"{name}-{uuid.uuid4().hex[:10]}" for name in
         ("twin", "influx", "serial", "grafana", "scenario", "observer")}


# --- settings ------------------------------------------------------------------------------
def test_url_gives_host_port_and_tls() -> None:
    assert (MqttSettings("mqtt://broker").host, MqttSettings("mqtt://broker").port) == ("broker", 1883)
    s = MqttSettings("mqtts://broker.example")
    assert (s.port, s.tls, s.v5) == (8883, True, True)
    assert (MqttSettings("tcp://h:1884").port, MqttSettings("ssl://h:8884").tls) == (1884, True)
    assert MqttSettings("mqtt://[::1]:1999").redacted_url == "mqtt://[::1]:1999"
    assert not MqttSettings("mqtt://h", protocol="3.1.1").v5


@pytest.mark.parametrize("url,needle", [
    ("http://h", "must start with mqtt:// or mqtts://"),
    ("broker:1883", "must start with"),
    ("mqtt://", "has no host"),
    ("mqtt://h:99999", "bad port"),
    ("mqtt://h:abc", "bad port"),
    ("mqtt://h/topic", "no path"),
])
def test_bad_urls_are_named(url: str, needle: str) -> None:
    with pytest.raises(MqttConfigError, match=needle):
        MqttSettings(url)


@pytest.mark.parametrize("kw,needle", [
    ({"ca_file": "ca.pem"}, "need an mqtts:// URL"),
    ({"insecure": True}, "need an mqtts:// URL"),
    ({"protocol": "4"}, "5 or 3.1.1"),
    ({"keepalive_s": 0}, "keepalive"),
    ({"session_expiry_s": -1}, "session expiry"),
    ({"password": "pw"}, "needs a username"),
])
def test_bad_options_are_named(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(MqttConfigError, match=needle):
        MqttSettings("mqtt://h", **kw)
    with pytest.raises(MqttConfigError, match="client key needs a client certificate"):
        MqttSettings("mqtts://h", key_file="k.pem")


def test_credentials_precedence_arguments_then_url_then_environment(tmp_path: Path) -> None:
    env = {ENV_USERNAME: "env-user", ENV_PASSWORD: "env-pw"}
    assert MqttSettings.from_sources("mqtt://h", environ=env).credentials == ("env-user", "env-pw")
    assert MqttSettings.from_sources("mqtt://u:p%40ss@h", environ=env).credentials == ("u", "p@ss")
    assert MqttSettings.from_sources("mqtt://u:p@h", username="arg", password="argpw",
                                     environ=env).credentials == ("arg", "argpw")
    assert MqttSettings.from_sources("mqtt://u@h", environ=env).credentials == ("u", "env-pw")
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\n")
    assert MqttSettings.from_sources("mqtt://u:p@h", password_file=str(pw_file),
                                     environ=env).credentials == ("u", "from-file")
    assert MqttSettings.from_sources("mqtt://h", environ={ENV_USERNAME: "e", ENV_PASSWORD_FILE: str(pw_file)}
                                     ).credentials == ("e", "from-file")
    # no username anywhere: an ambient password is not used, an explicit one is an error
    assert MqttSettings.from_sources("mqtt://h", environ={ENV_PASSWORD: "x"}).credentials == (None, None)
    with pytest.raises(MqttConfigError, match="needs a username"):
        MqttSettings.from_sources("mqtt://h", password_file=str(pw_file), environ={})
    assert MqttSettings.from_sources("mqtt://h", environ={}).credentials == (None, None)


def test_password_file_and_conflicting_sources_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(MqttConfigError, match="is empty"):
        MqttSettings.from_sources("mqtt://u@h", password_file=str(empty), environ={})
    with pytest.raises(MqttConfigError, match="cannot read MQTT password file"):
        MqttSettings.from_sources("mqtt://u@h", password_file=str(tmp_path / "missing"), environ={})
    with pytest.raises(MqttConfigError, match="once"):
        MqttSettings.from_sources("mqtt://u@h", password="a", password_file=str(empty), environ={})
    with pytest.raises(MqttConfigError, match="only one of"):
        MqttSettings.from_sources("mqtt://u@h", environ={ENV_PASSWORD: "a", ENV_PASSWORD_FILE: str(empty)})


def test_the_password_is_never_shown() -> None:
    s = MqttSettings.from_sources("mqtts://user:hunter2-secret@h:8883", environ={})
    assert s.credentials == ("user", "hunter2-secret")
    for text in (repr(s), str(s), s.redacted_url):
        assert "hunter2" not in text
    assert s.redacted_url == "mqtts://user@h:8883"


def test_every_connecting_subcommand_takes_the_same_mqtt_options() -> None:
    from orbitwin.cli.main import build_parser

    shared = {"--mqtt", "--mqtt-username", "--mqtt-password", "--mqtt-password-file", "--mqtt-ca", "--mqtt-cert",
              "--mqtt-key", "--mqtt-insecure", "--mqtt-protocol", "--prefix", "--client-id", "--keepalive",
              "--session-expiry", "--connect-timeout"}

    def options(parser: Any, path: list[str]) -> set[str]:
        for name in path:
            sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")  # noqa: SLF001
            parser = sub.choices[name]
        return {o for a in parser._actions for o in a.option_strings}  # noqa: SLF001

    top = build_parser()
    for path in (["run"], ["bridge", "influx"], ["bridge", "serial"], ["bridge", "grafana"], ["scenario", "publish"]):
        assert shared <= options(top, path), path


def test_cli_settings_from_options_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orbitwin.cli.main import build_parser
    from orbitwin.cli.mqtt_options import mqtt_settings_from_args

    pw = tmp_path / "pw"
    pw.write_text("file-pw")
    monkeypatch.setenv(ENV_USERNAME, "env-user")
    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    monkeypatch.delenv(ENV_PASSWORD_FILE, raising=False)
    a = build_parser().parse_args(["scenario", "publish", "x.toml", "--mqtt", "mqtts://h", "--mqtt-ca", "ca.pem",
                                   "--mqtt-password-file", str(pw), "--mqtt-protocol", "3.1.1",
                                   "--session-expiry", "60", "--keepalive", "7"])
    s = mqtt_settings_from_args(a)
    assert (s.credentials, s.ca_file, s.protocol, s.session_expiry_s, s.keepalive_s) == \
        (("env-user", "file-pw"), "ca.pem", "3.1.1", 60, 7)


def test_unreachable_broker_is_one_line_and_exit_2(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    r = _orbitwin("scenario", "publish", str(scenario), "--mqtt", f"mqtt://127.0.0.1:{free_port()}",
                  "--connect-timeout", "1.5", env={})
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("orbitwin: error: could not connect to mqtt://127.0.0.1:") and "refused" in r.stderr


def test_connection_errors_raise_without_waiting_for_the_timeout() -> None:
    with pytest.raises(MqttConnectError, match="could not connect"):
        MqttConnection(MqttSettings(f"mqtt://127.0.0.1:{free_port()}"), client_id="x").start(1.0)


# --- through a broker with a private CA ------------------------------------------------------
def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBITWIN_MQTT_", "ORBITWIN_GRAFANA_"))}
    return env | extra


def _orbitwin(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orbitwin.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=_clean_env(env))


def _spawn(log: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    out = open(log, "w")  # noqa: SIM115 - closed when the process is reaped by the OS
    return subprocess.Popen([sys.executable, "-m", "orbitwin.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                            text=True, env=_clean_env(env))




def _scenario(d: Path, factor: float = 0.9) -> Path:
    path = d / f"scenario-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(f'[[request]]\nsat = "{SAT}"\ncommand = "throttle"\nargs = {{ factor = {factor} }}\n\n'
                    f'[[request]]\nselect = {{ names = "STARLINK-10*" }}\ncommand = "set_payload_load"\n'
                    f'args = {{ load = 0.5 }}\n')
    return path


def _password_file(d: Path, user: str) -> Path:
    path = d / f"{user}.pw"
    path.write_text(USERS[user] + "\n")
    path.chmod(0o600)
    return path


class Observer:
    """A subscriber (through the door) recording JSON messages on ``topics``."""

    def __init__(self, settings: MqttSettings, topics: list[str]) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, Any]] = []
        self.conn = MqttConnection(settings, client_id=f"observer-{uuid.uuid4().hex[:6]}",
                                   on_connect=lambda c: c.subscribe(topics, qos=1), on_message=self._on_message)
        self.conn.start(15)

    def _on_message(self, msg: Any) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        with self.lock:
            self.messages.append((msg.topic, body))

    def find(self, pred: Callable[[str, Any], bool]) -> list[tuple[str, Any]]:
        with self.lock:
            return [(t, p) for t, p in self.messages if pred(t, p)]

    def close(self) -> None:
        self.conn.stop()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    if not find_mosquitto():
        if os.environ.get("ORBITWIN_REQUIRE_SERVERS") == "1":
            pytest.fail("mosquitto not found")
        pytest.skip("mosquitto not found")
    broker = secure_mosquitto(tmp_path_factory.mktemp("secure-broker"), USERS)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def stack(secure: SecureBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The twin (credentials from the environment) and an observer, both over TLS with the private CA."""
    d = tmp_path_factory.mktemp("twin")
    ca = str(secure.ca.ca)
    observer = Observer(MqttSettings(secure.url(), username="observer", password=USERS["observer"], ca_file=ca),
                        [f"{P}/state", f"{P}/sat/+/tm/payload", f"{P}/sat/+/tm/hk", f"{P}/board/+/state",
                         f"{P}/bridge/+/event", f"{P}/bridge/+/status"])
    twin = _spawn(d / "twin.log", "run", "--mqtt", secure.url(), "--mqtt-ca", ca, "--count", "3", "--dt", "0.25",
                  "--sat-rates", f"{SAT}:payload=4,hk=4", "--plain", "--refresh", "0", "--state-dir", str(d),
                  env={ENV_USERNAME: "twin", ENV_PASSWORD: USERS["twin"]})
    try:
        wait_for(lambda: observer.find(lambda t, p: t == f"{P}/state" and p.get("state") == "online")
                 or twin.poll() is not None, 60, what="twin birth")
        assert twin.poll() is None, (d / "twin.log").read_text()
        yield {"observer": observer, "twin": twin, "ca": ca, "dir": d}
    finally:
        stop_process(twin)
        observer.close()


def test_twin_over_tls_with_credentials_from_the_environment(stack: dict[str, Any]) -> None:
    obs = stack["observer"]
    wait_for(lambda: obs.find(lambda t, p: t == f"{P}/sat/{SAT}/tm/hk"), 20, what="twin telemetry")


def test_influx_bridge_over_tls_with_a_password_file(stack: dict[str, Any], secure: SecureBroker, influxd: Any,
                                                     tmp_path: Path) -> None:
    db = f"door{uuid.uuid4().hex[:6]}"
    influxd.create_database(db)
    bridge = _spawn(tmp_path / "bridge.log", "bridge", "influx", "--mqtt", secure.url(), "--mqtt-ca", stack["ca"],
                    "--mqtt-username", "influx", "--mqtt-password-file", str(_password_file(tmp_path, "influx")),
                    "--influx", influxd.url, "--db", db, "--client-id", f"door-influx-{db}",
                    "--spool-dir", str(tmp_path / "spool"), "--dead-letter", str(tmp_path / "dead.jsonl"),
                    "--report-every", "0.5", env={})
    try:
        def stored() -> int:
            rows = influxd.points(f"SELECT count(\"seq\") AS n FROM hk WHERE sat='{SAT}'", db)
            return int(rows[0]["n"]) if rows else 0

        wait_for(lambda: stored() >= 5 or bridge.poll() is not None, 60, 0.2, what="points stored")
        assert bridge.poll() is None, (tmp_path / "bridge.log").read_text()
        wait_for(lambda: stack["observer"].find(lambda t, p: t == f"{P}/bridge/influx/status"
                                                and p.get("points_written", 0) > 0), 20, what="bridge status")
        assert USERS["influx"] not in (tmp_path / "bridge.log").read_text()
    finally:
        stop_process(bridge)


def test_serial_bridge_over_tls_binds_a_board(stack: dict[str, Any], secure: SecureBroker, tmp_path: Path) -> None:
    from orbitwin_fw_host import start_sims, stop_sims

    obs = stack["observer"]
    sims = start_sims(1, seed=11, mode="thread")
    bridge = _spawn(tmp_path / "serial.log", "bridge", "serial", "--port", sims[0].port_path, "--sat", SAT,
                    "--mqtt", secure.url(), "--mqtt-ca", stack["ca"], "--report-every", "1",
                    env={ENV_USERNAME: "serial", ENV_PASSWORD_FILE: str(_password_file(tmp_path, "serial"))})
    try:
        wait_for(lambda: obs.find(lambda t, p: t == f"{P}/board/{SAT}/state" and p.get("linked"))
                 or bridge.poll() is not None, 30, what="board online")
        assert bridge.poll() is None, (tmp_path / "serial.log").read_text()
        wait_for(lambda: obs.find(lambda t, p: t == f"{P}/sat/{SAT}/tm/payload"
                                  and p["fields"]["payload_source"] == 1), 30, what="payload from the board")
    finally:
        stop_process(bridge)
        stop_sims(sims)
    wait_for(lambda: obs.find(lambda t, p: t == f"{P}/board/{SAT}/state" and p.get("state") == "offline"), 10,
             what="board offline after the bridge stopped")


def _webhook(fingerprint: str) -> dict[str, Any]:
    uid = "orbitwin-payload_temp_k-red-high"  # the provisioned Grafana rule (dashboards/alerts.py)
    alert = {"status": "firing", "fingerprint": fingerprint, "startsAt": "2026-02-22T19:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "values": {"A": 365.2},
             "labels": {"alertname": "payload_temp_k red high", "sat": SAT, "severity": "critical"},
             "annotations": {}, "generatorURL": f"http://grafana:3000/alerting/grafana/{uid}/view?orgId=1"}
    return {"receiver": "orbitwin", "status": "firing", "alerts": [alert]}


def test_grafana_bridge_over_tls_turns_a_webhook_into_a_command(stack: dict[str, Any], secure: SecureBroker,
                                                                tmp_path: Path) -> None:
    obs = stack["observer"]
    port = free_port()
    bridge = _spawn(tmp_path / "grafana.log", "bridge", "grafana", "--mqtt", secure.url(user="grafana"),
                    "--mqtt-ca", stack["ca"], "--listen", f"127.0.0.1:{port}", "--client-id", "door-grafana",
                    "--report-every", "1",
                    env={ENV_PASSWORD: USERS["grafana"], "ORBITWIN_GRAFANA_TOKEN": "door-token"})
    try:
        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return bool(json.loads(r.read())["ok"])
            except OSError:
                return bridge.poll() is not None

        wait_for(healthy, 30, 0.1, what="webhook up")
        assert bridge.poll() is None, (tmp_path / "grafana.log").read_text()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/webhook", data=json.dumps(_webhook(uuid.uuid4().hex))
                                     .encode(), headers={"Content-Type": "application/json",
                                                         "Authorization": "Bearer door-token"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            [action] = json.loads(r.read())["actions"]
        done = wait_for(lambda: obs.find(lambda t, p: t == f"{P}/bridge/grafana/event"
                                         and p["name"] == "command_completed"
                                         and p["detail"]["request_id"] == action["request_id"]), 20,
                        what="the twin's reply")
        assert done[0][1]["detail"]["reply"]["result"]["factor"] == 0.5
    finally:
        stop_process(bridge)


def test_scenario_publish_over_tls_mqtt5_mqtt311_and_client_certificate(stack: dict[str, Any],
                                                                        secure: SecureBroker, tmp_path: Path) -> None:
    pw = str(_password_file(tmp_path, "scenario"))
    common = ["--mqtt-ca", stack["ca"], "--mqtt-username", "scenario", "--mqtt-password-file", pw]
    for extra in ([], ["--mqtt-protocol", "3.1.1"]):
        r = _orbitwin("scenario", "publish", str(_scenario(tmp_path)), "--mqtt", secure.url(), *common, *extra,
                      env={})
        assert r.returncode == 0, r.stdout + r.stderr
        assert [json.loads(line)["status"] for line in r.stdout.splitlines()] == ["accepted", "accepted"], extra
    ca = secure.ca
    r = _orbitwin("scenario", "publish", str(_scenario(tmp_path)), "--mqtt", secure.url(secure.mtls_port), *common,
                  "--mqtt-cert", str(ca.client_cert), "--mqtt-key", str(ca.client_key), env={})
    assert r.returncode == 0, r.stdout + r.stderr
    assert [json.loads(line)["status"] for line in r.stdout.splitlines()] == ["accepted", "accepted"]


def test_wrong_credentials_and_tls_errors_are_one_line_without_the_password(stack: dict[str, Any],
                                                                            secure: SecureBroker,
                                                                            tmp_path: Path) -> None:
    scenario = str(_scenario(tmp_path))
    wrong = "wrong-" + uuid.uuid4().hex[:8]
    cases = [  # (arguments, environment, expected text)
        (["--mqtt", secure.url(), "--mqtt-ca", stack["ca"], "--mqtt-username", "scenario"],
         {ENV_PASSWORD: wrong}, "refused the connection"),
        (["--mqtt", f"mqtts://scenario:{wrong}@127.0.0.1:{secure.tls_port}", "--mqtt-ca", stack["ca"]], {},
         "refused the connection"),
        (["--mqtt", secure.url(), "--mqtt-username", "scenario"], {ENV_PASSWORD: USERS["scenario"]},
         "certificate verify failed"),
        (["--mqtt", secure.url(), "--mqtt-ca", str(tmp_path / "missing-ca.pem")], {}, "cannot load TLS files"),
        (["--mqtt", f"mqtt://127.0.0.1:{secure.tls_port}"], {}, "is it a TLS port? then use mqtts://"),
        (["--mqtt", secure.url(secure.mtls_port), "--mqtt-ca", stack["ca"], "--mqtt-username", "scenario"],
         {ENV_PASSWORD: USERS["scenario"]}, "client certificate"),
    ]
    for args, env, needle in cases:
        r = _orbitwin("scenario", "publish", scenario, *args, "--connect-timeout", "3", env=env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("orbitwin: error: ") and r.stderr.count("\n") == 1, (args, r.stderr)
        assert needle in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert wrong not in r.stderr + r.stdout and USERS["scenario"] not in r.stderr + r.stdout
    r = _orbitwin("bridge", "influx", "--mqtt", secure.url(), "--mqtt-ca", stack["ca"], "--mqtt-username", "influx",
                  "--influx", "http://127.0.0.1:1", "--spool-dir", str(tmp_path / "s"), "--dead-letter",
                  str(tmp_path / "d.jsonl"), "--connect-timeout", "3", env={ENV_PASSWORD: wrong})
    assert r.returncode == 2 and "refused the connection" in r.stderr and wrong not in r.stderr, r.stderr


# --- the lean client: bulk reads, coalesced writes, in-flight refill, reconnection -----------
class _Sink:
    """A subscriber through the door that keeps every payload of ``topic`` in arrival order."""

    def __init__(self, settings: MqttSettings, topic: str) -> None:
        self.lock = threading.Lock()
        self.payloads: list[bytes] = []
        self.conn = MqttConnection(settings, client_id=f"sink-{uuid.uuid4().hex[:6]}",
                                   on_connect=lambda c: c.subscribe([topic], qos=1), on_message=self._on_message)
        self.conn.start(15)

    def _on_message(self, msg: Any) -> None:
        with self.lock:
            self.payloads.append(bytes(msg.payload))

    def seqs(self) -> list[int]:
        with self.lock:
            return [int(p.split(b":", 1)[0]) for p in self.payloads]


def _payload(k: int, size: int) -> bytes:
    head = f"{k}:".encode()
    return head + bytes((k + j) % 251 for j in range(max(size - len(head), 0)))


def _acked(conn: MqttConnection) -> Callable[[], bool]:
    return lambda: not conn.client._out_messages  # noqa: SLF001 - every QoS 1 message acknowledged


def test_lean_client_reads_packets_split_at_every_byte() -> None:
    """A read that ends inside a packet (fixed header, length or body) keeps the tail for the next read."""
    import socket

    conn = MqttConnection(MqttSettings("mqtt://127.0.0.1:1"), client_id="split", max_inflight=10)
    client = conn.client
    acked: list[int] = []
    received: list[tuple[str, bytes]] = []
    client.on_publish_count = acked.append
    client.on_message = lambda c, u, m: received.append((m.topic, bytes(m.payload)))
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours  # noqa: SLF001 - the broker's end is `theirs`
    client._state = mqtt_client._ConnectionState.MQTT_CS_CONNECTED  # noqa: SLF001
    try:
        assert client.publish_many([(f"t/{k}", b"x" * k) for k in range(3)], 1) == [0, 0, 0]
        theirs.recv(65536)  # the three PUBLISH packets
        # PUBACK 1 (MQTT 5 short form), PUBACK 2 with "no matching subscribers", PUBACK 3 with an empty
        # property length, then a QoS 0 PUBLISH with a 200-byte payload (two remaining-length bytes)
        body = b"\x00\x03a/b" + b"\x00" + b"p" * 200
        stream = (b"\x40\x02\x00\x01" + b"\x40\x03\x00\x02\x10" + b"\x40\x04\x00\x03\x00\x00"
                  + b"\x30" + bytes((len(body) & 0x7F | 0x80, len(body) >> 7)) + body)
        for byte in stream:
            theirs.send(bytes((byte,)))
            assert client.loop_read() == 0
        assert sum(acked) == 3 and not client._out_messages and not client._rbuf  # noqa: SLF001
        assert received == [("a/b", b"p" * 200)]
        assert client.recv_calls == len(stream)
    finally:
        client._sock = None  # noqa: SLF001
        ours.close()
        theirs.close()


def _publish_topics(data: bytes) -> list[str]:
    """The topics of the PUBLISH packets in a byte stream, in order."""
    topics, pos = [], 0
    while pos < len(data):
        cmd, i, length, shift = data[pos], pos + 1, 0, 0
        while True:
            byte = data[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if cmd & 0xF0 == 0x30:
            n = int.from_bytes(data[i:i + 2], "big")
            topics.append(data[i + 2:i + 2 + n].decode())
        pos = i + length
    return topics


def test_lean_client_keeps_publish_order_when_acknowledgements_free_slots() -> None:
    """A PUBACK frees an in-flight slot that is refilled only after the whole read is handled; a message
    published in between must not overtake the older ones waiting in the queue (seen in CI as live hk
    arriving 33, 36, 34, 35 during a request flood)."""
    import socket

    conn = MqttConnection(MqttSettings("mqtt://127.0.0.1:1"), client_id="order", max_inflight=2)
    client = conn.client
    client.on_publish_count = lambda n: None
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours  # noqa: SLF001 - the broker's end is `theirs`
    client._state = mqtt_client._ConnectionState.MQTT_CS_CONNECTED  # noqa: SLF001
    try:
        assert client.publish_many([(f"t/{k}", b"x") for k in range(4)], 1) == [0] * 4  # 2 in flight, 2 waiting
        client._fast_puback(1, 0)  # noqa: SLF001 - as the network thread does mid-read: slot freed, not refilled
        assert client.publish_many([("t/4", b"x")], 1) == [0]
        client.publish("t/5", b"x", qos=1)
        for mid in (2, 3, 4, 5, 6):
            client._fast_puback(mid, 0)  # noqa: SLF001
            with client._out_message_mutex:  # noqa: SLF001
                client._update_inflight()  # noqa: SLF001
        client.loop_write()
        assert _publish_topics(theirs.recv(65536)) == [f"t/{k}" for k in range(6)]
    finally:
        client._sock = None  # noqa: SLF001
        ours.close()
        theirs.close()


def test_lean_client_bulk_reads_and_coalesced_writes_on_mosquitto(mosquitto: Any) -> None:
    """20,000 QoS 1 messages of 20 B .. 100 KB (packets straddle every read and write) arrive whole, in order."""
    settings = MqttSettings(mosquitto.url)
    sink = _Sink(settings, "lean/#")
    pub = MqttConnection(settings, client_id="lean-pub", max_inflight=1000, max_queued=60_000)
    acks: list[int] = []
    pub.client.on_publish_count = acks.append
    pub.start(15)
    try:
        assert pub.client._max_inflight_messages == 100  # noqa: SLF001 - the broker's Receive Maximum
        sizes = [20 + (k * 7919) % 400 for k in range(20_000)]
        for k in range(0, 20_000, 997):
            sizes[k] = 100_000  # larger than one read chunk and one write chunk
        rcs = pub.publish_many([(f"lean/{k % 50}", _payload(k, s)) for k, s in enumerate(sizes)], qos=1)
        assert set(rcs) == {0}
        wait_for(_acked(pub), 60, what="all acknowledged")
        wait_for(lambda: len(sink.payloads) >= 20_000, 60, what="all received")
        assert sink.seqs() == list(range(20_000))  # once each, in publish order
        with sink.lock:
            assert [len(p) for p in sink.payloads] == sizes and sink.payloads[997] == _payload(997, 100_000)
        c = pub.client
        assert sum(acks) == 20_000
        assert c.publish_packets >= 20_000 and c.send_calls < c.publish_packets / 5  # many packets per send()
        assert c.recv_calls < 20_000 / 5  # many PUBACKs per recv()
    finally:
        pub.stop()
        sink.conn.stop()


def test_lean_client_qos0_and_single_publishes_complete_their_infos(mosquitto: Any) -> None:
    """QoS 0 packets written in one send still get on_publish each; a QoS 1 info can be waited on."""
    settings = MqttSettings(mosquitto.url, protocol="3.1.1")
    sink = _Sink(settings, "lean0/#")
    pub = MqttConnection(settings, client_id="lean-q0", max_inflight=20)
    written: list[int] = []
    pub.client.on_publish = lambda c, u, mid, rc, props: written.append(mid)
    pub.start(15)
    try:
        infos = [pub.publish("lean0/a", _payload(k, 50), qos=0) for k in range(2_000)]
        last = pub.publish("lean0/b", _payload(2_000, 50), qos=1)
        last.wait_for_publish(20)
        assert last.is_published()
        wait_for(lambda: all(i.is_published() for i in infos), 20, what="QoS 0 written")
        assert len(written) == 2_001  # 2,000 writes (QoS 0) and one PUBACK (MQTT 3.1.1, no bulk count)
        wait_for(lambda: len(sink.payloads) >= 2_001, 30, what="received")
        assert sorted(sink.seqs()) == list(range(2_001))
    finally:
        pub.stop()
        sink.conn.stop()


def test_lean_client_resends_queued_messages_after_losing_its_connection(mosquitto: Any) -> None:
    """Another client takes the publisher's id mid-stream: after reconnecting it sends what was in flight or queued."""
    settings = MqttSettings(mosquitto.url, reconnect_min_s=1, reconnect_max_s=2)
    sink = _Sink(settings, "resend/#")
    pub = MqttConnection(settings, client_id="lean-resend", max_inflight=20)
    pub.start(15)
    try:
        pub.publish_many([(f"resend/{k % 10}", _payload(k, 200)) for k in range(30_000)], qos=1)
        wait_for(lambda: len(pub.client._out_messages) < 28_000, 30, what="sending")  # noqa: SLF001
        thief = mqtt_client.Client(mqtt_client.CallbackAPIVersion.VERSION2, client_id="lean-resend",
                                   protocol=mqtt_client.MQTTv5)
        thief.connect(mosquitto.host, mosquitto.port)  # the broker drops the publisher (session taken over)
        thief.loop_start()
        wait_for(lambda: pub.disconnects >= 1, 10, what="publisher dropped")
        assert pub.client._out_messages  # noqa: SLF001 - messages were still waiting
        thief.disconnect()
        thief.loop_stop()
        wait_for(lambda: pub.connects >= 2, 20, what="publisher back")
        wait_for(_acked(pub), 60, what="all acknowledged")
        wait_for(lambda: len(set(sink.seqs())) >= 30_000, 60, what="all received")
        seqs = sink.seqs()
        assert set(seqs) == set(range(30_000))  # nothing lost; a resent in-flight message may come twice
        assert len(seqs) - 30_000 <= 20
    finally:
        pub.stop()
        sink.conn.stop()


def test_lean_client_coalesced_writes_over_tls(secure: SecureBroker) -> None:
    """TLS records carry many coalesced packets; every one arrives (MQTT 5 and 3.1.1)."""
    for protocol in ("5", "3.1.1"):
        settings = MqttSettings(secure.url(), username="observer", password=USERS["observer"],
                                ca_file=str(secure.ca.ca), protocol=protocol)
        sink = _Sink(settings, "lean-tls/#")  # not the running twin's topics
        pub = MqttConnection(settings, client_id=f"lean-tls-{uuid.uuid4().hex[:6]}", max_inflight=200)
        pub.start(15)
        try:
            msgs = [(f"lean-tls/S{k % 7}", _payload(k, 20 + (k * 31) % 40_000)) for k in range(3_000)]
            assert set(pub.publish_many(msgs, qos=1)) == {0}
            wait_for(_acked(pub), 60, what="all acknowledged")
            wait_for(lambda: len(sink.payloads) >= 3_000, 60, what="all received")
            assert sink.seqs() == list(range(3_000))
            assert pub.client.send_calls < pub.client.publish_packets
        finally:
            pub.stop()
            sink.conn.stop()

"""Real-process tests for the mosquitto and influxd test servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from servers import InfluxdProcess, MosquittoProcess, find_influxd, free_port

TIMEOUT = 10.0


def wait_until(cond: Callable[[], bool], timeout: float = TIMEOUT, step: float = 0.02) -> bool:
    """Poll ``cond`` until true or ``timeout`` elapses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


class Peer:
    """Minimal paho 2.x client that records messages and CONNACK flags."""

    def __init__(self, broker: MosquittoProcess, client_id: str = "", protocol: int = mqtt.MQTTv5) -> None:
        self.broker = broker
        self.protocol = protocol
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.messages: list[mqtt.MQTTMessage] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_present: bool | None = None
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, rc: object, props: object) -> None:
        self.session_present = flags.session_present
        self.connected.set()

    def connect(self, *, clean_start: bool = True, session_expiry: int = 0) -> Peer:
        kwargs: dict[str, object] = {}
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            if session_expiry:
                props.SessionExpiryInterval = session_expiry
            kwargs = {"clean_start": clean_start, "properties": props}
        self.connected.clear()
        self.client.connect(self.broker.host, self.broker.port, keepalive=30, **kwargs)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK"
        return self

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=qos)
        assert self.subscribed.wait(TIMEOUT), "no SUBACK"

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- mosquitto


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_mosquitto_round_trip_qos1(mosquitto: MosquittoProcess, protocol: int) -> None:
    assert mosquitto.running and mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    sub = Peer(mosquitto, protocol=protocol).connect()
    pub = Peer(mosquitto, protocol=protocol).connect()
    try:
        sub.subscribe("orbitwin/test/+", qos=1)
        payloads = [f"m{i}".encode() for i in range(20)]
        for p in payloads:
            pub.publish("orbitwin/test/a", p, qos=1)
        assert wait_until(lambda: len(sub.messages) >= len(payloads))
        assert [m.payload for m in sub.messages] == payloads
        assert all(m.qos == 1 for m in sub.messages)
    finally:
        sub.close()
        pub.close()
    assert mosquitto.log_path.exists() and "running" in mosquitto.log_path.read_text()


def test_mosquitto_persistent_session_survives_sigterm_restart(mosquitto: MosquittoProcess) -> None:
    topic, cid = "orbitwin/telemetry/sat-1", "persistent-sub"
    sub = Peer(mosquitto, client_id=cid).connect(clean_start=False, session_expiry=300)
    sub.subscribe(topic, qos=1)
    sub.close()

    pub = Peer(mosquitto).connect()
    for i in range(50):
        pub.publish(topic, f"before-{i}".encode())
    pub.close()

    port = mosquitto.port
    mosquitto.restart()  # SIGTERM: broker writes its database, restarts on the same port
    assert mosquitto.port == port and mosquitto.running
    assert "Saving in-memory database" in mosquitto.log_path.read_text()

    pub = Peer(mosquitto).connect()
    for i in range(10):
        pub.publish(topic, f"after-{i}".encode())
    pub.close()

    sub = Peer(mosquitto, client_id=cid).connect(clean_start=False, session_expiry=300)
    try:
        assert sub.session_present is True
        expected = [f"before-{i}".encode() for i in range(50)] + [f"after-{i}".encode() for i in range(10)]
        assert wait_until(lambda: len(sub.messages) >= len(expected)), f"got {len(sub.messages)}"
        assert [m.payload for m in sub.messages] == expected
    finally:
        sub.close()


def test_two_brokers_get_distinct_ports(mosquitto: MosquittoProcess) -> None:
    with MosquittoProcess() as other:
        assert other.port != mosquitto.port and other.dir != mosquitto.dir
        a, b = Peer(mosquitto).connect(), Peer(other).connect()
        try:
            a.subscribe("x")
            b.subscribe("x")
            a.publish("x", b"only-a")
            assert wait_until(lambda: len(a.messages) == 1)
            assert b.messages == []
        finally:
            a.close()
            b.close()
    assert not other.running and not other.dir.exists()


def test_mosquitto_explicit_port_and_kill() -> None:
    port = free_port()
    broker = MosquittoProcess(port)
    if broker.binary is None:
        pytest.skip("mosquitto not found")
    with broker:
        assert broker.port == port
        with socket.create_connection((broker.host, port), timeout=1):
            pass
        broker.kill()
        assert not broker.running
        broker.start()
        assert broker.port == port and broker.running


# --------------------------------------------------------------------------- influxd


def test_influxd_write_and_query(influxd: InfluxdProcess) -> None:
    assert influxd.ping()
    influxd.create_database("orbitwin_t1")
    now_ns = time.time_ns()
    influxd.write([f"power,sat=sat-1 soc=0.83,bus_v=28.1 {now_ns}", f"power,sat=sat-2 soc=0.5 {now_ns}"], "orbitwin_t1")
    rows = influxd.points("SELECT soc, bus_v FROM power WHERE sat = 'sat-1'", "orbitwin_t1")
    assert len(rows) == 1 and rows[0]["soc"] == pytest.approx(0.83) and rows[0]["bus_v"] == pytest.approx(28.1)
    count = influxd.points("SELECT count(soc) FROM power", "orbitwin_t1")
    assert count[0]["count"] == 2


def test_influxd_restart_keeps_data() -> None:
    if find_influxd() is None:
        pytest.skip("influxd not found")
    with InfluxdProcess() as server:
        server.create_database("keep")
        server.write("m,k=v x=1i 1700000000000000000", "keep", precision="ns")
        url = server.url
        server.restart()
        assert server.url == url
        assert server.points("SELECT x FROM m", "keep") == [{"time": "2023-11-14T22:13:20Z", "x": 1}]
        server.kill()  # WAL must still hold acknowledged writes after SIGKILL
        server.start()
        assert server.points("SELECT x FROM m", "keep")[0]["x"] == 1
        dbs = server.query("SHOW DATABASES")["results"][0]["series"][0]["values"]
        assert ["keep"] in dbs

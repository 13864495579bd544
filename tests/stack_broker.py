"""The Docker stack's broker without Docker: the real mosquitto, started through the container's entrypoint
with the files ``scripts/gen-env.sh`` generates (``.env``, ``tls/``) and the ACL ``docker/mosquitto/acl``.

``docker/mosquitto/mosquitto.conf`` is used as is except for its paths (container paths become temp
dirs) and its listener (a free loopback port); :func:`start_stack_broker` asserts each rewrite
happened, so a config that loses its TLS files, password file or ACL fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from servers import find_mosquitto, free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]
GEN_ENV = REPO / "scripts" / "gen-env.sh"
MOSQUITTO_DIR = REPO / "docker" / "mosquitto"
ACL = MOSQUITTO_DIR / "acl"


def need_mosquitto() -> None:
    """Skip (fail under ORBITWIN_REQUIRE_SERVERS=1) without mosquitto, mosquitto_passwd or openssl."""
    missing = [b for b, ok in (("mosquitto", find_mosquitto()), ("mosquitto_passwd", shutil.which("mosquitto_passwd")),
                                ("openssl", shutil.which("openssl"))) if not ok]
    if missing:
        if os.environ.get("ORBITWIN_REQUIRE_SERVERS") == "1":
            pytest.fail(f"not found: {', '.join(missing)}")
        pytest.skip(f"not found: {', '.join(missing)} (apt-get install mosquitto openssl)")


def gen_env(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/gen-env.sh --out out ...``."""
    return subprocess.run(["bash", str(GEN_ENV), "--out", str(out), *args], capture_output=True, text=True,
                          timeout=60)


def parse_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


@dataclass
class StackBroker:
    """The running broker: its TLS port, the generated env (passwords), CA, and dirs."""

    port: int
    env: dict[str, str]
    ca: Path
    dir: Path
    health_dir: Path
    run_env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def password(self, role: str) -> str:
        return self.env[f"MQTT_{role.upper().replace('-', '_')}_PASSWORD"]

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.dir / "mosquitto.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def start_stack_broker(d: Path, env: dict[str, str] | None = None) -> StackBroker:
    """gen-env into ``d`` (unless ``env`` is given with ``d/tls`` present), then the entrypoint and mosquitto."""
    need_mosquitto()
    if env is None:
        r = gen_env(d / ".env")
        assert r.returncode == 0, r.stderr
        env = parse_env(d / ".env")
    auth, health, data, tls = d / "auth", d / "health", d / "data", d / "tls"
    data.mkdir(exist_ok=True)
    port = free_port()
    conf = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    for old, new in (("/orbitwin/tls/", f"{tls}/"), ("/mosquitto/auth/", f"{auth}/"),
                     ("/mosquitto/config/acl", str(ACL)), ("/mosquitto/data/", f"{data}/")):
        assert old in conf, f"mosquitto.conf lost {old}"
        conf = conf.replace(old, new)
    conf, n = re.subn(r"^listener 8883$", f"listener {port} 127.0.0.1", conf, flags=re.M)
    assert n == 1, "mosquitto.conf lost its TLS listener on 8883"
    conf = conf.replace("log_dest stdout", f"log_dest file {d / 'mosquitto.log'}")
    if os.geteuid() == 0:
        conf += f"user {os.environ.get('USER') or 'root'}\n"  # no privilege drop: the temp dir stays readable
    (d / "mosquitto.conf").write_text(conf)
    run_env = {**{k: v for k, v in os.environ.items() if not k.startswith("MQTT_")}, **env,
               "MOSQUITTO_ACL": str(ACL), "MOSQUITTO_AUTH_DIR": str(auth), "ORBITWIN_TLS_DIR": str(tls),
               "MOSQUITTO_HEALTH_DIR": str(health), "MOSQUITTO_CONF": str(d / "mosquitto.conf"),
               "MOSQUITTO_PORT": str(port),
               "PATH": f"{Path(find_mosquitto() or '').parent}:{os.environ.get('PATH', '')}"}
    log = open(d / "entrypoint.log", "w")
    proc = subprocess.Popen(["sh", str(MOSQUITTO_DIR / "entrypoint.sh")], env=run_env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    b = StackBroker(port, env, tls / "ca.pem", d, health, run_env, proc)
    if not wait_for_port("127.0.0.1", port, 15, proc):
        b.stop()
        raise AssertionError(f"mosquitto did not start: {(d / 'entrypoint.log').read_text()}\n"
                             f"{b.log() if (d / 'mosquitto.log').exists() else ''}")
    return b


def _tls_client(broker: StackBroker, user: str | None, password: str | None,
                protocol: int = mqtt.MQTTv5) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:8]}", protocol=protocol)
    c.tls_set(ca_certs=str(broker.ca), cert_reqs=ssl.CERT_REQUIRED)
    if user is not None:
        c.username_pw_set(user, password)
    return c


def connack(broker: StackBroker, user: str | None, password: str | None, protocol: int = mqtt.MQTTv5) -> int | None:
    """The CONNACK reason code (0 accepted), None when nothing answered."""
    rc: list[int] = []
    c = _tls_client(broker, user, password, protocol)
    c.on_connect = lambda cl, ud, flags, reason, props: rc.append(reason.value)
    c.connect("127.0.0.1", broker.port, keepalive=5)
    deadline = time.monotonic() + 5
    while not rc and time.monotonic() < deadline:
        c.loop(0.05)
    c.disconnect()
    return rc[0] if rc else None


class Client:
    """One role's MQTT 5 session over TLS: publishes with their PUBACK reasons, and what it receives."""

    def __init__(self, broker: StackBroker, role: str, subscribe: tuple[str, ...] = ()) -> None:
        self.role = role
        self.lock = threading.Lock()
        self.received: list[tuple[str, bytes]] = []
        self.acks: dict[int, int] = {}
        self.subscribed = threading.Event()
        self.c = _tls_client(broker, role, broker.password(role))
        self.c.on_message = self._on_message
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        ready = threading.Event()
        self.c.on_connect = lambda cl, ud, flags, reason, props: ready.set()
        self.c.connect("127.0.0.1", broker.port, keepalive=10)
        self.c.loop_start()
        assert ready.wait(10), f"{role} did not connect"
        if subscribe:
            self.c.subscribe([(t, 1) for t in subscribe])
            assert self.subscribed.wait(10)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((msg.topic, msg.payload))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self.lock:
            self.acks[mid] = reason.value

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """The message id (its PUBACK reason lands in ``acks[mid]`` at QoS 1)."""
        return self.c.publish(topic, payload, qos=qos).mid

    def got(self, payload: bytes) -> list[str]:
        with self.lock:
            return [t for t, p in self.received if p == payload]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()

"""Container health checks (exit 0 healthy, 1 not), for docker-compose.yml.

    healthcheck.py mqtt-state                 the twin's retained birth on {prefix}/state is "online"
    healthcheck.py mqtt-message TOPIC         a message arrives on TOPIC (e.g. a bridge's status)
    healthcheck.py tcp HOST:PORT              something listens there

MQTT checks read MQTT_URL (mqtt://host:port), MQTT_USER_ENV/MQTT_PASSWORD_ENV (names of the
variables holding this container's credentials) and MQTT_PREFIX (default orbitwin/v1).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import urllib.parse
import uuid

TIMEOUT_S = float(os.environ.get("HEALTH_TIMEOUT_S", "15"))


def _message(topic: str) -> bytes | None:
    import paho.mqtt.client as mqtt

    url = urllib.parse.urlsplit(os.environ.get("MQTT_URL", "mqtt://mosquitto:1883"))
    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"health-{uuid.uuid4().hex[:8]}")
    user = os.environ.get(os.environ.get("MQTT_USER_ENV", ""), "")
    if user:
        c.username_pw_set(user, os.environ.get(os.environ.get("MQTT_PASSWORD_ENV", ""), ""))
    c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=0)
    c.on_message = lambda cl, ud, m: (got.append(m.payload), done.set())
    c.connect(url.hostname or "localhost", url.port or 1883, keepalive=10)
    c.loop_start()
    done.wait(TIMEOUT_S)
    c.loop_stop()
    c.disconnect()
    return got[0] if got else None


def main(argv: list[str]) -> int:
    prefix = os.environ.get("MQTT_PREFIX", "orbitwin/v1")
    if argv[:1] == ["mqtt-state"]:
        payload = _message(f"{prefix}/state")
        return 0 if payload and json.loads(payload).get("state") == "online" else 1
    if argv[:1] == ["mqtt-message"] and len(argv) == 2:
        return 0 if _message(argv[1]) is not None else 1
    if argv[:1] == ["tcp"] and len(argv) == 2:
        host, _, port = argv[1].rpartition(":")
        with socket.create_connection((host, int(port)), timeout=TIMEOUT_S):
            return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
        print(f"unhealthy: {exc}", file=sys.stderr)
        sys.exit(1)

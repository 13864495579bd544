"""Container health checks (exit 0 healthy, 1 not), for docker-compose.yml.

    healthcheck.py mqtt-state                 the twin's retained birth on {prefix}/state is "online"
    healthcheck.py mqtt-bridge-status ID      bridge ID publishes its status ({prefix}/bridge/ID/status)
    healthcheck.py mqtt-message TOPIC         a message arrives on TOPIC
    healthcheck.py tcp HOST:PORT              something listens there
    healthcheck.py http URL                   URL answers 200 (the grafana bridge's /healthz: MQTT connected)

MQTT checks read MQTT_URL (mqtt://host:port or mqtts://...), MQTT_USER_ENV/MQTT_PASSWORD_ENV
(names of the variables holding this container's credentials: no secret on the check's command
line), MQTT_CA (CA file for mqtts://)
and MQTT_PREFIX (default: the contract's DEFAULT_PREFIX); MQTT_SHARD=K checks shard K's topics
(``{prefix}/shard/K/state``, ``{prefix}/shard/K/bridge/ID/status``). They connect through the same MQTT
door as the twin and the bridges.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import urllib.request
import uuid

TIMEOUT_S = float(os.environ.get("HEALTH_TIMEOUT_S", "15"))


def _message(topic: str) -> bytes | None:
    from twin.mqtt import MqttConnection, MqttSettings

    user = os.environ.get(os.environ.get("MQTT_USER_ENV", ""), "") or None
    password = os.environ.get(os.environ.get("MQTT_PASSWORD_ENV", ""), "") if user else None
    settings = MqttSettings(os.environ.get("MQTT_URL", "mqtt://mosquitto:1883"), username=user, password=password,
                            ca_file=os.environ.get("MQTT_CA") or None)
    got: list[bytes] = []
    done = threading.Event()

    def on_message(msg: object) -> None:
        got.append(msg.payload)  # type: ignore[attr-defined]
        done.set()

    conn = MqttConnection(settings, client_id=f"health-{uuid.uuid4().hex[:8]}", on_message=on_message,
                          on_connect=lambda c: c.subscribe([topic], qos=0))
    conn.start(TIMEOUT_S)
    try:
        done.wait(TIMEOUT_S)
    finally:
        conn.stop()
    return got[0] if got else None


def main(argv: list[str]) -> int:
    from twin.contract.topics import DEFAULT_PREFIX, Topics

    topics = Topics(os.environ.get("MQTT_PREFIX", DEFAULT_PREFIX), os.environ.get("MQTT_SHARD") or None)
    if argv[:1] == ["mqtt-state"]:
        payload = _message(topics.state)
        return 0 if payload and json.loads(payload).get("state") == "online" else 1
    if argv[:1] == ["mqtt-bridge-status"] and len(argv) == 2:
        return 0 if _message(topics.bridge(argv[1], "status")) is not None else 1
    if argv[:1] == ["mqtt-message"] and len(argv) == 2:
        return 0 if _message(argv[1]) is not None else 1
    if argv[:1] == ["http"] and len(argv) == 2:
        with urllib.request.urlopen(argv[1], timeout=TIMEOUT_S) as r:  # noqa: S310 - the container's own URL
            return 0 if r.status == 200 else 1
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

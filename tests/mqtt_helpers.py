"""Helpers for MQTT tests: a twin subprocess, a recording paho subscriber, condition waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``cond`` until truthy; return its value or raise AssertionError (naming ``what``) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout} s")


def start_twin(url: str, *args: str, state_dir: str, client_id: str | None = None) -> subprocess.Popen:
    """``orbitwin run --mqtt url`` as a child process (stdout/stderr to a temp log)."""
    cmd = [sys.executable, "-m", "orbitwin.cli", "run", "--mqtt", url, "--plain", "--refresh", "0",
           "--state-dir", state_dir, *args]
    if client_id:
        cmd += ["--client-id", client_id]
    log = open(os.path.join(state_dir, f"twin-{uuid.uuid4().hex[:6]}.log"), "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)


LIVE_RECORDERS: "weakref.WeakSet[Recorder]" = weakref.WeakSet()


def close_live_recorders() -> int:
    """Close every :class:`Recorder` a test left open (a failed assertion skips its ``close``); returns how many.

    A recorder left running keeps reconnecting to a broker that is gone, and its daemon thread may
    still write to stderr while the interpreter shuts down (a fatal error, exit code 134).
    """
    left = list(LIVE_RECORDERS)
    for rec in left:
        rec.close()
    return len(left)


class Recorder:
    """A paho client that records every message (topic, payload dict or bytes, properties, wall time)."""

    def __init__(self, host: str, port: int, topics: list[str], *, client_id: str | None = None,
                 persistent: bool = False, qos: int = 1) -> None:
        self.messages: list[tuple[str, Any, Any, float]] = []
        self.lock = threading.Lock()
        self.topics = topics
        self.qos = qos
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"rec-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if persistent else 0
        self.client.connect_async(host, port, keepalive=5, clean_start=not persistent, properties=props)
        self.client.loop_start()
        LIVE_RECORDERS.add(self)
        wait_for(self.connected.is_set, 10)

    def _on_connect(self, client, userdata, flags, rc, props) -> None:  # type: ignore[no-untyped-def]
        client.subscribe([(t, self.qos) for t in self.topics])
        self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        try:
            payload: Any = json.loads(msg.payload)
        except ValueError:
            payload = msg.payload
        with self.lock:
            self.messages.append((msg.topic, payload, msg.properties, time.monotonic()))

    def find(self, pred: Callable[[str, Any], bool]) -> list[tuple[str, Any]]:
        with self.lock:
            return [(t, p) for t, p, _, _ in self.messages if pred(t, p)]

    def publish(self, topic: str, payload: Any, qos: int = 1, properties: Properties | None = None) -> None:
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        self.client.publish(topic, data, qos=qos, properties=properties).wait_for_publish(5)

    def close(self) -> None:
        LIVE_RECORDERS.discard(self)
        self.client.disconnect()
        self.client.loop_stop()


class SteppingTwin:
    """A TwinService around ``twin`` stepping every ``period_s`` of wall time in a thread on the broker at
    ``url``; an exception stops it and is kept in ``error``. ``step_ms`` holds each step's duration;
    ``ticks`` per tick (t_s, wall start [monotonic s], late_s, request_s): how late the loop woke
    from its sleep (the load it met: other processes, other threads holding the GIL) and the wall
    time it spent on requests."""

    def __init__(self, twin: Any, url: str, state_dir: str, period_s: float = 0.01) -> None:
        from twin.mqtt import MqttSettings
        from twin.runtime.mqtt_link import LinkSettings, MqttLink
        from twin.runtime.mqtt_service import TwinService

        self.twin = twin
        self.link = MqttLink(MqttSettings(url), LinkSettings(state_dir=state_dir))
        self.service = TwinService(self.twin, self.link)
        self.error: BaseException | None = None
        self.step_ms: list[float] = []
        self.step_cpu_ms: list[float] = []  # the step's CPU time (this thread's): what a neighbour process does not inflate
        self.ticks: list[tuple[float, float, float, float]] = []
        self.period_s = period_s
        self._stop = threading.Event()
        self.link.start()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            due = None
            while not self._stop.is_set():
                start, r0 = time.monotonic(), time.perf_counter()
                self.service.process_requests()
                t0, c0 = time.perf_counter(), time.thread_time()
                self.twin.step()
                self.step_ms.append((time.perf_counter() - t0) * 1e3)
                self.step_cpu_ms.append((time.thread_time() - c0) * 1e3)
                self.service.publish_tick()
                self.ticks.append((self.twin.t_s, start, 0.0 if due is None else max(0.0, start - due), t0 - r0))
                due = time.monotonic() + self.period_s
                time.sleep(self.period_s)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc

    def running(self, ticks: int = 5, timeout: float = 20.0) -> None:
        """Wait until it is connected (its request subscriptions sent) and has stepped ``ticks`` more ticks
        (and has not failed)."""
        wait_for(self.link.connected.is_set, timeout, what="twin connected")
        tick = self.twin.tick
        wait_for(lambda: self.twin.tick >= tick + ticks or self.error, timeout, what="twin stepping")
        assert self.error is None, f"the twin stopped stepping: {self.error!r}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.link.stop()
        self.twin.close()


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 20.0) -> None:
    """SIGTERM a child process and wait for it; kill it if it does not end within ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

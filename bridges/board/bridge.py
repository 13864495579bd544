"""``orbitwin bridge serial``: a dev board on a serial port becomes a satellite's compute payload.

The bridge keeps a :class:`~bridges.board.link.SerialLink` to the board (a device path, an
``rfc2217://`` URL, or a firmware-sim port) and an MQTT session. It announces the board on
``{prefix}/board/{board}/state`` (retained, with the satellite it binds; the last will says
offline), forwards the board's measurements to ``{prefix}/board/{board}/tm`` and link events to
``/event``, and takes requests on ``/cmd`` and ``/fault`` from the twin or any MQTT client, with
the same replies as the twin (accepted, then completed with the board's ACK, or rejected).
Jobs: ``run_job`` (``job_id``, ``ops``) queues a job on the board (JOB_START); its end (JOB_DONE:
the ops run, the board-measured busy time, the uncorrectable upsets during it, done / cancelled /
refused) goes to ``/job``. A board reset or unplug loses the jobs it holds: the bridge reports
each as ``lost`` there (as it does a job whose request could not reach the board).
Unplugging the board never stops the bridge: the link reconnects when the port returns, and
meanwhile the state says ``linked: false`` so the twin falls back to its simulated payload.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from orbitwin_fw import messages as m
from twin.contract.topics import DEFAULT_PREFIX, Topics
from twin.mqtt import Message as MqttMessage
from twin.mqtt import MqttConnection, MqttSettings, reply_properties

from bridges.board.link import LinkError, Message, SerialLink

# board request name -> (SerialLink method, argument name or None, range)
BOARD_COMMANDS: dict[str, tuple[str, str | None, tuple[float, float] | None]] = {
    "set_load": ("set_load", "load", (0.0, 1.0)),
    "set_throttle": ("set_throttle", "factor", (0.0, 1.0)),
    "power_cycle": ("power_cycle", None, None),
    "reset": ("reset", None, None),
    "hardware_reset": ("hardware_reset", None, None),
    "ping": ("ping", None, None),
}
BOARD_FAULTS = ("seu", "seu_double", "latchup", "hang")
_U32 = 2**32 - 1
# job requests: name -> (SerialLink method, its integer arguments with their ranges: the JOB_START / JOB_CANCEL fields)
BOARD_JOB_COMMANDS: dict[str, tuple[str, tuple[tuple[str, int, int], ...]]] = {
    "run_job": ("start_job", (("job_id", 0, _U32), ("ops", 1, _U32))),
    "cancel_job": ("cancel_job", (("job_id", 0, _U32),)),
}


@dataclass
class SerialBridgeSettings:
    """The board's port, the satellite it becomes, the broker (:class:`~twin.mqtt.MqttSettings` or a URL)."""

    port: str
    sat: str
    mqtt: MqttSettings
    board: str | None = None
    prefix: str = DEFAULT_PREFIX
    baudrate: int = 115200
    tm_hz: float = 5.0  # board measurements forwarded to MQTT per second (the board sends ~10)
    weights_bits: int = 8 * 8192
    client_id: str | None = None  # default orbitwin-serial-{board}

    def __post_init__(self) -> None:
        self.mqtt = MqttSettings.coerce(self.mqtt)


class SerialBridge:
    """One board <-> MQTT (see the module docstring)."""

    def __init__(self, s: SerialBridgeSettings) -> None:
        self.s = s
        self.board = s.board or s.sat
        self.topics = Topics(s.prefix)
        self.counters: dict[str, int] = {"tm": 0, "requests": 0, "rejected": 0, "events": 0, "jobs": 0}
        self.seq = 0
        self._last_tm = 0.0
        self._seu_seen = 0
        self._latched_seen = 0
        self._jobs: queue.SimpleQueue[tuple[str, dict[str, Any], Any] | None] = queue.SimpleQueue()
        self._held: set[int] = set()  # board jobs started and not yet ended (JOB_DONE) or lost
        self._held_lock = threading.Lock()
        self._rng_bits = uuid.uuid4().int
        self._early_events: list[tuple[str, dict[str, Any]]] | None = []
        self.link = SerialLink(s.port, s.baudrate, on_message=self._on_board, on_event=self._on_link_event)
        will = MqttMessage(self.topics.board(self.board, "state"),
                           json.dumps({"v": 1, "board": self.board, "sat": s.sat, "state": "offline"}), qos=1,
                           retain=True)
        self.conn = MqttConnection(s.mqtt, client_id=s.client_id or f"orbitwin-serial-{self.board}", will=will,
                                   birth=lambda: [self._state("online")], on_connect=self._on_connect,
                                   on_message=self._on_message)
        self.client = self.conn.client
        self._worker = threading.Thread(target=self._work, name=f"serial-bridge-{self.board}", daemon=True)

    # --- lifecycle ------------------------------------------------------------------
    def start(self, wait_s: float | None = 10.0) -> SerialBridge:
        """Connect to the broker (waiting up to ``wait_s`` s; :class:`~twin.mqtt.MqttConnectError` on failure),
        then open the board's port (the link retries by itself until the board answers).

        To fail fast on a port that cannot be opened, call ``link.open_port()`` first: it raises
        :class:`~bridges.board.link.PortUnavailable` before anything is published.
        """
        try:
            self.conn.start(wait_s)
        except BaseException:
            self.link.stop()  # a port opened beforehand is closed again
            raise
        early, self._early_events = self._early_events, None
        for name, detail in early or ():
            self._on_link_event(name, detail)
        self._worker.start()
        self.link.start()
        return self

    def stop(self) -> None:
        self._jobs.put(None)
        self.link.stop()
        self.conn.stop(self._state("offline"))

    # --- MQTT -------------------------------------------------------------------------
    def _state(self, state: str) -> MqttMessage:
        caps = self.link.capabilities or {}
        body = {"v": 1, "board": self.board, "sat": self.s.sat, "state": state, "linked": self.link.connected,
                "silent": self.link.silent, "port": self.s.port, "wall_time": time.time(),
                "capabilities": {k: (v.decode(errors="replace").strip("\x00") if isinstance(v, bytes) else v)
                                 for k, v in caps.items()}}
        return MqttMessage(self.topics.board(self.board, "state"), json.dumps(body), qos=1, retain=True)

    def _publish_state(self, state: str) -> None:
        m = self._state(state)
        self.conn.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)

    def _on_connect(self, conn: MqttConnection) -> None:
        conn.subscribe([self.topics.board(self.board, "cmd"), self.topics.board(self.board, "fault")], qos=1)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        self.counters["requests"] += 1
        leaf = msg.topic.rsplit("/", 1)[-1]
        props = msg.properties
        route = (getattr(props, "ResponseTopic", None) or self.topics.board(self.board, "reply"),
                 getattr(props, "CorrelationData", None))
        try:
            req = json.loads(msg.payload)
            if not isinstance(req, dict):
                raise ValueError("payload must be a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            self._reply(route, "rejected", None, None, reason="malformed", message=str(exc)[:120], field="payload")
            return
        rid = req.get("id") if isinstance(req.get("id"), str) else f"b{self.counters['requests']}"
        name = req.get("command" if leaf == "cmd" else "fault")
        args = req.get("args") or {}
        known = {**BOARD_COMMANDS, **BOARD_JOB_COMMANDS} if leaf == "cmd" else dict.fromkeys(BOARD_FAULTS)
        if not isinstance(name, str) or name not in known:
            self._reply(route, "rejected", rid, name if isinstance(name, str) else None, reason="unknown_command",
                        message=f"unknown board {leaf} {name!r}", field="command" if leaf == "cmd" else "fault")
            return
        if not isinstance(args, dict):
            self._reply(route, "rejected", rid, name, reason="bad_argument", message="args must be an object",
                        field="args")
            return
        if leaf == "cmd" and name in BOARD_JOB_COMMANDS:
            for key, lo, hi in BOARD_JOB_COMMANDS[name][1]:
                n = args.get(key)
                if isinstance(n, bool) or not isinstance(n, int):
                    self._reply(route, "rejected", rid, name, reason="bad_argument",
                                message=f"{key} must be an integer", field=key)
                    return
                if not lo <= n <= hi:
                    self._reply(route, "rejected", rid, name, reason="out_of_range",
                                message=f"{key}={n} outside [{lo}, {hi}]", field=key)
                    return
        elif leaf == "cmd":
            _, arg, rng = BOARD_COMMANDS[name]
            if arg is not None:
                v = args.get(arg)
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    self._reply(route, "rejected", rid, name, reason="bad_argument", message=f"{arg} must be a number",
                                field=arg)
                    return
                if rng is not None and not rng[0] <= v <= rng[1]:
                    self._reply(route, "rejected", rid, name, reason="out_of_range",
                                message=f"{arg}={v} outside [{rng[0]}, {rng[1]}]", field=arg)
                    return
        if not self.link.connected:
            self._reply(route, "rejected", rid, name, reason="not_now", message="board not connected", field="board")
            return
        self._reply(route, "accepted", rid, name)
        self._jobs.put((leaf, {"name": name, "args": args, "id": rid}, route))

    def _reply(self, route: tuple[str, bytes | None], status: str, rid: str | None, request: str | None,
               **extra: Any) -> None:
        topic, corr = route
        if status == "rejected":
            self.counters["rejected"] += 1
        body = {"v": 1, "status": status, "id": rid, "request": request, "board": self.board, "sat": self.s.sat,
                "wall_time": time.time(), **extra}
        self.conn.publish(topic, json.dumps(body), qos=1, properties=reply_properties(correlation=corr))

    def _event(self, name: str, severity: str = "info", **detail: Any) -> None:
        self.counters["events"] += 1
        body = {"v": 1, "board": self.board, "sat": self.s.sat, "name": name, "severity": severity,
                "wall_time": time.time(), "detail": detail}
        self.conn.publish(self.topics.board(self.board, "event"), json.dumps(body, default=str), qos=1)

    # --- the board ----------------------------------------------------------------------
    def _job_ended(self, job_id: int, ops_done: int, busy_us: int, upsets: int, status: str) -> None:
        """Publish a job's end on ``/job`` (qos 1: the twin ends the job with it)."""
        with self._held_lock:
            self._held.discard(job_id)
        self.counters["jobs"] += 1
        body = {"v": 1, "board": self.board, "sat": self.s.sat, "wall_time": time.time(), "job_id": job_id,
                "ops_done": ops_done, "busy_s": busy_us / 1e6, "upsets": upsets, "status": status}
        self.conn.publish(self.topics.board(self.board, "job"), json.dumps(body), qos=1)

    def _jobs_lost(self) -> None:
        """The board reset or went away: the jobs it held are gone (the firmware keeps no queue across a reset)."""
        with self._held_lock:
            lost, self._held = sorted(self._held), set()
        for job_id in lost:
            self._job_ended(job_id, 0, 0, 0, "lost")

    def _on_board(self, msg: Message) -> None:
        if msg.mtype == m.JOB_DONE:
            f = msg.fields
            self._job_ended(int(f["job_id"]), int(f["ops_done"]), int(f["busy_us"]), int(f["upsets"]),
                            m.JOB_STATUS_NAMES.get(int(f["status"]), str(f["status"])))
            return
        if msg.mtype != m.PAYLOAD_TELEMETRY:
            return
        f = msg.fields
        detected = int(f.get("seu_detected", 0))
        if detected > self._seu_seen:
            self._event("seu_detected", "warning", new=detected - self._seu_seen, bit=f.get("last_seu_bit"),
                        corrected=f.get("seu_corrected"), uncorrectable=f.get("seu_uncorrectable"),
                        weights_ok=f.get("weights_ok"))
        self._seu_seen = detected  # a board reset starts its counters again
        if int(f.get("latched", 0)) != self._latched_seen:
            self._latched_seen = int(f.get("latched", 0))
            self._event("latchup" if self._latched_seen else "latchup_cleared",
                        "critical" if self._latched_seen else "info")
        now = time.monotonic()
        if now - self._last_tm < 1.0 / self.s.tm_hz:
            return
        self._last_tm = now
        self.seq += 1
        self.counters["tm"] += 1
        body = {"v": 1, "board": self.board, "sat": self.s.sat, "seq": self.seq, "wall_time": time.time(),
                "linked": True, "raw": dict(msg.fields)}
        self.conn.publish(self.topics.board(self.board, "tm"), json.dumps(body, default=str), qos=0)

    def _on_link_event(self, name: str, detail: dict[str, Any]) -> None:
        if self._early_events is not None:  # the port opened before the broker connection: told once connected
            self._early_events.append((name, detail))
            return
        severity = "warning" if name in ("disconnected", "silent", "board_reset") else "info"
        self._event(f"link_{name}", severity, **{k: v for k, v in detail.items() if k != "capabilities"})
        if name in ("disconnected", "board_reset"):
            self._jobs_lost()
        if name in ("connected", "disconnected", "silent", "alive"):
            self._publish_state("online")

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            leaf, req, route = job
            try:
                result = self._execute(leaf, req["name"], req["args"])
                self._reply(route, "completed", req["id"], req["name"], result=result)
            except (LinkError, OSError, ValueError) as exc:
                self._reply(route, "rejected", req["id"], req["name"], reason="not_now", message=str(exc)[:160])

    def _execute(self, leaf: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
        link = self.link
        if leaf == "cmd" and name in BOARD_JOB_COMMANDS:
            job_id = int(args["job_id"])
            if name == "cancel_job":
                ack = link.cancel_job(job_id)
            else:
                with self._held_lock:
                    self._held.add(job_id)  # before the request: its JOB_DONE may follow the ACK at once
                try:
                    ack = link.start_job(job_id, int(args["ops"]))
                except (LinkError, OSError, ValueError):
                    with self._held_lock:
                        held = job_id in self._held
                    if held:  # not reported by the board meanwhile: it never got it (or lost it)
                        self._job_ended(job_id, 0, 0, 0, "lost")
                    raise
            return {"ack": ack.status, "detail": ack.detail, "rtt_ms": round(ack.rtt_s * 1e3, 3)}
        if leaf == "cmd":
            method, arg, _ = BOARD_COMMANDS[name]
            out = getattr(link, method)(float(args[arg])) if arg else getattr(link, method)()
            return {"ack": getattr(out, "status", out), "rtt_ms": round(getattr(out, "rtt_s", 0.0) * 1e3, 3)}
        count = int(args.get("count", 1)) if name in ("seu", "seu_double") else 1
        acks = []
        for _ in range(max(1, min(count, 64))):
            if name in ("seu", "seu_double"):
                self._rng_bits = (self._rng_bits * 6364136223846793005 + 1442695040888963407) % 2**64
                bits = int((link.capabilities or {}).get("buffer_size", 0)) * 8 or self.s.weights_bits
                acks.append(link.inject_seu(self._rng_bits % bits, double=name == "seu_double").status)
            elif name == "latchup":
                acks.append(link.inject_latchup().status)
            else:
                acks.append(link.inject_hang().status)
        self._event(f"fault_{name}", "warning", count=len(acks))
        return {"acks": acks}

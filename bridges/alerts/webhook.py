"""Grafana alerts act on the constellation: a webhook receiver that turns alerts into twin commands.

``POST /``, ``/webhook`` or ``/grafana/webhook`` (the provisioned contact point's URL) takes
Grafana's webhook notification (``receiver``, ``status``,
``alerts[]`` with ``status``, ``labels``, ``annotations``, ``values``, ``startsAt``, ``endsAt``,
``fingerprint``, ``generatorURL``; ``groupLabels``, ``commonLabels``, ... are accepted and
ignored). It is authenticated by HTTP basic auth and/or ``Authorization: Bearer <secret>``, compared in
constant time (the CLI reads them from the environment or files, never the command line). Each
alert goes through the rule table (:mod:`bridges.alerts.rules`: dedup by fingerprint + status,
rate limits); each resulting command is published to ``{prefix}/sat/{sat}/cmd`` (or
``{prefix}/fleet/cmd`` with ``select``), signed when the settings hold a signer (a twin started with
``--keys`` takes only signed requests), with MQTT 5 response topic + correlation data (over MQTT
3.1.1: ``reply_to`` in the request), and the twin's replies are awaited asynchronously (the HTTP
answer does not wait for them).

Every action, suppressed action, reply and reply timeout is an event on
``{prefix}/bridge/{bridge_id}/event``, shaped like the twin's events (``v``, ``t`` (wall time),
``t_s``, ``run``, ``seq``, ``kind`` = ``bridge``, ``name``, ``severity``, ``sat``, ``detail``), so
the InfluxDB mapping of events applies to it as is. With ``annotations`` in the settings (an :class:`EventSink`,
e.g. :class:`bridges.grafana_api.annotations.Annotator`) each event is also handed to it. ``GET /healthz``, ``/metrics`` (counters,
JSON) and ``/events`` (the last 200 events) are not authenticated.

Errors: 401 (auth), 404/405 (path, method), 411 (no length), 413 (body over the limit), 415
(not ``application/json``), 400 (malformed JSON or not a webhook payload); each is a JSON
``{"ok": false, "reason": ..., "message": ...}`` and counted.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import json
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from twin.contract.topics import DEFAULT_PREFIX, Topics
from twin.mqtt import MqttConnection, MqttSettings, reply_properties

from bridges.alerts.rules import Action, Alert, Planner, RuleTable


class EventSink(Protocol):
    """Takes a copy of every bridge event without blocking (e.g. Grafana annotations) and reports its status."""

    def submit(self, event: dict[str, Any]) -> None: ...

    def status(self) -> dict[str, Any]: ...


@dataclass
class GrafanaBridgeSettings:
    """The broker (:class:`~twin.mqtt.MqttSettings` or a URL), identity, webhook server and its credentials."""

    mqtt: MqttSettings
    prefix: str = DEFAULT_PREFIX
    client_id: str = "orbitwin-grafana-bridge"
    listen_host: str = "127.0.0.1"
    listen_port: int | None = 8090  # None: no HTTP server (poller only)
    basic_user: str | None = None
    basic_password: str | None = None
    token: str | None = None
    max_body_bytes: int = 1 << 20
    reply_timeout_s: float = 30.0
    bridge_id: str = "grafana"
    # signs each command: (topic, request) -> payload bytes (twin.contract.request_auth.Signer); None: unsigned
    signer: Callable[[str, Mapping[str, Any]], bytes] | None = field(default=None, repr=False)
    annotations: EventSink | None = field(default=None, repr=False)  # bridges.grafana_api.annotations.Annotator

    def __post_init__(self) -> None:
        self.mqtt = MqttSettings.coerce(self.mqtt)


class BadRequest(Exception):
    """A request the HTTP server answers with ``status`` and a JSON reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_notification(body: bytes) -> list[Alert]:
    """A webhook body -> its alerts; raise BadRequest(400) naming what is wrong. Nothing acts on a bad body."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, "malformed_json", f"body is not JSON: {str(exc)[:100]}") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "invalid_payload", "body must be a JSON object")
    if not isinstance(doc.get("alerts"), list):
        raise BadRequest(400, "invalid_payload", "alerts: a list is required")
    if "status" in doc and doc["status"] not in ("firing", "resolved"):
        raise BadRequest(400, "invalid_payload", f"status must be firing or resolved, not {doc['status']!r}")
    alerts = []
    for i, a in enumerate(doc["alerts"]):
        try:
            alerts.append(Alert.from_grafana(a))
        except ValueError as exc:
            raise BadRequest(400, "invalid_payload", f"alerts[{i}]: {exc}") from None
    return alerts


class GrafanaBridge:
    """The MQTT side (commands, replies, events) plus the optional webhook HTTP server."""

    def __init__(self, settings: GrafanaBridgeSettings, table: RuleTable) -> None:
        self.s = settings
        if settings.listen_port is not None and not (settings.token or settings.basic_user):
            raise ValueError("the webhook server needs a token or a basic auth user (CLI: $ORBITWIN_GRAFANA_TOKEN, "
                             "$GRAFANA_WEBHOOK_USER with $GRAFANA_WEBHOOK_PASSWORD, or --no-http)")
        if settings.basic_user and not settings.basic_password:
            raise ValueError(f"webhook basic auth user {settings.basic_user!r} has no password")
        if settings.max_body_bytes < 1:
            raise ValueError("the webhook body limit must be at least 1 byte")
        self.planner = Planner(table)
        self.lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.pending: dict[str, dict[str, Any]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=200)
        self.run = int(time.time())
        self.twin_run: str | None = None  # the twin's current run (its retained birth); alerts of others are not acted on
        self.t0 = time.time()
        self.seq = 0
        self.n_requests = 0
        self.token = uuid.uuid4().hex[:6]
        self.topics = Topics(settings.prefix)
        self.event_topic = self.topics.bridge(settings.bridge_id, "event")
        # the twin only replies under its prefix to topics ending in /reply (request_parser.valid_reply_topic)
        self.reply_topic = self.topics.private_reply(
            "bridge", settings.bridge_id, re.sub(r"[^A-Za-z0-9_.-]", "_", settings.client_id))
        self._stop = threading.Event()
        self.httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.conn = MqttConnection(settings.mqtt, client_id=settings.client_id, on_connect=self._on_connect,
                                   on_message=self._on_message)
        self.client = self.conn.client
        self.connected = self.conn.connected

    # --- lifecycle -------------------------------------------------------------------
    def start(self, wait_s: float = 10.0) -> None:
        """Connect to the broker (:class:`~twin.mqtt.MqttConnectError` with a one-line reason on failure),
        then start the reply-timeout sweeper and the HTTP server."""
        self.conn.start(wait_s)
        self._spawn(self._sweep, "grafana-bridge-sweeper")
        if self.s.listen_port is not None:
            self.httpd = ThreadingHTTPServer((self.s.listen_host, self.s.listen_port), _make_handler(self))
            self.httpd.daemon_threads = True
            self._spawn(self.httpd.serve_forever, "grafana-bridge-http")

    @property
    def url(self) -> str:
        assert self.httpd is not None
        host, port = self.httpd.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def stop(self) -> None:
        self._stop.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        for t in self._threads:
            t.join(5)
        self.conn.stop()

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # --- alerts -> commands ----------------------------------------------------------
    def handle_alert(self, alert: Alert) -> list[dict[str, Any]]:
        """Plan and carry out one alert (from the webhook or the poller); a summary per action."""
        with self.lock:
            actions = self.planner.plan(alert, time.monotonic(), self.twin_run)
        return [self._carry_out(a) for a in actions]

    def handle_alerts(self, alerts: list[Alert]) -> dict[str, Any]:
        dup0 = self.planner.counters["duplicates"]
        actions = [s for a in alerts for s in self.handle_alert(a)]
        return {"ok": True, "alerts": len(alerts), "duplicates": self.planner.counters["duplicates"] - dup0,
                "actions": actions}

    def _carry_out(self, a: Action) -> dict[str, Any]:
        detail: dict[str, Any] = {"rule": a.rule, "alert_status": a.status, "alertname": a.alertname,
                                  "fingerprint": a.fingerprint, "command": a.command, "args": a.args}
        if a.select is not None:
            detail["select"] = a.select
        if a.suppressed:
            self.counters["actions_suppressed"] += 1
            self.event("action_suppressed", "warning", a.sat, detail | {"reason": a.suppressed})
            return {"rule": a.rule, "command": a.command, "sat": a.sat, "suppressed": a.suppressed}
        with self.lock:
            self.n_requests += 1
            rid = f"{self.s.bridge_id}-{self.token}-{self.n_requests}"
        body: dict[str, Any] = {"command": a.command, "args": a.args, "id": rid}
        if a.select is not None:
            body["select"] = a.select
        if not self.conn.v5:  # MQTT 3.1.1 has no response topic: the request names it
            body["reply_to"] = self.reply_topic
        topic = self.topics.request(a.sat or None, "cmd")
        with self.lock:
            self.pending[rid] = {"sent": time.monotonic(), "sat": a.sat, "detail": detail}
        payload = self.s.signer(topic, body) if self.s.signer else json.dumps(body, separators=(",", ":")).encode()
        info = self.conn.publish(topic, payload, qos=1, properties=reply_properties(self.reply_topic, rid.encode()))
        self.counters["commands_published"] += 1
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.counters["publish_queued_offline"] += 1  # paho keeps QoS 1 messages and sends them on reconnect
        self.event("action_sent", "info", a.sat, detail | {"request_id": rid, "topic": topic})
        return {"rule": a.rule, "command": a.command, "args": a.args, "sat": a.sat, "request_id": rid}

    # --- MQTT callbacks --------------------------------------------------------------
    def _on_connect(self, conn: MqttConnection) -> None:
        self.counters["connects"] += 1
        conn.subscribe([self.reply_topic, self.topics.state], qos=1)

    def _on_state(self, payload: bytes | bytearray) -> None:
        """The twin's retained birth or death: remember the run of an online twin."""
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError):
            self.counters["state_malformed"] += 1
            return
        if isinstance(doc, dict) and doc.get("state") == "online" and isinstance(doc.get("run"), int):
            self.twin_run = str(doc["run"])

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topics.state:
            self._on_state(msg.payload)
            return
        try:
            reply = json.loads(msg.payload)
            if not isinstance(reply, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):
            self.counters["replies_malformed"] += 1
            return
        corr = getattr(msg.properties, "CorrelationData", None)
        rid = corr.decode(errors="replace") if corr else str(reply.get("id", ""))
        status = str(reply.get("status", "unknown"))
        with self.lock:
            entry = self.pending.get(rid)
            if entry is not None and status in ("completed", "rejected"):
                del self.pending[rid]
        self.counters[f"replies_{status}"] += 1
        if entry is None:
            self.counters["replies_unmatched"] += 1
            return
        detail = entry["detail"] | {"request_id": rid, "reply": reply,
                                    "latency_ms": round((time.monotonic() - entry["sent"]) * 1e3, 1)}
        self.event(f"command_{status}", "warning" if status == "rejected" else "info", entry["sat"], detail)

    def _sweep(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self.lock:
                late = [(rid, e) for rid, e in self.pending.items() if now - e["sent"] > self.s.reply_timeout_s]
                for rid, _ in late:
                    del self.pending[rid]
            for rid, e in late:
                self.counters["reply_timeouts"] += 1
                self.event("command_timeout", "warning", e["sat"], e["detail"] | {"request_id": rid})

    # --- events and status -----------------------------------------------------------
    def event(self, name: str, severity: str, sat: str | None, detail: dict[str, Any]) -> dict[str, Any]:
        """Publish one bridge event (QoS 1) and keep it in the recent list."""
        now = time.time()
        with self.lock:
            self.seq += 1
            ev: dict[str, Any] = {"v": 1, "t": _iso(now), "t_s": round(now - self.t0, 3), "run": self.run,
                                  "seq": self.seq, "bridge": self.s.bridge_id, "kind": "bridge", "name": name,
                                  "severity": severity}
            if sat:
                ev["sat"] = sat
            ev["detail"] = detail
            self.events.append(ev)
        self.counters["events"] += 1
        self.conn.publish(self.event_topic, json.dumps(ev, separators=(",", ":"), default=str), qos=1)
        if self.s.annotations is not None:
            try:
                self.s.annotations.submit(ev)
            except Exception:  # noqa: BLE001 - annotations are optional: count, never stop the bridge
                self.counters["annotation_errors"] += 1
        return ev

    def status(self) -> dict[str, Any]:
        with self.lock:
            pending = len(self.pending)
            planner = dict(self.planner.counters)
        return {"bridge": self.s.bridge_id, "mqtt_connected": self.connected.is_set(), "pending_replies": pending,
                "planner": planner, "counters": dict(self.counters), "twin_run": self.twin_run} | (
            {"annotations": self.s.annotations.status()} if self.s.annotations is not None else {})

    # --- HTTP ------------------------------------------------------------------------
    def authorised(self, header: str | None) -> bool:
        """Whether ``Authorization`` carries the configured bearer token or basic credentials.

        Every comparison is constant-time (:func:`hmac.compare_digest` on UTF-8 bytes), user and password
        both compared whatever the first gives, so the answer's timing says nothing about how much of a
        guess was right.
        """
        if not header or len(header) > _MAX_AUTH_HEADER:
            return False
        scheme, _, cred = header.partition(" ")
        cred = cred.strip()
        if scheme.lower() == "bearer" and self.s.token:
            return hmac.compare_digest(cred.encode("utf-8", "replace"), self.s.token.encode())
        if scheme.lower() == "basic" and self.s.basic_user and self.s.basic_password:
            try:
                user, sep, password = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            user_ok = hmac.compare_digest(user.encode(), self.s.basic_user.encode())
            password_ok = hmac.compare_digest(password.encode(), self.s.basic_password.encode())
            return bool(sep) and user_ok & password_ok
        return False


WEBHOOK_PATHS = ("/", "/webhook", "/grafana/webhook")
_MAX_AUTH_HEADER = 4096  # longer Authorization headers are refused without being decoded
_DRAIN_LIMIT = 8 << 20  # an oversize body up to this is read and dropped so that the client sees the 413


def _make_handler(bridge: GrafanaBridge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "orbitwin-grafana-bridge"
        timeout = 15.0

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

        def _send(self, code: int, doc: dict[str, Any], extra: dict[str, str] | None = None) -> None:
            data = json.dumps(doc, default=str).encode()
            bridge.counters[f"http_{code}"] += 1
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _reject(self, exc: BadRequest) -> None:
            bridge.counters["http_rejected"] += 1
            bridge.counters[f"rejected_{exc.reason}"] += 1
            extra = {"WWW-Authenticate": 'Basic realm="orbitwin"'} if exc.status == 401 else None
            self._send(exc.status, {"ok": False, "reason": exc.reason, "message": exc.message}, extra)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            bridge.counters["http_requests"] += 1
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok = bridge.connected.is_set()
                self._send(200 if ok else 503, {"ok": ok, "mqtt_connected": ok})
            elif path == "/metrics":
                self._send(200, bridge.status())
            elif path == "/events":
                with bridge.lock:
                    events = list(bridge.events)
                self._send(200, {"events": events})
            elif path in WEBHOOK_PATHS:
                self._reject(BadRequest(405, "method_not_allowed", "POST the webhook notification"))
            else:
                self._reject(BadRequest(404, "not_found", f"no resource {path}"))

        def do_POST(self) -> None:  # noqa: N802
            bridge.counters["http_requests"] += 1
            try:
                alerts = self._read_alerts()
            except BadRequest as exc:
                self._reject(exc)
                return
            bridge.counters["notifications"] += 1
            self._send(200, bridge.handle_alerts(alerts))

        def _read_alerts(self) -> list[Alert]:
            if self.path.split("?", 1)[0] not in WEBHOOK_PATHS:
                raise BadRequest(404, "not_found", f"no resource {self.path}")
            if not bridge.authorised(self.headers.get("Authorization")):
                self._discard_body()
                raise BadRequest(401, "unauthorized", "basic auth or Authorization: Bearer <secret> required")
            ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                self._discard_body()
                raise BadRequest(415, "unsupported_media_type", f"Content-Type must be application/json, not {ctype!r}")
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise BadRequest(411, "length_required", "send Content-Length (no chunked encoding)")
            try:
                length = int(self.headers.get("Content-Length", ""))
                if length < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                raise BadRequest(411, "length_required", "a valid Content-Length is required") from None
            if length > bridge.s.max_body_bytes:
                self._discard_body()
                raise BadRequest(413, "body_too_large", f"body of {length} bytes over the limit "
                                                        f"{bridge.s.max_body_bytes}")
            return parse_notification(self.rfile.read(length))

        def _discard_body(self) -> None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                return
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                n = -1
            if 0 <= n <= _DRAIN_LIMIT:
                while n > 0:
                    chunk = self.rfile.read(min(n, 65536))
                    if not chunk:
                        break
                    n -= len(chunk)
            else:
                self.close_connection = True

    return Handler

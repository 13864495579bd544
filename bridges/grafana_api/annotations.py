"""The Grafana bridge's actions and the twin's replies as Grafana annotations (``POST /api/annotations``).

:class:`Annotator` takes bridge events (``submit``, never blocking: the bridge calls it from its
MQTT and HTTP threads) and posts them from its own thread on the fleet overview dashboard
(``dashboardUID``, shown by the dashboard's built-in "Annotations & Alerts"), tagged ``orbitwin``,
``orbitwin-bridge``, the event name, the command and the satellite. Failures (Grafana down, 401,
403, a full queue) are counted with the last error; they never stop the bridge.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from typing import Any

from bridges.grafana_api.client import Grafana, GrafanaApiError
from dashboards.fleet import FLEET_UID

ANNOTATED_EVENTS = ("action_sent", "command_completed", "command_rejected", "command_timeout")
DASHBOARD_UID = FLEET_UID  # dashboards.fleet's overview
_STOP = None


def annotation(event: dict[str, Any], dashboard_uid: str = DASHBOARD_UID) -> dict[str, Any]:
    """The annotation of one bridge event: time (Unix ms), tags, text."""
    d = event.get("detail") or {}
    cmd = d.get("command", "?")
    args = json.dumps(d.get("args") or {}, separators=(",", ":"), sort_keys=True)
    target = event.get("sat") or (f"fleet {json.dumps(d['select'], sort_keys=True)}" if d.get("select") else "fleet")
    name = event.get("name", "?")
    if name == "action_sent":
        text = (f"{cmd} {args} sent to {target}: alert {d.get('alertname', '?')} {d.get('alert_status', '?')} "
                f"(rule {d.get('rule', '?')}, request {d.get('request_id', '?')})")
    else:
        reply = d.get("reply") or {}
        outcome = reply.get("result") if name == "command_completed" else reply.get("reason") or reply.get("message")
        text = f"{target} {name.removeprefix('command_')} {cmd} {args}" + (
            f": {json.dumps(outcome, separators=(',', ':'), default=str)}" if outcome is not None else "") + (
            f" after {d['latency_ms']:g} ms" if isinstance(d.get("latency_ms"), (int, float)) else "")
    t_ms = int(event["t_wall"] * 1000) if isinstance(event.get("t_wall"), (int, float)) else int(time.time() * 1000)
    tags = ["orbitwin", "orbitwin-bridge", name, str(cmd)] + ([str(event["sat"])] if event.get("sat") else [])
    return {"dashboard_uid": dashboard_uid, "time_from": t_ms, "tags": tags, "text": text}


class Annotator:
    """Posts bridge events as annotations from a thread; ``status()`` counts posted, failed and dropped."""

    def __init__(self, grafana: Grafana, dashboard_uid: str = DASHBOARD_UID, max_queue: int = 1000) -> None:
        self.g = grafana
        self.dashboard_uid = dashboard_uid
        self.q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self.counters: Counter[str] = Counter()
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Annotator:
        self._thread = threading.Thread(target=self._run, name="grafana-annotations", daemon=True)
        self._thread.start()
        return self

    def submit(self, event: dict[str, Any]) -> None:
        """Queue one bridge event (only :data:`ANNOTATED_EVENTS`); never blocks, never raises."""
        if event.get("name") not in ANNOTATED_EVENTS:
            return
        try:
            self.q.put_nowait({**event, "t_wall": time.time()})
        except queue.Full:
            self.counters["annotations_dropped"] += 1

    def stop(self, timeout_s: float = 5.0) -> None:
        """Post what is queued (up to ``timeout_s``), then stop the thread."""
        if self._thread is None:
            return
        try:
            self.q.put(_STOP, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (event := self.q.get()) is not _STOP:
            try:
                self.g.call("posting an annotation", self.g.api.annotations.add_annotation,
                            **annotation(event, self.dashboard_uid))
                self.counters["annotations_posted"] += 1
            except GrafanaApiError as exc:
                self.counters["annotations_failed"] += 1
                self.last_error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a bug here must not end the thread: count it
                self.counters["annotations_failed"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"

    def status(self) -> dict[str, Any]:
        return {"grafana": self.g.url, **{k: self.counters[k] for k in
                ("annotations_posted", "annotations_failed", "annotations_dropped")},
                "queued": self.q.qsize(), "last_error": self.last_error}

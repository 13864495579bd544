"""``orbitwin bridge influx``: the twin's MQTT messages into InfluxDB, nothing lost, nothing twice.

Delivery, step by step:

1. An MQTT 5 persistent session (fixed client id, ``clean_start=False``, session expiry) with
   QoS 1 subscriptions and paho-mqtt's manual acknowledgements: the broker keeps redelivering a
   message until the bridge acknowledges it.
2. A message is acknowledged only when every point it became is in InfluxDB (HTTP 204), or — when
   InfluxDB is down or slow — fsync'd in the on-disk spool, or fsync'd in the dead-letter file
   when it cannot be stored at all. A crash before that means the broker redelivers it.
3. Points carry the message's own sim timestamp, so a redelivered message overwrites itself:
   no duplicates.
4. Telemetry sequence numbers (per satellite, per twin run) are tracked; a gap still open after
   a grace period becomes a replay request to the twin's replay buffer, retried a few times.
   What the twin no longer holds is counted as unrecoverable.

What is not guaranteed (said in the bridge's status): messages a broker killed with SIGKILL had
acknowledged to the twin but not persisted are only recoverable while the twin's replay buffer
still holds them; when the spool is full its oldest batches are dropped (counted).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from twin.contract.topics import DEFAULT_PREFIX, Topics
from twin.mqtt import MqttConnection, MqttSettings

from bridges.influx.dead_letter import DeadLetters
from bridges.influx.writer import write_isolating
from bridges.influx.line_protocol import (TELEMETRY_MEASUREMENTS, MappingError, event_line, flat_line, frame_lines, message_lines,
                            reply_line, time_ns)
from bridges.mqtt_consumer import SequenceTracker
from bridges.influx.spool import Spool

MAX_PAYLOAD_BYTES = 64 * 2**20
_TM_PREFIXES = tuple(f"{m},".encode() for m in TELEMETRY_MEASUREMENTS)


def _is_telemetry(line: bytes) -> bool:
    return line.startswith(_TM_PREFIXES)


@dataclass
class BridgeSettings:
    """The bridge's broker (:class:`~twin.mqtt.MqttSettings`, or a bare URL), identity and batching.

    ``client_id`` names the persistent session: the broker keeps it ``session_expiry_s`` seconds
    (unless the broker settings say otherwise) and queues what arrives while the bridge is away.
    """

    mqtt: MqttSettings
    client_id: str = "orbitwin-influx-bridge"
    prefix: str = DEFAULT_PREFIX
    session_expiry_s: int = 86_400
    receive_maximum: int = 1000
    batch_messages: int = 5_000
    batch_bytes: int = 8 << 20
    batch_s: float = 0.2
    spool_dir: str = "orbitwin-spool"
    spool_max_bytes: int = 1 << 30
    dead_letter_path: str = "orbitwin-dead-letters.jsonl"
    gap_grace_s: float = 3.0
    replay_attempts: int = 5
    replay_interval_s: float = 2.0
    report_every_s: float = 5.0
    bridge_id: str = "influx"

    def __post_init__(self) -> None:
        self.mqtt = MqttSettings.coerce(self.mqtt)


@dataclass
class _Msg:
    mid: int
    qos: int
    topic: str
    payload: bytes
    arrived: float


class InfluxBridge:
    """Subscribes to the twin's topics and writes points through ``writer`` (v1 or v2)."""

    def __init__(self, settings: BridgeSettings, writer: Any) -> None:
        self.s = settings
        self.writer = writer
        self.topics = Topics(settings.prefix)
        self.inbox: queue.SimpleQueue[_Msg] = queue.SimpleQueue()
        self.spool = Spool(settings.spool_dir, settings.spool_max_bytes)
        self.dead = DeadLetters(settings.dead_letter_path)
        self.tracker = SequenceTracker(start_at_first_seen=True)
        self.counters: Counter[str] = Counter()
        self.latency_ms: list[float] = []
        self.gap_since: dict[tuple[str, int], float] = {}
        self.replay_tries: dict[tuple[str, int], int] = {}
        self.db_ok = True
        self.db_error = ""
        self.retry_at = 0.0
        # telemetry points per spool segment, so that what an overflow drops is counted exactly
        self.seg_telemetry: dict[int, int] = {}
        for seg_id in self.spool.segment_ids():
            seg = self.spool._read(seg_id)  # noqa: SLF001 - once at start: segments left by a previous run
            self.seg_telemetry[seg_id] = int((seg.meta or {}).get("telemetry", 0))
        self.lag_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.conn = MqttConnection(settings.mqtt, client_id=settings.client_id, persistent=True,
                                   session_expiry_s=settings.session_expiry_s,
                                   receive_maximum=settings.receive_maximum, manual_ack=True,
                                   on_connect=self._on_connect, on_message=self._on_message)
        self.client = self.conn.client
        self.connected = self.conn.connected
        self._fleet_tm_head = self.topics.fleet_tm("")

    # --- MQTT -----------------------------------------------------------------------
    @property
    def subscriptions(self) -> list[str]:
        return list(self.topics.archive_subscriptions)

    def _on_connect(self, conn: MqttConnection) -> None:
        self.counters["connects"] += 1
        conn.subscribe(self.subscriptions, qos=1)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(_Msg(msg.mid, msg.qos, msg.topic, bytes(msg.payload), time.monotonic()))

    def start(self, wait_s: float = 10.0) -> None:
        """Connect (raising :class:`~twin.mqtt.MqttConnectError` with a one-line reason) and start the loop."""
        self.conn.start(wait_s)
        self._thread = threading.Thread(target=self._run, name="influx-bridge", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.conn.stop()
        self.dead.flush()

    # --- the loop -------------------------------------------------------------------
    def _run(self) -> None:
        next_report = time.monotonic() + self.s.report_every_s
        while not self._stop.is_set():
            batch = self._collect()
            if batch:
                self._process(batch)
            self._drain_spool()
            self._close_gaps()
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + self.s.report_every_s
                self._report()
        batch = self._collect(block=False)
        if batch:
            self._process(batch)

    def _collect(self, block: bool = True) -> list[_Msg]:
        out: list[_Msg] = []
        nbytes = 0
        deadline = time.monotonic() + self.s.batch_s
        while len(out) < self.s.batch_messages and nbytes < self.s.batch_bytes:
            timeout = deadline - time.monotonic()
            try:
                m = self.inbox.get(timeout=max(timeout, 0.0)) if block and timeout > 0 else self.inbox.get_nowait()
            except queue.Empty:
                break
            out.append(m)
            nbytes += len(m.payload)
        return out

    def _map(self, m: _Msg) -> list[bytes]:
        """Points of one message; problems raise MappingError."""
        if len(m.payload) > MAX_PAYLOAD_BYTES:
            raise MappingError(f"payload of {len(m.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        try:
            obj = json.loads(m.payload)
        except (ValueError, RecursionError) as exc:
            raise MappingError(f"not JSON: {str(exc)[:80]}") from None
        if not isinstance(obj, dict):
            raise MappingError("payload must be a JSON object")
        leaf = m.topic.rsplit("/", 1)[-1]
        if "/tm/" in m.topic:  # fleet frames and replayed single messages
            rows = frame_lines(obj) if m.topic.startswith(self._fleet_tm_head) else message_lines(obj)
            run = obj["run"]
            for sat, seq, _ in rows:
                self.tracker.observe(sat, run, seq)
            self.counters["telemetry_rows"] += len(rows)
            return [line for _, _, line in rows]
        if leaf == "event":
            return [event_line(obj)]
        if leaf in ("reply", "errors"):
            route = self.topics.parse_request_topic(m.topic)  # ("sat", sat, "reply") for a satellite's replies
            return [reply_line(obj, route[1] if route else None)]
        if leaf == "summary":
            return [flat_line("fleet", obj, time_ns(obj.get("t")), skip=("v", "t", "t_s", "bseq"))]
        if leaf == "status":
            return [flat_line("twin", obj, time_ns(obj.get("t")), skip=("v", "t", "t_s"))]
        raise MappingError(f"no mapping for topic {m.topic}")

    def _process(self, batch: list[_Msg]) -> None:
        lines: list[bytes] = []
        for m in batch:
            self.counters["messages"] += 1
            try:
                lines.extend(self._map(m))
            except (MappingError, KeyError, TypeError) as exc:
                self.counters["dead_letter_messages"] += 1
                self.dead.add("unmappable", topic=m.topic, payload=m.payload, detail=str(exc)[:500])
        self.dead.flush()
        if lines:
            if self.spool.segments or not self.db_ok:
                self._to_spool(lines)
            else:
                t0 = time.perf_counter()
                res = write_isolating(self.writer, lines)
                self._account(res, t0)
                if res.pending:
                    self._to_spool(res.pending)
        for m in batch:  # every point is now in InfluxDB, the spool or the dead letters
            if m.qos > 0:
                self.client.ack(m.mid, m.qos)
        self.counters["acked"] += len(batch)
        self.lag_s = time.monotonic() - batch[0].arrived  # how long the oldest message waited for its ack

    def _account(self, res: Any, t0: float) -> None:
        self.counters["points_written"] += res.written
        self.counters["batches"] += 1
        self.latency_ms.append((time.perf_counter() - t0) * 1e3)
        del self.latency_ms[:-1000]
        for line, why in res.bad:
            self.counters["dead_letter_points"] += 1
            self.dead.add("rejected", line=line, detail=str(why)[:500])
        if res.bad:
            self.dead.flush()
        if res.pending:
            self.db_ok = False
            fatal = res.outcome.status == "fatal"
            # a configuration error (bad token, missing database) will not heal by itself: say so
            # loudly and retry slowly; the data waits in the spool meanwhile
            self.retry_at = time.monotonic() + (30.0 if fatal else (res.outcome.retry_after_s or 1.0))
            self.counters["write_fatal" if fatal else "write_retries"] += 1
            msg = f"InfluxDB {res.outcome.status} ({res.outcome.http_status}): {res.outcome.message[:200]}"
            if fatal and msg != self.db_error:
                import sys

                print(f"orbitwin bridge influx: {msg}", file=sys.stderr, flush=True)
            self.db_error = msg
        else:
            self.db_ok = True
            self.db_error = ""

    def _to_spool(self, lines: list[bytes]) -> None:
        """Spool a batch; count exactly how many telemetry points an overflow drops."""
        other = [ln for ln in lines if not _is_telemetry(ln)]
        tele = [ln for ln in lines if _is_telemetry(ln)]
        before = set(self.spool.segment_ids())
        dropped = self.spool.append(other + tele, {"telemetry": len(tele)})  # telemetry last: kept longest
        after = self.spool.segment_ids()
        dropped_tele = sum(self.seg_telemetry.pop(i, 0) for i in before - set(after))
        new = [i for i in after if i not in before]
        kept = self.spool._index[new[0]][1] if new else 0  # noqa: SLF001 - lines kept of this batch
        kept_tele = min(len(tele), kept)
        dropped_tele += len(tele) - kept_tele
        if new:
            self.seg_telemetry[new[0]] = kept_tele
        self.counters["spooled_points"] += len(lines)
        if dropped:
            self.counters["spool_dropped_points"] += dropped
            self.counters["spool_dropped_telemetry_points"] += dropped_tele

    def _drain_spool(self) -> None:
        while self.spool.segments and time.monotonic() >= self.retry_at and not self._stop.is_set():
            seg = self.spool.oldest()
            if seg is None:
                return
            t0 = time.perf_counter()
            res = write_isolating(self.writer, seg.lines)
            self._account(res, t0)
            if res.pending:
                return  # the segment stays; rewriting its written part later is idempotent
            self.spool.remove(seg.id)
            self.seg_telemetry.pop(seg.id, None)
            self.counters["spool_drained_points"] += len(seg.lines)
            if not self.inbox.empty():
                return  # interleave with live traffic; the order of a satellite's points does not matter

    def _close_gaps(self) -> None:
        now = time.monotonic()
        ranges: list[list[Any]] = []
        for sat, miss in self.tracker.missing.items():
            if not miss:
                continue
            lo = min(miss)
            key = (sat, lo)
            first = self.gap_since.setdefault(key, now)
            tries = self.replay_tries.get(key, 0)
            if now - first < self.s.gap_grace_s + tries * self.s.replay_interval_s:
                continue
            if tries >= self.s.replay_attempts:
                self.counters["gaps_unrecoverable"] += len(miss)
                miss.clear()
                continue
            self.replay_tries[key] = tries + 1
            ranges.extend([sat, a, b] for a, b in _ranges(sorted(miss)))
        if ranges:
            for k in range(0, len(ranges), 10_000):
                body = {"ranges": ranges[k:k + 10_000], "id": f"{self.s.bridge_id}-replay-{uuid.uuid4().hex[:8]}"}
                self.conn.publish(self.topics.replay, json.dumps(body), qos=1)
            self.counters["replay_requests"] += 1

    def status(self) -> dict[str, Any]:
        lat = np.array(self.latency_ms) if self.latency_ms else np.zeros(1)
        return {
            "messages": self.counters["messages"], "acked": self.counters["acked"],
            "telemetry_rows": self.counters["telemetry_rows"], "points_written": self.counters["points_written"],
            "batches": self.counters["batches"], "write_latency_p50_ms": float(np.percentile(lat, 50)),
            "spool_dropped_telemetry_points": self.counters["spool_dropped_telemetry_points"],
            "db_error": self.db_error,
            "write_latency_p99_ms": float(np.percentile(lat, 99)), "spool_bytes": self.spool.depth_bytes,
            "spool_points": self.spool.depth_lines, "spool_dropped_points": self.counters["spool_dropped_points"],
            "dead_letters": self.dead.count, "gaps_detected": self.tracker.gaps_detected,
            "missing_now": self.tracker.missing_count, "gaps_filled": self.tracker.filled,
            "gaps_unrecoverable": self.counters["gaps_unrecoverable"], "duplicates_seen": self.tracker.duplicates,
            "inbox": self.inbox.qsize(), "lag_s": round(self.lag_s, 3), "db_ok": self.db_ok,
            "connected": self.connected.is_set(),
        }

    def _report(self) -> None:
        st = self.status()
        self.conn.publish(self.topics.bridge(self.s.bridge_id, "status"),
                          json.dumps({"v": 1, "bridge": self.s.bridge_id, "wall_time": time.time(), **st}), qos=0)
        line = flat_line("bridge", st, time.time_ns(), tags={"bridge": self.s.bridge_id}, skip=())
        if self.db_ok and not self.spool.segments:
            res = write_isolating(self.writer, [line])
            if res.pending:
                self.db_ok = False


def _ranges(seqs: list[int]) -> list[tuple[int, int]]:
    out = []
    lo = prev = seqs[0]
    for s in seqs[1:]:
        if s != prev + 1:
            out.append((lo, prev))
            lo = s
        prev = s
    out.append((lo, prev))
    return out

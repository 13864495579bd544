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
5. The sequence position (per satellite: run, next expected seq, open gaps) and the births
   followed are saved atomically beside the spool after batches are durable and acknowledged
   (:mod:`bridges.influx.sequence_state`). A restarted bridge resumes from it, so messages a
   broker lost while the bridge was down or restarting (any crash order) are gaps against the
   saved high-water marks and are replayed; the position may lag the acknowledgements by
   ``state_every_s``, which only costs a replay of what is already stored (idempotent). The
   sequences of a run whose birth the bridge saw start at 0; a bridge with no saved state joining
   a running twin starts at the first message it sees.
6. Every point carries the twin run it came from (tag ``run``; the fleet summary and twin
   status, which carry only a ``bseq``, get the run that ``bseq`` belongs to): a restart of the
   twin never overwrites an earlier run's points. Sequences, gaps, replays and duplicates are per
   run. Each run's sim window is kept in the ``runs`` measurement (one point per run, rewritten
   with every report) for the dashboards' run variable and "Runs" table.
7. Only telemetry consistent with the twin's births is stored (:mod:`bridges.influx.birth_guard`:
   a born run and bseq — earlier connections of a run included, so replays are stored — a
   satellite of the run's catalogue, a sim time on the run's clock). Anything else is
   dead-lettered as ``inconsistent`` with the reason and counted (``refused_telemetry``,
   ``refused`` by reason). A refused message is not taken as seen: a real one refused by mistake
   is a gap, and replayed.

What is not guaranteed (said in the bridge's status): messages a broker killed with SIGKILL had
acknowledged to the twin but not persisted are only recoverable while the twin's replay buffer
still holds them; when the spool is full its oldest batches are dropped. Those drops are counted
as points *missing*, not lines deleted (:mod:`bridges.influx.drop_ledger`): a dropped line whose
point may be in InfluxDB anyway (its write failed ambiguously, or it is a redelivered or replayed
copy) is looked up in the database once it answers again, and a counted point that arrives again
and is stored is taken off the count. ``spool_dropped_telemetry_points`` is exact once
``spool_dropped_unverified_points`` is 0.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from twin.contract.topics import DEFAULT_PREFIX, Topics
from twin.mqtt import MqttConnection, MqttSettings

from bridges.influx.birth_guard import BirthGuard
from bridges.influx.dead_letter import DeadLetters
from bridges.influx.drop_ledger import DropLedger
from bridges.influx.writer import IsolationResult, WriteOutcome, write_isolating
from bridges.influx.line_protocol import (MappingError, event_line, flat_line, frame_lines, latency_lines, message_lines,
                                          reply_line, run_tag, runs_line, summary_lines, time_ns)
from bridges.mqtt_consumer import SequenceTracker, seq_ranges
from bridges.influx.sequence_state import StateFile
from bridges.influx.spool import Segment, Spool

MAX_PAYLOAD_BYTES = 64 * 2**20


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
    shard: str | None = None  # store one shard's partition: its fleet topics ({prefix}/shard/{K}) and satellites
    drop_audit_max_points: int = 200_000  # dropped points that may be stored, kept for a database look-up
    drop_audit_delay_s: float = 5.0  # after InfluxDB answers again: time for writes that timed out to land
    state_path: str = ""  # the durable sequence state; "" = bridge-state.json in spool_dir
    state_every_s: float = 0.5  # at most this often (wall s) the sequence state is saved
    sim_window_s: float = 3600.0  # sim seconds telemetry may be ahead of the run's clock (see BirthGuard)

    def __post_init__(self) -> None:
        self.mqtt = MqttSettings.coerce(self.mqtt)


@dataclass
class _Msg:
    mid: int
    qos: int
    topic: str
    payload: bytes
    arrived: float
    retain: bool = False


class _Refused(Exception):
    """Telemetry inconsistent with the twin's births (:class:`BirthGuard`); the text says why."""


@dataclass
class _Lines:
    """A batch's points, with what the drop ledger needs to know of its telemetry lines."""

    lines: list[bytes] = field(default_factory=list)
    runs: dict[int, int] = field(default_factory=dict)  # index of a telemetry line -> its twin run
    copies: set[int] = field(default_factory=set)  # telemetry lines whose (sat, run, seq) was seen before

    def add(self, lines: list[bytes], run: int | None = None, copies: tuple[int, ...] = ()) -> None:
        """Append one message's lines; ``run`` marks them telemetry, ``copies`` indexes into ``lines``."""
        base = len(self.lines)
        self.lines.extend(lines)
        if run is not None:
            self.runs.update(dict.fromkeys(range(base, base + len(lines)), run))
            self.copies.update(base + k for k in copies)


class InfluxBridge:
    """Subscribes to the twin's topics and writes points through ``writer`` (v1 or v2)."""

    def __init__(self, settings: BridgeSettings, writer: Any) -> None:
        self.s = settings
        self.writer = writer
        self.topics = Topics(settings.prefix, settings.shard)
        self.inbox: queue.SimpleQueue[_Msg] = queue.SimpleQueue()
        self.spool = Spool(settings.spool_dir, settings.spool_max_bytes)
        self.dead = DeadLetters(settings.dead_letter_path)
        self.tracker = SequenceTracker(start_at_first_seen=True)
        self.guard = BirthGuard(window_s=settings.sim_window_s)
        self.state = StateFile(settings.state_path or f"{settings.spool_dir}/bridge-state.json")
        self.resumed = self._load_state()
        self._following = self.resumed  # a birth has been followed (before this start, or since)
        self._state_dirty = False
        self._state_saved_at = float("-inf")
        self._runs_dirty: set[int] = set()  # runs whose ``runs`` point is to be (re)written
        self.counters: Counter[str] = Counter()
        self.latency_ms: list[float] = []
        self.gap_since: dict[tuple[str, int], float] = {}
        self.replay_tries: dict[tuple[str, int], int] = {}
        self.db_ok = True
        self.db_ok_since = float("-inf")  # monotonic time of the last failed -> ok transition
        self.db_error = ""
        self.retry_at = 0.0
        self.ledger = DropLedger(settings.drop_audit_max_points)
        # telemetry lines per spool segment (they are its last lines), and the segments a failed
        # drain attempt may have stored: what an overflow drops is accounted for exactly
        self.seg_telemetry: dict[int, int] = {}
        self.seg_maybe_stored: set[int] = set()
        for seg_id in self.spool.segment_ids():  # segments left by a previous run
            try:
                seg = self.spool.read(seg_id)
            except (OSError, ValueError):
                continue  # draining moves it aside as corrupt
            self.seg_telemetry[seg_id] = min(int(seg.meta.get("telemetry", 0)), len(seg.lines))
        self._corrupt_seen = self.spool.corrupt_segments_total
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
        """The archive's topics, and the twin's state and catalogue (the births telemetry must match)."""
        return [*self.topics.archive_subscriptions, self.topics.state, self.topics.catalogue]

    def _on_connect(self, conn: MqttConnection) -> None:
        self.counters["connects"] += 1
        conn.subscribe(self.subscriptions, qos=1)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(_Msg(msg.mid, msg.qos, msg.topic, bytes(msg.payload), time.monotonic(), bool(msg.retain)))

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
        self._save_state(force=True)

    # --- the loop -------------------------------------------------------------------
    def _run(self) -> None:
        next_report = time.monotonic() + self.s.report_every_s
        while not self._stop.is_set():
            batch = self._collect()
            if batch:
                self._process(batch)
            self._drain_spool()
            if self.ledger.unverified and self._may_verify():
                self._verify_drops()
            self._close_gaps()
            self._save_state()
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + self.s.report_every_s
                self._report()
        batch = self._collect(block=False)
        if batch:
            self._process(batch)
        self._report()  # the last status and each run's final sim window

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

    def _map(self, m: _Msg, out: _Lines) -> None:
        """Append the points of one message to ``out``; problems raise MappingError (nothing appended)."""
        if m.topic == self.topics.state:  # births and deaths: anything else there is ignored
            self._on_state(m)
            return
        if m.topic == self.topics.catalogue:
            self.guard.on_catalogue(m.payload)
            return
        if len(m.payload) > MAX_PAYLOAD_BYTES:
            raise MappingError(f"payload of {len(m.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        try:
            obj = json.loads(m.payload)
        except (ValueError, RecursionError) as exc:
            raise MappingError(f"not JSON: {str(exc)[:80]}") from None
        if not isinstance(obj, dict):
            raise MappingError("payload must be a JSON object")
        if self.topics.shard is not None and self._other_partition(m.topic):
            self.counters["other_partition"] += 1  # another shard's satellite: its own bridge stores it
            return
        leaf = m.topic.rsplit("/", 1)[-1]
        if "/tm/" in m.topic:  # fleet frames and replayed single messages
            rows = frame_lines(obj) if m.topic.startswith(self._fleet_tm_head) else message_lines(obj)
            run = obj["run"]
            t_s: Any = obj.get("t_s")
            t_ns, wall = time_ns(obj["t"]), time.time()
            why = self.guard.check(run, obj["bseq"], [sat for sat, _, _ in rows], t_ns, t_s, wall)
            if why is not None:
                raise _Refused(why)
            self.guard.accept(run, t_ns, float(t_s), wall)  # check() made sure t_s is a number
            self._state_dirty = True
            self._runs_dirty.add(run)
            # a row seen before (a redelivery or a replay) is a copy: the ledger must not count it twice
            copies = tuple(k for k, (sat, seq, _) in enumerate(rows)
                           if self.tracker.observe(sat, run, seq) == "duplicate")
            self.counters["telemetry_rows"] += len(rows)
            out.add([line for _, _, line in rows], run, copies)
            return
        if leaf == "event":
            line = event_line(obj, self.guard.known_satellite)
        elif leaf in ("reply", "errors"):
            route = self.topics.parse_request_topic(m.topic)  # ("sat", sat, "reply") for a satellite's replies
            line = reply_line(obj, route[1] if route else None, self.guard.known_satellite, self._run_of(obj))
        elif leaf == "summary":  # the fleet point, and one point per grid cell (what the fleet maps read)
            out.add(summary_lines(obj, time_ns(obj.get("t")), {"run": run_tag(self._run_of(obj))}))
            return
        elif m.topic == self.topics.fleet("latency"):  # one city_rtt point per city pair
            out.add(latency_lines(obj))
            return
        elif leaf == "status":
            line = flat_line("twin", obj, time_ns(obj.get("t")), {"run": run_tag(self._run_of(obj))},
                             skip=("v", "t", "t_s"))
        elif m.topic == self.topics.audit:
            line = audit_line(obj)
        else:
            raise MappingError(f"no mapping for topic {m.topic}")
        out.add([line])

    def _other_partition(self, topic: str) -> bool:
        """A satellite's event, reply or replayed packet whose satellite is not in this shard's catalogue
        (every partition's bridge receives those topics; None from the guard: no catalogue yet, stored)."""
        parts = topic[len(self.topics.prefix) + 1:].split("/")
        if len(parts) >= 3 and parts[0] in ("sat", "replay"):
            return self.guard.known_satellite(parts[1]) is False
        return False

    def _process(self, batch: list[_Msg]) -> None:
        out = _Lines()
        for m in batch:
            self.counters["messages"] += 1
            try:
                self._map(m, out)
            except _Refused as exc:
                self.counters["dead_letter_messages"] += 1
                self.dead.add("inconsistent", topic=m.topic, payload=m.payload, detail=str(exc)[:500])
            except (MappingError, KeyError, TypeError) as exc:
                self.counters["dead_letter_messages"] += 1
                self.dead.add("unmappable", topic=m.topic, payload=m.payload, detail=str(exc)[:500])
        self.dead.flush()
        if out.lines:
            if self.spool.segments or not self.db_ok:
                self._to_spool(out)
            else:
                t0 = time.perf_counter()
                res = write_isolating(self.writer, out.lines)
                self._account(res, t0)
                written_below = len(out.lines) - len(res.pending)  # the pending lines are a suffix
                self._copies_stored(res, ((i, out.lines[i], out.runs.get(i)) for i in out.copies
                                          if i < written_below))
                if res.pending:
                    self._to_spool(out, written_below, maybe_stored=res.pending_maybe_stored)
        for m in batch:  # every point is now in InfluxDB, the spool or the dead letters
            if m.qos > 0:
                self.client.ack(m.mid, m.qos)
        self.counters["acked"] += len(batch)
        self.lag_s = time.monotonic() - batch[0].arrived  # how long the oldest message waited for its ack

    def _run_of(self, obj: dict[str, Any]) -> int | None:
        """The run of a message: its own ``run``, else the run of its ``bseq``, else the run followed now."""
        run = obj.get("run")
        if type(run) is int:
            return run
        found = self.guard.run_of(obj.get("bseq"))
        return found if found is not None else self.guard.run

    def _on_state(self, m: _Msg) -> None:
        """A birth or death on ``{prefix}/state``: the guard follows the births.

        The sequences of a run whose start the bridge witnessed begin at 0 (what the broker lost of
        its first messages is a gap): a run new to a bridge that already followed one, or a birth
        delivered live (not retained) that is the run's first connection.
        """
        run = self.guard.on_state(m.payload)
        if run is not None:
            self._runs_dirty.add(run)
        if run is not None and (self._following or (not m.retain and self.guard.births[run] == run)):
            self.tracker.from_zero_runs.add(run)
        self._following = self._following or self.guard.run is not None
        self._state_dirty = True

    def _load_state(self) -> bool:
        """Resume the sequence position and births saved by a previous run of the bridge; False if none."""
        doc = self.state.load()
        if doc is None:
            return False
        try:
            self.tracker.load_state(doc["tracker"])
            self.guard.load_state(doc["guard"])
        except (KeyError, TypeError, ValueError) as exc:
            self.state.load_error = f"unusable state: {str(exc)[:200]}"
            self.tracker = SequenceTracker(start_at_first_seen=True)
            self.guard = BirthGuard(window_s=self.s.sim_window_s)
            return False
        self.tracker.from_zero_runs &= set(self.guard.births)
        return True

    def _save_state(self, force: bool = False) -> None:
        """Save the sequence position (only what is durable and acknowledged: call between batches)."""
        now = time.monotonic()
        if not self._state_dirty or (not force and now - self._state_saved_at < self.s.state_every_s):
            return
        try:
            self.state.save({"tracker": self.tracker.to_state(), "guard": self.guard.to_state()})
        except OSError as exc:
            self.counters["state_save_errors"] += 1
            self.db_error = f"state save failed: {str(exc)[:200]}"
            return
        self._state_dirty = False
        self._state_saved_at = now

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
            msg = self._why_not_ok(res.outcome)
            if fatal and msg != self.db_error:
                import sys

                print(f"orbitwin bridge influx: {msg}", file=sys.stderr, flush=True)
            self.db_error = msg
        else:
            if not self.db_ok:
                self.db_ok_since = time.monotonic()
            self.db_ok = True
            self.db_error = ""

    def _why_not_ok(self, out: WriteOutcome) -> str:
        """The ``db_error`` of a failed write, never empty: the outcome, who answered (or did not) and why."""
        url = getattr(self.writer, "url", "InfluxDB")
        text = out.message[:200] or "no reason given"
        if out.http_status is None:
            return f"InfluxDB write {out.status}: {text}"
        said = text if text.startswith("HTTP ") else f"HTTP {out.http_status}: {text}"
        return f"InfluxDB write {out.status}: {url} answered {said}"

    def _copies_stored(self, res: IsolationResult, copies: Iterable[tuple[int, bytes, int | None]]) -> None:
        """Tell the ledger which copy lines (``(index, line, run)``) a write stored (not the rejected ones)."""
        bad = {line for line, _ in res.bad}
        for _, line, run in copies:
            if line not in bad:
                self.ledger.stored(line, run)

    def _to_spool(self, out: _Lines, start: int = 0, *, maybe_stored: bool = False) -> None:
        """Spool ``out.lines[start:]`` as one segment; the ledger hears of every telemetry line an overflow drops.

        Telemetry goes last (the spool keeps the newest lines of an oversized batch); the segment's
        meta says how many lines are telemetry, their run (``run``, and ``runs`` for lines of another
        run), which are copies (``copies``) and whether a failed write may have stored them
        (``maybe_stored``), with line indices counted from the end (negative).
        """
        idx = range(start, len(out.lines))
        other = [i for i in idx if i not in out.runs]
        tele = [i for i in idx if i in out.runs]
        runs = [out.runs[i] for i in tele]
        meta: dict[str, Any] = {"telemetry": len(tele)}
        if runs:
            meta["run"] = main = Counter(runs).most_common(1)[0][0]
            if odd := {str(k - len(tele)): r for k, r in enumerate(runs) if r != main}:
                meta["runs"] = odd
        if copies := [k - len(tele) for k, i in enumerate(tele) if i in out.copies]:
            meta["copies"] = copies
        if maybe_stored:
            meta["maybe_stored"] = True
        lines = [out.lines[i] for i in other + tele]
        dropped = self.spool.append(lines, meta, on_drop=self._segment_dropped)
        seg_id, kept = self.spool.last_append
        kept_tele = min(len(tele), kept)
        if seg_id:
            self.seg_telemetry[seg_id] = kept_tele
        for i in tele[:len(tele) - kept_tele]:  # an oversized batch loses its oldest lines
            self.ledger.drop(out.lines[i], out.runs[i], copy=i in out.copies, maybe_stored=maybe_stored)
        self.counters["spooled_points"] += len(lines)
        if dropped:
            self.counters["spool_dropped_points"] += dropped

    def _segment_dropped(self, seg_id: int) -> None:
        """The spool is about to delete segment ``seg_id`` to make room: its telemetry lines go to the ledger."""
        n_tele = self.seg_telemetry.pop(seg_id, 0)
        maybe_stored = seg_id in self.seg_maybe_stored
        self.seg_maybe_stored.discard(seg_id)
        try:
            seg = self.spool.read(seg_id)
        except (OSError, ValueError):
            self.ledger.drop_unreadable(n_tele)
            return
        maybe_stored = maybe_stored or bool(seg.meta.get("maybe_stored"))
        copies = set(seg.meta.get("copies", ()))
        for k, line, run in _telemetry_of(seg):
            self.ledger.drop(line, run, copy=k in copies, maybe_stored=maybe_stored)

    def _drain_spool(self) -> None:
        while self.spool.segments and time.monotonic() >= self.retry_at and not self._stop.is_set():
            seg = self.spool.oldest()
            self._forget_corrupt()
            if seg is None:
                return
            t0 = time.perf_counter()
            res = write_isolating(self.writer, seg.lines)
            self._account(res, t0)
            if res.pending:
                if res.pending_maybe_stored:  # if an overflow drops it now, its points may be stored
                    self.seg_maybe_stored.add(seg.id)
                return  # the segment stays; rewriting its written part later is idempotent
            if copies := set(seg.meta.get("copies", ())):
                self._copies_stored(res, (t for t in _telemetry_of(seg) if t[0] in copies))
            self.spool.remove(seg.id)
            self.seg_telemetry.pop(seg.id, None)
            self.seg_maybe_stored.discard(seg.id)
            self.counters["spool_drained_points"] += len(seg.lines)
            if not self.inbox.empty():
                return  # interleave with live traffic; the order of a satellite's points does not matter

    def _forget_corrupt(self) -> None:
        """Segments the spool moved aside as corrupt lost their telemetry: the ledger counts it."""
        if self.spool.corrupt_segments_total == self._corrupt_seen:
            return
        self._corrupt_seen = self.spool.corrupt_segments_total
        present = set(self.spool.segment_ids())
        for seg_id in [i for i in self.seg_telemetry if i not in present]:
            self.ledger.drop_unreadable(self.seg_telemetry.pop(seg_id))
            self.seg_maybe_stored.discard(seg_id)

    def _may_verify(self) -> bool:
        """InfluxDB answers, the spool is empty, and requests that timed out have had time to land."""
        now = time.monotonic()
        return (self.db_ok and not self.spool.segments and now >= self.retry_at
                and now - self.db_ok_since >= self.s.drop_audit_delay_s)

    def _verify_drops(self) -> None:
        """Look dropped points that may be stored up in InfluxDB (once it answers and the spool is empty)."""
        try:
            self.ledger.verify(lambda q: list(self.writer.query(q, epoch="ns")))
        except Exception as exc:  # noqa: BLE001 - any query failure: the audit stays, try again later
            self.counters["drop_audit_errors"] += 1
            self.db_error = f"drop audit query failed: {str(exc)[:200]}"
            self.retry_at = time.monotonic() + 5.0

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
            ranges.extend([sat, a, b] for a, b in seq_ranges(sorted(miss)))
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
            **self.ledger.status(),
            "db_error": self.db_error,
            "write_latency_p99_ms": float(np.percentile(lat, 99)), "spool_bytes": self.spool.depth_bytes,
            "spool_points": self.spool.depth_lines, "spool_dropped_points": self.counters["spool_dropped_points"],
            "dead_letters": self.dead.count, "gaps_detected": self.tracker.gaps_detected,
            "missing_now": self.tracker.missing_count, "gaps_filled": self.tracker.filled,
            "gaps_unrecoverable": self.counters["gaps_unrecoverable"], "duplicates_seen": self.tracker.duplicates,
            **self.guard.status(), "resumed": self.resumed, "state_saves": self.state.saves,
            "inbox": self.inbox.qsize(), "lag_s": round(self.lag_s, 3), "db_ok": self.db_ok,
            "connected": self.connected.is_set(), "shard": self.topics.shard,
            "other_partition": self.counters["other_partition"],
        }

    def _report(self) -> None:
        st = self.status()
        self.conn.publish(self.topics.bridge(self.s.bridge_id, "status"),
                          json.dumps({"v": 1, "bridge": self.s.bridge_id, "wall_time": time.time(), **st}), qos=0)
        lines = [flat_line("bridge", st, time.time_ns(), tags={"bridge": self.s.bridge_id, "run": run_tag(self.guard.run)},
                           skip=())]
        runs = sorted(r for r in self._runs_dirty if r in self.guard.births)
        lines += [runs_line(r, self.guard.run_info(r), self._run_start_ns(r)) for r in runs]
        if not self.spool.segments and (self.db_ok or time.monotonic() >= self.retry_at):
            res = write_isolating(self.writer, lines)  # while InfluxDB is down it is also the probe of its return
            if res.pending:
                self.db_ok = False
                self.db_error = self._why_not_ok(res.outcome)
                fatal = res.outcome.status == "fatal"
                self.retry_at = time.monotonic() + (30.0 if fatal else (res.outcome.retry_after_s or 1.0))
            else:
                if not self.db_ok:
                    self.db_ok, self.db_ok_since, self.db_error = True, time.monotonic(), ""
                self._runs_dirty.clear()  # a failed write keeps them dirty: the next report writes them again

    def _run_start_ns(self, run: int) -> int:
        """The timestamp of a run's ``runs`` point: its birth's wall time (else its id's), fixed for the run."""
        ms = self.guard.birth_info.get(run, {}).get("wall_start_ms")
        return int(ms) * 1_000_000 if ms is not None else (run // 1000) * 1_000_000  # ids: Unix ms x 1000 + suffix


def _telemetry_of(seg: Segment) -> list[tuple[int, bytes, int | None]]:
    """``(index from the end, line, twin run)`` of a spooled segment's telemetry lines (see ``_to_spool``)."""
    n = min(int(seg.meta.get("telemetry", 0)), len(seg.lines))
    run, odd = seg.meta.get("run"), seg.meta.get("runs", {})
    return [(k, seg.lines[k], odd.get(str(k), run)) for k in range(-n, 0)]


def audit_line(a: dict[str, Any]) -> bytes:
    """One audit record (``{prefix}/audit``) as a point of measurement ``audit``: tags ``run``, ``result`` and
    ``reason`` (``none`` when accepted), bounded values only; ``authenticated`` a boolean field; the claimed key
    id, client, topic, request id and name string fields, since a forger chooses them."""
    from bridges.influx.line_protocol import field_str, tag
    from twin.schema.commands import Reason

    run = str(a["run"]) if type(a.get("run")) is int else "none"
    result = a.get("result")
    reason = a.get("reason") or "none"
    seq = a.get("seq")
    if result not in ("accepted", "rejected") or (reason != "none" and reason not in {r.value for r in Reason}):
        raise MappingError(f"audit record with result {str(result)[:20]!r} and reason {str(reason)[:20]!r}")
    if type(seq) is not int:
        raise MappingError("audit record lacks an integer seq")
    fields = [f"seq={seq}i", f"authenticated={'true' if a.get('authenticated') is True else 'false'}"]
    for key in ("kid", "client", "topic", "id", "request"):
        if isinstance(a.get(key), str):
            fields.append(f"{key}={field_str(a[key][:512])}")
    tags = f"run={tag(run)},result={tag(result)},reason={tag(reason)}"
    return f"audit,{tags} {','.join(fields)} {time_ns(a.get('t')) + seq % 1_000_000}".encode()

"""One tick's telemetry onto the MQTT link, under backpressure (:mod:`twin.runtime.backpressure`).

Per-satellite messages (``sat/{sat}/tm/{packet}``) and fleet frames (``fleet/tm/{packet}``) of
every packet due this tick. In ``wait`` mode :meth:`TelemetryOut.gate` holds the tick until the
link has room for it, so every message goes out; in ``shed`` mode the tick keeps its pace and
per-satellite messages beyond the link's room are shed lowest priority first, each consuming its
sequence number and counted per packet (fleet frames still carry every row, so an archive
reading frames loses nothing).

The telemetry policy (:mod:`twin.contract.telemetry_policy`) says which satellites publish
per-satellite messages (``watched``, changed by ``set_watch`` between ticks) and which rows the
frames carry (``frames``: all, watched or off). A due satellite that is not watched still takes
its sequence number (frames carry it), so a watcher sees a gap for the ticks it was not watched.
:class:`AggregatesOut` publishes the per-shell and per-plane aggregates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from twin.contract.fleet_aggregates import AggregateEncoder
from twin.contract.network_frames import LatencyEncoder, TopologyEncoder
from twin.contract.telemetry_encoder import FrameEncoder, PacketEncoder, PacketSchedule
from twin.contract.telemetry_policy import TelemetryPolicy
from twin.contract.topics import Topics, iso_utc
from twin.core.engine import FleetTwin
from twin.core.ephemeris import jd_to_datetime
from twin.runtime.backpressure import ShedBudget, plan_shed
from twin.runtime.mqtt_link import MqttLink
from twin.runtime.replay_buffer import ReplayBuffer

# messages a tick publishes besides telemetry and frames (summary, status, a few events): room kept for them
_TICK_EXTRA = 16


def default_max_backlog(schedule: PacketSchedule, max_queued: int, frames: bool = True) -> int:
    """Two ticks of nominal telemetry (at least 1,000 messages), below half of paho's queue.

    Two ticks let the link send one tick while the next is computed; half the queue leaves room
    for replays, replies and the birth after a reconnection.
    """
    per_tick = schedule.messages_per_s() * schedule.dt_s + (len(schedule.period) if frames else 0) + _TICK_EXTRA
    return int(min(max(2 * per_tick, 1000), max_queued // 2))


class TelemetryOut:
    """Encodes and publishes each tick's telemetry; waits (``wait``) or sheds (``shed``) when the link is full."""

    def __init__(self, link: MqttLink, schedule: PacketSchedule, encoders: Mapping[str, PacketEncoder],
                 frames: Mapping[str, FrameEncoder], seq: np.ndarray, replay: ReplayBuffer,
                 counters: Counter[str], *, overload: str = "wait", max_backlog: int | None = None,
                 shed_budget_s: float = 0.3, watched: np.ndarray | None = None, frame_rows: str = "all") -> None:
        self.link = link
        # per-satellite topics for these satellites (bool per satellite); frames: all, watched or off
        self.watched = np.ones(seq.size, dtype=bool) if watched is None else np.asarray(watched, dtype=bool).copy()
        # (deployment version, bool per satellite in orbit or None: all); the service sets it from the twin
        self.in_orbit: Callable[[], tuple[int, np.ndarray | None]] = lambda: (0, None)
        self._all_watched = bool(self.watched.all())
        self.frame_rows = frame_rows
        self.schedule = schedule
        self.encoders = encoders
        self.frames = frames
        self.seq = seq
        self.replay = replay
        self.counters = counters
        self.overload = overload
        self.max_backlog = max_backlog or default_max_backlog(schedule, link.settings.max_queued, bool(frames))
        self.budget = ShedBudget(self.max_backlog, shed_budget_s)
        self.shed: Counter[str] = Counter()  # per-satellite messages shed, per packet
        self.shed_ticks = 0
        self.wait_s_total = 0.0
        self.waits = 0
        self._tick_start: float | None = None  # when the tick about to publish passed its gate (budget clock)
        self._due: tuple[tuple[int, int], dict[str, np.ndarray]] | None = None

    def due(self, tick: int) -> dict[str, np.ndarray]:
        """Rows due per packet at ``tick`` of the satellites in orbit (computed once per tick and
        deployment change: a satellite not launched yet or re-entered publishes nothing)."""
        version, in_orbit = self.in_orbit()
        if self._due is None or self._due[0] != (tick, version):
            due = self.schedule.due(tick)
            if in_orbit is not None:
                due = {p: rows[in_orbit[rows]] for p, rows in due.items()}
            self._due = ((tick, version), due)
        return self._due[1]

    def set_watch(self, action: str, sats: np.ndarray) -> int:
        """``set_watch``: watch exactly ``sats`` (``set``), or add or remove them; returns how many are watched."""
        if action == "set":
            self.watched[:] = False
        self.watched[sats] = action != "remove"
        self._all_watched = bool(self.watched.all())
        return int(self.watched.sum())

    def _watched(self, due: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The due rows of watched satellites (the per-satellite messages of the tick)."""
        if self._all_watched:
            return dict(due)
        return {p: rows[self.watched[rows]] for p, rows in due.items()}

    def _frame_rows(self, rows: np.ndarray, watched_rows: np.ndarray) -> np.ndarray | None:
        """The rows a packet's frame carries (None: no frame); ``watched_rows``: those of ``rows`` watched."""
        out = rows if self.frame_rows == "all" else watched_rows
        return out if out.size else None

    def need(self, tick: int) -> int:
        """Messages the tick will publish: per-satellite telemetry, frames and the tick's other messages."""
        due = self.due(tick)
        sats = sum(int(r.size) for r in self._watched(due).values())
        return sats + sum(1 for p in due if p in self.frames) + _TICK_EXTRA

    def gate(self, tick: int, should_stop: Callable[[], bool] = lambda: False) -> float:
        """Before tick ``tick``: wait for room (``wait`` mode); returns the seconds waited (lag)."""
        if self.overload != "wait":
            self._tick_start = self.budget.clock()  # shed: what the tick spends before publishing counts
            return 0.0
        waited = self.link.wait_for_room(max(self.max_backlog - self.need(tick), 0), should_stop=should_stop)
        if waited > 0:
            self.waits += 1
            self.wait_s_total += waited
        return waited

    def publish(self, twin: FleetTwin, t_iso: str, t_s: float, bseq: int, run_id: int) -> None:
        """Encode and publish the telemetry due at ``twin.tick`` (after :meth:`gate`)."""
        link = self.link
        due = self.due(twin.tick)
        watched = self._watched(due)
        kept: Mapping[str, np.ndarray] = watched
        if self.overload == "shed":
            total = sum(int(r.size) for r in kept.values())
            start, self._tick_start = self._tick_start, None
            elapsed = 0.0 if start is None else self.budget.clock() - start
            allowed = self.budget.allowed(link.outstanding, link.stats.acked, elapsed, link.delivery.pending_s()) \
                if link.can_send() else 0
            if allowed < total:
                kept, shed = plan_shed(kept, allowed, twin.tick)
                self.shed.update(shed)
                self.counters["telemetry_shed"] += sum(shed.values())
                self.shed_ticks += 1
        for packet, rows in due.items():
            seqs = self.seq[rows].copy()
            self.seq[rows] += 1  # shed messages consume their sequence numbers: the gap is visible
            send = kept[packet]
            encoder = self.encoders[packet]
            whole = send.size == rows.size
            frame_rows = self._frame_rows(rows, watched[packet]) if packet in self.frames else None
            framed_all = frame_rows is not None and frame_rows.size == rows.size
            # each value's JSON text is made once: the satellites' messages and the fleet frame share it
            cols = encoder.columns(twin.tm, rows) if whole or framed_all else None
            frame_cols = cols if framed_all else (
                None if frame_rows is None else encoder.columns(twin.tm, frame_rows))
            # the satellites sent are a subsequence of the watched ones: the same rows when as many
            send_cols = cols if whole else frame_cols if frame_rows is not None and frame_rows.size == send.size \
                else None
            if send.size:
                send_seqs = seqs if whole else self.seq[send] - 1
                msgs = encoder.encode(twin.tm, send, send_seqs, bseq, t_iso, t_s, run_id, cols=send_cols)
                self._send(msgs)
                self.replay.add(send, send_seqs, msgs)
                self.counters["telemetry"] += len(msgs)
            if frame_rows is not None:
                frame_seqs = seqs if framed_all else self.seq[frame_rows] - 1
                topic, frame = self.frames[packet].encode(twin.tm, frame_rows, frame_seqs, bseq, t_iso, t_s, run_id,
                                                          cols=frame_cols)
                link.publish(topic, frame, qos=1)
                self.counters["frames"] += 1
        if self.overload == "shed":
            self.budget.published(link.outstanding, link.stats.acked)

    def _send(self, msgs: list[tuple[str, bytes]]) -> None:
        """Publish per-satellite messages: paho directly when its queue has room for all, else one by one (blocking)."""
        link = self.link
        if link.backlog + len(msgs) < link.settings.max_queued:
            link.publish_many(msgs)
        else:
            for topic, payload in msgs:
                link.publish(topic, payload)

    def status(self) -> dict[str, Any]:
        """Backpressure figures for the twin's status: mode, backlog limit, waits, shed counts per packet."""
        return {"overload": self.overload, "max_backlog": self.max_backlog, "backpressure_waits": self.waits,
                "watched": int(self.watched.sum()),
                "backpressure_wait_s": round(self.wait_s_total, 3), "shed": dict(self.shed),
                "shed_ticks": self.shed_ticks,
                "link_rate_msgs_s": None if self.budget.rate is None else round(self.budget.rate, 1)}


class AggregatesOut:
    """The per-shell and per-plane aggregates (:mod:`twin.contract.fleet_aggregates`) at ``hz`` (0: none).

    Published on the ticks where ``tick % period == 0`` (period: ``1 / (hz * dt)`` ticks, at least 1),
    QoS 1, not retained, never shed.
    """

    def __init__(self, link: MqttLink, encoder: AggregateEncoder | None, hz: float, dt_s: float,
                 counters: Counter[str]) -> None:
        self.link = link
        self.encoder = encoder
        self.period = 0 if encoder is None or hz <= 0 else max(1, int(np.rint(1.0 / (hz * dt_s))))
        self.counters = counters

    def publish(self, twin: FleetTwin, t_iso: str, t_s: float, bseq: int, run_id: int) -> None:
        """The aggregates of ``twin.tm`` when due at ``twin.tick``."""
        if self.encoder is None or self.period == 0 or twin.tick % self.period:
            return
        for topic, payload in self.encoder.encode(twin.tm, twin.mode, t_iso, t_s, bseq, run_id):
            self.link.publish(topic, payload, qos=1)
            self.counters["aggregates"] += 1


class NetworkFramesOut:
    """The network's fleet frames (:mod:`twin.contract.network_frames`) of a twin with the network model.

    The topology frame at the schedule's ``topology`` rate; the city-latency frame once per matrix
    the engine makes (``FleetTwin.city_rtt``, every ``network.city_matrix_interval_s``), stamped with
    the matrix's own sim time. QoS 1, not retained.
    """

    def __init__(self, link: MqttLink, schedule: PacketSchedule, names: list[str] | tuple[str, ...], topics: Topics,
                 counters: Counter[str], enabled: bool = True) -> None:
        self.enabled = enabled  # False: another process publishes them (a shard other than the first)
        self.link = link
        self.schedule = schedule
        self.counters = counters
        self.topology = TopologyEncoder(names, topics)
        self.latency = LatencyEncoder(topics)
        self.latency_t_s = -np.inf  # sim time of the last matrix published

    def publish(self, twin: FleetTwin, t_iso: str, t_s: float, bseq: int, run_id: int) -> None:
        """Publish what is due at ``twin.tick`` (nothing for a twin without the network)."""
        if not self.enabled:
            return
        if twin.net is not None and self.schedule.topic_due("topology", twin.tick):
            topic, payload = self.topology.encode(twin.net, t_iso, t_s, run_id, bseq, twin.tick)
            self.link.publish(topic, payload, qos=1)
            self.counters["topology_frames"] += 1
        rtt = getattr(twin, "city_rtt", None)
        if rtt is not None and rtt.t_s > self.latency_t_s:
            self.latency_t_s = rtt.t_s
            when = t_iso if rtt.t_s == t_s else iso_utc(jd_to_datetime(sum(twin.jd_fr(rtt.t_s))))
            topic, payload = self.latency.encode(rtt, when, run_id, bseq, twin.tick)
            self.link.publish(topic, payload, qos=1)
            self.counters["latency_frames"] += 1


def prune_schedule(schedule: PacketSchedule, twin: FleetTwin) -> PacketSchedule:
    """Drop the packets the twin has no model for (``net`` without the network, ``compute`` without placement)."""
    if twin.mesh is None:
        schedule.drop("net")
    if twin.compute is None:
        schedule.drop("compute")
    return schedule


def aggregate_encoder(twin: FleetTwin, topics: Topics, policy: TelemetryPolicy, groups: Any = None) -> Any:
    """The aggregates' encoder of a policy with aggregates on (``groups``, else the shells and planes at the
    start: :func:`twin.contract.fleet_aggregates.twin_groups`), else None."""
    if policy.aggregates_hz <= 0:
        return None
    from twin.contract.fleet_aggregates import AggregateEncoder, twin_groups

    return AggregateEncoder(groups if groups is not None else twin_groups(twin), topics)

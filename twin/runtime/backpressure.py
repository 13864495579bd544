"""Backpressure between the tick loop and the MQTT link: wait for room, or shed by priority.

The twin holds at most ``max_backlog`` messages that the broker has not taken yet (QoS 1: not
acknowledged; QoS 0: not yet written to the socket). Two overload modes decide what happens when
the link cannot keep up:

* ``wait`` (default): before a tick, the sim clock waits until the backlog is at most
  ``max_backlog`` minus the tick's messages. Nothing is refused or dropped; the wait is lag.
* ``shed``: the sim clock keeps its pace; a tick publishes at most ``max_backlog`` minus the
  backlog of per-satellite telemetry messages and sheds the rest, lowest priority packet first
  (:data:`SHED_ORDER`). Shed messages still consume their sequence number (a subscriber sees the
  gap) and are counted per packet; fleet frames, events, replies, state, summary and status are
  never shed.

:class:`DeliveryLag` measures when each tick's messages reached the broker, so the twin reports
the same lag a subscriber measures.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

import numpy as np

OVERLOAD_MODES = ("wait", "shed")

# Shed first -> shed last. radiation and thermal change slowly (minutes) and their state carries
# over (dose accumulates, temperatures are continuous), so a gap loses the least; orbit is
# predictable from the catalogue; net (links, gateway route, traffic) is re-derived every tick and
# its fleet aggregates are in the fleet summary; compute (a twin with compute placement) holds
# counters that carry over a gap (jobs completed, corrupt, upsets) and the jobs' power of the last
# tick, whose fleet totals (battery and array energy, misses, latency) are in the fleet summary and
# whose load shows in payload and power: after net, before them; power and payload carry the energy
# and compute figures; hk (mode, limit state, battery and payload headline, 1 Hz) is what operators
# and alerts watch.
SHED_ORDER: tuple[str, ...] = ("radiation", "thermal", "orbit", "net", "compute", "power", "payload", "hk")


def plan_shed(due: Mapping[str, np.ndarray], allowed: int, tick: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Split each packet's due rows into those sent and a count of those shed, within ``allowed`` messages.

    Packets are kept in reverse :data:`SHED_ORDER` (hk first); the packet that only partly fits
    keeps a window of its rows that rotates with ``tick``, so the same satellites do not lose
    every time. Returns ``(kept rows per packet, shed count per packet)``.
    """
    order = [p for p in reversed(SHED_ORDER) if p in due] + [p for p in due if p not in SHED_ORDER]
    left = max(int(allowed), 0)
    kept: dict[str, np.ndarray] = {}
    shed: dict[str, int] = {}
    for packet in order:
        rows = due[packet]
        if rows.size <= left:
            kept[packet] = rows
            left -= rows.size
            continue
        if left > 0:
            start = (tick * 7919) % rows.size
            kept[packet] = np.sort(np.roll(rows, -start)[:left])
        else:
            kept[packet] = rows[:0]
        shed[packet] = int(rows.size - left)
        left = 0
    return kept, shed


class DeliveryLag:
    """When the messages of each tick reached the broker, against the wall time the tick was due.

    The tick loop calls :meth:`mark` after a tick's messages were handed to the link with the
    link's running count of published messages and the tick's due wall time; the link's network
    thread calls :meth:`delivered` with its running count of acknowledged messages (QoS 1: PUBACK;
    QoS 0: written to the socket). A tick is delivered when every message published up to its
    mark is; its lag is then ``now - due`` in s.

    Set :attr:`history` to a list to keep, per delivered tick, ``(due, handed, delivered)`` wall
    times (s, :attr:`clock`): when the tick was due, when its messages were handed to the link,
    when the broker had them all (the benchmark splits the lag with it).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._marks: deque[tuple[int, float, float]] = deque()
        self.clock = clock
        self.last_s = 0.0
        self.max_s = 0.0
        self.ticks = 0
        self.history: list[tuple[float, float, float]] | None = None

    def mark(self, published_total: int, due_wall: float) -> None:
        self._marks.append((published_total, due_wall, self.clock() if self.history is not None else 0.0))

    def delivered(self, acked_total: int) -> None:
        """Close every tick whose messages are all acknowledged (cheap when none is)."""
        marks = self._marks
        if not marks or acked_total < marks[0][0]:
            return
        now = self.clock()
        while marks and acked_total >= marks[0][0]:
            _, due, handed = marks.popleft()
            lag = max(now - due, 0.0)
            if self.history is not None:
                self.history.append((due, handed, now))
            self.last_s = lag
            self.max_s = max(self.max_s, lag)
            self.ticks += 1

    def pending_s(self) -> float:
        """Age of the oldest undelivered tick (s; 0 when all are delivered): a lag still growing."""
        marks = self._marks
        try:
            return max(self.clock() - marks[0][1], 0.0)
        except IndexError:
            return 0.0


class ShedBudget:
    """How many messages a tick may add in ``shed`` mode so they reach the broker within ``budget_s`` of the tick's start.

    The link's delivery rate is measured over tick intervals in which it never ran dry (the
    backlog was non-zero at both ends); a tick whose backlog had drained raises the estimate by
    a quarter (probing for more) and drops it once it no longer limits (or was taken while the
    broker stalled). The cap is ``min(max_backlog, rate * max(budget_s - elapsed_s, floor_s))``
    messages of backlog, where ``elapsed_s`` is what the tick already spent before publishing
    (requests, the physics step): a slow step leaves less time to deliver in. A tick may
    publish the difference between the cap and the backlog it finds, and nothing while an
    earlier tick's messages have waited longer than ``budget_s`` (``behind_s``: the link is
    already late, a rate estimate that is too high must not add to it).

    The tick loop itself can be the limit (a busy machine: encoding and handing over the
    messages takes the twin longer than the link takes to deliver them). :attr:`own_rate` is the
    rate at which the tick loop hands messages to the link, measured from :meth:`allowed` to
    :meth:`published` on ticks that publish at least ``min_sample`` messages (raised by a quarter
    after a tick with fewer, so a low estimate cannot hold itself down); a tick publishes at most
    ``own_rate * max(budget_s - elapsed_s, floor_s)`` messages, so the messages it keeps are
    handed over within the budget and the tick ends in time for the next one.
    """

    def __init__(self, max_backlog: int, budget_s: float = 0.3, clock: Callable[[], float] = time.monotonic,
                 floor_s: float = 0.1, min_sample: int = 200) -> None:
        self.max_backlog = max_backlog
        self.budget_s = budget_s
        self.floor_s = floor_s
        self.min_sample = min_sample
        self.clock = clock
        self.rate: float | None = None  # messages/s the link delivered while saturated
        self.own_rate: float | None = None  # messages/s the tick loop hands to the link while publishing
        self._prev: tuple[float, int, int] | None = None  # (wall, acked total, backlog after publishing)
        self._asked: tuple[float, int, int] | None = None  # (wall, backlog, acked total) when allowed() ran

    def allowed(self, backlog: int, acked_total: int, elapsed_s: float = 0.0, behind_s: float = 0.0) -> int:
        """Messages this tick may publish, given the backlog and acknowledged count when it publishes,
        the seconds ``elapsed_s`` it already spent since it started and the age ``behind_s`` of the
        oldest earlier tick not yet delivered."""
        now = self.clock()
        if self._prev is not None:
            t0, acked0, after0 = self._prev
            sample = (acked_total - acked0) / (now - t0) if now > t0 else 0.0
            if backlog == 0:  # drained: the link had room; what it delivered is a lower bound
                if self.rate is not None:
                    self.rate = max(self.rate * 1.25, sample)
                    if not 1.0 <= self.rate * self.budget_s < self.max_backlog:
                        self.rate = None  # no cap (again), or a stale estimate from a stalled link
            elif after0 > 0:  # busy throughout: the link delivered at its rate
                self.rate = sample if self.rate is None else 0.7 * self.rate + 0.3 * sample
        self._asked = (now, backlog, acked_total)
        if backlog > 0 and behind_s > self.budget_s:
            return 0
        horizon_s = max(self.budget_s - max(elapsed_s, 0.0), self.floor_s)
        cap = self.max_backlog if self.rate is None else min(self.max_backlog, int(self.rate * horizon_s))
        room = max(cap - backlog, 0)
        return room if self.own_rate is None else min(room, int(self.own_rate * horizon_s))

    def published(self, backlog_after: int, acked_total: int) -> None:
        """Record the backlog right after the tick's messages were handed to the link."""
        now = self.clock()
        if self._asked is not None:
            t0, backlog0, acked0 = self._asked
            handed = backlog_after - backlog0 + acked_total - acked0  # messages the tick added
            if handed >= self.min_sample and now > t0:
                sample = handed / (now - t0)
                self.own_rate = sample if self.own_rate is None else 0.7 * self.own_rate + 0.3 * sample
            elif self.own_rate is not None:  # too few to measure (maybe held down by the estimate): probe up
                self.own_rate *= 1.25
            if self.own_rate is not None and self.own_rate * self.floor_s >= self.max_backlog:
                self.own_rate = None  # far from limiting
        self._asked = None
        self._prev = (now, acked_total, backlog_after)

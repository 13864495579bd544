"""Replays served on a budget, after live telemetry, so they never starve it.

A replay request becomes a :class:`ReplayJob` that waits in a FIFO. Each tick, after the live
telemetry of that tick has been handed to the link, :meth:`ReplayQueue.serve` publishes replayed
messages with what is left: at most the tokens of a bucket refilled at ``replay_messages_per_s``
(wall time) and at most the outgoing queue's free room. Tokens left unspent by a tick do not carry
over (only a fraction of one), so a tick publishes at most what the rate allows for the wall time
since the previous tick (at most a second's worth): the replay is spread over the ticks instead of
queued in one burst ahead of the next tick's live telemetry, at the broker and at every subscriber of
both (a 1,500-message burst in one tick held a subscriber's live telemetry back 1.3 s, 2.6-4.2 s on a
loaded machine). A job
collects its messages from the buffer when it reaches the head of the queue (one pass over the
buffer, at most ``replay_messages_per_request`` of them) and is finished when the last one has
been published; its reply then says what was held and what was sent.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.core.request_limits import RequestLimits
from twin.runtime.replay_buffer import Collected, ReplayBuffer


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up; ``clock`` in seconds."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self._last = clock()

    def available(self) -> int:
        """Whole tokens available now (after refilling)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        return int(self.tokens)

    def take(self, n: int) -> None:
        """Spend ``n`` tokens (at most :meth:`available`)."""
        self.tokens -= n


@dataclass
class ReplayJob:
    """One replay request: its ranges (fleet indices, inclusive sequence numbers) and where its reply goes."""

    route: Any
    sats: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    found: Collected | None = None  # collected at the head of the queue
    sent: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.found is not None and self.sent >= len(self.found.messages)


class ReplayQueue:
    """Replay jobs in arrival order, served with the budget :meth:`serve` is given."""

    def __init__(self, buffer: ReplayBuffer, limits: RequestLimits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.buffer = buffer
        self.limits = limits
        self.bucket = TokenBucket(limits.replay_messages_per_s, limits.replay_messages_per_s, clock)
        self.jobs: deque[ReplayJob] = deque()
        self.sent_total = 0
        self.sent_last = 0  # replayed messages the last serve published
        self.sent_max = 0  # ... and the most one serve (one tick) published

    def __len__(self) -> int:
        return len(self.jobs)

    def add(self, job: ReplayJob) -> None:
        self.jobs.append(job)

    @property
    def waiting_messages(self) -> int:
        """Collected messages not yet published again."""
        return sum(len(j.found.messages) - j.sent for j in self.jobs if j.found is not None)

    def serve(self, publish: Callable[[str, bytes], bool], room: int) -> list[ReplayJob]:
        """Publish replayed messages, at most the bucket's tokens and ``room``; the jobs that finished.

        ``publish(sat_topic, payload)`` returns False when the link refused the message (it is then
        tried again next time). A job with nothing to send finishes without spending tokens.
        """
        finished: list[ReplayJob] = []
        budget = min(self.bucket.available(), max(room, 0))
        spent = scans = 0
        while self.jobs:
            job = self.jobs[0]
            if job.found is None:
                if scans >= self.limits.replay_scans_per_tick:
                    break
                scans += 1
                job.found = self.buffer.collect(job.sats, job.lo, job.hi, self.limits.replay_messages_per_request)
            msgs = job.found.messages
            while job.sent < len(msgs) and spent < budget:
                topic, payload = msgs[job.sent]
                if not publish(topic, payload):
                    break
                job.sent += 1
                spent += 1
            if not job.done:
                break
            self.jobs.popleft()
            finished.append(job)
        self.bucket.take(spent)
        self.bucket.tokens = min(self.bucket.tokens, 1.0)  # no saved-up burst for the next tick
        self.sent_total += spent
        self.sent_last = spent
        self.sent_max = max(self.sent_max, spent)
        return finished

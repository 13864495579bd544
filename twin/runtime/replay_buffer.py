"""A bounded buffer of recently published telemetry that consumers can ask to be sent again.

Consumers detect gaps in a satellite's sequence numbers; a replay request for that range makes
the twin publish the same payloads (same sequence numbers and timestamps) again, so an
idempotent store closes the gap. The buffer is bounded in bytes; what has been evicted is
reported as missing in the reply, never silently.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class _Batch:
    rows: np.ndarray  # satellite indices
    seqs: np.ndarray  # their sequence numbers
    messages: list[tuple[str, bytes]]
    nbytes: int


_SEQ_SPAN = 2**40  # sequence numbers per satellite in a search key (sat * span + seq)


@dataclass
class Collected:
    """What a replay found: the messages to send again (at most the limit), how many the buffer holds
    of the requested ranges, and how many of the requested sequence numbers it no longer holds."""

    messages: list[tuple[str, bytes]]
    held: int
    evicted: int


def _merged(sats: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranges as sorted, disjoint [start, end] search keys (overlapping and touching ranges merged)."""
    lo = np.clip(lo, 0, _SEQ_SPAN - 1)
    hi = np.clip(hi, 0, _SEQ_SPAN - 1)
    starts = sats.astype(np.int64) * _SEQ_SPAN + lo
    ends = sats.astype(np.int64) * _SEQ_SPAN + hi
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    if starts.size < 2:
        return starts, ends
    reach = np.maximum.accumulate(ends)
    new = np.empty(starts.size, dtype=bool)
    new[0] = True
    new[1:] = starts[1:] > reach[:-1] + 1
    group = np.cumsum(new) - 1
    merged_ends = np.zeros(int(group[-1]) + 1, dtype=np.int64)
    np.maximum.at(merged_ends, group, ends)
    return starts[new], merged_ends


class ReplayBuffer:
    """Telemetry batches in publication order, oldest evicted first beyond ``max_bytes``."""

    def __init__(self, n_sats: int, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._batches: deque[_Batch] = deque()
        # highest sequence number evicted per satellite (-1: nothing evicted yet)
        self.evicted_through = np.full(n_sats, -1, dtype=np.int64)

    def add(self, rows: np.ndarray, seqs: np.ndarray, messages: list[tuple[str, bytes]]) -> None:
        if self.max_bytes <= 0 or not messages:
            return
        nbytes = sum(len(p) for _, p in messages) + 64 * len(messages)
        self._batches.append(_Batch(rows, seqs, messages, nbytes))
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes and len(self._batches) > 1:
            old = self._batches.popleft()
            self.nbytes -= old.nbytes
            np.maximum.at(self.evicted_through, old.rows, old.seqs)

    @property
    def held(self) -> int:
        """Messages held."""
        return sum(len(b.messages) for b in self._batches)

    def collect(self, sats: np.ndarray, lo: np.ndarray, hi: np.ndarray, limit: int) -> Collected:
        """Messages of the ranges ``sats[k]``: ``lo[k]..hi[k]`` (inclusive; overlaps count once), the
        earliest ``limit`` of them in publication order, with how many are held and how many were evicted.

        One pass over the buffer whatever the number of ranges (a sorted search per batch)."""
        starts, ends = _merged(sats, lo, hi)
        out: list[tuple[str, bytes]] = []
        held = 0
        for b in self._batches:
            keys = b.rows.astype(np.int64) * _SEQ_SPAN + b.seqs
            k = np.searchsorted(starts, keys, side="right") - 1
            hits = np.flatnonzero((k >= 0) & (keys <= ends[np.maximum(k, 0)]))
            held += hits.size
            room = limit - len(out)
            if room > 0 and hits.size:
                out.extend(b.messages[j] for j in hits[:room].tolist())
        sat_of = starts // _SEQ_SPAN
        first, last = starts % _SEQ_SPAN, ends % _SEQ_SPAN
        evicted = np.maximum(0, np.minimum(last, self.evicted_through[sat_of]) - first + 1)
        return Collected(out, held, int(evicted.sum()))

    def find(self, sat: int, lo: int, hi: int) -> tuple[list[tuple[str, bytes]], int]:
        """Messages of satellite ``sat`` with sequence numbers lo..hi; and how many are no longer held."""
        found: list[tuple[str, bytes]] = []
        for b in self._batches:
            hit = np.flatnonzero((b.rows == sat) & (b.seqs >= lo) & (b.seqs <= hi))
            found.extend(b.messages[k] for k in hit.tolist())
        evicted = max(0, min(hi, int(self.evicted_through[sat])) - lo + 1)
        return found, evicted

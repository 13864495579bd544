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

    def find(self, sat: int, lo: int, hi: int) -> tuple[list[tuple[str, bytes]], int]:
        """Messages of satellite ``sat`` with sequence numbers lo..hi; and how many are no longer held."""
        found: list[tuple[str, bytes]] = []
        for b in self._batches:
            hit = np.flatnonzero((b.rows == sat) & (b.seqs >= lo) & (b.seqs <= hi))
            found.extend(b.messages[k] for k in hit.tolist())
        evicted = max(0, min(hi, int(self.evicted_through[sat])) - lo + 1)
        return found, evicted

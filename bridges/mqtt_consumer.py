"""Consumer-side helpers for the twin's MQTT contract: liveness and sequence gaps.

:class:`LivenessTracker` applies the birth/death rules (a death only counts when it carries the
birth sequence of the current birth). :class:`SequenceTracker` follows each satellite's
telemetry sequence numbers within a twin run, tells a gap from silence, and turns gaps into
replay requests for the twin's replay buffer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LivenessTracker:
    """The twin's state as the retained ``{prefix}/state`` messages tell it."""

    online: bool = False
    bseq: int | None = None
    stale_deaths: int = 0
    births: int = 0
    deaths: int = 0

    def update(self, payload: bytes | str | dict[str, Any]) -> bool:
        """Apply one state message; returns whether the twin is online afterwards."""
        msg = payload if isinstance(payload, dict) else json.loads(payload)
        state, bseq = msg.get("state"), msg.get("bseq")
        if state == "online":
            self.online, self.bseq = True, bseq
            self.births += 1
        elif state == "offline":
            if self.bseq is not None and bseq != self.bseq:
                self.stale_deaths += 1  # the death of an older connection: the twin is not dead
            else:
                self.online = False
                self.deaths += 1
        return self.online


@dataclass
class SequenceTracker:
    """Per-satellite sequence numbers within a twin run; missing ones are kept until filled."""

    max_missing_per_sat: int = 100_000
    start_at_first_seen: bool = False  # True: a consumer that joins late does not ask for older history
    from_zero_runs: set[int] = field(default_factory=set)  # runs whose birth was seen: expect seq 0 anyway
    runs: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    missing: dict[str, set[int]] = field(default_factory=dict)
    received: int = 0
    duplicates: int = 0
    gaps_detected: int = 0
    filled: int = 0
    abandoned: int = 0

    def observe(self, sat: str, run: int, seq: int) -> str:
        """Record a message: returns ``new``, ``filled`` (a missing one arrived) or ``duplicate``."""
        self.received += 1
        if self.runs.get(sat) != run:
            if sat in self.runs and run < self.runs[sat]:
                self.duplicates += 1  # a late message of an older run
                return "duplicate"
            self.runs[sat] = run
            self.expected[sat] = seq if self.start_at_first_seen and run not in self.from_zero_runs else 0
            self.abandoned += len(self.missing.pop(sat, ()))
        exp = self.expected.get(sat, 0)
        if seq == exp:
            self.expected[sat] = seq + 1
            return "new"
        if seq > exp:
            miss = self.missing.setdefault(sat, set())
            self.gaps_detected += 1
            room = self.max_missing_per_sat - len(miss)
            span = range(exp, seq)
            if len(span) > room:
                self.abandoned += len(span) - room
                span = range(seq - room, seq)
            miss.update(span)
            self.expected[sat] = seq + 1
            return "new"
        pending = self.missing.get(sat)
        if pending and seq in pending:
            pending.discard(seq)
            self.filled += 1
            return "filled"
        self.duplicates += 1
        return "duplicate"

    def to_state(self) -> dict[str, Any]:
        """The per-satellite position (run, next expected seq, missing seqs as ``[lo, hi]`` ranges) as JSON."""
        return {"runs": self.runs, "expected": self.expected, "from_zero_runs": sorted(self.from_zero_runs),
                "missing": {sat: [list(r) for r in seq_ranges(sorted(m))] for sat, m in self.missing.items() if m}}

    def load_state(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`to_state`'s output (the counters start again at 0)."""
        self.runs = {str(k): int(v) for k, v in state.get("runs", {}).items()}
        self.expected = {str(k): int(v) for k, v in state.get("expected", {}).items()}
        self.from_zero_runs = {int(r) for r in state.get("from_zero_runs", ())}
        self.missing = {str(sat): {s for lo, hi in ranges for s in range(int(lo), int(hi) + 1)}
                        for sat, ranges in state.get("missing", {}).items()}

    @property
    def missing_count(self) -> int:
        return sum(len(m) for m in self.missing.values())

    def replay_requests(self, max_ranges: int = 1000) -> list[dict[str, Any]]:
        """Replay request payloads (contiguous ranges) for what is missing now."""
        out: list[dict[str, Any]] = []
        for sat, miss in self.missing.items():
            if not miss:
                continue
            seqs = sorted(miss)
            lo = prev = seqs[0]
            for s in seqs[1:] + [None]:  # type: ignore[list-item]
                if s is not None and s == prev + 1:
                    prev = s
                    continue
                out.append({"sat": sat, "from_seq": lo, "to_seq": prev})
                if len(out) >= max_ranges:
                    return out
                if s is not None:
                    lo = prev = s
        return out


def seq_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted sequence numbers as contiguous inclusive ``(lo, hi)`` ranges."""
    out: list[tuple[int, int]] = []
    if not seqs:
        return out
    lo = prev = seqs[0]
    for s in seqs[1:]:
        if s != prev + 1:
            out.append((lo, prev))
            lo = s
        prev = s
    out.append((lo, prev))
    return out

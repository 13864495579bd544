"""Exact accounting of the telemetry points the bridge's spool drops: what is missing, not what was deleted.

Deleting a spooled line does not always lose its point. Three cases make a plain count of deleted
lines too high:

* **maybe stored**: the line was in a write that failed without a clear "not stored" (a timeout,
  a connection lost after sending, a 5xx; see :mod:`bridges.influx.writer`). influxd may hold it.
* **a copy**: the MQTT broker redelivers unacknowledged messages after a reconnect, and a replay
  can bring a message again; the bridge then holds the same point twice. Deleting one copy loses
  nothing if the other is stored, and two deleted copies are one lost point.
* **restored later**: a point counted as dropped arrives again (a copy) and is stored.

The ledger keeps, per satellite and twin run, the sequence numbers it counted as dropped (as
intervals: the spool drops its oldest batches, so these are a few runs of consecutive numbers),
and a bounded *audit* of dropped points that may be stored, keyed by their InfluxDB identity
(measurement, ``sat``, time). The audit is checked against the database once it answers again;
what is found there is not counted, what is missing is. So, once ``unverified`` is 0,
``dropped`` equals the telemetry points that are missing because of the spool.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from bridges.influx.line_protocol import TelemetryPoint, run_tag, telemetry_point

__all__ = ["DropLedger", "SeqIntervals"]

Query = Callable[[str], list[dict[str, Any]]]
_STATEMENTS_PER_QUERY = 100


class SeqIntervals:
    """A set of integers stored as sorted disjoint closed intervals ``[lo, hi]``."""

    def __init__(self) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []
        self.count = 0  # integers in the set

    def __contains__(self, x: object) -> bool:
        if not isinstance(x, int):
            return False
        i = bisect.bisect_right(self._lo, x) - 1
        return i >= 0 and x <= self._hi[i]

    @property
    def intervals(self) -> list[tuple[int, int]]:
        """The set as sorted ``(lo, hi)`` pairs."""
        return list(zip(self._lo, self._hi))

    def add(self, x: int) -> bool:
        """Add ``x``; False if it was already there."""
        i = bisect.bisect_right(self._lo, x) - 1
        if i >= 0 and x <= self._hi[i]:
            return False
        self.count += 1
        joins_left = i >= 0 and self._hi[i] == x - 1
        joins_right = i + 1 < len(self._lo) and self._lo[i + 1] == x + 1
        if joins_left and joins_right:
            self._hi[i] = self._hi[i + 1]
            del self._lo[i + 1], self._hi[i + 1]
        elif joins_left:
            self._hi[i] = x
        elif joins_right:
            self._lo[i + 1] = x
        else:
            self._lo.insert(i + 1, x)
            self._hi.insert(i + 1, x)
        return True

    def discard(self, x: int) -> bool:
        """Remove ``x``; False if it was not there."""
        i = bisect.bisect_right(self._lo, x) - 1
        if i < 0 or x > self._hi[i]:
            return False
        self.count -= 1
        lo, hi = self._lo[i], self._hi[i]
        if lo == hi:
            del self._lo[i], self._hi[i]
        elif x == lo:
            self._lo[i] = x + 1
        elif x == hi:
            self._hi[i] = x - 1
        else:  # split
            self._hi[i] = x - 1
            self._lo.insert(i + 1, x + 1)
            self._hi.insert(i + 1, hi)
        return True


class DropLedger:
    """Counts dropped telemetry points exactly (see the module docstring).

    ``run`` is the twin run of a line (None when unknown: a segment left by an older bridge
    version); such a drop is counted but cannot be matched with a later copy.
    """

    def __init__(self, audit_max_points: int = 200_000) -> None:
        self.audit_max_points = audit_max_points
        self._counted: dict[tuple[str, int], SeqIntervals] = {}
        # identity (measurement, sat, time, run tag) -> (run, seq)
        self._audit: dict[tuple[str, str, int, str], tuple[int | None, int]] = {}
        self.counted = 0  # points counted as dropped (some may be restored later)
        self.restored = 0  # counted, then a copy was stored
        self.found_stored = 0  # audited and found in the database
        self.audit_overflow = 0  # could not be audited (audit full): counted, may be too high

    # ---- state -------------------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Telemetry points dropped and not stored (exact once ``unverified`` is 0)."""
        return self.counted - self.restored

    @property
    def unverified(self) -> int:
        """Dropped points that may be stored, waiting for :meth:`verify`."""
        return len(self._audit)

    @property
    def dropped_then_stored(self) -> int:
        """Dropped lines whose point is in the database after all (found by the audit or restored)."""
        return self.found_stored + self.restored

    # ---- events ------------------------------------------------------------------------------
    def drop(self, line: bytes, run: int | None, *, copy: bool = False, maybe_stored: bool = False) -> None:
        """A telemetry line left the spool unwritten.

        ``copy``: the bridge had seen this (satellite, run, sequence) before (a redelivery or
        replay); ``maybe_stored``: a write that carried the line failed ambiguously.
        """
        try:
            p = telemetry_point(line)
        except ValueError:
            self.counted += 1  # not the bridge's own telemetry format: nothing to match it with
            return
        if run is not None and p.seq in self._counted.get((p.sat, run), ()):
            return  # another copy of a point already counted
        if copy or maybe_stored:
            self._to_audit(p, run)
            return
        self._count(p, run)

    def drop_unreadable(self, n: int) -> None:
        """``n`` telemetry lines were lost with a segment that could not be read back (corrupt)."""
        self.counted += n

    def stored(self, line: bytes, run: int | None) -> None:
        """A copy line reached the database: a drop counted for the same point is undone."""
        if not (self._counted or self._audit):
            return
        try:
            p = telemetry_point(line)
        except ValueError:
            return
        if self._audit.pop((p.measurement, p.sat, p.t_ns, run_tag(run)), None) is not None:
            self.found_stored += 1
        elif run is not None and (ivs := self._counted.get((p.sat, run))) is not None and ivs.discard(p.seq):
            self.restored += 1

    def verify(self, query: Query) -> None:
        """Look the audited points up in the database (InfluxQL through ``query``, times in ns).

        Found points are not counted; missing ones are. Query errors propagate (the audit stays).
        """
        if not self._audit:
            return
        statements = sorted({(m, t) for m, _, t, _ in self._audit})
        found: set[tuple[str, str, int, str]] = set()
        for k in range(0, len(statements), _STATEMENTS_PER_QUERY):
            chunk = statements[k:k + _STATEMENTS_PER_QUERY]
            q = ";".join(f'SELECT "seq" FROM "{_ident(m)}" WHERE time = {t} GROUP BY "sat", "run"' for m, t in chunk)
            for row in query(q):
                if row.get("seq") is not None and row.get("sat") is not None:
                    found.add((str(row["_measurement"]), str(row["sat"]), int(row["time"]), str(row.get("run"))))
        for key, (run, seq) in list(self._audit.items()):
            del self._audit[key]
            if key in found:
                self.found_stored += 1
            else:
                self._count(TelemetryPoint(key[0], key[1], seq, key[2]), run)

    def status(self) -> dict[str, int]:
        """The ledger's counters as the bridge reports them."""
        return {"spool_dropped_telemetry_points": self.dropped,
                "spool_dropped_unverified_points": self.unverified,
                "spool_dropped_then_stored_points": self.dropped_then_stored,
                "spool_drop_audit_overflow": self.audit_overflow}

    # ---- internals ---------------------------------------------------------------------------
    def _count(self, p: TelemetryPoint, run: int | None) -> None:
        if run is not None and not self._counted.setdefault((p.sat, run), SeqIntervals()).add(p.seq):
            return
        self.counted += 1

    def _to_audit(self, p: TelemetryPoint, run: int | None) -> None:
        key = (p.measurement, p.sat, p.t_ns, run_tag(run))
        if key in self._audit:
            return  # the same point is already waiting
        if len(self._audit) >= self.audit_max_points:
            self.audit_overflow += 1
            self._count(p, run)
            return
        self._audit[key] = (run, p.seq)


def _ident(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')

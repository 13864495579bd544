"""Compute jobs: kinds, states, reasons, a batch of new jobs and the struct-of-arrays job table.

A job is accelerator work measured in device-seconds (one device at full clock for one second),
with input and output data (bytes), a deadline or latency bound, and a source and destination
(a ground endpoint or a satellite). The table holds the jobs that have not ended; a job that ends
(completed, failed or rejected) is recorded once in the :class:`Ledger` and its row reused.
Pure numpy: no clock, no I/O. Figures: docs/physics.md#compute-jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]


class JobKind(IntEnum):
    """What a job is: its kind decides how it may be placed, paused and moved."""

    INTERACTIVE = 0  # inference for a ground user: latency bound, runs at once or is rejected
    BATCH = 1  # preprocessing of a data volume: deadline, can wait, restarts from zero if interrupted
    CHECKPOINT = 2  # long job (training shard) that checkpoints: can be moved with its state


class JobState(IntEnum):
    QUEUED = 0  # waiting for a device
    RUNNING = 1  # holds a device (its input may still be arriving: ``ready_s``)
    MIGRATING = 2  # its checkpoint is moving to another satellite (holds the target device)
    COMPLETED = 3
    FAILED = 4
    REJECTED = 5


TERMINAL_STATES = (JobState.COMPLETED, JobState.FAILED, JobState.REJECTED)


class JobReason(IntEnum):
    """Why a job ended (or, for ``NONE``, that it has not)."""

    NONE = 0
    DONE = 1  # completed in time
    LATE = 2  # completed, after its deadline or latency bound
    NO_CAPACITY = 3  # rejected: no working device free when it had to start (interactive)
    LATENCY_BOUND = 4  # rejected: no satellite can answer within the latency bound
    DEADLINE_MISSED = 5  # failed: the deadline passed before the work was done
    CORRUPTED = 6  # completed, but an uncorrectable upset hit it and it was not re-run (result corrupt)
    INVALID = 7  # rejected: malformed (non-finite or negative sizes)
    NOT_ALLOWED = 8  # rejected: no free satellite where it may run (its selection or jurisdiction) when it had to start


# how a completed job ended (the ``outcome`` of its reply) and why one that did not was failed or rejected
OUTCOMES: tuple[str, ...] = tuple(r.name.lower() for r in (JobReason.DONE, JobReason.LATE, JobReason.CORRUPTED))
END_REASONS: tuple[str, ...] = tuple(r.name.lower() for r in JobReason if r.name.lower() not in OUTCOMES + ("none",))


@dataclass(frozen=True)
class SourceKind:
    """Endpoint kinds of ``src_kind``/``dst_kind``."""

    GROUND: int = 0  # index into the scheduler's ground endpoints (cities)
    SATELLITE: int = 1  # index into the fleet


GROUND = SourceKind.GROUND
SATELLITE = SourceKind.SATELLITE


@dataclass(frozen=True)
class JobBatch:
    """New jobs, one entry per job (arrays of equal length k).

    ``work_dev_s``: device-seconds of accelerator work; ``input_bytes``/``output_bytes``: data in
    and out; ``state_bytes``: checkpoint size (bytes moved by a migration; 0 = not checkpointable);
    ``checkpoint_every_dev_s``: work between checkpoints (0 = none); ``deadline_s``: absolute sim
    time the work must be done by (inf = none); ``latency_bound_s``: round trip from submission to
    the answer at the destination (inf = none); ``src``/``dst``: endpoint index with its kind.
    """

    submit_s: F64
    kind: NDArray[np.int8]
    work_dev_s: F64
    input_bytes: F64
    output_bytes: F64
    state_bytes: F64
    checkpoint_every_dev_s: F64
    deadline_s: F64
    latency_bound_s: F64
    src_kind: NDArray[np.int8]
    src: I64
    dst_kind: NDArray[np.int8]
    dst: I64

    def __len__(self) -> int:
        return int(self.submit_s.size)

    @classmethod
    def empty(cls) -> JobBatch:
        f, i8, i = np.zeros(0), np.zeros(0, np.int8), np.zeros(0, np.int64)
        return cls(f, i8, f, f, f, f, f, f, f, i8, i, i8, i)

    @classmethod
    def of(cls, *, submit_s: object, kind: object, work_dev_s: object, input_bytes: object = 0.0,
           output_bytes: object = 0.0, state_bytes: object = 0.0, checkpoint_every_dev_s: object = 0.0,
           deadline_s: object = np.inf, latency_bound_s: object = np.inf, src_kind: object = GROUND,
           src: object = 0, dst_kind: object = GROUND, dst: object = 0) -> JobBatch:
        """A batch from scalars or arrays of one length (scalars broadcast to it)."""
        args = (submit_s, kind, work_dev_s, input_bytes, output_bytes, state_bytes, checkpoint_every_dev_s,
                deadline_s, latency_bound_s, src_kind, src, dst_kind, dst)
        k = int(np.broadcast_shapes(*(np.atleast_1d(np.asarray(a)).shape for a in args))[0])
        t = np.broadcast_to(np.asarray(submit_s, dtype=np.float64), (k,))

        def f(x: object) -> F64:
            return np.broadcast_to(np.asarray(x, dtype=np.float64), (k,)).copy()

        def i8(x: object) -> NDArray[np.int8]:
            return np.broadcast_to(np.asarray(x, dtype=np.int8), (k,)).copy()

        def i64(x: object) -> I64:
            return np.broadcast_to(np.asarray(x, dtype=np.int64), (k,)).copy()

        return cls(t.copy(), i8(kind), f(work_dev_s), f(input_bytes), f(output_bytes), f(state_bytes),
                   f(checkpoint_every_dev_s), f(deadline_s), f(latency_bound_s), i8(src_kind),
                   i64(src), i8(dst_kind), i64(dst))

    def concat(self, other: JobBatch) -> JobBatch:
        return JobBatch(*(np.concatenate([getattr(self, n), getattr(other, n)]) for n in _BATCH_FIELDS))

    def take(self, idx: I64 | B) -> JobBatch:
        return JobBatch(*(getattr(self, n)[idx] for n in _BATCH_FIELDS))

    def problems(self) -> B:
        """Jobs that cannot be run as given: non-finite or negative sizes, unknown kind (bool (k,))."""
        sizes = np.stack([self.work_dev_s, self.input_bytes, self.output_bytes, self.state_bytes,
                          self.checkpoint_every_dev_s])
        bad: B = ~np.isfinite(sizes).all(axis=0) | (sizes < 0).any(axis=0) | ~np.isfinite(self.submit_s)
        bad |= ~np.isin(self.kind, [int(k) for k in JobKind]) | np.isnan(self.deadline_s)
        bad |= np.isnan(self.latency_bound_s) | (self.latency_bound_s <= 0) | (self.work_dev_s <= 0)
        return bad


_BATCH_FIELDS = tuple(JobBatch.__dataclass_fields__)

# per-row fields of the table that are not in JobBatch, with their dtype and initial value
_RUN_FIELDS: dict[str, tuple[type, float]] = {
    "id": (np.int64, -1),
    "state": (np.int8, -1),  # -1: free row
    "sat": (np.int64, -1),
    "device": (np.int64, -1),
    "done_dev_s": (np.float64, 0.0),
    "saved_dev_s": (np.float64, 0.0),  # progress at the last checkpoint
    "ready_s": (np.float64, 0.0),  # the device may work from this time (input or checkpoint arrived)
    "start_s": (np.float64, np.nan),  # first time it held a device
    "delay_s": (np.float64, 0.0),  # one-way propagation delay source -> satellite at placement
    "energy_j": (np.float64, 0.0),  # accelerator (dynamic) energy spent on it
    "battery_j": (np.float64, 0.0),  # the part of energy_j drawn from the battery
    "upsets": (np.int64, 0),  # uncorrectable upsets that hit it
    "corrupt": (np.bool_, False),  # its current result is corrupt
    "migrations": (np.int64, 0),
    "bytes_moved": (np.float64, 0.0),  # checkpoint bytes moved by migrations
    "moved_from": (np.int64, -1),  # while MIGRATING: the satellite its checkpoint leaves
    "ran_on": (np.int64, -1),  # the satellite it last held a device on (kept after it is freed)
    "dispatched": (np.bool_, False),  # sent to the board of a board-backed satellite, which runs it
    "board_s": (np.float64, np.nan),  # the board's measured run time (s) of the last dispatch
    "zone": (np.int64, -1),  # where it may run (Scheduler.zones: a selection, a jurisdiction); -1 anywhere
    "gateway": (np.int64, -1),  # the gateway its result went down through (jurisdiction jobs), else -1
    "watch": (np.bool_, False),  # report its life (placed, migrated, requeued, ended) in ``JobTable.events``
}


@dataclass
class Ledger:
    """Every job that ended, counted once: totals by kind x end state and by reason, plus sums.

    ``latency_s`` keeps each completed interactive job's measured latency (round trip including
    compute) and ``latency_src`` its source endpoint, for percentiles by region.
    """

    ended: I64 = field(default_factory=lambda: np.zeros((len(JobKind), len(JobState)), np.int64))
    reasons: I64 = field(default_factory=lambda: np.zeros(len(JobReason), np.int64))
    energy_j: float = 0.0
    battery_j: float = 0.0
    corrupted: int = 0  # completed with a corrupt result
    upsets: int = 0  # upsets that hit jobs (re-run or not)
    migrations: int = 0
    bytes_moved: float = 0.0
    deadline_misses: int = 0  # LATE + DEADLINE_MISSED
    latency_s: list[F64] = field(default_factory=list)
    latency_src: list[I64] = field(default_factory=list)

    @property
    def total(self) -> int:
        return int(self.ended.sum())

    def latencies(self) -> tuple[F64, I64]:
        if not self.latency_s:
            return np.zeros(0), np.zeros(0, np.int64)
        return np.concatenate(self.latency_s), np.concatenate(self.latency_src)


@dataclass(frozen=True)
class JobEvent:
    """A step in a watched job's life: ``what`` is ``placed``, ``migrated``, ``requeued`` or ``ended``;
    ``detail`` holds plain numbers and strings (satellite indices, not names)."""

    what: str
    job_id: int
    t_s: float
    detail: dict[str, Any]


class JobTable:
    """The jobs that have not ended, as arrays over rows; ended rows are freed and reused.

    Row order means nothing; ``id`` is the job's identity (assigned in submission order).
    """

    def __init__(self, capacity: int = 1024, record: bool = False) -> None:
        """``record``: keep every ended job's (id, state, reason, end time) in :attr:`log` (tests)."""
        self._cap = 0
        self.log: list[tuple[I64, int, I64, F64]] | None = [] if record else None
        self.next_id = 0
        self.events: list[JobEvent] = []  # lives of watched jobs, in order (drained by the caller)
        self.cols: dict[str, np.ndarray] = {}
        self._grow(max(int(capacity), 16))
        self.ledger = Ledger()

    def _grow(self, cap: int) -> None:
        old = self._cap
        dtypes = {**{n: (np.int8 if n in ("kind", "src_kind", "dst_kind") else np.int64 if n in ("src", "dst")
                         else np.float64, 0.0) for n in _BATCH_FIELDS}, **_RUN_FIELDS}
        for name, (dtype, init) in dtypes.items():
            new: np.ndarray = np.full(cap, init, dtype=dtype)
            if old:
                new[:old] = self.cols[name]
            self.cols[name] = new
        self._cap = cap

    def __getattr__(self, name: str) -> np.ndarray:
        cols = self.__dict__.get("cols")
        if cols is not None and name in cols:
            arr: np.ndarray = cols[name]
            return arr
        raise AttributeError(name)

    @property
    def capacity(self) -> int:
        return self._cap

    def active_rows(self) -> I64:
        """Rows of jobs that have not ended."""
        rows: I64 = np.flatnonzero(self.cols["state"] >= 0)
        return rows

    def rows_in(self, *states: JobState) -> I64:
        st = self.cols["state"]
        mask = st == int(states[0])
        for s in states[1:]:
            mask |= st == int(s)
        rows: I64 = np.flatnonzero(mask)
        return rows

    def __len__(self) -> int:
        return int(np.count_nonzero(self.cols["state"] >= 0))

    def add(self, batch: JobBatch) -> I64:
        """Store new jobs as QUEUED; returns their rows (ids are ``self.id[rows]``)."""
        k = len(batch)
        free = np.flatnonzero(self.cols["state"] < 0)
        if free.size < k:
            self._grow(max(2 * self._cap, self._cap + k - free.size))
            free = np.flatnonzero(self.cols["state"] < 0)
        rows: I64 = free[:k]
        for name in _BATCH_FIELDS:
            self.cols[name][rows] = getattr(batch, name)
        for name, (_, init) in _RUN_FIELDS.items():
            self.cols[name][rows] = init
        self.cols["id"][rows] = np.arange(self.next_id, self.next_id + k)
        self.cols["state"][rows] = JobState.QUEUED
        self.cols["ready_s"][rows] = batch.submit_s
        self.next_id += k
        return rows

    def end(self, rows: I64, state: JobState, reason: JobReason | NDArray[np.int8], at_s: F64 | float,
            latency_s: F64 | None = None) -> None:
        """End jobs once: count them in the ledger and free their rows.

        ``latency_s``: each job's measured latency (s), kept for completed interactive jobs.

        Raises ``ValueError`` if a row is free or already ended (a job ends exactly once).
        """
        if rows.size == 0:
            return
        c = self.cols
        if np.any(c["state"][rows] < 0) or np.any(c["state"][rows] >= JobState.COMPLETED) or \
                np.unique(rows).size != rows.size:
            raise ValueError("a job can end only once")
        reasons = np.broadcast_to(np.asarray(reason, dtype=np.int64), rows.shape)
        led = self.ledger
        np.add.at(led.ended, (c["kind"][rows].astype(np.int64), np.full(rows.size, int(state))), 1)
        np.add.at(led.reasons, reasons, 1)
        led.energy_j += float(c["energy_j"][rows].sum())
        led.battery_j += float(c["battery_j"][rows].sum())
        led.upsets += int(c["upsets"][rows].sum())
        led.migrations += int(c["migrations"][rows].sum())
        led.bytes_moved += float(c["bytes_moved"][rows].sum())
        led.corrupted += int(np.count_nonzero(reasons == JobReason.CORRUPTED))
        led.deadline_misses += int(np.count_nonzero((reasons == JobReason.LATE) |
                                                    (reasons == JobReason.DEADLINE_MISSED)))
        done = (state == JobState.COMPLETED) & (c["kind"][rows] == JobKind.INTERACTIVE)
        if np.any(done):
            r = rows[done]
            if latency_s is None:
                end = np.broadcast_to(np.asarray(at_s, dtype=np.float64), rows.shape)[done]
                led.latency_s.append(end - c["submit_s"][r] + 2.0 * c["delay_s"][r])
            else:
                led.latency_s.append(np.asarray(latency_s, dtype=np.float64)[done].copy())
            led.latency_src.append(np.where(c["src_kind"][r] == GROUND, c["src"][r], -1))  # -1: from a satellite
        watched = c["watch"][rows]
        if np.any(watched):
            at = np.broadcast_to(np.asarray(at_s, dtype=np.float64), rows.shape)
            lat = None if latency_s is None else np.broadcast_to(np.asarray(latency_s, dtype=np.float64), rows.shape)
            for k in np.flatnonzero(watched):
                r = int(rows[k])
                latency = float(at[k] - c["submit_s"][r] + 2.0 * c["delay_s"][r]) if lat is None else float(lat[k])
                self.events.append(JobEvent("ended", int(c["id"][r]), float(at[k]), {
                    "state": JobState(state).name.lower(), "reason": JobReason(int(reasons[k])).name.lower(),
                    "sat": int(c["ran_on"][r]), "latency_s": latency if c["kind"][r] == JobKind.INTERACTIVE and
                    state == JobState.COMPLETED else float("nan"),
                    "energy_j": float(c["energy_j"][r]), "battery_j": float(c["battery_j"][r]),
                    "upsets": int(c["upsets"][r]), "migrations": int(c["migrations"][r]),
                    "bytes_moved": float(c["bytes_moved"][r]), "board_s": float(c["board_s"][r]),
                    "gateway": int(c["gateway"][r])}))
        if self.log is not None:
            self.log.append((c["id"][rows].copy(), int(state), reasons.astype(np.int64),
                             np.broadcast_to(np.asarray(at_s, dtype=np.float64), rows.shape).copy()))
        c["state"][rows] = -1
        c["sat"][rows] = -1
        c["device"][rows] = -1

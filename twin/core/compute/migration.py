"""Moving running compute jobs: before an eclipse or SAA pass (aware), and out of a jurisdiction.

:class:`Migrating` is the part of :class:`~twin.core.compute.placement.Scheduler` that moves jobs
already holding a device: a checkpointing job whose satellite enters eclipse or the SAA moves its
checkpoint over the laser links to a cheaper satellite when the saving beats the cost (the aware
policy, :meth:`Migrating.migration_gain_cost_j`), and a job with a jurisdiction whose satellite
leaves it hands over with its progress and waits for one above it. A mixin: the scheduler's state
it reads is declared below. Model, figures and their basis: docs/physics.md#compute-jobs. Pure
numpy: no clock, no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twin.core.compute.jobs import JobEvent, JobKind, JobState, JobTable
from twin.core.compute.policies import _lost_per_upset
from twin.core.compute.view import B, F64, I64, FleetView, PlacementParams, Zone, battery_seconds

_MIGRATE_LOOKAHEAD_S = 60.0  # setting: a move is decided when the entry is this close beyond the transfer time


class Migrating:
    """Moves of running jobs; mixed into :class:`~twin.core.compute.placement.Scheduler`."""

    # the scheduler's state (set by Scheduler.__init__)
    jobs: JobTable
    p: PlacementParams
    n: int
    zones: list[Zone]
    transfer_j: float

    if TYPE_CHECKING:  # the scheduler's own (placement.Scheduler) and placing's (policies.Placing)
        def _free_device(self, rows: I64) -> None: ...

        def _row_allowed(self, rows: I64, sats: I64, view: FleetView) -> B: ...

        def _assign(self, row: int, sat: int, free: B, t_s: float, ready_s: float, delay_s: float,
                    migrating: bool = False) -> None: ...

        def _free_slots(self, view: FleetView) -> B: ...

        def _aware_cost(self, run_s: F64, view: FleetView, lost_per_upset_s: F64 | float,
                        sats: I64 | None = None) -> F64: ...

    def migration_gain_cost_j(self, rows: I64, targets: I64, t_s: float, view: FleetView) -> tuple[F64, F64, B]:
        """For checkpointing jobs on their satellites and candidate targets: the energy a move saves (J),
        what it costs (J) and whether it still meets the deadline.

        Saving: the job's battery energy in the eclipse ahead of its satellite, plus the expected
        re-work of an SAA pass (upsets x work since the checkpoint). Cost: moving the checkpoint over
        the laser links, plus the battery energy and SAA re-work ahead of the target after arrival.
        """
        c, p = self.jobs.cols, self.p
        s = c["sat"][rows]
        dyn = p.device_dynamic_w
        remaining = c["work_dev_s"][rows] - c["done_dev_s"][rows]
        run_here = remaining / np.maximum(view.speed[s], 1e-9)
        every = np.maximum(c["checkpoint_every_dev_s"][rows], 0.0)

        def ahead(sat: I64, start_s: F64, run_s: F64) -> F64:
            tte = np.maximum(view.time_to_eclipse_s[sat] - start_s, 0.0)
            in_ecl = view.time_to_eclipse_s[sat] <= 0
            batt = np.where(in_ecl, np.clip(np.minimum(run_s, view.eclipse_left_s[sat] - start_s), 0, None),
                            battery_seconds(run_s, tte, view.eclipse_left_s[sat]))
            tts = np.maximum(view.time_to_saa_s[sat] - start_s, 0.0)
            in_saa = view.time_to_saa_s[sat] <= 0
            saa = np.where(in_saa, np.clip(np.minimum(run_s, view.saa_left_s[sat] - start_s), 0, None),
                           np.clip(run_s - tts, 0.0, view.saa_left_s[sat]))
            rework = saa * p.saa_upsets_per_device_s * 0.5 * np.minimum(every, remaining)
            out: F64 = dyn * (batt + rework)
            return out

        gain = ahead(s, np.zeros(rows.size), run_here)
        move_s = c["state_bytes"][rows] * 8.0 / p.transfer_rate_bps
        run_there = remaining / np.maximum(view.speed[targets], 1e-9)
        cost = c["state_bytes"][rows] * 8.0 * p.transfer_j_per_bit + ahead(targets, move_s, run_there)
        feasible: B = t_s + move_s + run_there <= c["deadline_s"][rows]
        return gain, cost, feasible

    def _migrate(self, t_s: float, view: FleetView) -> int:
        """Move running checkpointing jobs whose satellite enters eclipse or the SAA before the move
        could finish, when the saving beats the cost by ``migrate_margin`` and the deadline holds.

        Decided just in time (entry within the transfer time plus a minute), so the job runs in the
        sun as long as it can; each candidate job is paired with one of the cheapest free targets.
        """
        c, p = self.jobs.cols, self.p
        rows = self.jobs.rows_in(JobState.RUNNING)
        rows = rows[(c["kind"][rows] == JobKind.CHECKPOINT) & (c["state_bytes"][rows] > 0)
                    & (c["ready_s"][rows] <= t_s) & ~c["dispatched"][rows]]
        if rows.size == 0:
            return 0
        s = c["sat"][rows]
        move_s = c["state_bytes"][rows] * 8.0 / p.transfer_rate_bps
        soon = np.minimum(view.time_to_eclipse_s[s], view.time_to_saa_s[s]) <= move_s + _MIGRATE_LOOKAHEAD_S
        rows = rows[soon]
        if rows.size == 0:
            return 0
        free = self._free_slots(view)
        run = float(np.median(c["work_dev_s"][rows] - c["done_dev_s"][rows]))
        lost = _lost_per_upset(JobKind.CHECKPOINT, np.full(self.n, run),
                               float(np.median(c["checkpoint_every_dev_s"][rows])))
        cost = np.where(free.any(axis=1), self._aware_cost(np.full(self.n, run), view, lost), np.inf)
        m = min(self.n, rows.size + 1)
        best = np.argpartition(cost, m - 1)[:m] if m < self.n else np.arange(self.n)
        best = best[np.argsort(cost[best], kind="stable")]
        best = best[np.isfinite(cost[best])]
        rows = rows[np.argsort(c["id"][rows], kind="stable")][:best.size]
        if rows.size == 0:
            return 0
        targets = best[:rows.size]
        same = targets == c["sat"][rows]
        targets = np.where(same, best[-1], targets)  # never "move" to its own satellite
        gain, cost_j, ok = self.migration_gain_cost_j(rows, targets, t_s, view)
        go = ok & (gain > p.migrate_margin * cost_j) & (targets != c["sat"][rows]) & self._row_allowed(rows, targets, view)
        moved = 0
        for row, target in zip(rows[go], targets[go]):
            if not free[target].any():
                continue
            mv = float(c["state_bytes"][row]) * 8.0 / p.transfer_rate_bps
            origin = int(c["sat"][row])
            c["moved_from"][row] = origin
            self._free_device(np.array([row]))
            c["saved_dev_s"][row] = c["done_dev_s"][row]  # a checkpoint is written to move
            self._assign(int(row), int(target), free, t_s, t_s + mv, float(c["delay_s"][row]), migrating=True)
            if c["watch"][row]:
                self.jobs.events.append(JobEvent("migrated", int(c["id"][row]), t_s, {
                    "from_sat": origin, "sat": int(target), "bytes": float(c["state_bytes"][row]),
                    "arrives_s": t_s + mv, "done_dev_s": float(c["done_dev_s"][row])}))
            c["state"][row] = JobState.MIGRATING
            c["migrations"][row] += 1
            c["bytes_moved"][row] += c["state_bytes"][row]
            self.transfer_j += float(c["state_bytes"][row]) * 8.0 * p.transfer_j_per_bit
            moved += 1
        return moved

    def _handover(self, t_s: float, view: FleetView) -> None:
        """Jobs with a jurisdiction whose satellite will not be above it for this whole tick leave it with
        their progress: the input or checkpoint (the larger) moves over the laser links, counted as a
        migration, and the job waits in the queue for a satellite above the territory (ready when the
        data has arrived). A board-backed satellite never holds one (it cannot pause)."""
        c, p = self.jobs.cols, self.p
        rows = self.jobs.rows_in(JobState.RUNNING, JobState.MIGRATING)
        rows = rows[c["zone"][rows] >= 0]
        if rows.size == 0:
            return
        zoned = np.array([self.zones[int(z)].territory is not None for z in c["zone"][rows]], dtype=bool)
        rows = rows[zoned]
        if rows.size == 0:
            return
        leave = rows[~self._row_allowed(rows, c["sat"][rows], view)]
        for r in leave:
            origin = int(c["sat"][r])
            self._free_device(np.array([r]))
            moved = float(max(c["state_bytes"][r], c["input_bytes"][r]))
            c["saved_dev_s"][r] = c["done_dev_s"][r]
            c["state"][r] = JobState.QUEUED
            c["ready_s"][r] = t_s + moved * 8.0 / p.transfer_rate_bps
            c["migrations"][r] += 1
            c["bytes_moved"][r] += moved
            self.transfer_j += moved * 8.0 * p.transfer_j_per_bit
            if c["watch"][r]:
                self.jobs.events.append(JobEvent("requeued", int(c["id"][r]), t_s, {
                    "sat": origin, "reason": "leaving_jurisdiction", "resume_from_dev_s": float(c["done_dev_s"][r])}))

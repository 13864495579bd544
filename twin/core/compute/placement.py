"""Placement of compute jobs on the fleet's accelerators, one call per tick, with selectable policies.

:class:`Scheduler` keeps the jobs (:class:`JobTable`) and which device of which satellite runs
which job. Every tick it takes the twin's state as a :class:`FleetView` (arrays over the fleet) and:
ends jobs whose deadline passed, requeues jobs whose device failed, moves checkpointable jobs
before an eclipse or SAA pass when that pays off (``aware`` only), places waiting jobs by the
policy, runs the work and ends what is done. It returns each device's load for the tick (what the
engine sets as the payload's utilisation), the accelerator power it means and the battery's share.

Policies: ``nearest`` (the satellite nearest the job's source), ``random``, ``round_robin`` and
``aware`` (battery state of charge and time to the next eclipse, thermal headroom, radiation ahead,
route delay, device health; re-runs work hit by an uncorrectable upset). The three baselines do
not re-run: a job hit by an upset completes with a corrupt result. Model, figures and their basis:
docs/physics.md#compute-jobs. Pure numpy: no clock, no I/O.

One job per module: this one holds the scheduler's state and the tick (:meth:`Scheduler.plan`,
:meth:`Scheduler.advance`: ending, requeueing, running the work, completions);
:mod:`twin.core.compute.policies` places waiting jobs by the policy (:class:`~twin.core.compute.policies.Placing`),
:mod:`twin.core.compute.migration` moves running jobs (:class:`~twin.core.compute.migration.Migrating`), and
:mod:`twin.core.compute.view` holds the inputs and figures (:class:`FleetView`, :class:`PlacementParams`,
:class:`Territory`, :class:`Zone`, :func:`battery_seconds`), re-exported here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from twin.core.compute.jobs import JobBatch, JobEvent, JobKind, JobReason, JobState, JobTable
from twin.core.compute.migration import Migrating
from twin.core.compute.policies import Placing
from twin.core.compute.view import (
    B, F64, I64, SAA_SEU_SCALE, TRANSFER_SHARE, FleetView, PlacementParams, Territory, Zone, battery_seconds,
)
from twin.core.network.geometry import C_M_S
from twin.core.network.ground import GroundSites
from twin.schema.commands import COMPUTE_POLICIES

__all__ = ["POLICIES", "SAA_SEU_SCALE", "TRANSFER_SHARE", "FleetView", "PlacementParams", "Scheduler", "StepResult",
           "Territory", "Zone", "battery_seconds"]

POLICIES = COMPUTE_POLICIES


class StepResult(NamedTuple):
    """One tick of compute: per device load 0..1 (the payload's set-point), per satellite mean load,
    accelerator dynamic power (W, averaged over the tick) and the battery's part of it (W)."""

    device_load: F64  # (n, d)
    load: F64  # (n,)
    dynamic_w: F64  # (n,)
    battery_w: F64  # (n,)
    placed: int
    migrated: int
    ended: int


class Scheduler(Placing, Migrating):
    """Jobs and their placement on ``n`` satellites of ``params.n_devices`` accelerators each."""

    def __init__(self, n: int, params: PlacementParams, policy: str = "aware", *, seed: int = 0,
                 ground: GroundSites | None = None, record: bool = False) -> None:
        """``ground``: the endpoints a job's ground source/destination index (cities); ``record``:
        keep every ended job in ``self.jobs.log`` (tests)."""
        self.n = n
        self.p = params
        self.policy = policy
        self.rng = np.random.default_rng(seed)
        self.ground = ground
        self.jobs = JobTable(record=record)
        self.dev_job = np.full((n, params.n_devices), -1, dtype=np.int64)  # row of the job on each device
        self._rr = 0
        self.energy_j = 0.0  # accelerator dynamic energy of every tick (conservation: = ledger + active rows)
        self.battery_j = 0.0
        self.transfer_j = 0.0  # laser-link energy of migrations and uploads
        self.placements = 0
        # satellites whose payload is a board in the loop: their jobs run on the board (external_dispatch,
        # external_done), not in this model
        self.external = np.zeros(n, dtype=bool)
        self.external_cancelled: list[tuple[int, int]] = []  # (job id, satellite): boards to tell to drop them
        self._battery_fraction: F64 = np.zeros(n)
        # per satellite, since start: jobs completed there, of them with a corrupt result, upsets that hit jobs
        self.sat_completed = np.zeros(n, dtype=np.int64)
        self.sat_corrupted = np.zeros(n, dtype=np.int64)
        self.sat_upsets = np.zeros(n, dtype=np.int64)
        self._penalty: F64 = np.zeros(n)
        self._penalty_for: FleetView | None = None
        self._unit_for: FleetView | None = None
        self._unit_cache: tuple[F64, F64, B] = (np.zeros((n, 3)), np.zeros(n), np.zeros(n, bool))
        self._planned: tuple[float, I64, F64, int, int, int] | None = None
        self._t_s = 0.0
        self.zones: list[Zone] = []  # where zoned jobs may run (JobTable column ``zone``)
        self._zone_by_key: dict[tuple[Any, ...], int] = {}
        self._zone_masks: dict[int, B] = {}
        self._zone_for: FleetView | None = None

    # --- configuration ----------------------------------------------------------------------
    @property
    def policy(self) -> str:
        return self._policy

    @policy.setter
    def policy(self, name: str) -> None:
        if name not in POLICIES:
            raise ValueError(f"unknown policy {name!r}; one of {', '.join(POLICIES)}")
        self._policy = name

    @property
    def reruns(self) -> bool:
        """Whether work hit by an uncorrectable upset is re-run (the aware policy) or delivered corrupt."""
        return self._policy == "aware"

    # --- inputs -----------------------------------------------------------------------------
    def submit(self, batch: JobBatch, watch: bool = False, allowed: B | None = None,
               territory: Territory | None = None, territory_key: Any = None) -> I64:
        """Queue new jobs; malformed ones end at once as REJECTED/INVALID. Returns their ids.

        ``watch``: report each job's life in :meth:`drain_events` (jobs submitted by a client);
        ``allowed`` (bool (n,)): the only satellites they may run on; ``territory``: they are processed
        only while their satellite's ground track over the tick is above it (``territory_key``: its
        identity, so jobs with the same constraint share one zone)."""
        rows = self.jobs.add(batch)
        self.jobs.cols["watch"][rows] = watch
        if allowed is not None or territory is not None:
            self.jobs.cols["zone"][rows] = self._zone(allowed, territory, territory_key)
        bad = batch.problems()
        if bad.any():
            self.jobs.end(rows[bad], JobState.REJECTED, JobReason.INVALID, batch.submit_s[bad])
        ids: I64 = np.arange(self.jobs.next_id - len(batch), self.jobs.next_id)
        return ids

    def _zone(self, allowed: B | None, territory: Territory | None, territory_key: Any) -> int:
        mask = None if allowed is None else np.asarray(allowed, dtype=bool).copy()
        key = (None if mask is None else hash(np.packbits(mask).tobytes()), None if territory is None else
               (territory_key if territory_key is not None else id(territory)))
        z = self._zone_by_key.get(key)
        if z is None:
            z = len(self.zones)
            self.zones.append(Zone(mask, territory, key))
            self._zone_by_key[key] = z
        return z

    def zone_mask(self, z: int, view: FleetView) -> B:
        """Satellites (n,) where jobs of zone ``z`` may be processed during the tick of ``view`` (cached per view)."""
        if self._zone_for is not view:
            self._zone_masks, self._zone_for = {}, view
        m = self._zone_masks.get(z)
        if m is None:
            zone = self.zones[z]
            m = np.ones(self.n, dtype=bool) if zone.sats is None else zone.sats.copy()
            if zone.territory is not None:
                m &= zone.territory.allowed_m(view.pos_m, view.track_from_m)
            self._zone_masks[z] = m
        return m

    def _row_allowed(self, rows: I64, sats: I64, view: FleetView) -> B:
        """Whether each job ``rows[k]`` may be processed on satellite ``sats[k]`` this tick."""
        zone = self.jobs.cols["zone"][rows]
        ok: B = np.ones(rows.size, dtype=bool)
        for z in np.unique(zone[zone >= 0]):
            sel = zone == z
            ok[sel] = self.zone_mask(int(z), view)[sats[sel]]
        return ok

    def drain_events(self) -> list[JobEvent]:
        """The watched jobs' events since the last call, in order."""
        ev, self.jobs.events = self.jobs.events, []
        return ev

    def external_dispatch(self, t_s: float) -> list[tuple[int, int, int, float]]:
        """Jobs holding a device of a board-backed satellite, ready by ``t_s`` and not yet sent to the
        board: ``(job id, satellite, device, device-seconds left)`` each, now marked as sent."""
        c = self.jobs.cols
        rows = self.jobs.rows_in(JobState.RUNNING)
        rows = rows[self.external[c["sat"][rows]] & ~c["dispatched"][rows] & (c["ready_s"][rows] <= t_s)]
        c["dispatched"][rows] = True
        return [(int(c["id"][r]), int(c["sat"][r]), int(c["device"][r]),
                 float(c["work_dev_s"][r] - c["done_dev_s"][r])) for r in rows]

    def external_done(self, job_id: int, t_s: float, board_s: float, upsets: int, failed: str | None = None) -> bool:
        """A board finished (or, with ``failed``, could not finish) a dispatched job at sim time ``t_s``,
        after ``board_s`` seconds of measured run time, with ``upsets`` uncorrectable upsets detected.

        The job's energy is the board's run time at the device's full dynamic power (the board ran
        it at full duty), its battery part the satellite's battery share of the last tick. An upset
        re-runs the job under a re-running policy, else its result is corrupt; a failure requeues it
        (from its last checkpoint). Returns False for a job that is not (or no longer) dispatched:
        it ended meanwhile (deadline) or its board was unbound.
        """
        c, p = self.jobs.cols, self.p
        hit = np.flatnonzero((c["id"] == job_id) & (c["state"] == JobState.RUNNING) & c["dispatched"])
        if hit.size == 0:
            return False
        r = int(hit[0])
        row = np.array([r])
        s = int(c["sat"][r])
        c["dispatched"][r] = False
        c["board_s"][r] = board_s
        energy = max(float(board_s), 0.0) * p.device_dynamic_w
        batt = energy * float(self._battery_fraction[s])
        c["energy_j"][r] += energy
        c["battery_j"][r] += batt
        self.energy_j += energy
        self.battery_j += batt
        if failed is not None:
            self._free_device(row)
            c["done_dev_s"][r] = c["saved_dev_s"][r] if c["kind"][r] == JobKind.CHECKPOINT else 0.0
            c["state"][r] = JobState.QUEUED
            if c["watch"][r]:
                self.jobs.events.append(JobEvent("requeued", job_id, t_s, {"sat": s, "reason": failed,
                                                                          "resume_from_dev_s": float(c["done_dev_s"][r])}))
            return True
        if upsets > 0:
            c["upsets"][r] += upsets
            self.sat_upsets[s] += upsets
            if self.reruns:
                return True  # still RUNNING and not dispatched: sent again next tick
            c["corrupt"][r] = True
        c["done_dev_s"][r] = c["work_dev_s"][r]
        answer_s = t_s + c["output_bytes"][r] * 8.0 / p.uplink_rate_bps
        inter = c["kind"][r] == JobKind.INTERACTIVE
        latency = answer_s - c["submit_s"][r] + 2 * c["delay_s"][r] if inter else np.nan
        late = answer_s > c["deadline_s"][r] or (inter and latency > c["latency_bound_s"][r])
        reason = JobReason.CORRUPTED if c["corrupt"][r] else JobReason.LATE if late else JobReason.DONE
        self.sat_completed[s] += 1
        self.sat_corrupted[s] += int(c["corrupt"][r])
        self._free_device(row)
        self.jobs.end(row, JobState.COMPLETED, reason, t_s, np.array([latency]))
        return True

    def running_per_sat(self) -> I64:
        """Jobs holding a device (running or arriving by migration) on each satellite (n,)."""
        c = self.jobs.cols
        rows = self.jobs.rows_in(JobState.RUNNING, JobState.MIGRATING)
        out: I64 = np.bincount(c["sat"][rows], minlength=self.n).astype(np.int64)
        return out

    def upset(self, sat: int, device: int) -> int:
        """An uncorrectable upset on one device: the job running there (if any) is hit.

        The aware policy rolls it back to its last checkpoint (or re-runs it); the baselines mark its
        result corrupt. Returns the job's id, or -1 when the device was idle.
        """
        row = int(self.dev_job[sat, device])
        c = self.jobs.cols
        if row < 0 or c["state"][row] != JobState.RUNNING:
            return -1
        c["upsets"][row] += 1
        self.sat_upsets[sat] += 1
        if self.reruns:
            c["done_dev_s"][row] = c["saved_dev_s"][row]
        else:
            c["corrupt"][row] = True
        return int(c["id"][row])

    # --- the tick ---------------------------------------------------------------------------
    def step(self, t_s: float, dt_s: float, view: FleetView) -> StepResult:
        """Advance the jobs over [t_s, t_s + dt_s) on the fleet described by ``view``: :meth:`plan` then
        :meth:`advance` with the same view (the devices run at ``view.speed``)."""
        self.plan(t_s, dt_s, view)
        return self.advance(t_s, dt_s, view)

    def plan(self, t_s: float, dt_s: float, view: FleetView) -> F64:
        """Decide the tick: end late jobs, requeue those on failed devices, migrate, place; returns each
        device's planned load (n, d), the share of the tick its job would run at ``view.speed``.

        The engine sets the payload from it, then calls :meth:`advance` with the speed the devices
        actually ran at (throttling, power cap, a payload the power system switched off).
        """
        ended0 = self.jobs.ledger.total
        self._t_s = t_s
        self._release_failed(view)
        self._handover(t_s, view)
        self._expire(t_s)
        migrated = self._migrate(t_s, view) if self._policy == "aware" else 0
        placed = self._place(t_s, dt_s, view)
        rows, s, dev, _w0, run_s = self._shares(t_s, dt_s, view)
        device_load = np.zeros((self.n, self.p.n_devices))
        np.add.at(device_load, (s, dev), run_s / dt_s)
        self._planned = (t_s, rows, run_s, placed, migrated, ended0)
        return device_load

    def advance(self, t_s: float, dt_s: float, view: FleetView) -> StepResult:
        """Run the planned tick at ``view.speed`` (the devices' actual clock factor) with ``view.battery_fraction``
        (the battery's actual share of the payload's power): work, energy, checkpoints, completions.

        A job runs no longer than planned (the payload was loaded for that long), so its energy is
        never more than the payload drew.
        """
        c = self.jobs.cols
        planned = self._planned
        if planned is None or planned[0] != t_s:
            raise RuntimeError("Scheduler.advance without a plan for this tick")
        _t, rows, planned_run_s, placed, migrated, ended0 = planned
        self._planned = None
        self._battery_fraction = view.battery_fraction
        device_load, dyn_w, batt_w = self._run(t_s, dt_s, view, rows, planned_run_s)
        mig = self.jobs.rows_in(JobState.MIGRATING)
        arrived = mig[c["ready_s"][mig] <= t_s + dt_s]
        c["state"][arrived] = JobState.RUNNING
        load: F64 = device_load.mean(axis=1)
        return StepResult(device_load, load, dyn_w, batt_w, placed, migrated, self.jobs.ledger.total - ended0)

    # --- pieces of the tick -----------------------------------------------------------------
    def _free_device(self, rows: I64) -> None:
        c = self.jobs.cols
        held = rows[c["sat"][rows] >= 0]
        self.dev_job[c["sat"][held], c["device"][held]] = -1
        c["sat"][held] = -1
        c["device"][held] = -1

    def _release_failed(self, view: FleetView) -> None:
        """Jobs on a device that stopped working (or a satellite out of service) go back to the queue:
        a checkpointing job from its last checkpoint, others from the start."""
        c = self.jobs.cols
        rows = self.jobs.rows_in(JobState.RUNNING, JobState.MIGRATING)
        if rows.size == 0:
            return
        s, d = c["sat"][rows], c["device"][rows]
        bad = rows[~(view.available[s] & view.device_ok[s, d]) | (c["dispatched"][rows] & ~self.external[s])]
        if bad.size == 0:
            return
        self._free_device(bad)
        c["dispatched"][bad] = False
        ck = c["kind"][bad] == JobKind.CHECKPOINT
        c["done_dev_s"][bad] = np.where(ck, c["saved_dev_s"][bad], 0.0)
        c["state"][bad] = JobState.QUEUED
        for r in bad[c["watch"][bad]]:
            self.jobs.events.append(JobEvent("requeued", int(c["id"][r]), float(self._t_s), {
                "sat": int(c["ran_on"][r]), "reason": "device_failed",
                "resume_from_dev_s": float(c["done_dev_s"][r])}))

    def _expire(self, t_s: float) -> None:
        c = self.jobs.cols
        rows = self.jobs.active_rows()
        late = rows[c["deadline_s"][rows] <= t_s]
        if late.size:
            gone = late[c["dispatched"][late]]
            self.external_cancelled += [(int(c["id"][r]), int(c["sat"][r])) for r in gone]
            self._free_device(late)
            self.jobs.end(late, JobState.FAILED, JobReason.DEADLINE_MISSED, t_s)

    def _assign(self, row: int, sat: int, free: B, t_s: float, ready_s: float, delay_s: float,
                migrating: bool = False) -> None:
        c = self.jobs.cols
        dev = int(np.argmax(free[sat]))
        free[sat, dev] = False
        self.dev_job[sat, dev] = row
        c["sat"][row], c["device"][row] = sat, dev
        c["ran_on"][row] = sat
        c["state"][row] = JobState.RUNNING
        c["ready_s"][row] = max(float(c["ready_s"][row]), ready_s)
        if np.isnan(c["start_s"][row]):
            c["start_s"][row] = max(t_s, float(c["submit_s"][row]))
        c["delay_s"][row] = delay_s
        self.placements += 1
        if c["watch"][row] and not migrating:
            self.jobs.events.append(JobEvent("placed", int(c["id"][row]), t_s, {
                "sat": sat, "device": dev, "ready_s": float(c["ready_s"][row]), "delay_s": delay_s}))

    def _downlink(self, rows: I64, sats: I64, view: FleetView) -> F64:
        """One-way delay (s) of each finished job's result to the ground: back the way its input came
        (``delay_s``), or, for a job with a jurisdiction, through the nearest gateway in it (recorded in
        the ``gateway`` column; the laser route stretched by ``route_stretch``)."""
        c = self.jobs.cols
        out: F64 = c["delay_s"][rows].copy()
        zone = c["zone"][rows]
        for k in np.flatnonzero(zone >= 0):
            territory = self.zones[int(zone[k])].territory
            if territory is None:
                continue
            gw, dist_m = territory.downlink(view.pos_m[sats[k]])
            c["gateway"][rows[k]] = gw
            out[k] = dist_m / C_M_S * self.p.route_stretch if gw >= 0 else np.inf
        return out

    def _shares(self, t_s: float, dt_s: float, view: FleetView) -> tuple[I64, I64, I64, F64, F64]:
        """The jobs holding a device, their satellite and device, the wait before they can run this tick
        (input or checkpoint still arriving, submitted within the tick) and how long they run (s): not at
        all on a board (it runs its own) or where a zoned job may not be processed this tick (paused)."""
        speed_by_sat = view.speed
        c = self.jobs.cols
        rows = self.jobs.rows_in(JobState.RUNNING, JobState.MIGRATING)
        s, dev = c["sat"][rows], c["device"][rows]
        w0 = np.clip(c["ready_s"][rows] - t_s, 0.0, dt_s)
        w0 = np.maximum(w0, np.clip(c["submit_s"][rows] - t_s, 0.0, dt_s))
        speed = speed_by_sat[s]
        remaining = c["work_dev_s"][rows] - c["done_dev_s"][rows]
        need = np.where(speed > 0, remaining / np.maximum(speed, 1e-12), np.inf)
        run_s: F64 = np.where(self.external[s], 0.0, np.minimum(dt_s - w0, need))  # boards run their own
        zoned = c["zone"][rows] >= 0
        if zoned.any():
            run_s[zoned] = np.where(self._row_allowed(rows[zoned], s[zoned], view), run_s[zoned], 0.0)
        return rows, s, dev, w0, run_s

    def _run(self, t_s: float, dt_s: float, view: FleetView, planned_rows: I64 | None = None,
             planned_run_s: F64 | None = None) -> tuple[F64, F64, F64]:
        c, p = self.jobs.cols, self.p
        d = p.n_devices
        device_load = np.zeros((self.n, d))
        dyn_w = np.zeros(self.n)
        batt_w = np.zeros(self.n)
        rows, s, dev, w0, run_s = self._shares(t_s, dt_s, view)
        if rows.size == 0:
            return device_load, dyn_w, batt_w
        if planned_rows is not None and planned_run_s is not None:
            # no longer than planned (0 for a job the plan did not load)
            cap = np.zeros(self.jobs.capacity)
            cap[planned_rows] = planned_run_s
            run_s = np.minimum(run_s, cap[rows])
        speed = view.speed[s]
        work = run_s * speed
        c["done_dev_s"][rows] += work
        every = c["checkpoint_every_dev_s"][rows]
        ck = every > 0
        if ck.any():
            rc = rows[ck]
            c["saved_dev_s"][rc] = np.maximum(c["saved_dev_s"][rc],
                                              np.floor(c["done_dev_s"][rc] / every[ck]) * every[ck])
        energy = work * p.device_dynamic_w
        batt = energy * view.battery_fraction[s]
        c["energy_j"][rows] += energy
        c["battery_j"][rows] += batt
        self.energy_j += float(energy.sum())
        self.battery_j += float(batt.sum())
        np.add.at(device_load, (s, dev), run_s / dt_s)
        np.add.at(dyn_w, s, energy / dt_s)
        np.add.at(batt_w, s, batt / dt_s)
        done = c["done_dev_s"][rows] >= c["work_dev_s"][rows] * (1.0 - 1e-12)
        if done.any():
            r = rows[done]
            end_s = t_s + w0[done] + run_s[done]
            answer_s = end_s + c["output_bytes"][r] * 8.0 / p.uplink_rate_bps
            back_s = self._downlink(r, s[done], view)
            latency = np.where(c["kind"][r] == JobKind.INTERACTIVE,
                               answer_s - c["submit_s"][r] + c["delay_s"][r] + back_s, np.nan)
            late = (answer_s > c["deadline_s"][r]) | (latency > c["latency_bound_s"][r])
            reason = np.where(c["corrupt"][r], JobReason.CORRUPTED, np.where(late, JobReason.LATE, JobReason.DONE))
            np.add.at(self.sat_completed, s[done], 1)
            np.add.at(self.sat_corrupted, s[done], c["corrupt"][r].astype(np.int64))
            self._free_device(r)
            self.jobs.end(r, JobState.COMPLETED, reason.astype(np.int8), end_s, latency)
        return device_load, dyn_w, batt_w

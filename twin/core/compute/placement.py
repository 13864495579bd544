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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from twin.core.compute.jobs import GROUND, JobBatch, JobEvent, JobKind, JobReason, JobState, JobTable
from twin.core.design import Design
from twin.core.network.geometry import C_M_S
from twin.core.constants import R_EARTH_M
from twin.core.network.ground import GroundSites, central_angle_rad
from twin.core.radiation import seu_rate_per_device_s
from twin.schema.commands import COMPUTE_POLICIES

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

POLICIES = COMPUTE_POLICIES


@dataclass(frozen=True)
class PlacementParams:
    """Figures the scheduler uses (docs/physics.md#compute-jobs gives each one's basis)."""

    n_devices: int  # accelerators per satellite (payload.n_devices)
    device_dynamic_w: float  # W: peak - idle power of one device at full clock (payload)
    transfer_rate_bps: float  # bit/s a migration gets on the laser links
    uplink_rate_bps: float  # bit/s a job's input gets from the ground
    transfer_j_per_bit: float  # J/bit to move data over one laser link (both terminals)
    user_min_elevation_deg: float  # a ground source reaches satellites above this elevation directly
    route_stretch: float = 1.3  # path length over the straight line to a satellite out of direct view
    soc_floor: float = 0.5  # aware: satellites below this state of charge take no new work
    thermal_margin_k: float = 5.0  # aware: junction headroom below throttling to keep
    saa_upsets_per_device_s: float = 1e-3  # uncorrectable upsets per device-second inside the SAA
    min_health: float = 0.5  # aware: satellites with fewer working devices than this share are avoided
    migrate_margin: float = 1.2  # aware: migrate when the saving exceeds the cost by this factor
    defer_slack_s: float = 1800.0  # aware: a batch job with this much slack waits for sunlight
    distance_j_per_m: float = 1e-4  # aware: tie-break, J of cost per m between source and satellite

    @classmethod
    def from_design(cls, design: Design, **overrides: Any) -> PlacementParams:
        """Figures from the design: payload power, laser link capacity and terminal power, SEU rates."""
        p, net, pw = design.payload, design.network, design.power
        link_bps = net.isl_capacity_gbps * 1e9
        unc = seu_rate_per_device_s(np.array([SAA_SEU_SCALE]), design.radiation)[1]
        base = cls(
            n_devices=p.n_devices,
            device_dynamic_w=p.device_peak_w - p.device_idle_w,
            transfer_rate_bps=TRANSFER_SHARE * link_bps,
            uplink_rate_bps=TRANSFER_SHARE * net.ground_link_capacity_gbps * 1e9,
            transfer_j_per_bit=2.0 * pw.isl_terminal_w / link_bps if link_bps > 0 else 0.0,
            user_min_elevation_deg=net.user_min_elevation_deg,
            saa_upsets_per_device_s=float(unc[0]),
        )
        return dataclasses.replace(base, **overrides)


TRANSFER_SHARE = 0.25  # estimate: share of a link's capacity one job's data gets
SAA_SEU_SCALE = 30.0  # estimate: SEU rate inside the SAA over the Alsat-1 orbit average (docs/physics.md#compute-jobs)


@dataclass(frozen=True)
class FleetView:
    """The twin's state the scheduler reads, arrays over the fleet (n,) unless stated.

    ``pos_m`` (n, 3) Earth-fixed (non-finite rows: lost); ``illum`` 0..1 sunlit; ``soc`` battery
    state of charge; ``time_to_eclipse_s`` (0 in eclipse, inf never) and ``eclipse_left_s`` (in
    eclipse: to its end; sunlit: length of the next one); ``time_to_saa_s``/``saa_left_s`` the same
    for the SAA; ``headroom_k``: junction temperature below the throttling start at full load;
    ``speed``: the devices' clock factor (throttles) 0..1; ``device_ok`` (n, d): powered, not
    latched, not hung; ``available``: nominal and payload powered; ``battery_fraction``: share of
    the payload's power the battery gives now (0 when the arrays cover it).
    """

    pos_m: F64
    illum: F64
    soc: F64
    time_to_eclipse_s: F64
    eclipse_left_s: F64
    time_to_saa_s: F64
    saa_left_s: F64
    headroom_k: F64
    speed: F64
    device_ok: B
    available: B
    battery_fraction: F64
    # (n, 3) Earth-fixed at the other end of the tick's interval (the engine's pos_m is at its end, this at
    # its start); None: the tick is taken at pos_m alone
    track_from_m: F64 | None = None

    @classmethod
    def nominal(cls, pos_m: F64, n_devices: int) -> FleetView:
        """Every satellite sunlit, full, cool, healthy, never entering eclipse or the SAA (a base for tests)."""
        n = pos_m.shape[0]
        return cls(pos_m, np.ones(n), np.ones(n), np.full(n, np.inf), np.zeros(n), np.full(n, np.inf),
                   np.zeros(n), np.full(n, 50.0), np.ones(n), np.ones((n, n_devices), bool), np.ones(n, bool),
                   np.zeros(n))


class Territory(Protocol):
    """Where a job's data may be processed (a jurisdiction): decided per tick from the ground track, and
    the gateways its result may be downlinked through."""

    def downlink(self, sat_pos_m: F64) -> tuple[int, float]:
        """The allowed gateway nearest the satellite (index, -1 none) and the straight-line distance to it (m)."""

    def allowed_m(self, pos_m: F64, other_m: F64 | None) -> B:
        """Satellites (n,) whose whole ground track between ``pos_m`` and ``other_m`` (Earth-fixed, m; None:
        the point) lies above allowed territory; non-finite rows False."""


@dataclass(frozen=True)
class Zone:
    """Where a job may run: ``sats`` a fixed selection (bool (n,), None: all) and ``territory`` (None: anywhere)."""

    sats: B | None = None
    territory: Territory | None = None
    key: tuple[Any, ...] = ()


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


def battery_seconds(run_s: F64, tte_s: F64, ecl_s: F64) -> F64:
    """Seconds of a run of ``run_s`` starting now that fall in the next eclipse (one eclipse counted)."""
    out: F64 = np.clip(run_s - tte_s, 0.0, ecl_s)
    return out


class Scheduler:
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

    def _expire(self, t_s: float) -> None:
        c = self.jobs.cols
        rows = self.jobs.active_rows()
        late = rows[c["deadline_s"][rows] <= t_s]
        if late.size:
            self._free_device(late)
            self.jobs.end(late, JobState.FAILED, JobReason.DEADLINE_MISSED, t_s)

    def _src_pos(self, rows: I64, view: FleetView) -> F64:
        """Earth-fixed position of each job's source (m)."""
        c = self.jobs.cols
        out = np.zeros((rows.size, 3))
        g = c["src_kind"][rows] == GROUND
        if g.any():
            if self.ground is None:
                raise ValueError("jobs from ground endpoints need the scheduler's ground sites")
            out[g] = self.ground.pos_m[c["src"][rows[g]]]
        if (~g).any():
            out[~g] = view.pos_m[c["src"][rows[~g]]]
        return out

    def _delay_s(self, src_m: F64, sat_m: F64, visible: B | bool) -> F64:
        """One-way propagation delay estimate (s): straight line when in direct view, else stretched."""
        d = np.sqrt(np.sum((sat_m - src_m) ** 2, axis=-1))
        out: F64 = d / C_M_S * np.where(visible, 1.0, self.p.route_stretch)
        return out

    def _free_slots(self, view: FleetView) -> B:
        """Working devices with no job, on satellites that take work (a fresh array: callers update it)."""
        ok: B = (self.dev_job < 0) & view.device_ok & (view.available & (view.speed > 0))[:, None]
        return ok

    def _unit(self, view: FleetView) -> tuple[F64, F64, B]:
        """Unit position vectors, radii (m) and which satellites have a position; computed once per view."""
        if self._unit_for is not view:
            pos = view.pos_m
            r = np.sqrt(np.einsum("ij,ij->i", pos, pos))
            ok = np.isfinite(r)
            self._unit_cache = (np.where(ok[:, None], pos, 0.0) / np.where(ok, r, 1.0)[:, None], r, ok)
            self._unit_for = view
        return self._unit_cache

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

    def _aware_cost(self, run_s: F64, view: FleetView, lost_per_upset_s: F64 | float,
                    sats: I64 | None = None) -> F64:
        """Cost (J) of running ``run_s`` seconds from now on satellites ``sats`` (default all): battery
        energy in the eclipse ahead, the expected re-work of upsets in an SAA pass ahead
        (``lost_per_upset_s`` device-seconds each), and large penalties for low charge, no thermal
        headroom, an unhealthy payload and throttled devices."""
        p = self.p
        idx = slice(None) if sats is None else sats
        tte, ecl = view.time_to_eclipse_s[idx], view.eclipse_left_s[idx]
        tts, saa_len = view.time_to_saa_s[idx], view.saa_left_s[idx]
        batt = np.where(tte <= 0, np.minimum(run_s, ecl), battery_seconds(run_s, tte, ecl))
        saa = np.where(tts <= 0, np.minimum(run_s, saa_len), np.clip(run_s - tts, 0.0, saa_len))
        cost = p.device_dynamic_w * (batt + saa * p.saa_upsets_per_device_s * lost_per_upset_s)
        out: F64 = cost + self._penalty_j(view)[idx]
        return out

    def _penalty_j(self, view: FleetView) -> F64:
        """Per satellite, the aware policy's penalty (J) for low charge, no thermal headroom, an unhealthy
        payload and throttled devices; computed once per view."""
        if self._penalty_for is not view:
            p = self.p
            healthy = np.count_nonzero(view.device_ok, axis=1) / max(p.n_devices, 1)
            bad = ((view.soc < p.soc_floor).astype(np.float64) + (view.headroom_k < p.thermal_margin_k)
                   + (healthy < p.min_health) + 0.1 * (1.0 - view.speed))
            self._penalty, self._penalty_for = _PENALTY_J * bad, view
        return self._penalty

    def _place(self, t_s: float, dt_s: float, view: FleetView) -> int:
        c = self.jobs.cols
        queued = self.jobs.rows_in(JobState.QUEUED)
        if queued.size == 0:
            return 0
        queued = queued[np.argsort(c["id"][queued], kind="stable")]
        queued = queued[c["submit_s"][queued] < t_s + dt_s]
        free = self._free_slots(view)
        placed = 0
        zoned = c["zone"][queued] >= 0
        if zoned.any():  # client jobs with a selection or jurisdiction: few, placed first, one by one
            placed += self._place_zoned(queued[zoned], t_s, view, free)
            queued = queued[~zoned]
        inter = queued[c["kind"][queued] == JobKind.INTERACTIVE]
        if inter.size:
            placed += self._place_interactive(inter, t_s, view, free)
        other = queued[c["kind"][queued] != JobKind.INTERACTIVE]
        if other.size:
            placed += self._place_batch(other, t_s, view, free)
        return placed

    def _visible(self, rows: I64, view: FleetView) -> tuple[list[I64], list[F64]]:
        """For each job, the satellites in direct view of its source, nearest first, with their slant
        range (m); a job from a satellite sees only that satellite (range 0)."""
        c = self.jobs.cols
        sats: list[I64] = []
        ranges: list[F64] = []
        ground = c["src_kind"][rows] == GROUND
        per_city: dict[int, tuple[I64, F64]] = {}
        if ground.any():
            if self.ground is None:
                raise ValueError("jobs from ground endpoints need the scheduler's ground sites")
            cities = np.unique(c["src"][rows[ground]])
            site_m = self.ground.pos_m[cities]
            up = self.ground.up[cities]
            pos = view.pos_m
            unit, r, ok = self._unit(view)
            # coarse cone first (one matrix product), then the exact elevation test on the few inside
            r_max = float(r[ok].max()) if ok.any() else 0.0
            e = np.radians(self.p.user_min_elevation_deg)
            cone = np.cos(min(central_angle_rad(max(r_max - R_EARTH_M, 0.0), e) + 0.01, np.pi))
            near_sat, near_city = np.nonzero((unit @ (site_m / np.linalg.norm(site_m, axis=1)[:, None]).T) >= cone)
            v = pos[near_sat] - site_m[near_city]
            dist = np.sqrt(np.einsum("ij,ij->i", v, v))
            vis = np.einsum("ij,ij->i", v, up[near_city]) >= np.sin(e) * dist
            sat_v, city_v, dist_v = near_sat[vis], near_city[vis], dist[vis]
            order = np.lexsort((dist_v, city_v))
            sat_v, city_v, dist_v = sat_v[order], city_v[order], dist_v[order]
            starts = np.searchsorted(city_v, np.arange(cities.size + 1))
            for j, city in enumerate(cities):
                per_city[int(city)] = (sat_v[starts[j]:starts[j + 1]], dist_v[starts[j]:starts[j + 1]])
        for row, g in zip(rows, ground):
            if g:
                cs, cr = per_city[int(c["src"][row])]
                sats.append(cs)
                ranges.append(cr)
            else:
                sats.append(np.array([c["src"][row]], dtype=np.int64))
                ranges.append(np.zeros(1))
        return sats, ranges

    def _place_interactive(self, rows: I64, t_s: float, view: FleetView, free: B) -> int:
        """Interactive jobs start now or are rejected: on a satellite the source sees (nearest, aware),
        or anywhere (random, round robin; the latency may then break the bound)."""
        c = self.jobs.cols
        src = self._src_pos(rows, view)
        work = c["work_dev_s"][rows]
        bound = c["latency_bound_s"][rows]
        upload_s = c["input_bytes"][rows] * 8.0 / self.p.uplink_rate_bps
        placed = 0
        if self._policy in ("random", "round_robin"):
            sats = self._spread(rows.size, free)
            for k, row in enumerate(rows):
                s = int(sats[k])
                if s < 0:
                    self.jobs.end(np.array([row]), JobState.REJECTED, JobReason.NO_CAPACITY, t_s)
                    continue
                self._assign(int(row), s, free, t_s, float(c["ready_s"][row] + upload_s[k]),
                             float(self._delay_s(src[k], view.pos_m[s], False)))
                placed += 1
            return placed
        cands, ranges = self._visible(rows, view)
        aware = self._policy == "aware"
        # every (job, satellite in view) pair at once; then each job, in order, takes its best pair
        # whose satellite still has a free device
        lens = np.array([x.size for x in cands], dtype=np.int64)
        job = np.repeat(np.arange(rows.size), lens)
        sat = np.concatenate(cands) if cands else np.zeros(0, np.int64)
        rng_m = np.concatenate(ranges) if ranges else np.zeros(0)
        count = np.count_nonzero(free, axis=1)
        if aware:
            answer_s = upload_s[job] + (work[job] / np.maximum(view.speed[sat], 1e-9)
                                        + c["output_bytes"][rows[job]] * 8.0 / self.p.uplink_rate_bps)
            fits = 2.0 * rng_m / C_M_S + answer_s <= bound[job]
            any_fit = np.bincount(job, weights=fits, minlength=rows.size) > 0
            score = np.where(fits, self._aware_cost(work[job], view, work[job], sat)
                             + rng_m * self.p.distance_j_per_m, np.inf)
        else:
            any_fit = np.ones(rows.size, dtype=bool)
            score = rng_m.copy()  # nearest first
        score = np.where(count[sat] > 0, score, np.inf)
        order = np.lexsort((score, job))
        sat, score, rng_m = sat[order], score[order], rng_m[order]
        starts = np.concatenate([[0], np.cumsum(lens)])
        rejected: list[int] = []
        reasons: list[int] = []
        for k, row in enumerate(rows):
            if not any_fit[k]:
                rejected.append(int(row))
                reasons.append(JobReason.LATENCY_BOUND)
                continue
            chosen = -1
            for j in range(int(starts[k]), int(starts[k + 1])):
                if not np.isfinite(score[j]):
                    break
                if count[sat[j]] > 0:
                    chosen = j
                    break
            if chosen < 0:
                rejected.append(int(row))
                reasons.append(JobReason.NO_CAPACITY)
                continue
            s_ = int(sat[chosen])
            count[s_] -= 1
            self._assign(int(row), s_, free, t_s, float(c["ready_s"][row] + upload_s[k]), float(rng_m[chosen] / C_M_S))
            placed += 1
        if rejected:
            self.jobs.end(np.array(rejected, dtype=np.int64), JobState.REJECTED, np.array(reasons, dtype=np.int8), t_s)
        return placed

    def _place_zoned(self, rows: I64, t_s: float, view: FleetView, free: B) -> int:
        """Jobs that may run only on some satellites (a selection, a jurisdiction), each on the policy's
        best allowed satellite with a free device: nearest, aware (cost, and for interactive jobs the
        latency bound), random, or the next in round-robin order. An interactive job that finds none
        is rejected (``NOT_ALLOWED``, or ``LATENCY_BOUND`` when only the bound excluded them); a batch
        job waits. A jurisdiction never places on a board-backed satellite (a board cannot pause)."""
        c, p = self.jobs.cols, self.p
        pos = view.pos_m
        src = self._src_pos(rows, view)
        upload = c["input_bytes"][rows] * 8.0 / p.uplink_rate_bps
        inter = c["kind"][rows] == JobKind.INTERACTIVE
        near = self._policy in ("nearest", "aware")
        vis_sats, vis_rng = self._visible(rows[inter], view) if near and inter.any() else ([], [])
        vi = 0
        placed = 0
        for k, row in enumerate(rows):
            z = int(c["zone"][row])
            ok = free.any(axis=1) & self.zone_mask(z, view)
            if self.zones[z].territory is not None:
                ok &= ~self.external
            kind = JobKind(int(c["kind"][row]))
            remaining = float(c["work_dev_s"][row] - c["done_dev_s"][row])
            reason = JobReason.NOT_ALLOWED
            if inter[k] and near:
                cand, rng = vis_sats[vi], vis_rng[vi]
                vi += 1
                keep = ok[cand]
                cand, rng = cand[keep], rng[keep]
                if self._policy == "aware" and cand.size:
                    answer = upload[k] + remaining / np.maximum(view.speed[cand], 1e-9) + \
                        c["output_bytes"][row] * 8.0 / p.uplink_rate_bps
                    fits = 2.0 * rng / C_M_S + answer <= c["latency_bound_s"][row]
                    if not fits.any():
                        reason = JobReason.LATENCY_BOUND
                    cand, rng = cand[fits], rng[fits]
                    run = np.full(cand.size, remaining)
                    score = self._aware_cost(run, view, run, cand) + rng * p.distance_j_per_m
                else:
                    score = rng
            else:
                cand = np.flatnonzero(ok)
                rng = np.sqrt(np.sum((pos[cand] - src[k]) ** 2, axis=1))
                if self._policy == "nearest":
                    score = rng
                elif self._policy == "aware":
                    run = remaining / np.maximum(view.speed[cand], 1e-9)
                    lost = _lost_per_upset(kind, run, float(c["checkpoint_every_dev_s"][row]))
                    score = self._aware_cost(run, view, lost, cand) + rng * p.distance_j_per_m
                elif self._policy == "random":
                    score = self.rng.random(cand.size)
                else:
                    score = ((cand - self._rr) % self.n).astype(np.float64)
            if cand.size == 0:
                if inter[k]:
                    self.jobs.end(np.array([row]), JobState.REJECTED, reason, t_s)
                continue
            j = int(np.argmin(score))
            s = int(cand[j])
            if inter[k]:
                ready = float(c["ready_s"][row] + upload[k])
                delay = float(rng[j] / C_M_S) if near else float(self._delay_s(src[k], pos[s], False))
            else:
                ready = max(float(c["ready_s"][row]), t_s + (0.0 if c["done_dev_s"][row] > 0 else float(upload[k])))
                delay = float(self._delay_s(src[k], pos[s], False))
                self._upload_cost(int(row), float(upload[k]))
            self._assign(int(row), s, free, t_s, ready, delay)
            if self._policy == "round_robin":
                self._rr = s + 1
            placed += 1
        return placed

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

    def _spread(self, k: int, free: B) -> I64:
        """Satellites for k jobs, by the random or round-robin policy (-1 when none is free)."""
        count = free.sum(axis=1)
        out = np.full(k, -1, dtype=np.int64)
        if self._policy == "random":
            slots = np.repeat(np.arange(self.n), count)
            take = min(k, slots.size)
            if take:
                out[:take] = slots[self.rng.choice(slots.size, size=take, replace=False)]
            return out
        have = np.flatnonzero(count > 0)
        if have.size == 0:
            return out
        start = int(np.searchsorted(have, self._rr % self.n))
        cyc = np.roll(have, -start)
        reps = np.minimum(count[cyc], 1 + (k - 1) // cyc.size)
        seq = np.repeat(cyc, reps)[np.argsort(_round_index(reps), kind="stable")]
        take = min(k, seq.size)
        out[:take] = seq[:take]
        if take:
            self._rr = int(out[take - 1]) + 1
        return out

    def _place_batch(self, rows: I64, t_s: float, view: FleetView, free: B) -> int:
        c = self.jobs.cols
        placed = 0
        upload_s = c["input_bytes"][rows] * 8.0 / self.p.uplink_rate_bps
        ready = np.maximum(c["ready_s"][rows], t_s + np.where(c["done_dev_s"][rows] > 0, 0.0, upload_s))
        if self._policy in ("random", "round_robin"):
            sats = self._spread(rows.size, free)
            src = self._src_pos(rows, view)
            for k, row in enumerate(rows):
                if sats[k] >= 0:
                    self._upload_cost(row, upload_s[k])
                    self._assign(int(row), int(sats[k]), free, t_s, float(ready[k]),
                                 float(self._delay_s(src[k], view.pos_m[sats[k]], False)))
                    placed += 1
            return placed
        src = self._src_pos(rows, view)
        remaining = c["work_dev_s"][rows] - c["done_dev_s"][rows]
        if self._policy == "nearest":
            pos = np.where(np.isfinite(view.pos_m), view.pos_m, np.inf)
            for k, row in enumerate(rows):
                count = free.sum(axis=1)
                if not count.any():
                    break
                d = np.where(count > 0, np.sum((pos - src[k]) ** 2, axis=1), np.inf)
                s = int(np.argmin(d))
                self._upload_cost(row, upload_s[k])
                self._assign(int(row), s, free, t_s, float(ready[k]), float(np.sqrt(d[s]) / C_M_S))
                placed += 1
            return placed
        # aware: per kind, rank satellites by the cost of a typical run; the most urgent jobs get the
        # best satellites, one job per satellite per tick (spreads the heat); a batch job with slack
        # waits when its run would draw the battery more than the best the fleet offers
        longest_sun = _longest_sunlit_s(view)
        for kind in (JobKind.BATCH, JobKind.CHECKPOINT):
            sel = np.flatnonzero(c["kind"][rows] == kind)
            if sel.size == 0:
                continue
            run = float(np.median(remaining[sel]))
            every = c["checkpoint_every_dev_s"][rows[sel]]
            cost = self._aware_cost(np.full(self.n, run), view, _lost_per_upset(kind, np.full(self.n, run),
                                                                                  float(np.median(every))))
            cost = np.where(free.any(axis=1), cost, np.inf)
            m = min(self.n, sel.size)
            best = np.argpartition(cost, m - 1)[:m] if m < self.n else np.arange(self.n)
            best = best[np.argsort(cost[best], kind="stable")]
            best = best[np.isfinite(cost[best])]
            order = sel[np.argsort(c["deadline_s"][rows[sel]], kind="stable")][:best.size]
            if order.size == 0:
                continue
            sats = best[:order.size]
            run_s = remaining[order] / np.maximum(view.speed[sats], 1e-9)
            lost = _lost_per_upset(kind, run_s, c["checkpoint_every_dev_s"][rows[order]])
            own = self._aware_cost(run_s, view, lost, sats)
            slack = c["deadline_s"][rows[order]] - (ready[order] + run_s)
            wait = ((kind == JobKind.BATCH) & (slack > self.p.defer_slack_s)
                    & (own > self.p.device_dynamic_w * (np.maximum(run_s - longest_sun, 0.0) + 60.0)))
            for k, s in zip(order[~wait], sats[~wait]):
                row = int(rows[k])
                self._upload_cost(row, float(upload_s[k]))
                self._assign(row, int(s), free, t_s, float(ready[k]), float(self._delay_s(src[k], view.pos_m[s], False)))
                placed += 1
        return placed

    def _upload_cost(self, row: int, upload_s: float) -> None:
        c = self.jobs.cols
        if c["done_dev_s"][row] == 0 and np.isnan(c["start_s"][row]):
            self.transfer_j += float(c["input_bytes"][row]) * 8.0 * self.p.transfer_j_per_bit

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


_PENALTY_J = 1e9  # aware: cost of a satellite it must not use (low charge, hot, unhealthy)
_MIGRATE_LOOKAHEAD_S = 60.0  # setting: a move is decided when the entry is this close beyond the transfer time


def _lost_per_upset(kind: JobKind, run_s: F64, every_s: F64 | float) -> F64:
    """Device-seconds an upset costs on average: half the checkpoint interval, or half the run."""
    e = np.asarray(every_s, dtype=np.float64)
    if kind == JobKind.CHECKPOINT:
        out: F64 = 0.5 * np.where(e > 0, np.minimum(e, run_s), run_s)
    else:
        out = 0.5 * np.asarray(run_s, dtype=np.float64)
    return out


def _longest_sunlit_s(view: FleetView) -> float:
    """The longest sunlit stretch ahead of any available satellite (s): a run longer than this meets an
    eclipse wherever it goes."""
    sun = view.time_to_eclipse_s[view.available & (view.time_to_eclipse_s > 0)]
    return float(sun.max()) if sun.size else 0.0


def _round_index(reps: I64) -> I64:
    """0..r-1 for each entry of ``reps``, concatenated (the slot number of each repeated satellite)."""
    total = int(reps.sum())
    ends = np.cumsum(reps)
    out: I64 = np.arange(total, dtype=np.int64) - np.repeat(ends - reps, reps)
    return out

"""Placing waiting compute jobs by the scheduler's policy: nearest, random, round robin or aware.

:class:`Placing` is the part of :class:`~twin.core.compute.placement.Scheduler` that, every tick,
puts the queued jobs on free devices: zoned jobs (a selection or a jurisdiction) first, one by
one; then interactive jobs (start now on a satellite the source sees, or are rejected); then batch
and checkpointing jobs (the aware policy ranks satellites by the cost of the run: battery energy
in the eclipse ahead, re-work of upsets in an SAA pass ahead, penalties for low charge, no thermal
headroom, an unhealthy payload). A mixin: the scheduler's state it reads is declared below. Model,
figures and their basis: docs/physics.md#compute-jobs. Pure numpy: no clock, no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twin.core.compute.jobs import GROUND, JobKind, JobReason, JobState, JobTable
from twin.core.compute.view import B, F64, I64, FleetView, PlacementParams, Zone, battery_seconds
from twin.core.constants import R_EARTH_M
from twin.core.network.geometry import C_M_S
from twin.core.network.ground import GroundSites, central_angle_rad


class Placing:
    """Placement of queued jobs by the policy; mixed into :class:`~twin.core.compute.placement.Scheduler`."""

    # the scheduler's state (set by Scheduler.__init__)
    jobs: JobTable
    p: PlacementParams
    n: int
    rng: np.random.Generator
    ground: GroundSites | None
    dev_job: I64
    external: B
    zones: list[Zone]
    transfer_j: float
    _policy: str
    _rr: int
    _penalty: F64
    _penalty_for: FleetView | None
    _unit_for: FleetView | None
    _unit_cache: tuple[F64, F64, B]

    if TYPE_CHECKING:  # the scheduler's own (twin.core.compute.placement.Scheduler)
        def zone_mask(self, z: int, view: FleetView) -> B: ...

        def _assign(self, row: int, sat: int, free: B, t_s: float, ready_s: float, delay_s: float,
                    migrating: bool = False) -> None: ...

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
        payload, throttled devices and overloaded network links (its data would queue); computed once per view."""
        if self._penalty_for is not view:
            p = self.p
            healthy = np.count_nonzero(view.device_ok, axis=1) / max(p.n_devices, 1)
            bad = ((view.soc < p.soc_floor).astype(np.float64) + (view.headroom_k < p.thermal_margin_k)
                   + (healthy < p.min_health) + 0.1 * (1.0 - view.speed))
            if view.link_util is not None:
                bad = bad + 0.5 * (np.nan_to_num(view.link_util) > 1.0)
            self._penalty, self._penalty_for = _PENALTY_J * bad, view
        return self._penalty

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


_PENALTY_J = 1e9  # aware: cost of a satellite it must not use (low charge, hot, unhealthy)


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

"""Compute jobs (issue 16, pure core): the job table, conservation, seeded demand, determinism.

Conservation: every submitted job ends exactly once (completed, failed or rejected), and the
accelerator energy the scheduler hands out tick by tick (what the engine would draw from the
arrays and the battery) equals the energy booked on the jobs. Demand: counts against the Poisson
means of the diurnal, population-weighted rates (closed form).
"""

from __future__ import annotations

import numpy as np
import pytest

from twin.core.compute import (
    POLICIES, DemandGenerator, DemandParams, FleetView, JobBatch, JobKind, JobReason, JobState, JobTable,
    KindDemand, PlacementParams, Scheduler, zipf_weights,
)
from twin.core.compute.demand import diurnal_factor
from twin.core.constants import R_EARTH_M
from twin.core.design import load_design
from twin.core.network import GroundSites, load_cities

ALT_M = 550e3


def shell(n: int, seed: int = 0) -> np.ndarray:
    """n satellites spread over a sphere at 550 km (Earth-fixed, m)."""
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1)[:, None] * (R_EARTH_M + ALT_M)


def small_demand() -> DemandParams:
    """Demand scaled so a few hundred jobs start and end within minutes."""
    return DemandParams(
        interactive=KindDemand(2.0, 20.0, 0.05, 0.5, 1e5, 1e4, np.inf, 0.15),
        batch=KindDemand(1.0, 14.0, 60.0, 0.5, 1e8, 1e6, 400.0, np.inf),
        checkpoint=KindDemand(0.2, 14.0, 120.0, 0.3, 1e8, 1e8, 600.0, np.inf, state_bytes=1e9,
                              checkpoint_every_dev_s=30.0),
    )


def eclipsing_view(pos: np.ndarray, t_s: float, nd: int) -> FleetView:
    """A view where a third of the fleet is dark and the rest enters eclipse at staggered times."""
    n = pos.shape[0]
    phase = np.mod(np.arange(n) * 97.0 + t_s, 5700.0)  # a 95 min orbit: 2100 s dark, 3600 s lit
    dark = phase < 2100.0
    tte = np.where(dark, 0.0, 5700.0 - phase)
    left = np.where(dark, 2100.0 - phase, 2100.0)
    ok = np.ones((n, nd), bool)
    ok[3, :] = False  # a satellite with every device latched
    return FleetView(pos, (~dark).astype(float), np.where(np.arange(n) % 7 == 0, 0.4, 0.9), tte, left,
                     np.full(n, np.inf), np.zeros(n), np.full(n, 30.0), np.ones(n), ok, np.ones(n, bool),
                     dark.astype(float))


@pytest.mark.parametrize("policy", POLICIES)
def test_every_job_ends_exactly_once_and_energy_is_conserved(policy: str) -> None:
    design = load_design()
    params = PlacementParams.from_design(design)
    cities = load_cities()
    pos = shell(300)
    sched = Scheduler(pos.shape[0], params, policy, seed=7, ground=cities, record=True)
    gen = DemandGenerator(cities, small_demand(), seed=11)
    dt = 1.0
    handed_j = battery_j = 0.0
    submitted: list[np.ndarray] = []
    bad = JobBatch.of(submit_s=5.0, kind=JobKind.BATCH, work_dev_s=np.nan)  # malformed: rejected at once
    for tick in range(900):
        t = tick * dt
        batch = gen.between(t, t + dt) if t < 300 else JobBatch.empty()
        if tick == 5:
            batch = batch.concat(bad)
        submitted.append(sched.submit(batch))
        if tick % 50 == 10:
            sched.upset(int(tick % pos.shape[0]), 2)
        res = sched.step(t, dt, eclipsing_view(pos, t, params.n_devices))
        handed_j += float(res.dynamic_w.sum()) * dt
        battery_j += float(res.battery_w.sum()) * dt
        assert np.all((res.device_load >= 0) & (res.device_load <= 1 + 1e-12))
    ids = np.concatenate(submitted)
    assert ids.size > 300
    assert len(sched.jobs) == 0, "every job has ended by now (deadlines are at most 600 s)"
    assert sched.jobs.log is not None
    ended = np.concatenate([e[0] for e in sched.jobs.log])
    assert np.array_equal(np.sort(ended), np.sort(ids)), "each submitted id ends exactly once"
    led = sched.jobs.ledger
    assert led.total == ids.size
    states = np.concatenate([np.full(e[0].size, e[1]) for e in sched.jobs.log])
    assert set(states) <= {JobState.COMPLETED, JobState.FAILED, JobState.REJECTED}
    assert led.reasons[JobReason.INVALID] == 1
    assert led.ended[:, JobState.COMPLETED].sum() > 0.5 * ids.size
    # energy: what the ticks handed to the payload = what the jobs booked (J), battery share too
    assert handed_j == pytest.approx(sched.energy_j, rel=1e-9)
    assert handed_j == pytest.approx(led.energy_j, rel=1e-9)
    assert battery_j == pytest.approx(led.battery_j, rel=1e-9, abs=1e-6)
    assert 0.0 <= led.battery_j <= led.energy_j


def test_completed_energy_equals_work_times_dynamic_power() -> None:
    params = PlacementParams.from_design(load_design())
    pos = shell(20)
    sched = Scheduler(20, params, "round_robin", ground=None, record=True)
    work = np.array([10.0, 25.5, 3.25])
    sched.submit(JobBatch.of(submit_s=0.0, kind=JobKind.BATCH, work_dev_s=work, src_kind=1, src=0, dst_kind=1))
    view = FleetView.nominal(pos, params.n_devices)
    view = FleetView(*[getattr(view, f) for f in view.__dataclass_fields__][:8], np.full(20, 0.5),
                     view.device_ok, view.available, np.full(20, 0.25))  # devices at half clock, battery 25 %
    for t in range(60):
        sched.step(float(t), 1.0, view)
    led = sched.jobs.ledger
    assert led.ended[JobKind.BATCH, JobState.COMPLETED] == 3
    assert led.energy_j == pytest.approx(work.sum() * params.device_dynamic_w, rel=1e-12)
    assert led.battery_j == pytest.approx(0.25 * work.sum() * params.device_dynamic_w, rel=1e-12)
    # half clock: the 25.5 device-second job takes 51 s from its start at 0 s
    assert sched.jobs.log is not None
    ends = {int(i): float(at) for ids, _, _, ats in sched.jobs.log for i, at in zip(ids, ats)}
    assert ends[1] == pytest.approx(51.0, abs=1e-9)


def test_a_job_cannot_end_twice() -> None:
    table = JobTable(capacity=4)
    rows = table.add(JobBatch.of(submit_s=[0.0, 1.0], kind=JobKind.BATCH, work_dev_s=1.0))
    table.end(rows[:1], JobState.COMPLETED, JobReason.DONE, 2.0)
    with pytest.raises(ValueError):
        table.end(rows[:1], JobState.FAILED, JobReason.DEADLINE_MISSED, 3.0)
    more = table.add(JobBatch.of(submit_s=np.arange(10.0), kind=JobKind.INTERACTIVE, work_dev_s=0.1))
    assert table.capacity >= 11 and len(table) == 11
    assert sorted(table.id[np.concatenate([rows[1:], more])].tolist()) == list(range(1, 12))


@pytest.mark.parametrize("policy", POLICIES)
def test_policies_are_deterministic_per_seed(policy: str) -> None:
    params = PlacementParams.from_design(load_design())
    cities = load_cities()
    pos = shell(200, seed=3)

    def run(seed: int) -> tuple[list[tuple[int, int]], np.ndarray]:
        sched = Scheduler(200, params, policy, seed=seed, ground=cities, record=True)
        gen = DemandGenerator(cities, small_demand(), seed=seed)
        placements: list[tuple[int, int]] = []
        for tick in range(120):
            sched.submit(gen.between(float(tick), tick + 1.0))
            sched.step(float(tick), 1.0, eclipsing_view(pos, float(tick), params.n_devices))
            placements += [(int(i), int(s)) for i, s in zip(sched.jobs.id, sched.jobs.sat) if s >= 0]
        assert sched.jobs.log is not None
        return placements, np.concatenate([e[0] for e in sched.jobs.log])

    a, b, c = run(5), run(5), run(6)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    assert a[0] != c[0]


def test_demand_counts_match_the_poisson_means() -> None:
    cities = load_cities()
    rate = 3.0
    params = DemandParams(interactive=KindDemand(rate, 20.0, 0.05, 0.5, 1e5, 1e4, np.inf, 0.15),
                          batch=KindDemand(0.0, 14.0, 900.0, 0.8, 5e9, 5e7, 21600.0, np.inf),
                          checkpoint=KindDemand(0.0, 14.0, 1.0, 0.3, 1.0, 1.0, 1.0, np.inf),
                          diurnal_amplitude=0.8)
    gen = DemandGenerator(cities, params, seed=1, utc_hour_at_zero=0.0)
    jobs = [gen.between(h * 3600.0, (h + 1) * 3600.0) for h in range(24)]
    total = sum(len(j) for j in jobs)
    mean = rate * 86400.0  # the cosine integrates to zero over a day
    assert abs(total - mean) < 4 * np.sqrt(mean)
    # Tokyo (rank 1) gets 1/H_100 of the arrivals (Zipf rank-size weights)
    tokyo = sum(int(np.count_nonzero(j.src == 0)) for j in jobs)
    share = 1.0 / np.sum(1.0 / np.arange(1, 101))
    assert zipf_weights(100)[0] == pytest.approx(share)
    assert abs(tokyo - share * mean) < 4 * np.sqrt(share * mean)
    # diurnal: Tokyo's arrivals at its local 20:00 (11:00 UTC, lon 139.7 E: 9.31 h ahead) against 08:00
    h_peak = int(np.floor(np.mod(20.0 - 139.69171 / 15.0, 24.0)))
    h_low = (h_peak + 12) % 24
    peak = int(np.count_nonzero(jobs[h_peak].src == 0))
    low = int(np.count_nonzero(jobs[h_low].src == 0))
    lam_peak = rate * share * 3600.0 * float(diurnal_factor(np.mod(h_peak + 0.5 + 139.69171 / 15.0, 24), 20.0, 0.8))
    lam_low = rate * share * 3600.0 * float(diurnal_factor(np.mod(h_low + 0.5 + 139.69171 / 15.0, 24), 20.0, 0.8))
    assert lam_peak / lam_low > 8.0
    assert abs(peak - lam_peak) < 4 * np.sqrt(lam_peak) and abs(low - lam_low) < 4 * np.sqrt(lam_low)
    # same seed, same jobs
    again = DemandGenerator(cities, params, seed=1).between(0.0, 3600.0)
    assert np.array_equal(again.submit_s, jobs[0].submit_s) and np.array_equal(again.src, jobs[0].src)


def test_demand_weights_are_checked() -> None:
    cities = GroundSites.from_lat_lon(["a", "b"], [0.0, 10.0], [0.0, 20.0])
    with pytest.raises(ValueError):
        DemandGenerator(cities, weights=[1.0, -1.0])
    with pytest.raises(ValueError):
        DemandGenerator(cities, weights=[1.0])

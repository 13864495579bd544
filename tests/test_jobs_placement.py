"""Placement policies on small fleets with closed-form answers (issue 16, pure core).

Migration before an eclipse when the battery energy it saves beats the transfer (and not when it
does not), upsets that corrupt only the hit device's job, the aware policy's preference for sunlit,
charged satellites, the baselines' choices, and the eclipse outlook against the shadow model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin.core.compute import (
    FleetView, JobBatch, JobKind, JobReason, JobState, PlacementParams, Scheduler, eclipse_outlook, region_outlook,
)
from twin.core.compute.placement import battery_seconds
from twin.core.constants import R_EARTH_M
from twin.core.design import load_design
from twin.core.eclipse import cylindrical_eclipse_fraction, illumination_fraction
from twin.core.network import GroundSites
from twin.core.network.geometry import C_M_S

R = R_EARTH_M + 550e3
MU = 3.986004418e14
PARAMS = PlacementParams.from_design(load_design())
ND = PARAMS.n_devices
DYN = PARAMS.device_dynamic_w


def above(lat_deg: list[float], lon_deg: list[float], r_m: float = R) -> np.ndarray:
    la, lo = np.radians(lat_deg), np.radians(lon_deg)
    return r_m * np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)


def view_of(pos: np.ndarray, **arrays: object) -> FleetView:
    return dataclasses.replace(FleetView.nominal(pos, ND), **{k: np.asarray(v) for k, v in arrays.items()})


def checkpoint_job(work_s: float, state_bytes: float, deadline_s: float = np.inf, sat: int = 0) -> JobBatch:
    return JobBatch.of(submit_s=0.0, kind=JobKind.CHECKPOINT, work_dev_s=work_s, state_bytes=state_bytes,
                       checkpoint_every_dev_s=60.0, deadline_s=deadline_s, src_kind=1, src=sat, dst_kind=1, dst=sat)


def start_on_sat0(sched: Scheduler, batch: JobBatch, pos: np.ndarray) -> int:
    """Place the job (nearest to satellite 0's position: satellite 0) and run one sunlit tick."""
    (jid,) = sched.submit(batch)
    sched.step(0.0, 1.0, FleetView.nominal(pos, ND))
    assert int(sched.jobs.sat[sched.jobs.id == jid][0]) == 0
    return int(jid)


def test_a_job_before_eclipse_is_migrated_when_it_pays_off() -> None:
    pos = above([0.0, 0.0, 40.0], [0.0, 60.0, 120.0])
    sched = Scheduler(3, PARAMS, "nearest", record=True)
    jid = start_on_sat0(sched, checkpoint_job(3600.0, 2e10), pos)
    sched.policy = "aware"  # selectable at run time
    # satellite 0 enters a 2,100 s eclipse in 30 s; satellite 1 stays lit 3,000 s; satellite 2 is dark
    tte, left = np.array([30.0, 3000.0, 0.0]), np.array([2100.0, 2100.0, 1500.0])
    view = view_of(pos, time_to_eclipse_s=tte, eclipse_left_s=left, illum=[1.0, 1.0, 0.0])
    row = np.flatnonzero(sched.jobs.id == jid)
    gain, cost, ok = sched.migration_gain_cost_j(row, np.array([1]), 1.0, view)
    remaining = 3600.0 - 1.0
    move_s = 2e10 * 8 / PARAMS.transfer_rate_bps
    # closed forms (J): battery seconds saved x dynamic power; transfer + the target's own eclipse ahead
    assert gain[0] == pytest.approx(DYN * 2100.0)
    assert cost[0] == pytest.approx(2e10 * 8 * PARAMS.transfer_j_per_bit + DYN * (move_s + remaining - 3000.0))
    assert ok[0]
    res = sched.step(1.0, 1.0, view)
    assert res.migrated == 1
    assert int(sched.jobs.sat[row][0]) == 1 and sched.jobs.state[row][0] == JobState.MIGRATING
    assert sched.jobs.bytes_moved[row][0] == 2e10
    # the transfer holds the target device idle for move_s, then the job runs there again
    t = 2.0
    while t < 2.0 + move_s + 1:
        sched.step(t, 1.0, view)
        t += 1.0
    assert sched.jobs.state[row][0] == JobState.RUNNING
    assert sched.jobs.done_dev_s[row][0] == pytest.approx(1.0 + (t - 2.0) - move_s + 1.0, abs=1.0)


@pytest.mark.parametrize("case", ["finishes_before_eclipse", "transfer_costs_more", "deadline_too_close"])
def test_a_job_before_eclipse_stays_when_moving_does_not_pay(case: str) -> None:
    pos = above([0.0, 0.0], [0.0, 60.0])
    work, state, deadline, tte0 = {
        "finishes_before_eclipse": (20.0, 2e10, np.inf, 30.0),  # 19 s left, eclipse in 30 s: no battery used
        "transfer_costs_more": (60.0, 5e12, np.inf, 30.0),  # saves 29 s x 1,350 W; 5 TB cost 120 kJ
        "deadline_too_close": (3600.0, 2e10, 3604.0, 30.0),  # done at 3,600 s here; the 6.4 s move ends it at 3,606.4 s
    }[case]
    sched = Scheduler(2, PARAMS, "aware", record=True)
    jid = start_on_sat0(sched, checkpoint_job(work, state, deadline), pos)
    view = view_of(pos, time_to_eclipse_s=[tte0, 5000.0], eclipse_left_s=[2100.0, 2100.0])
    row = np.flatnonzero(sched.jobs.id == jid)
    gain, cost, ok = sched.migration_gain_cost_j(row, np.array([1]), 1.0, view)
    assert not (ok[0] and gain[0] > PARAMS.migrate_margin * cost[0])
    res = sched.step(1.0, 1.0, view)
    assert res.migrated == 0
    assert int(sched.jobs.sat[row][0]) == 0 and sched.jobs.state[row][0] == JobState.RUNNING
    if case == "transfer_costs_more":
        assert gain[0] == pytest.approx(DYN * (work - 1.0 - tte0))
        assert cost[0] == pytest.approx(5e12 * 8 * PARAMS.transfer_j_per_bit)  # 120 kJ


def test_baselines_never_migrate() -> None:
    pos = above([0.0, 0.0], [0.0, 60.0])
    for policy in ("nearest", "random", "round_robin"):
        sched = Scheduler(2, PARAMS, "nearest")
        start_on_sat0(sched, checkpoint_job(3600.0, 2e10), pos)
        sched.policy = policy
        res = sched.step(1.0, 1.0, view_of(pos, time_to_eclipse_s=[30.0, 5000.0], eclipse_left_s=[2100.0, 2100.0]))
        assert res.migrated == 0


@pytest.mark.parametrize("policy", ["nearest", "aware"])
def test_an_upset_corrupts_only_that_devices_job(policy: str) -> None:
    pos = above([0.0, 50.0], [0.0, 50.0])
    sched = Scheduler(2, PARAMS, "nearest", record=True)
    ids = sched.submit(JobBatch.of(submit_s=0.0, kind=JobKind.BATCH, work_dev_s=np.full(ND, 100.0),
                                   src_kind=1, src=0, dst_kind=1, dst=0))
    sched.step(0.0, 1.0, FleetView.nominal(pos, ND))
    assert np.all(sched.jobs.sat[np.isin(sched.jobs.id, ids)] == 0)  # all eight devices of satellite 0
    sched.policy = policy
    on3 = int(sched.jobs.id[(sched.jobs.sat == 0) & (sched.jobs.device == 3)][0])
    assert sched.upset(0, 3) == on3
    assert sched.upset(1, 3) == -1  # an idle device: nobody hit
    t = 1.0
    while len(sched.jobs) and t < 400:
        sched.step(t, 1.0, FleetView.nominal(pos, ND))
        t += 1.0
    assert sched.jobs.log is not None
    reason = {int(i): int(r) for ids_, _, rs, _ in sched.jobs.log for i, r in zip(ids_, rs)}
    end = {int(i): float(a) for ids_, _, _, ats in sched.jobs.log for i, a in zip(ids_, ats)}
    others = [int(i) for i in ids if i != on3]
    assert all(reason[i] == JobReason.DONE for i in others)
    assert all(end[i] == pytest.approx(100.0) for i in others)
    led = sched.jobs.ledger
    assert led.upsets == 1
    if policy == "aware":  # re-run from the start (no checkpoint): done 101 s after the upset at t = 1 s
        assert reason[on3] == JobReason.DONE and end[on3] == pytest.approx(101.0)
        assert led.corrupted == 0
    else:
        assert reason[on3] == JobReason.CORRUPTED and end[on3] == pytest.approx(100.0)
        assert led.corrupted == 1


def test_aware_prefers_sunlit_charged_satellites() -> None:
    # four satellites over one spot; the job (600 device-s) comes from satellite 0's ground point
    pos = above([0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0])
    tte = np.array([0.0, 5000.0, 5000.0, 100.0])  # 0: dark; 1: lit but low SoC; 2: lit, long; 3: lit, eclipse in 100 s
    left = np.array([1800.0, 2100.0, 2100.0, 2100.0])
    soc = np.array([0.9, 0.3, 0.9, 0.9])
    view = view_of(pos, time_to_eclipse_s=tte, eclipse_left_s=left, soc=soc, illum=[0.0, 1, 1, 1],
                   battery_fraction=[1.0, 0, 0, 0])
    ground = GroundSites.from_lat_lon(["here"], [0.0], [0.0])
    batch = JobBatch.of(submit_s=0.0, kind=JobKind.BATCH, work_dev_s=600.0, deadline_s=7200.0, src=0)
    for policy, expect in (("aware", 2), ("nearest", 0)):
        sched = Scheduler(4, PARAMS, policy, ground=ground)
        sched.submit(batch)
        sched.step(0.0, 1.0, view)
        assert int(sched.jobs.sat[sched.jobs.state == JobState.RUNNING][0]) == expect, policy
    # closed form of the battery seconds behind the choice
    assert np.array_equal(battery_seconds(np.full(4, 600.0), tte, left), [600.0, 0.0, 0.0, 500.0])
    # with satellite 2 full, the aware policy takes satellite 3 only for a job that ends before its eclipse
    sched = Scheduler(4, PARAMS, "aware", ground=ground)
    view_full = dataclasses.replace(view, device_ok=np.array([[True] * ND, [True] * ND, [False] * ND, [True] * ND]))
    sched.submit(JobBatch.of(submit_s=0.0, kind=JobKind.BATCH, work_dev_s=[90.0, 600.0], deadline_s=86400.0, src=0))
    sched.step(0.0, 1.0, view_full)
    running = sched.jobs.state == JobState.RUNNING
    assert sched.jobs.sat[running].tolist() == [3] and sched.jobs.work_dev_s[running].tolist() == [90.0]
    assert int(np.count_nonzero(sched.jobs.state == JobState.QUEUED)) == 1  # the long one waits for sunlight


def test_interactive_placement_nearest_and_latency_bound() -> None:
    ground = GroundSites.from_lat_lon(["city"], [10.0], [20.0])
    # satellites straight above (550 km), 4 deg away (in view), and far away (not in view)
    pos = above([10.0, 14.0, -40.0], [20.0, 20.0, 150.0])
    job = JobBatch.of(submit_s=0.0, kind=JobKind.INTERACTIVE, work_dev_s=0.05, latency_bound_s=0.15, src=0,
                      input_bytes=1e5, output_bytes=1e4)
    for policy, expect in (("nearest", 0), ("aware", 1)):
        sched = Scheduler(3, PARAMS, policy, ground=ground, record=True)
        sched.submit(job)
        res = sched.step(0.0, 1.0, view_of(pos, soc=[0.3, 0.9, 0.9]))  # satellite 0's battery is low
        assert res.placed == 1
        assert sched.jobs.log is not None
        (ids, state, reasons, ends) = sched.jobs.log[0]
        assert state == JobState.COMPLETED and reasons[0] == JobReason.DONE
        lat, _ = sched.jobs.ledger.latencies()
        slant = np.linalg.norm(pos[expect] - ground.pos_m[0])
        # upload the input, compute, send the answer, and the propagation both ways
        expected = (1e5 + 1e4) * 8 / PARAMS.uplink_rate_bps + 0.05 + 2 * slant / C_M_S
        assert lat[0] == pytest.approx(expected, rel=1e-9)
    # only the far satellite has a free device: nothing in view can take it (both policies use only
    # satellites in view); devices in view throttled to a quarter clock (0.2 s of compute) break the bound
    ok = np.ones((3, ND), bool)
    ok[:2] = False
    for policy, view, reason in (("aware", view_of(pos, device_ok=ok), JobReason.NO_CAPACITY),
                                 ("nearest", view_of(pos, device_ok=ok), JobReason.NO_CAPACITY),
                                 ("aware", view_of(pos, speed=[0.25, 0.25, 1.0]), JobReason.LATENCY_BOUND)):
        sched = Scheduler(3, PARAMS, policy, ground=ground, record=True)
        sched.submit(job)
        sched.step(0.0, 1.0, view)
        assert sched.jobs.log is not None and sched.jobs.log[0][2][0] == reason
    # round robin ignores where the user is: the far satellite answers late (a deadline miss)
    sched = Scheduler(3, PARAMS, "round_robin", ground=ground, record=True)
    sched.submit(job)
    sched.step(0.0, 1.0, view_of(pos, device_ok=ok))
    assert sched.jobs.log is not None and sched.jobs.log[0][2][0] == JobReason.LATE
    assert sched.jobs.ledger.deadline_misses == 1


def test_round_robin_cycles_and_random_spreads() -> None:
    pos = above([0.0] * 5, [0.0, 10.0, 20.0, 30.0, 40.0])
    sched = Scheduler(5, PARAMS, "round_robin")
    sched.submit(JobBatch.of(submit_s=0.0, kind=JobKind.BATCH, work_dev_s=np.full(7, 50.0), src_kind=1, src=0))
    sched.step(0.0, 1.0, FleetView.nominal(pos, ND))
    order = np.argsort(sched.jobs.id[sched.jobs.state == JobState.RUNNING])
    assert sched.jobs.sat[sched.jobs.state == JobState.RUNNING][order].tolist() == [0, 1, 2, 3, 4, 0, 1]
    sched.submit(JobBatch.of(submit_s=1.0, kind=JobKind.BATCH, work_dev_s=50.0, src_kind=1, src=0))
    sched.step(1.0, 1.0, FleetView.nominal(pos, ND))
    assert int(sched.jobs.sat[sched.jobs.id == 7][0]) == 2  # continues after satellite 1


def test_a_failed_device_requeues_its_job_from_the_last_checkpoint() -> None:
    pos = above([0.0, 0.0], [0.0, 60.0])
    sched = Scheduler(2, PARAMS, "nearest")
    jid = start_on_sat0(sched, checkpoint_job(600.0, 1e9), pos)
    for t in range(1, 100):
        sched.step(float(t), 1.0, FleetView.nominal(pos, ND))
    row = np.flatnonzero(sched.jobs.id == jid)
    dev = int(sched.jobs.device[row][0])
    assert sched.jobs.done_dev_s[row][0] == pytest.approx(100.0)
    ok = np.ones((2, ND), bool)
    ok[0, dev] = False  # latched
    sched.step(100.0, 1.0, view_of(pos, device_ok=ok))
    # back from the checkpoint at 60 device-s, placed again on a working device, one more second done
    assert sched.jobs.done_dev_s[row][0] == pytest.approx(61.0)
    assert (int(sched.jobs.sat[row][0]), int(sched.jobs.device[row][0])) != (0, dev)


def circular_orbit(t: np.ndarray, inc_rad: float, raan_rad: float) -> tuple[np.ndarray, np.ndarray]:
    w = np.sqrt(MU / R**3)
    u = w * t
    x = np.stack([np.cos(u), np.sin(u) * np.cos(inc_rad), np.sin(u) * np.sin(inc_rad)], axis=1) * R
    v = np.stack([-np.sin(u), np.cos(u) * np.cos(inc_rad), np.cos(u) * np.sin(inc_rad)], axis=1) * R * w
    cr, sr = np.cos(raan_rad), np.sin(raan_rad)
    rot = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return x @ rot.T, v @ rot.T


@pytest.mark.parametrize("raan_deg", [0.0, 40.0, 75.0])
def test_eclipse_outlook_matches_the_shadow_along_the_orbit(raan_deg: float) -> None:
    sun = np.array([1.496e11, 0.0, 0.0])
    period = 2 * np.pi * np.sqrt(R**3 / MU)
    t = np.arange(0.0, 2 * period, 1.0)
    r, v = circular_orbit(t, np.radians(53.0), np.radians(raan_deg))
    lit = illumination_fraction(r, sun) > 0.5  # the umbra/penumbra midpoint
    out = eclipse_outlook(r[:1], v[:1], sun / np.linalg.norm(sun))
    change = np.flatnonzero(lit[1:] != lit[:-1]) + 1
    if out.time_to_eclipse_s[0] == np.inf:
        assert lit.all()
        return
    entry = change[~lit[change]]
    exit_ = change[lit[change]]
    expected_entry = 0.0 if not lit[0] else float(t[entry[0]])
    assert out.time_to_eclipse_s[0] == pytest.approx(expected_entry, abs=10.0)  # the penumbra is ~8 s
    length = float(t[exit_[exit_ > entry[0]][0]] - t[entry[0]])
    assert out.eclipse_left_s[0] == pytest.approx(length, abs=10.0)
    # the cylindrical closed form (docs/physics.md#eclipse) for the same beta angle
    h = np.cross(r[0], v[0])
    beta = np.arcsin(h @ sun / np.linalg.norm(h) / np.linalg.norm(sun))
    assert out.eclipse_left_s[0] == pytest.approx(cylindrical_eclipse_fraction(550e3, beta) * period, rel=1e-6)
    # in the shadow half an eclipse later: zero to entry, half the eclipse left
    k = int(entry[0] + length / 2)
    mid = eclipse_outlook(r[k:k + 1], v[k:k + 1], sun / np.linalg.norm(sun))
    assert mid.in_eclipse[0] and mid.time_to_eclipse_s[0] == 0.0
    assert mid.eclipse_left_s[0] == pytest.approx(length / 2, abs=10.0)


def test_region_outlook_finds_a_band_ahead() -> None:
    # a band of latitudes 20-30 deg N; an equatorial... inclined orbit from the ascending node reaches
    # 20 deg at u = asin(sin 20 / sin 53) and leaves at asin(sin 30 / sin 53)
    mask = np.zeros((180, 360), bool)
    mask[110:120, :] = True
    r, v = circular_orbit(np.array([0.0]), np.radians(53.0), 0.0)
    out = region_outlook(r, v, 0.0, mask, horizon_s=3000.0, step_s=2.0)
    w = np.sqrt(MU / R**3)
    t_in = np.arcsin(np.sin(np.radians(20.0)) / np.sin(np.radians(53.0))) / w
    t_out = np.arcsin(np.sin(np.radians(30.0)) / np.sin(np.radians(53.0))) / w
    assert not out.in_eclipse[0]
    assert out.time_to_eclipse_s[0] == pytest.approx(t_in, abs=4.0)
    assert out.eclipse_left_s[0] == pytest.approx(t_out - t_in, abs=4.0)


@pytest.mark.parametrize("policy", ["nearest", "aware"])
def test_board_backed_jobs_run_on_the_board_and_report_its_measurements(policy: str) -> None:
    """Work placed on a board-backed satellite is not run by the model: it is dispatched once, and
    the board's measured time and upsets end it (re-run by aware, corrupt for the baselines)."""
    pos = above([0.0, 0.0], [0.0, 90.0])
    sched = Scheduler(2, PARAMS, policy, record=True)
    sched.external[0] = True
    batch = JobBatch.of(submit_s=0.0, kind=JobKind.BATCH, work_dev_s=[5.0, 5.0], src_kind=1, src=0, dst_kind=1,
                        dst=0)
    ids = sched.submit(batch, watch=True)
    view = view_of(pos, battery_fraction=[0.25, 0.0])
    sched.step(0.0, 1.0, view)
    on_board = [j for j in ids if int(sched.jobs.sat[sched.jobs.id == j][0]) == 0]
    assert on_board, "nearest to satellite 0 means satellite 0 (board-backed)"
    sent = sched.external_dispatch(1.0)
    assert sorted(j for j, *_ in sent) == sorted(on_board) and all(w == pytest.approx(5.0) for *_, w in sent)
    assert sched.external_dispatch(1.0) == []  # sent once
    for _ in range(10):  # the model does no work for the board's jobs
        sched.step(1.0, 1.0, view)
    j = on_board[0]
    assert sched.jobs.done_dev_s[sched.jobs.id == j][0] == 0.0
    assert sched.external_done(j, 12.0, board_s=4.0, upsets=1)
    if policy == "aware":  # re-run: dispatched again, not ended
        assert [x[0] for x in sched.external_dispatch(12.0)] == [j]
        assert sched.external_done(j, 13.0, board_s=4.0, upsets=0)
    ended = {e.job_id: e for e in sched.drain_events() if e.what == "ended"}
    assert ended[j].detail["reason"] == ("done" if policy == "aware" else "corrupted")
    assert ended[j].detail["board_s"] == pytest.approx(4.0)
    runs = 2 if policy == "aware" else 1
    assert ended[j].detail["energy_j"] == pytest.approx(runs * 4.0 * DYN)
    assert ended[j].detail["battery_j"] == pytest.approx(runs * 4.0 * DYN * 0.25)
    assert not sched.external_done(j, 14.0, board_s=1.0, upsets=0)  # ended: a late report is ignored
    # the board is unbound: its other dispatched jobs go back to the queue
    rest = [x for x in on_board if x != j]
    sched.external[0] = False
    sched.step(14.0, 1.0, view)
    for x in rest:
        assert not bool(sched.jobs.dispatched[sched.jobs.id == x][0])


def test_a_board_job_past_its_deadline_is_cancelled_on_the_board():
    pos = above([0.0], [0.0])
    sched = Scheduler(1, PARAMS, "nearest")
    sched.external[0] = True
    (jid,) = sched.submit(JobBatch.of(submit_s=0.0, kind=JobKind.BATCH, work_dev_s=100.0, deadline_s=5.0,
                                      src_kind=1, src=0, dst_kind=1, dst=0), watch=True)
    sched.step(0.0, 1.0, FleetView.nominal(pos, ND))
    assert [x[0] for x in sched.external_dispatch(1.0)] == [jid]
    for t in range(1, 7):
        sched.step(float(t), 1.0, FleetView.nominal(pos, ND))
    assert sched.external_cancelled == [(jid, 0)]
    assert not sched.external_done(jid, 7.0, 3.0, 0)  # its late report is ignored: it failed on its deadline
    ended = [e for e in sched.drain_events() if e.what == "ended"]
    assert [(e.job_id, e.detail["reason"]) for e in ended] == [(jid, "deadline_missed")]


def test_aware_avoids_a_hot_payload_the_saa_ahead_and_overloaded_links():
    """Four sunlit, charged satellites over one spot: 0 has no thermal headroom, 1 enters the SAA in 60 s,
    2's network links were overloaded; the aware policy takes 3 (the farthest), nearest takes 0."""
    pos = above([0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0])
    view = view_of(pos, headroom_k=[0.0, 50.0, 50.0, 50.0], time_to_saa_s=[np.inf, 60.0, np.inf, np.inf],
                   saa_left_s=[0.0, 900.0, 0.0, 0.0])
    view = dataclasses.replace(view, link_util=np.array([0.2, 0.2, 2.0, 0.2]))
    ground = GroundSites.from_lat_lon(["here"], [0.0], [0.0])
    batch = JobBatch.of(submit_s=0.0, kind=JobKind.BATCH, work_dev_s=600.0, deadline_s=7200.0, src=0)
    for policy, expect in (("aware", 3), ("nearest", 0)):
        sched = Scheduler(4, PARAMS, policy, ground=ground)
        sched.submit(batch)
        sched.step(0.0, 1.0, view)
        assert int(sched.jobs.sat[sched.jobs.state == JobState.RUNNING][0]) == expect, policy
    # the overload moved to satellite 3: the aware policy now takes 2 (the link penalty decides)
    sched = Scheduler(4, PARAMS, "aware", ground=ground)
    sched.submit(batch)
    sched.step(0.0, 1.0, dataclasses.replace(view, link_util=np.array([0.2, 0.2, 0.2, 2.0])))
    assert int(sched.jobs.sat[sched.jobs.state == JobState.RUNNING][0]) == 2

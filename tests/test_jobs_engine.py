"""The scheduler inside the engine (docs/physics.md#compute-jobs): jobs set the payload's load, the
payload's energy is the jobs' energy, upsets hit the jobs on the device, every job ends once."""

from __future__ import annotations

import numpy as np
import pytest

from twin.core.catalogue import load_catalogue
from twin.core.compute import JobBatch, JobKind, JobState
from twin.core.compute.jobs import SATELLITE
from twin.core.design import load_design
from twin.core.engine import FleetTwin

DESIGN = load_design()
CAT = load_catalogue().select(count=60)


def _twin(policy: str = "aware", demand: float = 0.02, dt_s: float = 10.0) -> FleetTwin:
    return FleetTwin(CAT, DESIGN, dt_s=dt_s, seed=4, orbit_worker=False, network=False, compute_policy=policy,
                     compute_demand_scale=demand)


@pytest.mark.parametrize("policy", ["aware", "nearest"])
def test_every_job_ends_once_and_its_energy_is_what_the_payload_drew(policy: str) -> None:
    twin = _twin(policy)
    s = twin.compute.scheduler  # type: ignore[union-attr]
    p = DESIGN.payload
    dyn_j = 0.0
    batt_out_j = 0.0
    for _ in range(540):  # 1.5 h: at least one eclipse for every satellite
        twin.step()
        tm = twin.tm
        idle = p.n_devices * p.device_idle_w
        dyn_j += float(np.sum(np.maximum(tm["payload_power_w"] - idle, 0.0))) * twin.dt_s
        batt_out_j += float(np.sum(np.maximum(tm["battery_power_w"], 0.0))) * twin.dt_s
    led = s.jobs.ledger
    assert s.jobs.next_id > 100
    # every submitted job: ended exactly once, or still holding a place in the table
    assert led.total + len(s.jobs.active_rows()) == s.jobs.next_id
    assert led.ended[:, JobState.COMPLETED].sum() > 0
    # the jobs' accelerator energy is the payload's dynamic energy (no latch-ups in this short run)
    assert int(np.sum(twin.payload.sel_total)) == 0
    assert s.energy_j == pytest.approx(dyn_j, rel=0.02)
    # the battery's part of it is within what the battery gave, and not nothing over an eclipse
    assert 0.0 < s.battery_j <= batt_out_j


def test_jobs_set_the_payload_load_and_an_idle_scheduler_leaves_it_idle() -> None:
    twin = _twin(demand=0.0)
    twin.step()
    assert np.all(twin.tm["payload_util"] == 0.0)
    sched = twin.compute.scheduler  # type: ignore[union-attr]
    sat = 7
    sched.submit(JobBatch.of(submit_s=twin.t_s, kind=JobKind.BATCH, work_dev_s=1e5, deadline_s=twin.t_s + 1e6,
                             src_kind=SATELLITE, src=sat))
    twin.step()
    twin.step()
    busy = np.flatnonzero(twin.tm["payload_util"] > 0)
    assert busy.size == 1
    # one of the devices, at full clock unless throttled
    assert twin.tm["payload_util"][busy[0]] == pytest.approx(twin.tm["payload_throttle"][busy[0]]
                                                               / DESIGN.payload.n_devices, rel=1e-6)


def test_an_uncorrectable_upset_hits_only_the_job_on_that_device() -> None:
    twin = _twin(policy="nearest", demand=0.0)
    sched = twin.compute.scheduler  # type: ignore[union-attr]
    sat = 3
    sched.submit(JobBatch.of(submit_s=twin.t_s, kind=np.full(3, JobKind.BATCH), work_dev_s=1e5,
                             deadline_s=twin.t_s + 1e6, src_kind=SATELLITE, src=sat))
    twin.step()
    c = sched.jobs.cols
    rows = sched.jobs.rows_in(JobState.RUNNING)
    assert rows.size == 3
    on = c["sat"][rows[0]], c["device"][rows[0]]
    twin.compute.upset(int(on[0]), int(on[1]))  # type: ignore[union-attr]
    assert c["corrupt"][rows].tolist() == [True, False, False]
    assert c["upsets"][rows].tolist() == [1, 0, 0]


def test_run_options_turn_placement_on() -> None:
    import argparse

    from orbitwin.cli.fleet_options import add_fleet_options, fleet_options
    from twin.runtime.run_loop import build_twin

    p = argparse.ArgumentParser()
    add_fleet_options(p)
    opts = fleet_options(p.parse_args(["--count", "20", "--no-network", "--compute", "round_robin",
                                       "--compute-demand", "0.5", "--dt", "10"]))
    twin = build_twin(opts)
    try:
        assert twin.compute is not None and twin.compute.scheduler.policy == "round_robin"
        assert twin.compute.demand is not None
        for _ in range(30):
            twin.step()
        assert twin.compute.scheduler.jobs.next_id > 0
    finally:
        twin.close()
    assert build_twin(fleet_options(p.parse_args(["--count", "5", "--no-network"]))).compute is None


def test_commanded_load_is_refused_while_placement_owns_the_payload() -> None:
    twin = _twin(demand=0.0)
    twin.submit("command", "set_payload_load", {"load": 0.5}, twin.names[0])
    twin.step()
    failed = [e for e in twin.drain_events() if e.name == "command_failed"]
    assert failed and "compute placement is on" in str(failed[0].detail["result"])


def test_a_jobs_input_loads_the_mesh_links_on_its_way_up():
    """Data transfers load the mesh: while a job's input arrives, the uplink rate it gets flows between the
    satellite running it and that satellite's gateway (feeder and laser links), on top of the cities' traffic."""
    shell = load_catalogue().select(alt_km=(530.0, 550.0), inc_deg=(53.1, 53.3))
    twin = FleetTwin(shell, DESIGN, dt_s=1.0, orbit_worker=False, network=True, compute_policy="nearest",
                     compute_demand_scale=0.0)
    net = twin.net
    assert net is not None and twin.compute is not None
    far = np.flatnonzero(np.isfinite(net.gw_delay_s) & (net.gw_hops >= 3))
    sat = int(far[0])  # its input crosses laser links to reach it
    rate_gbps = twin.compute.params.uplink_rate_bps / 1e9
    twin.submit("command", "run_job", {"kind": "batch", "work_dev_s": 50.0, "input_bytes": 2e11,
                                       "output_bytes": 0.0, "state_bytes": 0.0, "checkpoint_every_dev_s": 0.0,
                                       "source": f"sat:{twin.names[sat]}"}, np.array([sat]))
    twin.step()  # queued at the end of this tick, placed in the next
    for _ in range(3):
        twin.step()
        tr = twin.net.traffic
        assert tr.feeder_load_gbps.sum() - tr.carried_gbps == pytest.approx(rate_gbps, rel=1e-9)
        assert twin.net.sat_throughput_gbps[sat] >= rate_gbps
    upload_s = 2e11 * 8 / twin.compute.params.uplink_rate_bps
    for _ in range(int(upload_s) + 2):
        twin.step()
    tr = twin.net.traffic
    assert tr.feeder_load_gbps.sum() - tr.carried_gbps == pytest.approx(0.0, abs=1e-9)  # the input has arrived

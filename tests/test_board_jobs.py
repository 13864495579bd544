"""Compute jobs on a board in the loop, end to end: the scheduler places a job on a board-backed satellite,
the twin asks the board over MQTT -> serial bridge -> serial (firmware-sim on a pty) to run it, and the
board's measured run time and upsets end it (JOB_START / JOB_DONE, ``board/{board}/job``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from bridges.board.bridge import SerialBridge, SerialBridgeSettings
from mqtt_helpers import Recorder, wait_for
from orbitwin_fw_host import start_sims, stop_sims
from twin.core.compute.jobs import JobBatch, JobKind
from twin.mqtt import MqttSettings
from twin.runtime.mqtt_link import LinkSettings, MqttLink
from twin.runtime.mqtt_service import TwinService
from twin.runtime.run_loop import FleetOptions, build_twin

P = "orbitwin/v1"


@dataclass
class Rig:
    twin: Any
    service: TwinService
    bridge: SerialBridge
    sim: Any
    rec: Recorder
    sat: int  # the board's satellite (fleet index)
    name: str
    events: list[Any]

    def tick(self) -> None:
        """One twin step as the service runs it (requests first); no telemetry published (not needed)."""
        self.service.process_requests()
        self.twin.step()
        self.events += self.twin.compute.scheduler.drain_events()

    def step_until(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        """Step the twin (0.25 s of sim time per tick, paced at about 2x real time: the board runs in wall
        time) until ``cond()`` is truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick()
            v = cond()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"{what} not met within {timeout} s (sim t={self.twin.t_s:.1f} s)")

    def of(self, job: int, name: str) -> list[Any]:
        return [e for e in self.events if e.job_id == job and e.what == name]

    def submit(self, work_dev_s: float) -> int:
        sched = self.twin.compute.scheduler
        (job,) = sched.submit(JobBatch.of(submit_s=self.twin.t_s, kind=JobKind.BATCH, work_dev_s=work_dev_s,
                                          src_kind=1, src=self.sat, dst_kind=1, dst=self.sat), watch=True)
        return int(job)

    def job_msgs(self, job: int) -> list[dict[str, Any]]:
        return [p for _, p in self.rec.find(lambda t, p: t == f"{P}/board/{self.name}/job" and p["job_id"] == job)]


@contextmanager
def rig(mosquitto: Any, tmp_path: Any) -> Iterator[Rig]:
    twin = build_twin(FleetOptions(count=4, dt_s=0.25, seed=3, compute_policy="nearest", compute_demand_scale=0))
    link = MqttLink(MqttSettings(mosquitto.url), LinkSettings(state_dir=str(tmp_path)))
    service = TwinService(twin, link)
    link.start()
    sims = start_sims(1, seed=5, mode="thread")
    name = twin.names[1]
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/board/#"])
    bridge = SerialBridge(SerialBridgeSettings(sims[0].port_path, name, mosquitto.url)).start()
    r = Rig(twin, service, bridge, sims[0], rec, twin.index[name], name, [])
    try:
        # bound, linked, with the board's unit-job rate, and the twin takes the payload from the board
        r.step_until(lambda: name in service.boards and service.boards[name].jobs_per_s_max
                     and int(twin.payload_source[r.sat]) == 1 and twin.compute.scheduler.external[r.sat], 30,
                     "board bound")
        yield r
    finally:
        bridge.stop()
        rec.close()
        link.stop()
        twin.close()
        stop_sims(sims)


def test_a_job_placed_on_the_board_runs_there_and_its_measured_time_ends_it(mosquitto, tmp_path) -> None:
    with rig(mosquitto, tmp_path) as r:
        backend = r.service.boards[r.name]
        job = r.submit(0.5)
        r.step_until(lambda: r.of(job, "ended"), 30, "job ended")
        (placed,) = r.of(job, "placed")
        assert placed.detail["sat"] == r.sat  # nearest to the board's satellite: that one
        (ended,) = r.of(job, "ended")
        assert ended.detail["state"] == "completed" and ended.detail["reason"] == "done", ended.detail
        (msg,) = r.job_msgs(job)  # what the board measured, as the bridge published it
        assert msg["status"] == "done" and msg["upsets"] == 0
        assert msg["ops_done"] == max(1, round(0.5 * backend.jobs_per_s_max))
        assert ended.detail["board_s"] == pytest.approx(msg["busy_s"]) and ended.detail["board_s"] > 0
        # one device-second is one board-second at full duty: 0.5 s of work took the board about 0.5 s
        assert 0.05 < msg["busy_s"] < 5.0
        # the board ran it, not the model: one dispatch, its energy from the board's time, no requeue
        assert not r.of(job, "requeued") and backend.job_counters["sent"] == 1 == backend.job_counters["done"]
        dyn_w = r.twin.compute.scheduler.p.device_dynamic_w
        assert ended.detail["energy_j"] == pytest.approx(msg["busy_s"] * dyn_w)
        assert r.service.counters["board_jobs"] == 1 and not r.service.counters["board_rejected"]


def test_an_uncorrectable_upset_on_the_board_corrupts_the_job(mosquitto, tmp_path) -> None:
    with rig(mosquitto, tmp_path) as r:
        job = r.submit(4.0)
        r.step_until(lambda: r.sim.firmware.jobs and r.sim.firmware.jobs[0][0] == job, 20, "job on the board")
        # the existing fault path: a double-bit upset in one block of the board's real weights buffer
        r.rec.publish(f"{P}/board/{r.name}/fault", {"fault": "seu_double", "id": "dbe-1"})
        r.step_until(lambda: r.of(job, "ended"), 40, "job ended")
        (ended,) = r.of(job, "ended")
        (msg,) = r.job_msgs(job)
        assert msg["status"] == "done" and msg["upsets"] >= 1, msg
        # nearest does not re-run work hit by an upset: the result is delivered corrupt
        assert ended.detail["state"] == "completed" and ended.detail["reason"] == "corrupted", ended.detail
        assert ended.detail["upsets"] == msg["upsets"] and ended.detail["board_s"] == pytest.approx(msg["busy_s"])


def test_a_board_that_goes_away_mid_job_hands_the_job_back_to_the_model(mosquitto, tmp_path) -> None:
    with rig(mosquitto, tmp_path) as r:
        job = r.submit(3.0)
        r.step_until(lambda: r.sim.firmware.jobs and r.sim.firmware.jobs[0][0] == job, 20, "job on the board")
        r.bridge.stop()  # the bridge says offline: the twin unbinds the board
        r.step_until(lambda: r.of(job, "requeued"), 20, "job requeued")
        assert r.name not in r.service.boards and not r.twin.compute.scheduler.external[r.sat]
        r.step_until(lambda: r.of(job, "ended"), 30, "job ended")
        (ended,) = r.of(job, "ended")
        assert ended.detail["state"] == "completed" and ended.detail["reason"] == "done", ended.detail
        assert math.isnan(ended.detail["board_s"])  # the model ran it: no board measurement
        assert not r.job_msgs(job)


# --- the pieces: firmware queue, bridge requests, the twin's backend ---------------------------------------
def test_firmware_job_queue_refuses_cancels_stalls_in_latchup_and_loses_jobs_on_reset() -> None:
    from bridges.board.link import SerialLink
    from orbitwin_fw import messages as m

    sims = start_sims(1, seed=9, mode="thread")
    ends: list[dict[str, Any]] = []
    try:
        with SerialLink(sims[0].port_path, on_message=lambda x: ends.append(x.fields) if x.mtype == m.JOB_DONE
                        else None) as link:
            assert link.wait_connected(5.0)
            fw = sims[0].firmware
            acks = [link.start_job(100 + k, 10**8) for k in range(m.JOB_QUEUE + 1)]
            assert all(a.ok for a in acks[:-1]) and acks[-1].status == m.ST_REFUSED
            assert acks[-2].detail == m.JOB_QUEUE
            wait_for(lambda: any(e["job_id"] == 100 + m.JOB_QUEUE for e in ends), 5)
            assert ends[-1]["status"] == m.JOB_ST_REFUSED and ends[-1]["ops_done"] == 0
            assert link.start_job(1, 0).status == m.ST_BAD_ARG  # no work: refused too
            wait_for(lambda: any(e["job_id"] == 1 and e["status"] == m.JOB_ST_REFUSED for e in ends), 5)
            assert link.cancel_job(101).ok and link.cancel_job(4242).status == m.ST_BAD_ARG
            wait_for(lambda: any(e["job_id"] == 101 and e["status"] == m.JOB_ST_CANCELLED for e in ends), 5)
            # jobs take the accelerator at full duty, ahead of the background load
            assert link.set_load(0.1).ok
            assert link.wait_telemetry(lambda f: f["utilisation"] > 0.6, 5.0)
            # latch-up: the running job makes no progress
            assert link.inject_latchup().ok
            assert link.wait_telemetry(lambda f: f["latched"] == 1 and f["utilisation"] == 0.0, 5.0)
            done = fw.jobs[0][2]
            assert link.wait_telemetry(lambda f: f["latched"] == 1, 2.0) and fw.jobs[0][2] == done
            # a reset drops the queue: the rebooted board reports nothing about the lost jobs
            n_ends, boots = len(ends), sims[0].boot_count
            assert link.reset().ok
            wait_for(lambda: sims[0].boot_count > boots and link.connected, 5)
            assert sims[0].firmware.jobs == [] and len(ends) == n_ends
    finally:
        stop_sims(sims)


def test_bridge_run_job_requests_and_lost_jobs(mosquitto) -> None:
    sims = start_sims(1, seed=4, mode="thread")
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/board/#"])
    bridge = SerialBridge(SerialBridgeSettings(sims[0].port_path, "B7", mosquitto.url)).start()
    try:
        wait_for(lambda: bridge.link.connected, 10)
        cmd = f"{P}/board/B7/cmd"
        rec.publish(cmd, {"command": "run_job", "args": {"job_id": 5, "ops": 50}, "id": "j1"})
        rec.publish(cmd, {"command": "run_job", "args": {"job_id": 6, "ops": 10**9}, "id": "j2"})
        for rid, args in (("bad1", {"job_id": 7, "ops": 0}), ("bad2", {"job_id": -1, "ops": 5}),
                          ("bad3", {"job_id": 7, "ops": 2.5}), ("bad4", {"job_id": True, "ops": 5}),
                          ("bad5", {"ops": 5})):
            rec.publish(cmd, {"command": "run_job", "args": args, "id": rid})
        replies = wait_for(lambda: {p["id"]: p for _, p in rec.find(lambda t, p: t.endswith("/reply")
                                                                    and p["status"] != "accepted")}
                           if len(rec.find(lambda t, p: t.endswith("/reply") and p["status"] != "accepted")) >= 7
                           else None, 10)
        assert replies["j1"]["status"] == "completed" and replies["j1"]["result"]["ack"] == 0
        assert replies["bad1"]["reason"] == "out_of_range" and replies["bad2"]["reason"] == "out_of_range"
        assert all(replies[k]["reason"] == "bad_argument" for k in ("bad3", "bad4", "bad5"))
        (done,) = wait_for(lambda: [p for _, p in rec.find(lambda t, p: t == f"{P}/board/B7/job")], 10)
        assert done["job_id"] == 5 and done["status"] == "done" and done["ops_done"] == 50 and done["busy_s"] > 0
        # the board power-cycles while it holds job 6: the bridge reports it lost
        rec.publish(cmd, {"command": "power_cycle", "id": "pc"})
        lost = wait_for(lambda: [p for _, p in rec.find(lambda t, p: t.endswith("/B7/job") and p["job_id"] == 6)], 10)
        assert lost[0]["status"] == "lost" and lost[0]["ops_done"] == 0
    finally:
        bridge.stop()
        rec.close()
        stop_sims(sims)


def test_backend_sizes_jobs_from_the_board_rate_and_times_out_lost_ones() -> None:
    import json

    from twin.contract.board_messages import BoardJobResult, parse_board_job
    from twin.runtime.hil_binding import BoardBackend
    from twin.schema.commands import CommandError

    from twin.core.design import load_design

    twin_params = load_design().payload
    now = [100.0]
    sent: list[tuple[str, dict[str, Any]]] = []
    b = BoardBackend("b", "S", twin_params, lambda t, p: sent.append((t, json.loads(p))), P, clock=lambda: now[0])
    with pytest.raises(RuntimeError):
        b.run_job(1, 1.0)  # no rate yet: the engine requeues the job
    b.jobs_per_s_max = 20000.0
    b.run_job(1, 0.5)
    b.run_job(2, 1e-9)
    b.run_job(3, 2.0)
    b.run_job(4, 1.0)
    assert [x[1]["args"] for x in sent] == [{"job_id": 1, "ops": 10000}, {"job_id": 2, "ops": 1},
                                           {"job_id": 3, "ops": 40000}, {"job_id": 4, "ops": 20000}]
    assert all(t == f"{P}/board/b/cmd" and x["command"] == "run_job" for t, x in sent)
    assert b.job_done(BoardJobResult(1, 10000, 0.51, 2, "done"))
    assert b.job_done(BoardJobResult(2, 0, 0.0, 0, "refused"))
    assert not b.job_done(BoardJobResult(99, 1, 0.1, 0, "done"))  # not ours: ignored
    assert b.job_results() == [(1, 0.51, 2, None), (2, 0.0, 0, "board_refused")] and b.job_results() == []
    now[0] += 3 * 1.0 + 5.0 + 0.01  # job 4 (1 s expected) is past 3x + 5 s; job 3 (2 s) is not
    assert b.job_results() == [(4, 0.0, 0, "board_timeout")]
    now[0] += 3.0
    assert b.job_results() == [(3, 0.0, 0, "board_timeout")]
    assert not b.job_done(BoardJobResult(3, 40000, 2.0, 0, "done"))  # too late: already failed
    b.run_job(5, 1.0)
    b.cancel_job(5)  # its deadline passed in the twin: the board is told to drop it
    assert sent[-1][1]["command"] == "cancel_job" and sent[-1][1]["args"] == {"job_id": 5}
    assert not b.job_done(BoardJobResult(5, 0, 0.1, 0, "cancelled")) and b.job_results() == []
    b.cancel_job(5)  # not pending any more: nothing is sent
    assert sent[-1][1]["args"] == {"job_id": 5} and sum(x[1]["command"] == "cancel_job" for x in sent) == 1
    good = {"job_id": 1, "ops_done": 1, "busy_s": 0.5, "upsets": 0, "status": "done"}
    for bad, field in (({"busy_s": -1.0}, "busy_s"), ({"busy_s": "x"}, "busy_s"), ({"job_id": 2**32}, "job_id"),
                       ({"upsets": None}, "upsets"), ({"status": "weird"}, "status"), ({"ops_done": 1.5}, "ops_done")):
        with pytest.raises(CommandError) as exc:
            parse_board_job(json.dumps(good | bad).encode())
        assert exc.value.field == field
    with pytest.raises(CommandError):
        parse_board_job(b"[1, 2]")

"""Compute jobs over the one MQTT door (issue 16): run_job and set_compute_policy on a real Mosquitto.

Every reply a client gets through a job's life (queued, accepted with the placement, completed
with energy, failed, rejected with a reason) and the requests the twin refuses, each named.
"""

from __future__ import annotations

from typing import Any

import pytest

from mqtt_helpers import Recorder, SteppingTwin, wait_for
from test_asyncapi import payload_validator
from twin.runtime.run_loop import FleetOptions, build_twin

P = "orbitwin/v1"
ME = f"{P}/jobs-test/reply"


@pytest.fixture
def stepping(mosquitto, tmp_path):
    twin = build_twin(FleetOptions(count=12, dt_s=10.0, seed=3, network=False, compute_policy="nearest",
                                   compute_demand_scale=0.0))
    st = SteppingTwin(twin, mosquitto.url, str(tmp_path))
    st.running(2)
    yield st
    st.close()


def _all_valid(rec: Recorder) -> int:
    """Every reply the recorder got validates against the AsyncAPI reply schema; returns how many."""
    v = payload_validator("reply")
    replies = [p for _, p in rec.find(lambda t, p: t == ME)]
    for r in replies:
        errors = sorted(v.iter_errors(r), key=str)
        assert not errors, f"{r}: {errors[0].message}"
    return len(replies)


def _replies(rec: Recorder, rid: str) -> list[dict[str, Any]]:
    return [p for _, p in rec.find(lambda t, p: t == ME and isinstance(p, dict) and p.get("id") == rid)]


def _until(rec: Recorder, rid: str, final: tuple[str, ...] = ("completed", "failed", "rejected"),
           timeout: float = 60.0) -> list[dict[str, Any]]:
    return wait_for(lambda: (r := _replies(rec, rid)) and r[-1]["status"] in final and r, timeout,
                    what=f"the final reply to {rid}")


def _job(rec: Recorder, rid: str, topic: str = f"{P}/fleet/cmd", select: Any = "*", **args: Any) -> None:
    body: dict[str, Any] = {"command": "run_job", "id": rid, "reply_to": ME, "args": args}
    if topic.endswith("fleet/cmd"):
        body["select"] = select
    rec.publish(topic, body)


def test_a_job_is_queued_placed_and_completed_with_its_energy(mosquitto, stepping):
    twin = stepping.twin
    src = twin.names[4]
    rec = Recorder(mosquitto.host, mosquitto.port, [ME])
    try:
        _job(rec, "j1", kind="batch", work_dev_s=25.0, source=f"sat:{src}", deadline_s=3600.0)
        replies = _until(rec, "j1")
        assert [r["status"] for r in replies] == ["queued", "accepted", "completed"]
        placed = replies[1]
        assert placed["placement"]["sat"] == src  # nearest to a satellite source: that satellite
        assert isinstance(placed["job_id"], int) and placed["request"] == "run_job"
        done = replies[2]
        assert done["job_id"] == placed["job_id"] and done["outcome"] == "done" and done["sat"] == src
        dyn_w = twin.design.payload.device_peak_w - twin.design.payload.device_idle_w
        assert done["energy_wh"] == pytest.approx(25.0 * dyn_w / 3600.0, rel=1e-6)
        assert done["battery_wh"] + done["array_wh"] == pytest.approx(done["energy_wh"])
        assert done["latency_ms"] is None  # a batch job has no round-trip latency
        # addressed to one satellite's topic, it may run only there (though the source is elsewhere)
        only = twin.names[7]
        _job(rec, "j2", topic=f"{P}/sat/{only}/cmd", kind="batch", work_dev_s=5.0, source=f"sat:{src}")
        assert _until(rec, "j2")[1]["placement"]["sat"] == only
        # selection by name on the fleet topic
        _job(rec, "j3", select={"sats": [twin.names[9]]}, kind="checkpoint", work_dev_s=5.0, source=f"sat:{src}",
             state_bytes=1e9, checkpoint_every_dev_s=1.0)
        assert _until(rec, "j3")[1]["placement"]["sat"] == twin.names[9]
        st = stepping.service.status()["counters"]
        assert st["replies_queued"] == 3 and st["replies_accepted"] == 3 and st["replies_completed"] == 3
        assert len(stepping.service.job_replies) == 0 and not stepping.service.waiting  # every route released
        assert _all_valid(rec) == 9
    finally:
        rec.close()


def test_deadline_failure_policy_command_and_refusals_each_named(mosquitto, stepping):
    twin = stepping.twin
    src = twin.names[0]
    rec = Recorder(mosquitto.host, mosquitto.port, [ME])
    try:
        _job(rec, "late", kind="batch", work_dev_s=1e6, source=f"sat:{src}", deadline_s=30.0)
        late = _until(rec, "late")
        assert [r["status"] for r in late] == ["queued", "accepted", "failed"]
        assert late[-1]["reason"] == "deadline_missed" and late[-1]["energy_wh"] > 0
        rec.publish(f"{P}/fleet/cmd", {"command": "set_compute_policy", "id": "pol", "reply_to": ME, "select": "*",
                                        "args": {"policy": "aware"}})
        pol = _until(rec, "pol")
        assert pol[-1]["status"] == "completed" and pol[-1]["result"] == {"policy": "aware", "previous": "nearest"}
        assert wait_for(lambda: twin.compute.scheduler.policy == "aware", 10)
        bad = {
            "kind": ({"kind": "training", "work_dev_s": 1.0, "source": f"sat:{src}"}, "bad_argument", "kind"),
            "work": ({"kind": "batch", "work_dev_s": -1.0, "source": f"sat:{src}"}, "out_of_range", "work_dev_s"),
            "city": ({"kind": "interactive", "work_dev_s": 1.0, "source": "city:Atlantis"}, "bad_argument", "source"),
            "sat": ({"kind": "batch", "work_dev_s": 1.0, "source": "sat:NOPE-1"}, "unknown_satellite", "source"),
            "form": ({"kind": "batch", "work_dev_s": 1.0, "source": "moon:Tycho"}, "bad_argument", "source"),
        }
        for rid, (args, _, _) in bad.items():
            _job(rec, rid, **args)
        for rid, (_, reason, field) in bad.items():
            r = _until(rec, rid)[-1]
            assert (r["status"], r["reason"], r.get("field")) == ("rejected", reason, field), rid
            assert r["message"]
        rec.publish(f"{P}/fleet/cmd", {"command": "set_compute_policy", "id": "pol2", "reply_to": ME, "select": "*",
                                        "args": {"policy": "fastest"}})
        assert _until(rec, "pol2")[-1]["reason"] == "bad_argument"
        # an interactive job whose only allowed satellite is out of view of its city is rejected, named
        _job(rec, "nowhere", topic=f"{P}/sat/{twin.names[3]}/cmd", kind="interactive", work_dev_s=0.01,
             source="city:Tokyo", latency_bound_ms=500.0)
        r = _until(rec, "nowhere")[-1]
        assert r["status"] == "rejected" and r["reason"] in ("not_allowed", "latency_bound") and r["message"]
        assert stepping.error is None
        assert _all_valid(rec) >= 13
    finally:
        rec.close()


def test_jobs_are_refused_when_compute_placement_is_off(mosquitto, tmp_path):
    twin = build_twin(FleetOptions(count=3, dt_s=10.0, seed=3, network=False))
    st = SteppingTwin(twin, mosquitto.url, str(tmp_path))
    rec = Recorder(mosquitto.host, mosquitto.port, [ME])
    try:
        st.running(2)
        _job(rec, "off", kind="batch", work_dev_s=1.0, source=f"sat:{twin.names[0]}")
        r = _until(rec, "off")
        assert [x["status"] for x in r] == ["queued", "rejected"]
        assert r[-1]["reason"] == "not_now" and "--compute" in r[-1]["message"]
    finally:
        rec.close()
        st.close()

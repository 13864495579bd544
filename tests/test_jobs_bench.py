"""``orbitwin bench placement`` on a small fleet for a few sim minutes: the report adds up.

Every submitted job is completed, failed, rejected or still active; the compute energy splits into
battery and arrays; every policy sees the same demand. The full run (9,543 satellites, 24 h) is a
benchmark, not a test.
"""

from __future__ import annotations

import pytest

from orbitwin.bench.placement import bench_placement


def test_placement_bench_report_is_consistent() -> None:
    out = bench_placement(hours=0.02, count=300, seed=3, policies=("nearest", "aware"), demand_scale=0.5)
    assert out["satellites"] == 300 and set(out["policies"]) == {"nearest", "aware"}
    submitted = {p: r["jobs_submitted"] for p, r in out["policies"].items()}
    assert submitted["nearest"] == submitted["aware"] > 20  # the same seeded demand for both
    for r in out["policies"].values():
        assert r["jobs_submitted"] == r["jobs_completed"] + r["failed"] + r["rejected"] + r["still_active"]
        assert r["compute_energy_wh"] == pytest.approx(
            r["compute_energy_from_battery_wh"] + r["compute_energy_from_arrays_wh"])
        assert r["compute_energy_wh"] > 0 and r["scheduler_ms_per_tick_p50"] > 0
        assert r["interactive_latency_p50_ms"] is not None and r["interactive_latency_p50_ms"] > 50.0  # 50 ms of compute
    assert out["aware_vs_nearest"]["battery_energy_reduction"] is not None


def test_placement_bench_inside_the_engine_adds_up() -> None:
    out = bench_placement(hours=0.1, dt_s=10.0, count=80, seed=3, policies=("nearest", "aware"), demand_scale=0.05,
                          engine=True)
    assert out["fleet"] == "engine"
    for r in out["policies"].values():
        assert r["fleet"] == "engine" and r["jobs_submitted"] > 0
        assert r["jobs_submitted"] == r["jobs_completed"] + r["failed"] + r["rejected"] + r["still_active"]
        assert r["compute_energy_wh"] > 0 and r["throttled_device_hours"] is not None
        assert r["scheduler_ms_per_tick_p50"] > 0

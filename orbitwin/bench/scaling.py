"""``orbitwin bench scaling``: what a constellation of N satellites needs, per telemetry policy.

For each fleet size and policy: MQTT messages/s and bytes/s and InfluxDB field values/s (the
budget of :mod:`twin.contract.telemetry_policy`, with message sizes measured by encoding a real
tick of the ``million`` layout), and from them the broker and InfluxDB nodes at the measured
per-node ceilings (``twin/data/sink_ceilings.toml``), and the cores the twin needs for real time at
a measured satellite-steps-per-second figure per core (``orbitwin bench fleet --constellation``).
Every number is arithmetic on measured figures; the result says which.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from orbitwin.bench.scale import EPOCH_JD
from twin.contract.telemetry_encoder import PacketSchedule
from twin.contract.telemetry_policy import budget, load_ceilings
from twin.contract.topics import Topics
from twin.core.constellation import build_catalogue, load_constellation
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.runtime.telemetry_out import prune_schedule
from twin.runtime.telemetry_budget import measure_sizes

# measured: `orbitwin bench fleet --constellation million` on the 2-core machine, 2026-12-03: median steps of
# 0.999-1.28 s for 1,000,000 satellites over its two processes (docs/scaling.md): ~400,000 per core
SAT_STEPS_PER_CORE_S = 400_000
# (name, watched: "all" | "none" | a count, frames, aggregates Hz)
POLICIES: tuple[tuple[str, str | int, str, float], ...] = (
    ("default: every satellite on its own topics and in frames", "all", "all", 0.0),
    ("frames only: fleet frames for all, no per-satellite topics", "none", "all", 0.0),
    ("watched plane: 200 satellites on their topics and in frames, aggregates 0.1 Hz", 200, "watched", 0.1),
)


def _groups(n: int, shells: int) -> int:
    """Shells plus planes of a layout of ``shells`` shells scaled to ``n`` satellites (square shells: planes
    of as many satellites as there are planes, as in the ``million`` layout)."""
    planes = max(1, round(math.sqrt(n / shells)))
    return shells + shells * planes


def scaling_plan(sizes: tuple[int, ...] = (100_000, 1_000_000), dt_s: float = 1.0,
                 sat_steps_per_core_s: float = SAT_STEPS_PER_CORE_S) -> dict[str, Any]:
    """The budget and the machines for each fleet size and policy of :data:`POLICIES`."""
    spec = load_constellation("million")  # its first shell (40,000: names as long as the million's), every 100th
    sample = build_catalogue(dataclasses.replace(spec, shells=spec.shells[:1]), EPOCH_JD).subset(range(0, 40_000, 100))
    topics = Topics()
    ceilings = load_ceilings()
    with FleetTwin(sample, load_design(), dt_s=dt_s, seed=0, network=False, orbit_worker=False) as twin:
        twin.step()
        msg_sizes = measure_sizes(twin, prune_schedule(PacketSchedule(twin.n, dt_s), twin), topics)
    rows = []
    for n in sizes:
        schedule = prune_schedule(PacketSchedule(n, dt_s), twin)
        for name, watch, frames, agg_hz in POLICIES:
            watched = np.zeros(n, dtype=bool)
            watched[: n if watch == "all" else 0 if watch == "none" else int(watch)] = True
            groups = _groups(n, len(spec.shells)) if agg_hz else 0
            b = budget(schedule, watched, frames, msg_sizes, aggregate_groups=groups,
                       aggregates_hz=agg_hz)
            rows.append({
                "sats": n, "policy": name,
                "mqtt_msgs_per_s": round(b.msgs_per_s), "mqtt_mb_per_s": round(b.bytes_per_s / 1e6, 2),
                "influx_values_per_s": round(b.influx_values_per_s),
                "broker_nodes": max(math.ceil(b.msgs_per_s / ceilings.mqtt_msgs_per_s),
                                    math.ceil(b.bytes_per_s / ceilings.mqtt_bytes_per_s)),
                "influx_nodes": math.ceil(b.influx_values_per_s / ceilings.influx_values_per_s),
                "twin_cores_realtime": math.ceil(n / (sat_steps_per_core_s * dt_s)),
            })
    return {"benchmark": "scaling", "dt_s": dt_s, "rows": rows,
            "ceilings": {"mqtt_msgs_per_s": ceilings.mqtt_msgs_per_s, "mqtt_bytes_per_s": ceilings.mqtt_bytes_per_s,
                         "influx_values_per_s": ceilings.influx_values_per_s, "source": ceilings.source},
            "sat_steps_per_core_s": sat_steps_per_core_s,
            "message_sizes_from": f"one tick of {sample.source}, {len(sample)} satellites of its first shell"}

"""``orbitwin bench {fleet,mesh,mqtt,serial,influx,dashboards,placement,scaling,shards}``: benchmarks printing JSON.

The MQTT and InfluxDB benchmarks start their own local Mosquitto and influxd (they measure this
machine, not a remote broker), so they take no broker options.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from orbitwin.cli import arg_types
from orbitwin.cli.progress import ProgressFn, add_no_progress_option, progress_display

# each benchmark's main loop: (label, unit shown, shown units per callback unit)
_TASKS: dict[str, tuple[str, str, float]] = {
    "fleet": ("timed steps", "steps", 1.0), "mesh": ("mesh ticks", "ticks", 1.0),
    "mqtt": ("twin on MQTT", "s sim", 1.0), "serial": ("pings", "pings", 1.0),
    "placement": ("placement", "h sim", 1 / 3600), "dashboards": ("fill", "s sim", 1.0),
    "influx": ("end to end", "s", 1.0), "scaling": ("plan", "steps", 1.0),
    "shards": ("configurations", "runs", 1.0),
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmarks printing JSON")
    p.add_argument("what", choices=("fleet", "mesh", "mqtt", "serial", "influx", "dashboards", "placement", "scaling",
                                        "shards"),
                   help="fleet: step time; mesh: laser mesh and routing; mqtt: publish throughput; serial: the "
                        "board link; influx: MQTT to InfluxDB; dashboards: every panel query; placement: job policies; "
                        "scaling: messages, bytes, field values and machines per telemetry policy for 100,000 and "
                        "1,000,000 satellites from the measured figures; shards: one process against --shards shard "
                        "processes on the same fleet (throughput ratio, identical telemetry)")
    p.add_argument("--window", type=int, default=330, help="dashboards: seconds of fleet data to fill (default 330)")
    p.add_argument("--duration", type=float, default=60.0, help="mqtt: sim = wall seconds to run (default 60)")
    p.add_argument("--baseline-duration", type=float, default=20.0, help="mqtt: seconds of the bare paho baseline")
    p.add_argument("--contention", type=int, default=0,
                   help="mqtt, influx: CPU-burning neighbour processes during the run; dashboards: time every "
                        "query again beside that many (default 0)")
    p.add_argument("--overload", choices=("wait", "shed"), default="wait", help="mqtt: the twin's overload mode")
    p.add_argument("--speed", default="real", help="mqtt: real, xN or max (default real)")
    p.add_argument("--sim-duration", type=float, help="mqtt: sim seconds to run (default: --duration x speed)")
    p.add_argument("--qos", type=int, choices=(0, 1), default=1, help="mqtt: telemetry QoS (default 1)")
    p.add_argument("--subscribers", type=int, default=1,
                   help="mqtt: mosquitto_sub processes sharing the subscription (default 1)")
    p.add_argument("--inflight", dest="inflight_window", type=int,
                   help="mqtt: the broker's max_inflight_messages and the twin's in-flight window")
    p.add_argument("--count", type=arg_types.positive_int, help="satellites (default: all)")
    p.add_argument("--steps", type=arg_types.positive_int,
                   help="fleet, mesh: timed steps (default 60; 10 for fleet --constellation)")
    p.add_argument("--dt", type=arg_types.positive_seconds, default=1.0, help="fleet, mesh: time step in seconds (default 1)")
    p.add_argument("--constellation", metavar="TOML",
                   help="fleet, shards: step a synthetic constellation (a file or a shipped name, e.g. million) instead of "
                        "the catalogue, without the network model, beside the shipped 9,543 satellites measured "
                        "the same way; reports memory and where a step's time goes")
    p.add_argument("--no-baseline", action="store_true",
                   help="fleet --constellation: skip the shipped catalogue's baseline measurement")
    p.add_argument("--naive-sample", type=int, default=200, help="satellites in the naive skyfield baseline")
    p.add_argument("--hours", type=float, default=24.0, help="placement: sim hours of demand per policy (default 24)")
    p.add_argument("--policies", default="nearest,random,round_robin,aware",
                   help="placement: comma-separated policies (default all four)")
    p.add_argument("--demand-scale", type=float, default=1.0, help="placement: arrival rates times this")
    p.add_argument("--seed", type=int, default=1, help="placement: demand and upset seed (default 1)")
    p.add_argument("--engine", action="store_true",
                   help="placement: place inside the full engine (payload, power, thermal, radiation) instead of "
                        "the proxy fleet")
    p.add_argument("--shards", type=arg_types.positive_int, default=2, help="shards: shard processes (default 2)")
    p.add_argument("--physics-only", action="store_true",
                   help="shards: time the step alone, without encoding the telemetry (the physics a shard does)")
    add_no_progress_option(p)
    p.set_defaults(func=cmd_bench)


def _serial(progress: ProgressFn) -> dict[str, Any]:
    from orbitwin.bench.serial import run_serial_bench

    result = run_serial_bench(progress=progress)
    rows = result["by_baud"].values()
    return {"benchmark": "serial", "round_trip_p50_ms": max(r["round_trip_p50_ms"] for r in rows),
            "round_trip_p99_ms": max(r["round_trip_p99_ms"] for r in rows),
            "frames_per_s": min(r["frames_per_s"] for r in rows), **result}


def cmd_bench(a: argparse.Namespace) -> int:
    with progress_display(f"bench {a.what}", enabled=not a.no_progress) as show:
        result = _run(a, show.task(*_TASKS[a.what]))
    print(json.dumps(result, indent=2))
    return 0


def _run(a: argparse.Namespace, progress: ProgressFn) -> dict[str, Any]:
    """Run the benchmark ``a.what``; ``progress`` follows its main loop."""
    if a.what == "scaling":
        from orbitwin.bench.scaling import scaling_plan

        return scaling_plan(dt_s=a.dt)
    if a.what == "shards":
        from orbitwin.bench.shards import bench_shards

        return bench_shards(count=a.count, constellation=a.constellation, shards=a.shards, steps=a.steps or 60,
                            dt_s=a.dt, encode=not a.physics_only, progress=progress)
    if a.what == "fleet" and a.constellation is not None:
        from orbitwin.bench.scale import bench_scale

        return bench_scale(a.constellation, steps=a.steps or 10, dt_s=a.dt, baseline=not a.no_baseline,
                           progress=progress)
    if a.what == "fleet":
        from orbitwin.bench.fleet import bench_fleet

        return bench_fleet(count=a.count, steps=a.steps or 60, dt_s=a.dt, naive_sample=a.naive_sample, progress=progress)
    if a.what == "mesh":
        from orbitwin.bench.mesh import bench_mesh

        return bench_mesh(steps=a.steps or 60, dt_s=a.dt, count=a.count, progress=progress)
    if a.what == "mqtt":
        from orbitwin.bench.mqtt import bench_mqtt

        return bench_mqtt(duration_s=a.duration, count=a.count, baseline_s=a.baseline_duration,
                          contention=a.contention, overload=a.overload, speed=a.speed,
                          sim_duration_s=a.sim_duration, qos=a.qos, subscribers=a.subscribers, progress=progress,
                          **({} if a.inflight_window is None else {"window": a.inflight_window}))
    if a.what == "serial":
        return _serial(progress)
    if a.what == "placement":
        from orbitwin.bench.placement import bench_placement

        return bench_placement(hours=a.hours, dt_s=a.dt, count=a.count, seed=a.seed,
                               policies=tuple(x for x in a.policies.split(",") if x),
                               demand_scale=a.demand_scale, engine=a.engine, progress=progress)
    if a.what == "dashboards":
        from orbitwin.bench.dashboards import bench_dashboards

        return bench_dashboards(ticks=a.window, count=a.count, contention=a.contention, progress=progress)
    from orbitwin.bench.influx import bench_influx

    return bench_influx(duration_s=a.duration, count=a.count, contention=a.contention, progress=progress)

"""``orbitwin bench shards``: the same fleet stepped by one process and by N shard processes.

Each process does a shard's work per tick: step its satellites and encode every telemetry packet
that is due (per-satellite JSON and the fleet frame, as the MQTT service does; the broker is left
out, so the figure is the twin's own). All processes build their twins first, then start
together; the fleet's throughput is satellite-steps per second over the slowest shard's wall
time. In the same run: one process without the orbit worker (one core: the baseline of the
ratio), the same with the orbit worker (the default for >= 2,000 satellites: two cores), and N
shards without it. At the end each process hashes every satellite's last telemetry, so the report
also says whether the shards' telemetry is identical to the single process's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing as mp
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

ProgressFn = Callable[[float, float], None]


def _shard_work(opts: Any, shard: str | None, orbit_worker: bool, steps: int, warmup: int,
                start: Any, out: Any, encode: bool = True) -> None:
    """One process: build the twin (untimed), wait for ``start``, run ``steps`` ticks, report."""
    from twin.contract.telemetry_encoder import FrameEncoder, PacketEncoder, PacketSchedule
    from twin.contract.topics import Topics
    from twin.runtime.run_loop import build_twin
    from twin.runtime.telemetry_out import prune_schedule

    twin = build_twin(dataclasses.replace(opts, shard=shard, orbit_worker=orbit_worker))
    cat = twin.catalogue
    try:
        schedule = prune_schedule(PacketSchedule(twin.n, twin.dt_s), twin)  # the packets the twin has models for
        topics = Topics()
        ids = cat.norad_ids
        enc = {p: PacketEncoder(p, twin.names, ids, topics) for p in schedule.period}
        frames = {p: FrameEncoder(p, twin.names, ids, topics) for p in schedule.period}
        seq = np.zeros(twin.n, dtype=np.int64)
        messages = 0

        def tick() -> None:
            nonlocal messages
            twin.step()
            if not encode:
                return
            for packet, rows in schedule.due(twin.tick).items():
                if rows.size:
                    cols = enc[packet].columns(twin.tm, rows)
                    messages += len(enc[packet].encode(twin.tm, rows, seq[rows], 1, "t", twin.t_s, cols=cols))
                    frames[packet].encode(twin.tm, rows, seq[rows], 1, "t", twin.t_s, cols=cols)
                    seq[rows] += 1

        for _ in range(warmup):
            tick()
        start.wait()
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        for _ in range(steps):
            tick()
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        digests = {name: hashlib.blake2b(b"".join(np.ascontiguousarray(twin.tm[f][i]).tobytes() for f in sorted(twin.tm)),
                                         digest_size=8).hexdigest() for i, name in enumerate(twin.names)}
        out.put({"shard": shard, "sats": twin.n, "wall_s": wall, "cpu_s": cpu, "messages": messages,
                 "digests": digests})
    finally:
        twin.close()


def _run(opts: Any, shards: list[str | None], orbit_worker: bool, steps: int, warmup: int,
         encode: bool = True) -> list[dict[str, Any]]:
    """Run one process per entry of ``shards`` together; their reports in the same order."""
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(len(shards))
    queues = [ctx.Queue() for _ in shards]
    procs = [ctx.Process(target=_shard_work, args=(opts, s, orbit_worker, steps, warmup, start, q, encode))
             for s, q in zip(shards, queues)]
    for p in procs:
        p.start()
    results = [q.get(timeout=3600) for q in queues]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"a benchmark process ended with exit code {p.exitcode}")
    return results


def _summary(results: list[dict[str, Any]], steps: int, label: str) -> dict[str, Any]:
    sats = sum(r["sats"] for r in results)
    wall = max(r["wall_s"] for r in results)
    return {"config": label, "processes": len(results), "sats": sats, "wall_s": round(wall, 3),
            "step_ms": round(1e3 * wall / steps, 2), "sat_steps_per_s": round(sats * steps / wall),
            "messages_per_s": round(sum(r["messages"] for r in results) / wall),
            "cpu_s": round(sum(r["cpu_s"] for r in results), 3),
            "per_process": [{"shard": r["shard"], "sats": r["sats"], "wall_s": round(r["wall_s"], 3)}
                            for r in results]}


def bench_shards(*, count: int | None = None, constellation: str | None = None, shards: int = 2, steps: int = 60,
                 dt_s: float = 1.0, warmup: int = 3, encode: bool = True,
                 progress: ProgressFn | None = None) -> dict[str, Any]:
    """Throughput of ``shards`` shard processes against one process on the same fleet (see the module);
    ``encode`` False: the step alone (the physics), without encoding the telemetry."""
    from twin.runtime.run_loop import FleetOptions

    opts = FleetOptions(count=count, constellation=constellation, dt_s=dt_s, network=False, seed=1)
    configs: list[tuple[str, list[str | None], bool]] = [
        ("1 process, no orbit worker (1 core)", [None], False),
        ("1 process with the orbit worker (the default: 2 processes)", [None], True),
        (f"{shards} shards, no orbit worker", [f"{k}/{shards}" for k in range(1, shards + 1)], False),
    ]
    out: dict[str, Any] = {"benchmark": "shards", "machine": platform.machine(), "cpus": os.cpu_count(),
                           "steps": steps, "dt_s": dt_s, "telemetry_encoded": encode, "configs": []}
    reports = []
    for k, (label, parts, worker) in enumerate(configs):
        results = _run(opts, parts, worker, steps, warmup, encode)
        reports.append(results)
        out["configs"].append(_summary(results, steps, label))
        if progress is not None:
            progress(k + 1, len(configs))
    single, piped, sharded = out["configs"]
    out["speedup_vs_one_process"] = round(sharded["sat_steps_per_s"] / single["sat_steps_per_s"], 3)
    out["speedup_vs_orbit_worker"] = round(sharded["sat_steps_per_s"] / piped["sat_steps_per_s"], 3)
    base = reports[0][0]["digests"]
    merged = {name: d for r in reports[2] for name, d in r["digests"].items()}
    out["identical_telemetry"] = merged == base and reports[1][0]["digests"] == base
    out["sats_compared"] = len(base)
    out["realtime_factor_sharded"] = round(dt_s * 1e3 / sharded["step_ms"], 3)
    return out

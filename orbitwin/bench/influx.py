"""``orbitwin bench influx``: bridge throughput against raw /write, and the whole fleet end to end.

Part 1 (throughput): the same telemetry, as fleet frames through Mosquitto and the bridge, and as
its line protocol posted straight to ``/write`` in 10,000-line batches: points per second each.
Part 2 (end to end): the full fleet at its default packet rates for ``duration_s`` in real time,
twin + Mosquitto + bridge + influxd on this machine; published vs stored, lost, duplicates and how
long after its tick a point becomes visible to a query.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from twin.contract.telemetry_policy import INFLUX_EXTRA_PER_ROW
from twin.schema.telemetry import PACKET_FIELDS

from bridges.influx.writer import InfluxV1Writer
from bridges.influx.line_protocol import frame_lines
from orbitwin.bench.influxd import InfluxdProcess


def _influxd() -> InfluxdProcess:
    return InfluxdProcess().start()  # the same server harness the tests use


def _frames(count: int | None, ticks: int) -> tuple[list[tuple[str, bytes]], int]:
    """Fleet frames of ``ticks`` ticks of the fleet (as the twin publishes them) and their row count."""
    from twin.core.catalogue import load_catalogue
    from twin.contract.topics import Topics
    from twin.core.design import load_design
    from twin.core.engine import FleetTwin
    from twin.contract.telemetry_encoder import FrameEncoder, PacketSchedule

    cat = load_catalogue() if count is None else load_catalogue().select(count=count)
    twin = FleetTwin(cat, load_design(), dt_s=1.0, orbit_worker=False)
    sched = PacketSchedule(twin.n, 1.0)
    enc = {p: FrameEncoder(p, twin.names, cat.norad_ids, Topics()) for p in PACKET_FIELDS}
    seq = np.zeros(twin.n, dtype=np.int64)
    frames, rows_total = [], 0
    for _ in range(ticks):
        twin.step()
        for p, rows in sched.due(twin.tick).items():
            s = seq[rows].copy()
            seq[rows] += 1
            frames.append(enc[p].encode(twin.tm, rows, s, 1, _iso(twin), twin.t_s, 1))
            rows_total += rows.size
    twin.close()
    return frames, rows_total


def _iso(twin) -> str:  # type: ignore[no-untyped-def]
    from twin.contract.topics import iso_utc
    from twin.core.ephemeris import jd_to_datetime

    return iso_utc(jd_to_datetime(twin.now_jd))


def _bridge(tmp: Path, mqtt_url: str, influx_url: str, db: str, client_id: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orbitwin.cli", "bridge", "influx", "--mqtt", mqtt_url, "--influx", influx_url, "--db", db,
         "--client-id", client_id, "--spool-dir", str(tmp / f"spool-{db}"), "--dead-letter", str(tmp / "dead.jsonl"),
         "--report-every", "0.25", "--json"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _status_reader(proc: subprocess.Popen, state: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                try:
                    state.update(json.loads(line))
                except ValueError:
                    pass
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def throughput(broker, influxd, tmp: Path, ticks: int = 20) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from twin.mqtt import MqttConnection, MqttSettings

    frames, rows = _frames(None, ticks)
    lines = [ln for _, payload in frames for _, _, ln in frame_lines(json.loads(payload))]
    raw_db, bridge_db = f"raw{uuid.uuid4().hex[:6]}", f"br{uuid.uuid4().hex[:6]}"
    for name in (raw_db, bridge_db):
        influxd.create_database(name)
    w = InfluxV1Writer(influxd.url, raw_db)
    # series creation is a one-off cost: both databases get the fleet's series before timing
    first_tick = [ln for _, payload in frames[:6] for _, _, ln in frame_lines(json.loads(payload))]
    for name in (raw_db, bridge_db):
        warm = InfluxV1Writer(influxd.url, name)
        for k in range(0, len(first_tick), 10_000):
            chunk = [h + b" " + str(int(ts) - 86_400 * 10**9).encode()  # a day earlier: new points, same series
                     for h, ts in (ln.rsplit(b" ", 1) for ln in first_tick[k:k + 10_000])]
            warm.write(chunk)
    t0 = time.perf_counter()
    for k in range(0, len(lines), 10_000):
        out = w.write(lines[k:k + 10_000])
        assert out.status == "ok", out
    raw_s = time.perf_counter() - t0
    # the bridge: a persistent session first, so the frames queue for it; then it drains them
    state: dict[str, Any] = {}
    cid = f"bench-bridge-{uuid.uuid4().hex[:6]}"
    proc = _bridge(tmp, broker.url, influxd.url, bridge_db, cid)
    _status_reader(proc, state)
    deadline = time.time() + 30
    while not state.get("connected") and time.time() < deadline:
        time.sleep(0.05)
    conn = MqttConnection(MqttSettings(broker.url), client_id=f"bench-frames-{uuid.uuid4().hex[:6]}")
    conn.start()
    c = conn.client
    # the bridge stores only telemetry of a born run: the birth the frames' run and bseq (1) belong to
    from twin.contract.topics import Topics

    c.publish(Topics().state, json.dumps({"v": 1, "state": "online", "bseq": 1, "run": 1}), qos=1)
    t0 = time.perf_counter()
    for topic, payload in frames:
        c.publish(topic, payload, qos=1)
    while c._out_messages:  # noqa: SLF001 - all frames acknowledged by the broker
        time.sleep(0.01)
    while state.get("points_written", 0) < len(lines) and time.perf_counter() - t0 < 300:
        time.sleep(0.02)
    bridge_s = time.perf_counter() - t0
    conn.stop()
    proc.terminate()
    proc.wait(30)
    fields_per_row = np.mean([len(PACKET_FIELDS[json.loads(p)["packet"]]) for _, p in frames])
    return {
        "points": len(lines), "frames": len(frames),
        "field_values": int(rows * (fields_per_row + INFLUX_EXTRA_PER_ROW)),
        "raw_points_per_s": round(len(lines) / raw_s), "bridge_points_per_s": round(len(lines) / bridge_s),
        "ratio": round(raw_s / bridge_s, 3),
    }


def end_to_end(broker, influxd, tmp: Path, duration_s: float, count: int | None,  # type: ignore[no-untyped-def]
               contention: int = 0, progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
    from twin.core.catalogue import load_catalogue
    from orbitwin.bench.mqtt import start_contention, stop_contention
    from orbitwin.bench.pipeline import expected_counts, ticks_done, twin_proc

    db = f"e2e{uuid.uuid4().hex[:6]}"
    influxd.create_database(db)
    names = list((load_catalogue() if count is None else load_catalogue().select(count=count)).names)
    n = len(names)
    state: dict[str, Any] = {}
    proc = _bridge(tmp, broker.url, influxd.url, db, f"e2e-bridge-{uuid.uuid4().hex[:6]}")
    _status_reader(proc, state)
    deadline = time.time() + 30
    while not state.get("connected") and time.time() < deadline:
        time.sleep(0.05)
    from bridges.influx.line_protocol import time_ns
    from twin.contract.topics import Topics
    from twin.mqtt import MqttConnection, MqttSettings

    ticks_seen: dict[float, float] = {}  # sim t_s -> wall time its fleet summary arrived
    start_ns: list[int] = []
    twin_status: dict[str, Any] = {}  # the twin's last fleet/status: what it says about its own lag
    topics = Topics()

    def on_message(msg: Any) -> None:
        d = json.loads(msg.payload)
        if msg.topic == topics.status:
            twin_status.update(d)
            return
        ticks_seen[d["t_s"]] = time.time()
        if not start_ns:
            start_ns.append(time_ns(d["t"]) - int(round(d["t_s"] * 1e9)))

    sub = MqttConnection(MqttSettings(broker.url), client_id=f"bench-summary-{uuid.uuid4().hex[:6]}",
                         on_message=on_message,
                         on_connect=lambda c: c.subscribe([topics.summary, topics.status], qos=0))
    sub.start()
    neighbours = start_contention(contention, duration_s + 600)
    twin = twin_proc(tmp, broker.url, n, "--duration", str(duration_s), "--speed", "real").start()
    probe_sats = names[:: max(1, n // 5)][:5]
    w = InfluxV1Writer(influxd.url, db)
    visible: list[tuple[float, int]] = []  # (wall time a query first saw it, point time ns)
    last_seen: dict[str, int] = {}
    t_start = time.time()
    popen = twin.popen
    assert popen is not None  # started above
    while popen.poll() is None and time.time() - t_start < duration_s + 120:
        for sat in probe_sats:
            rows = w.query(f"SELECT last(\"seq\") FROM hk WHERE sat='{sat}'")
            if rows:
                t_ns = int(rows[0]["time"])
                if last_seen.get(sat) != t_ns:
                    if sat in last_seen:
                        visible.append((time.time(), t_ns))
                    last_seen[sat] = t_ns
        if progress is not None:
            progress(min(time.time() - t_start, duration_s), duration_s)
        time.sleep(0.05)
    stop_contention(neighbours)
    sub.stop()
    # the tick schedule: tick t_s was due at wall0 + t_s, wall0 from the earliest summary
    wall0 = min(wall - t for t, wall in ticks_seen.items()) if ticks_seen else float("nan")
    lags = [seen - (wall0 + (t_ns - start_ns[0]) / 1e9) for seen, t_ns in visible] if start_ns else []
    ticks = ticks_done(twin)
    counts = expected_counts(n, ticks)
    published = int(counts.sum())

    def totals() -> tuple[int, int]:
        stored = distinct = 0
        for m in PACKET_FIELDS:
            for r in w.query(f'SELECT count("seq") AS c FROM {m} GROUP BY "sat"') or []:
                stored += int(r["c"])
            for r in w.query(f'SELECT count(distinct("seq")) AS d FROM {m} GROUP BY "sat"') or []:
                distinct += int(r["d"])
        return stored, distinct

    # settle: the bridge has mapped every published row, its queues are empty, and counts are stable
    deadline = time.time() + 180
    prev = (-1, -1)
    while time.time() < deadline:
        if state.get("telemetry_rows", 0) >= published and not state.get("inbox", 1) and not state.get("spool_points", 1):
            now = totals()
            if now == prev:
                break
            prev = now
        time.sleep(0.5)
    stored, distinct = totals()
    proc.terminate()
    proc.wait(30)
    lag = np.array(lags) if lags else np.array([np.nan])
    sched_fields = _field_values(n, ticks)
    return {
        "sats": n, "duration_s": duration_s, "ticks": ticks, "published": published, "stored": stored,
        "lost": published - distinct, "duplicates": stored - distinct,
        "field_values_per_s": round(sched_fields / max(ticks, 1)),
        "queryable_lag_p50_s": round(float(np.nanpercentile(lag, 50)), 3),
        "queryable_lag_p99_s": round(float(np.nanpercentile(lag, 99)), 3), "lag_samples": int(np.isfinite(lag).sum()),
        "contention_procs": contention,
        # the twin's own account: ticks it held back (lag) and when its messages reached the broker;
        # refused must be 0 (it waits instead of refusing)
        "twin_reported": {k: twin_status.get(k) for k in ("max_lag_s", "max_publish_lag_s", "backpressure_wait_s")}
        | {"refused": (twin_status.get("mqtt") or {}).get("refused_queue_full")},
        "bridge_status": {k: state.get(k) for k in ("points_written", "dead_letters", "gaps_detected", "gaps_filled",
                                                    "gaps_unrecoverable", "spool_dropped_points",
                                                    "write_latency_p99_ms")},
    }


def _field_values(n: int, ticks: int) -> int:
    from twin.contract.telemetry_encoder import PacketSchedule

    sched = PacketSchedule(n, 1.0)
    return sum(rows.size * (len(PACKET_FIELDS[p]) + INFLUX_EXTRA_PER_ROW)
               for k in range(1, ticks + 1) for p, rows in sched.due(k).items())


def bench_influx(duration_s: float = 60.0, count: int | None = None, throughput_ticks: int = 20,
                 contention: int = 0, progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
    """Bridge throughput vs raw /write, then the fleet end to end (``contention`` CPU-burning neighbours
    run beside the end-to-end part; ``progress(done, total)``: its wall seconds, up to ``duration_s``)."""
    from twin.runtime.embedded_broker import MosquittoProcess

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = MosquittoProcess(persistence=False).start()
        influxd = _influxd()
        try:
            result: dict[str, Any] = {"benchmark": "influx"}
            result["throughput"] = throughput(broker, influxd, tmp, throughput_ticks)
            result["bridge_points_per_s"] = result["throughput"]["bridge_points_per_s"]
            result["raw_points_per_s"] = result["throughput"]["raw_points_per_s"]
            result["ratio"] = result["throughput"]["ratio"]
            result["end_to_end"] = end_to_end(broker, influxd, tmp, duration_s, count, contention, progress)
            return result
        finally:
            broker.stop()
            influxd.stop()


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(bench_influx(float(os.environ.get("DURATION", "60"))), indent=2))

"""``orbitwin bench mqtt``: the whole fleet on a real local Mosquitto.

The twin runs at its default packet rates against a Mosquitto child process; a subscriber in
its own process counts every telemetry message, checks (satellite, sequence) for loss and
duplicates, and measures publish lag (arrival wall time minus the wall time the tick was due).
A bare paho-mqtt loop publishing the same number of equally sized payloads is measured in the
same run as the baseline (real time only).

``contention`` busy-loops that many neighbour processes beside the twin for the run (bounded in
time and killed at the end); ``overload`` is the twin's mode (``wait``: nothing refused, the twin
reports its lag; ``shed``: shed counts per packet are compared with the gaps the subscriber saw);
``speed`` ``max`` with ``sim_duration_s`` runs a given stretch of sim time as fast as the link
delivers (lag is then not measured, gaps are).
"""

from __future__ import annotations

import multiprocessing as mp
import re
import statistics
import time
from typing import Any

import numpy as np

BROKER_MAX_INFLIGHT = 1000
_T_S = re.compile(rb'"t_s":([0-9.eE+-]+)')
_SEQ = re.compile(rb'"seq":(\d+)')


def _subscriber(host: str, port: int, topic: str, ready: Any, stop: Any, wall0: Any, speed: float,
                out: Any, keep_seen: bool = False) -> None:  # pragma: no cover - runs in a child process
    """Count messages with the C client ``mosquitto_sub`` (QoS 1) and check them in Python.

    A Python paho subscriber tops out near 11,000 messages/s on this class of machine, below
    what the fleet publishes; the C client does not, so the bench measures the twin, not the
    counter.
    """
    import shutil
    import subprocess
    import threading

    seen: dict[bytes, set[int]] = {}
    lags: list[float] = []
    state = {"received": 0, "dups": 0, "last": time.time()}
    exe = shutil.which("mosquitto_sub")
    if exe is None:
        raise RuntimeError("mosquitto_sub (Debian package mosquitto-clients) is needed for the bench")
    proc = subprocess.Popen([exe, "-h", host, "-p", str(port), "-t", topic, "-q", "1", "-F", "%t %p",
                             "-i", f"bench-sub-{time.time_ns()}"], stdout=subprocess.PIPE, bufsize=1 << 20)

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.time()
            state["received"] += 1
            state["last"] = now
            topic_b, _, p = line.partition(b" {")  # satellite names may hold spaces ("... [DTC]"); payloads start with {
            m_t, m_s = _T_S.search(p), _SEQ.search(p)
            if m_t is None or m_s is None:
                continue
            key = topic_b.split(b"/tm/")[0]
            seq = int(m_s.group(1))
            s = seen.setdefault(key, set())
            if seq in s:
                state["dups"] += 1
            s.add(seq)
            if wall0.value > 0:
                lags.append(now - (wall0.value + float(m_t.group(1)) / speed))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    time.sleep(0.5)  # mosquitto_sub connects and subscribes
    ready.set()
    stop.wait()
    while time.time() - state["last"] < 2.0:  # drain: stop when nothing arrived for 2 s
        time.sleep(0.2)
    proc.terminate()
    proc.wait(5)
    th.join(5)
    unique = sum(len(v) for v in seen.values())
    lag = np.array(lags) if lags else np.zeros(1)
    out.put({"received": state["received"], "unique": unique, "duplicates": state["dups"],
             "lag_p50_s": float(np.percentile(lag, 50)), "lag_p99_s": float(np.percentile(lag, 99)),
             "lag_max_s": float(lag.max()),
             "seen": {k.rsplit(b"/", 1)[-1].decode(): v for k, v in seen.items()} if keep_seen else None})


def _with_subscriber(host: str, port: int, topic: str, speed: float, body: Any,
                     keep_seen: bool = False) -> tuple[Any, dict[str, Any]]:
    ctx = mp.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    wall0 = ctx.Value("d", 0.0)
    proc = ctx.Process(target=_subscriber, args=(host, port, topic, ready, stop, wall0, speed, out, keep_seen),
                       daemon=True)
    proc.start()
    if not ready.wait(20):
        raise RuntimeError("bench subscriber did not connect")
    try:
        result = body(wall0)
    finally:
        stop.set()
    sub = out.get(timeout=600)
    proc.join(10)
    return result, sub


def _bare_paho(url: str, messages: list[tuple[str, bytes]], rate_per_s: float, wall0: Any,
               duration_s: float) -> dict[str, Any]:
    """Publish pre-encoded messages at the twin's rate with a plain paho loop (no twin work)."""
    from twin.mqtt import MqttConnection, MqttSettings

    # paho's stock client (lean=False) with its default window, as the baseline has always been measured
    conn = MqttConnection(MqttSettings(url, keepalive_s=30), client_id=f"bench-bare-{time.time_ns()}",
                          max_inflight=20, max_queued=60_000, lean=False)
    conn.start()
    c = conn.client  # the bare paho client: publish in a loop, nothing else
    per_tick = int(round(rate_per_s))
    t0 = time.time()
    wall0.value = t0
    sent = 0
    ticks = int(duration_s)
    for k in range(1, ticks + 1):
        due = t0 + k
        now = time.time()
        if due > now:
            time.sleep(due - now)
        t_s = float(k)
        stamp = f'"t_s":{t_s!r}'.encode()
        for j in range(per_tick):
            topic, payload = messages[(sent + j) % len(messages)]
            payload = _T_S.sub(stamp, payload, count=1)
            payload = _SEQ.sub(f'"seq":{sent + j}'.encode(), payload, count=1)
            c.publish(topic + "/bare", payload, qos=1)
        sent += per_tick
    elapsed = time.time() - t0
    while c._out_messages and time.time() - t0 < elapsed + 30:  # noqa: SLF001 - wait for acks
        time.sleep(0.05)
    conn.stop()
    return {"published": sent, "elapsed_s": elapsed}


def start_contention(procs: int, seconds: float) -> list[Any]:
    """``procs`` CPU-burning neighbour processes, each ending by itself after ``seconds`` at the latest."""
    import subprocess
    import sys

    code = f"import time\nend = time.monotonic() + {seconds!r}\nwhile time.monotonic() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(max(procs, 0))]


def stop_contention(children: list[Any]) -> None:
    """Kill the neighbours started by :func:`start_contention` (each by its own handle)."""
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)


def gaps_per_packet(schedule: Any, names: list[str], ticks: int, final_seq: np.ndarray,
                    seen: dict[str, set[int]]) -> dict[str, int]:
    """Per packet, how many scheduled per-satellite messages (ticks 1..``ticks``) the subscriber never saw."""
    missing = {}
    for i, name in enumerate(names):
        got = seen.get(name, set())
        if len(got) < int(final_seq[i]):
            missing[i] = set(range(int(final_seq[i]))) - got
    out: dict[str, int] = {}
    if not missing:
        return out
    watch = np.zeros(len(names), dtype=bool)
    watch[list(missing)] = True
    seq = np.zeros(len(names), dtype=np.int64)
    for k in range(1, ticks + 1):
        for packet, rows in schedule.due(k).items():
            for i in rows[watch[rows]].tolist():
                if int(seq[i]) in missing[i]:
                    out[packet] = out.get(packet, 0) + 1
            seq[rows] += 1
    return out


def bench_mqtt(duration_s: float = 60.0, count: int | None = None, baseline_s: float = 20.0, *,
               contention: int = 0, overload: str = "wait", speed: str = "real", sim_duration_s: float | None = None,
               qos: int = 1) -> dict[str, Any]:
    """Run the fleet against a local Mosquitto; JSON-able results.

    ``duration_s``: sim = wall seconds in real time; ``speed`` ``max`` runs ``sim_duration_s``
    (default ``duration_s``) sim seconds as fast as the link delivers. ``contention``: CPU-burning
    neighbour processes during the run. ``overload``/``qos``: the twin's link settings.
    """
    from twin.contract.telemetry_encoder import PacketSchedule
    from twin.core.catalogue import load_catalogue
    from twin.core.design import load_design
    from twin.core.engine import FleetTwin
    from twin.mqtt import MqttSettings
    from twin.runtime.clock import Pacer, parse_speed
    from twin.runtime.embedded_broker import MosquittoProcess
    from twin.runtime.mqtt_link import LinkSettings, MqttLink
    from twin.runtime.mqtt_service import TwinService
    from twin.schema.telemetry import PACKET_FIELDS

    pace = parse_speed(speed)
    sim_s = sim_duration_s if sim_duration_s is not None else duration_s
    if pace is not None:
        sim_s = duration_s * pace if sim_duration_s is None else sim_duration_s
    cat = load_catalogue()
    if count is not None:
        cat = cat.select(count=count)
    # Mosquitto's max_inflight_messages is also the Receive Maximum it announces to MQTT 5 clients:
    # 1,000 lets the twin's door keep that many QoS 1 messages in flight (fewer, larger reads and
    # writes on both sides); the bare paho baseline keeps paho's window of 20 whatever the broker allows
    broker = MosquittoProcess(persistence=False, max_inflight_messages=BROKER_MAX_INFLIGHT)
    broker.start()
    result: dict[str, Any] = {"benchmark": "mqtt", "overload": overload, "speed": speed, "qos": qos,
                              "contention_procs": contention, "broker_max_inflight_messages": BROKER_MAX_INFLIGHT}
    neighbours: list[Any] = []
    sample: list[tuple[str, bytes]] = []
    try:
        twin = FleetTwin(cat, load_design(), dt_s=1.0, seed=0)
        schedule = PacketSchedule(twin.n, twin.dt_s)
        link = MqttLink(MqttSettings(broker.url, keepalive_s=30, session_expiry_s=0),
                        LinkSettings(qos=qos, overload=overload))
        service = TwinService(twin, link, schedule, replay_bytes=64 * 2**20)
        link.start()
        topic = service.topics.tm("+", "+")

        def run_twin(wall0: Any) -> dict[str, Any]:
            pacer = Pacer(pace)
            neighbours.extend(start_contention(contention, 2 * (sim_s / (pace or 1.0)) + 600))
            wall0.value = time.time()
            t0 = time.perf_counter()
            stats = service.run(pacer, duration_s=sim_s)
            elapsed = time.perf_counter() - t0
            deadline = time.time() + 60
            while link.outstanding > 0 and time.time() < deadline:
                time.sleep(0.05)
            stop_contention(neighbours)
            return {"stats": stats, "elapsed": elapsed}

        out, sub = _with_subscriber(broker.host, broker.port, topic, pace or 1.0, run_twin, keep_seen=True)
        stats = out["stats"]
        published = int(service.counters["telemetry"])
        shed = dict(service.out.shed)
        scheduled = int(service.seq.sum())  # every per-satellite message due, published or shed
        gaps = gaps_per_packet(schedule, list(twin.names), stats.ticks, service.seq, sub["seen"] or {})
        fields_per_msg = {p: len(f) for p, f in PACKET_FIELDS.items()}
        field_values = sum(int(np.sum(schedule.due(k).get(p, np.zeros(0)).size)) * fields_per_msg[p]
                           for k in range(1, min(stats.ticks, 600) + 1) for p in schedule.period)
        field_values = field_values * stats.ticks / max(min(stats.ticks, 600), 1)
        status = service.status()
        result.update({
            "sats": twin.n,
            "rate_hz": max(schedule.rates.values()),
            "packet_rates_hz": schedule.rates,
            "duration_s": round(out["elapsed"], 2),
            "sim_duration_s": sim_s,
            "ticks": stats.ticks,
            "scheduled": scheduled,
            "published": published,
            "received": sub["received"],
            "unique_received": sub["unique"],
            "lost": published - sub["unique"],
            "gaps_seen": sum(gaps.values()),
            "gaps_seen_per_packet": gaps,
            "shed": sum(shed.values()),
            "shed_per_packet": shed,
            "shed_equals_gaps": shed == gaps,
            "duplicates": sub["duplicates"],
            "refused_queue_full": link.stats.refused_queue_full,
            "lost_qos0_disconnected": link.stats.lost_qos0_disconnected,
            "backpressure_wait_s": status["backpressure_wait_s"],
            "max_tick_lag_s": round(stats.max_lag_s, 4),
            "twin_max_publish_lag_s": status["max_publish_lag_s"],
            "mean_tick_work_ms": round(stats.step_s_total / max(stats.ticks, 1) * 1e3, 2),
            "msgs_per_s": round(published / out["elapsed"], 1),
            "field_values_per_s": round(field_values / out["elapsed"], 1),
        })
        if pace is not None:
            result.update({
                "publish_lag_p50_s": round(sub["lag_p50_s"], 4),
                "publish_lag_p99_s": round(sub["lag_p99_s"], 4),
                "publish_lag_max_s": round(sub["lag_max_s"], 4),
                # the twin's own account of its lag against what the subscriber measured
                "reported_vs_measured_lag_max_diff_s": round(abs(status["max_publish_lag_s"] - sub["lag_max_s"]), 4),
            })
        for p, rows in schedule.due(0).items():
            sample += service.encoders[p].encode(twin.tm, rows[:200], np.zeros(min(200, rows.size), np.int64),
                                                  link.bseq, "2026-01-01T00:00:00.000Z", 0.0)
        link.stop()
        twin.close()
        if pace == 1.0 and baseline_s > 0 and contention == 0:
            rate = published / max(out["elapsed"], 1.0)
            bare_topic = service.topics.tm("+", "+") + "/bare"
            bare, bare_sub = _with_subscriber(
                broker.host, broker.port, bare_topic, 1.0,
                lambda wall0: _bare_paho(broker.url, sample, rate, wall0, baseline_s))
            result["baseline_bare_paho"] = {
                "duration_s": baseline_s,
                "published": bare["published"],
                "received": bare_sub["received"],
                "lost": bare["published"] - bare_sub["unique"],
                "publish_lag_p99_s": round(bare_sub["lag_p99_s"], 4),
                "msgs_per_s": round(bare["published"] / bare["elapsed_s"], 1),
            }
            result["msgs_per_s_ratio_vs_bare"] = round(
                result["msgs_per_s"] / max(result["baseline_bare_paho"]["msgs_per_s"], 1e-9), 3)
            result["lag_p99_ratio_vs_bare"] = round(result["publish_lag_p99_s"] / max(bare_sub["lag_p99_s"], 1e-6), 2)
    finally:
        stop_contention(neighbours)
        broker.stop()
    result["median_payload_bytes"] = int(statistics.median(len(p) for _, p in sample)) if sample else None
    return result

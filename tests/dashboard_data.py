"""Realistic InfluxDB contents for the dashboard tests: a short real twin run mapped like the bridge does.

50 satellites, 300 s at dt 5, ending 60 s in the future (so alert rules' ``now() - 30s`` windows
still hold data a minute after filling), with compute placement on (the aware policy at the default
demand: jobs complete, so the compute dashboard and rules have data; ``set_payload_load`` is then
refused, the jobs load the payloads). Telemetry goes through the fleet-frame encoder and
``bridges.influx.line_protocol.frame_lines``; events like ``twin/runtime/mqtt_service.py`` publishes them, through
``event_line``; the fleet summary (and its grid) through ``summary_lines``; each city-pair latency
matrix through the latency frame encoder and ``latency_lines``; ``twin`` and ``bridge``
status points with the fields ``TwinService.status()`` and ``InfluxBridge.status()`` carry.
Injected: a latch-up, a hang and a throttle command on one satellite, a stuck sensor beyond each
red limit of every float field on its own satellite (so every per-satellite alert has a satellite
in alarm) and a hardware board (a stub backend) on another, which goes lost -> linked ->
diverging, latched, hung (the red cases of the int and bool fields).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridges.influx.line_protocol import event_line, flat_line, frame_lines, latency_lines, runs_line, summary_lines
from twin.contract.network_frames import LatencyEncoder
from twin.contract.topics import Topics, header, iso_utc
from twin.core.payload import HardwareSample
from twin.runtime.run_loop import FleetOptions, build_twin
from twin.schema.telemetry import LIMITED_FIELDS, MODE_LOST, MODE_NOMINAL
from twin.core.ephemeris import jd_to_datetime
from twin.runtime.status_table import GridPacer, fleet_summary
from twin.contract.telemetry_encoder import FrameEncoder, PacketSchedule

RUN, BSEQ = 7, 7


class StubBoard:
    """A board backend: absent for the first samples, then linked and far from the commanded load."""

    board = "bench-1"

    def __init__(self) -> None:
        self.calls = 0

    def sample(self) -> HardwareSample | None:
        self.calls += 1
        if self.calls <= 6:
            return None
        return HardwareSample(util=0.4, power_w=900.0, throughput_tops=40.0, ecc_corrected_total=self.calls,
                              ecc_uncorrectable_total=1, latched_mask=0b10 if self.calls > 20 else 0,
                              hung=self.calls > 40)

    def command(self, name: str, args: dict[str, Any]) -> None:
        pass

    def radiation_effect(self, kind: str, device: int, count: int) -> None:
        pass


@dataclass
class Filled:
    """What was written: time range (ns), satellites of interest and which one is red for what."""

    start_ns: int
    end_ns: int
    names: list[str]
    subject: str
    board_sat: str
    red_sats: dict[tuple[str, str], str] = field(default_factory=dict)
    fleet_fields: set[str] = field(default_factory=set)
    points: int = 0
    live_at_grid: int = 0  # satellites with a position when the last fleet grid was made (what it counts)


def _ns(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def fill(influxd: Any, db: str, count: int = 50, duration_s: float = 300.0, dt_s: float = 5.0) -> Filled:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    start = now - dt.timedelta(seconds=duration_s - 60)
    twin = build_twin(FleetOptions(count=count, dt_s=dt_s, seed=3, start=start.isoformat(), compute_policy="aware",
                                   compute_demand_scale=1.0))
    names = list(twin.names)
    live = [n for i, n in enumerate(names) if twin.mode[i] == MODE_NOMINAL]  # SGP4 failures are lost from the start
    subject, board_sat = live[1], live[2]
    twin.submit("fault", "latchup", {"device": 3}, subject)
    twin.submit("fault", "payload_hang", {}, subject, at_s=30)
    # SEU events whatever the orbit does (natural ones depend on SAA passes, i.e. on the start time)
    twin.submit("fault", "seu_burst", {"count": 50}, subject, at_s=50)
    twin.submit("command", "throttle", {"factor": 0.5}, subject, at_s=20)
    twin.submit("command", "set_payload_load", {"load": 0.9}, "*", at_s=40)
    twin.attach_backend(twin.index[board_sat], StubBoard())
    red: dict[tuple[str, str], str] = {}
    k = 5
    for f in LIMITED_FIELDS:
        for side, v in (("high", f.limits.red_high), ("low", f.limits.red_low)):  # type: ignore[union-attr]
            if v is None:
                continue
            if f.dtype != "float":  # a stuck int/bool sensor turns the column into floats (the bridge rejects it)
                red[(f.name, side)] = board_sat  # the stub board latches, hangs and diverges
                continue
            val = v * 1.05 + 1e-6 if side == "high" else v * 0.9
            twin.submit("fault", "sensor_stuck", {"field": f.name, "value": val}, live[k], at_s=60)
            red[(f.name, side)] = live[k]
            k += 1
    sched = PacketSchedule(twin.n, twin.dt_s)
    topics = Topics()
    enc = {p: FrameEncoder(p, twin.names, twin.catalogue.norad_ids, topics) for p in sched.period}
    seq = np.zeros(twin.n, dtype=np.int64)
    ev_seq = np.zeros(twin.n + 1, dtype=np.int64)
    lines: list[bytes] = []
    fleet_fields: set[str] = set()
    pacer = GridPacer()
    latency, latency_t_s = LatencyEncoder(topics), -np.inf
    live_at_grid = 0
    counters = {"telemetry": 0, "frames": 0, "events": 0}
    t_iso = iso_utc(start)
    for tick in range(int(duration_s / dt_s)):
        twin.step()
        t = jd_to_datetime(twin.now_jd)
        t_iso = iso_utc(t)
        for packet, rows in sched.due(twin.tick).items():
            s = seq[rows].copy()
            seq[rows] += 1
            _, frame = enc[packet].encode(twin.tm, rows, s, BSEQ, t_iso, twin.t_s, RUN)
            lines += [line for _, _, line in frame_lines(json.loads(frame))]
            counters["telemetry"] += len(rows)
            counters["frames"] += 1
        for ev in twin.drain_events():
            slot = ev.sat if ev.sat >= 0 else twin.n
            sat = twin.names[ev.sat] if ev.sat >= 0 else None
            body = header(sat, t_iso, twin.t_s, BSEQ, run=RUN, seq=int(ev_seq[slot]), kind=ev.kind, name=ev.name,
                          severity=ev.severity, detail=dict(ev.detail))
            ev_seq[slot] += 1
            lines.append(event_line(json.loads(json.dumps(body, default=str))))
            counters["events"] += 1
        with_grid = pacer.due(twin.t_s)
        summary = header(None, t_iso, twin.t_s, BSEQ, tick=twin.tick, **fleet_summary(twin, with_grid=with_grid))
        if with_grid:  # satellites with a position, counted here (what the latest grid must add up to)
            live_at_grid = int(np.sum((twin.mode != MODE_LOST) & np.isfinite(twin.tm["lat_deg"])
                                      & np.isfinite(twin.tm["lon_deg"])))
        fleet_fields |= {k for k, v in summary.items() if k not in ("v", "t", "t_s", "bseq")
                         and isinstance(v, (int, float)) and v == v}
        lines += summary_lines(summary, _ns(t), {"run": str(RUN)})
        if twin.city_rtt is not None and twin.city_rtt.t_s > latency_t_s:  # each city matrix once, as the bridge stores it
            latency_t_s = twin.city_rtt.t_s
            lines += latency_lines(json.loads(latency.encode(twin.city_rtt, t_iso, RUN, BSEQ, twin.tick)[1]))
        if tick % 2 == 0:
            lines.append(flat_line("twin", header(None, t_iso, twin.t_s, BSEQ, **_twin_status(twin.tick, counters)),
                                   _ns(t), {"run": str(RUN)}, skip=("v", "t", "t_s")))
            lines.append(flat_line("bridge", _bridge_status(tick, len(lines)), _ns(t), tags={"bridge": "influx", "run": str(RUN)},
                                   skip=()))
    end = jd_to_datetime(twin.now_jd)
    lines.append(runs_line(RUN, {"sim_start_ms": _ns(start) // 10**6, "sim_latest_ms": _ns(end) // 10**6,
                                 "wall_start_ms": _ns(now) // 10**6, "sats": count, "dt_s": dt_s}, _ns(now)))
    for k in range(0, len(lines), 5000):
        influxd.write(b"\n".join(lines[k:k + 5000]).decode(), db)
    twin.close()
    return Filled(_ns(start), _ns(end), names, subject, board_sat, red, fleet_fields, len(lines), live_at_grid)


def _twin_status(tick: int, counters: dict[str, int]) -> dict[str, Any]:
    """The shape of ``TwinService.status()``."""
    return {"tick": tick, "step_ms": 3.2, "lag_s": 0.01 * (tick % 7), "max_lag_s": 0.07,
            "mqtt": {"connected": True, "bseq": BSEQ, "connects": 1, "published": counters["telemetry"] * 2,
                     "acked": counters["telemetry"] * 2 - 3, "outstanding": 3, "refused_queue_full": 0, "rebirths": 0},
            "counters": dict(counters), "replay_buffer_bytes": 1000 * tick}


def _bridge_status(k: int, points: int) -> dict[str, Any]:
    """The shape of ``InfluxBridge.status()``."""
    return {"messages": 10 * k, "acked": 10 * k, "telemetry_rows": points, "points_written": points,
            "batches": k, "write_latency_p50_ms": 4.0, "write_latency_p99_ms": 21.5, "spool_bytes": 0,
            "spool_points": 0 if k < 20 else 120, "spool_dropped_points": 0, "dead_letters": k // 10,
            "gaps_detected": 1, "missing_now": 0, "gaps_filled": 1, "gaps_unrecoverable": 0, "duplicates_seen": 2,
            "inbox": 0, "db_ok": True, "connected": True}

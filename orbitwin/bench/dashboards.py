"""``orbitwin bench dashboards``: every dashboard query over 5+ minutes of the whole fleet.

The fleet runs faster than real time; its telemetry, events and fleet summaries are mapped
exactly as the InfluxDB bridge maps them and written straight into a private influxd. Then every
query of every panel, annotation and template variable runs with Grafana's variables substituted
for a window holding all of it, each timed (best of ``repeats``).
"""

from __future__ import annotations

import json
import re
import statistics
import time
import uuid
from typing import Any

import numpy as np

from twin.schema.telemetry import PACKET_FIELDS

from bridges.influx.writer import InfluxV1Writer
from bridges.influx.line_protocol import event_line, flat_line, frame_lines, time_ns


def _fill(w: InfluxV1Writer, ticks: int, count: int | None) -> dict[str, Any]:
    from twin.core.catalogue import load_catalogue
    from twin.contract.topics import Topics, header, iso_utc
    from twin.core.design import load_design
    from twin.core.engine import FleetTwin
    from twin.core.ephemeris import jd_to_datetime
    from twin.runtime.status_table import fleet_summary
    from twin.contract.telemetry_encoder import FrameEncoder, PacketSchedule

    cat = load_catalogue() if count is None else load_catalogue().select(count=count)
    twin = FleetTwin(cat, load_design(), dt_s=1.0, seed=0)
    sched = PacketSchedule(twin.n, 1.0)
    enc = {p: FrameEncoder(p, twin.names, cat.norad_ids, Topics()) for p in PACKET_FIELDS}
    seq = np.zeros(twin.n, dtype=np.int64)
    ev_seq = np.zeros(twin.n + 1, dtype=np.int64)
    # a few faults and commands so that annotation panels have something to show
    for k, kind in enumerate(("latchup", "payload_hang", "heatpipe_degradation")):
        args = {"efficiency": 0.1} if kind == "heatpipe_degradation" else {}
        twin.submit("fault", kind, args, twin.names[k * 97 % twin.n], at_s=30.0 + k)
    twin.submit("command", "throttle", {"factor": 0.5}, twin.names[5 % twin.n], at_s=60.0)
    points = 0
    buf: list[bytes] = []
    t0 = time.perf_counter()
    start_ns = end_ns = 0
    for _ in range(ticks):
        twin.step()
        t_iso = iso_utc(jd_to_datetime(twin.now_jd))
        t_ns = time_ns(t_iso)
        start_ns = start_ns or t_ns
        end_ns = t_ns
        for p, rows in sched.due(twin.tick).items():
            s = seq[rows].copy()
            seq[rows] += 1
            _, payload = enc[p].encode(twin.tm, rows, s, 1, t_iso, twin.t_s, 1)
            buf.extend(line for _, _, line in frame_lines(json.loads(payload)))
        for ev in twin.drain_events():
            slot = ev.sat if ev.sat >= 0 else twin.n
            body = header(twin.names[ev.sat] if ev.sat >= 0 else None, t_iso, twin.t_s, 1, run=1,
                          seq=int(ev_seq[slot]), kind=ev.kind, name=ev.name, severity=ev.severity, detail=ev.detail)
            ev_seq[slot] += 1
            buf.append(event_line(json.loads(json.dumps(body, default=float))))
        buf.append(flat_line("fleet", fleet_summary(twin), t_ns))
        buf.append(flat_line("twin", {"tick": twin.tick, "step_ms": 7.0, "lag_s": 0.0,
                                      "mqtt": {"published": int(seq.sum()), "outstanding": 0}}, t_ns))
        buf.append(flat_line("bridge", {"points_written": points, "spool_points": 0, "dead_letters": 0,
                                        "gaps_detected": 0, "write_latency_p99_ms": 50.0}, t_ns,
                             tags={"bridge": "influx"}))
        if len(buf) >= 10_000:
            for k in range(0, len(buf), 10_000):
                out = w.write(buf[k:k + 10_000])
                assert out.ok, out
            points += len(buf)
            buf = []
    if buf:
        assert w.write(buf).ok
        points += len(buf)
    fill_s = time.perf_counter() - t0
    names = list(twin.names)
    twin.close()
    return {"points": points, "fill_s": round(fill_s, 1), "start_ns": start_ns, "end_ns": end_ns, "names": names}


def _substitute(q: str, start_ns: int, end_ns: int, sat: str, interval: str) -> str:
    start_ms, end_ms = start_ns // 10**6, end_ns // 10**6 + 1000
    q = q.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms").replace("$__interval", interval)
    q = q.replace("${__to}", str(end_ms)).replace("${__from}", str(start_ms))
    sat_re = re.sub(r"([-\[\]{}()*+?.,\\^$|#\s/])", r"\\\1", sat)
    q = q.replace("$hil_sat", f"({sat_re})").replace("$sat", sat_re)
    return q


def bench_dashboards(ticks: int = 330, count: int | None = None, repeats: int = 3) -> dict[str, Any]:
    """Fill ``ticks`` seconds of the fleet, then time every dashboard query (JSON-able results)."""
    from dashboards import build as gen

    from orbitwin.bench.influxd import InfluxdProcess  # the same server harness the tests use

    influxd = InfluxdProcess().start()
    try:
        db = f"dash{uuid.uuid4().hex[:6]}"
        influxd.create_database(db)
        w = InfluxV1Writer(influxd.url, db)
        filled = _fill(w, ticks, count)
        panels: dict[str, float] = {}
        for name, d in gen.dashboards().items():
            queries = []
            for p in _panels(d):
                queries += [(f"{name}/{p['title']}", t["query"]) for t in p.get("targets", [])]
            queries += [(f"{name}/annotation {a['name']}", a["query"]) for a in d["annotations"]["list"][1:]]
            queries += [(f"{name}/variable {v['name']}", v["query"] if isinstance(v["query"], str) else v["query"]["query"])
                        for v in d.get("templating", {}).get("list", []) if v.get("type") == "query"]
            for title, q in queries:
                sql = _substitute(q, filled["start_ns"], filled["end_ns"], filled["names"][0], "10s")
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    w.query(sql)
                    times.append((time.perf_counter() - t0) * 1e3)
                panels[title] = round(min(times), 2) if title not in panels else max(panels[title], round(min(times), 2))
        slowest = max(panels, key=lambda title: panels[title])
        # baseline: the simplest query on the same data (one satellite's last point)
        t0 = time.perf_counter()
        w.query(f"SELECT last(\"battery_soc\") FROM hk WHERE \"sat\" = '{filled['names'][0]}'")
        baseline_ms = (time.perf_counter() - t0) * 1e3
        return {
            "benchmark": "dashboards", "sats": len(filled["names"]), "window_s": round((filled["end_ns"] - filled["start_ns"]) / 1e9),
            "points": filled["points"], "fill_s": filled["fill_s"], "queries": len(panels),
            "slowest_panel": slowest, "slowest_panel_ms": panels[slowest],
            "median_panel_ms": round(statistics.median(panels.values()), 2),
            "baseline_single_sat_last_ms": round(baseline_ms, 2),
            "slowest_ratio_vs_baseline": round(panels[slowest] / max(baseline_ms, 1e-3), 1),
            "panel_ms": dict(sorted(panels.items(), key=lambda kv: -kv[1])),
        }
    finally:
        influxd.stop()


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p.get("targets")]

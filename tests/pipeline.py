"""A real pipeline for tests: twin and InfluxDB bridge as child processes (orbitwin.bench.pipeline), checks against influxd."""

from __future__ import annotations

import json

import numpy as np

from twin.schema.telemetry import PACKET_FIELDS

from orbitwin.bench.pipeline import Proc, bridge_proc, expected_counts, ticks_done, twin_proc

__all__ = ["MEASUREMENTS", "Proc", "bridge_proc", "check_exactly_once", "expected_counts", "last_status",
           "status_reports", "stored_seqs", "ticks_done", "twin_proc", "wait_settled"]

MEASUREMENTS = tuple(PACKET_FIELDS)


def stored_seqs(influxd, db: str) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    """Every stored telemetry sequence number per satellite (over all packet measurements)."""
    out: dict[str, list[int]] = {}
    res = influxd.query(f'SELECT "seq" FROM {",".join(MEASUREMENTS)} GROUP BY "sat"', db=db)
    for series in _series(res):
        sat = series.get("tags", {}).get("sat")
        idx = series["columns"].index("seq")
        out.setdefault(sat, []).extend(int(v[idx]) for v in series["values"])
    return out


def _series(res) -> list[dict]:  # type: ignore[no-untyped-def]
    if isinstance(res, dict):
        res = res.get("results", [res])
    series = []
    for r in res if isinstance(res, list) else [res]:
        series.extend(r.get("series", []) if isinstance(r, dict) else [])
    return series


def check_exactly_once(influxd, db: str, names: list[str], counts: np.ndarray) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Every (satellite, sequence) published is stored once: returns lost and duplicate totals."""
    stored = stored_seqs(influxd, db)
    lost = dup = 0
    for name, count in zip(names, counts):
        seqs = stored.get(name, [])
        lost += len(set(range(int(count))) - set(seqs))
        dup += len(seqs) - len(set(seqs))
    return {"lost": lost, "duplicates": dup, "stored": sum(len(v) for v in stored.values()),
            "published": int(counts.sum())}


def last_status(bridge: Proc) -> dict:
    for line in reversed(bridge.text().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


def wait_settled(bridge: Proc, timeout: float = 60.0) -> dict:
    """Wait until the bridge's queues are empty and its written count holds over two status reports."""
    from mqtt_helpers import wait_for

    seen: list[int] = []

    def settled() -> bool:
        st = last_status(bridge)
        seen.append(st.get("points_written", -1))
        return st.get("inbox", 1) == 0 and st.get("spool_points", 1) == 0 and len(seen) > 2 and seen[-1] == seen[-3]
    wait_for(settled, timeout, 0.5, what="bridge settled")
    return last_status(bridge)


def status_reports(bridge: Proc) -> int:
    """How many status lines the bridge has printed (it prints one per --report-every)."""
    return sum(1 for line in bridge.text().splitlines() if line.startswith("{"))

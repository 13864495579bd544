"""A real pipeline for tests: twin and InfluxDB bridge as child processes, checks against influxd."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twin.schema.telemetry import PACKET_FIELDS
from twin.contract.telemetry_encoder import PacketSchedule

MEASUREMENTS = tuple(PACKET_FIELDS)


@dataclass
class Proc:
    cmd: list[str]
    log: Path
    popen: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> Proc:
        f = open(self.log, "a")
        self.popen = subprocess.Popen(self.cmd, stdout=f, stderr=subprocess.STDOUT, text=True,
                                      env={**os.environ, **self.env})
        return self

    def signal(self, sig: int) -> None:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        self.popen.wait(30)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def twin_proc(tmp: Path, mqtt_url: str, count: int, *args: str) -> Proc:
    return Proc([sys.executable, "-m", "orbitwin.cli", "run", "--mqtt", mqtt_url, "--count", str(count), "--plain",
                 "--refresh", "0", "--state-dir", str(tmp), "--client-id", f"twin-{uuid.uuid4().hex[:6]}", *args],
                tmp / "twin.log")


def bridge_proc(tmp: Path, mqtt_url: str, influx_url: str, db: str, *args: str, client_id: str = "bridge-1") -> Proc:
    return Proc([sys.executable, "-m", "orbitwin.cli", "bridge", "influx", "--mqtt", mqtt_url, "--influx", influx_url,
                 "--db", db, "--client-id", client_id, "--spool-dir", str(tmp / "spool"),
                 "--dead-letter", str(tmp / "dead.jsonl"), "--report-every", "0.5", *args], tmp / "bridge.log")


def ticks_done(twin: Proc) -> int:
    m = re.search(r"done: (\d+) ticks", twin.text())
    assert m, f"twin did not finish cleanly:\n{twin.text()[-2000:]}"
    return int(m.group(1))


def expected_counts(n: int, ticks: int, dt_s: float = 1.0, rates: dict[str, float] | None = None) -> np.ndarray:
    """Telemetry messages per satellite after ``ticks`` ticks (sequence numbers 0..count-1)."""
    sched = PacketSchedule(n, dt_s, rates)
    counts = np.zeros(n, dtype=np.int64)
    for k in range(1, ticks + 1):
        for rows in sched.due(k).values():
            counts[rows] += 1
    return counts


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

"""The twin and the InfluxDB bridge as child processes (``python -m orbitwin.cli``), and what the twin published.

Used by ``orbitwin bench influx`` and by the end-to-end tests: each process writes its output to a
log file; :func:`ticks_done` reads the twin's closing line and :func:`expected_counts` says how many
telemetry messages each satellite published in that many ticks.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twin.contract.telemetry_encoder import PacketSchedule

__all__ = ["Proc", "bridge_proc", "expected_counts", "ticks_done", "twin_proc"]


@dataclass
class Proc:
    """A child process whose stdout and stderr go to ``log`` (appended); ``env`` is added to the environment."""

    cmd: list[str]
    log: Path
    popen: subprocess.Popen[str] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> Proc:
        """Spawn the process."""
        with open(self.log, "a") as f:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(self.cmd, stdout=f, stderr=subprocess.STDOUT, text=True,
                                          env={**os.environ, **self.env})
        return self

    def signal(self, sig: int) -> None:
        """Send ``sig`` (if still running) and wait up to 30 s for the exit."""
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        self.popen.wait(30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if the process has not exited after 30 s."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def text(self) -> str:
        """Everything the process has written so far."""
        return self.log.read_text() if self.log.exists() else ""


def twin_proc(tmp: Path, mqtt_url: str, count: int, *args: str) -> Proc:
    """``orbitwin run`` of the first ``count`` satellites on ``mqtt_url``, plain output, state in ``tmp``."""
    return Proc([sys.executable, "-m", "orbitwin.cli", "run", "--mqtt", mqtt_url, "--count", str(count), "--plain",
                 "--refresh", "0", "--state-dir", str(tmp), "--client-id", f"twin-{uuid.uuid4().hex[:6]}", *args],
                tmp / "twin.log")


def bridge_proc(tmp: Path, mqtt_url: str, influx_url: str, db: str, *args: str, client_id: str = "bridge-1") -> Proc:
    """``orbitwin bridge influx`` into database ``db``, spool and dead letters in ``tmp``, a JSON status line each 0.5 s."""
    return Proc([sys.executable, "-m", "orbitwin.cli", "bridge", "influx", "--mqtt", mqtt_url, "--influx", influx_url,
                 "--db", db, "--client-id", client_id, "--spool-dir", str(tmp / "spool"),
                 "--dead-letter", str(tmp / "dead.jsonl"), "--report-every", "0.5", "--json", *args], tmp / "bridge.log")


def ticks_done(twin: Proc) -> int:
    """The tick count of the twin's closing ``done: N ticks`` line; AssertionError if it did not finish cleanly."""
    m = re.search(r"done: (\d+) ticks", twin.text())
    assert m, f"twin did not finish cleanly:\n{twin.text()[-2000:]}"
    return int(m.group(1))


def expected_counts(n: int, ticks: int, dt_s: float = 1.0, rates: dict[str, float] | None = None,
                    compute: bool = False, network: bool = True) -> np.ndarray:
    """Telemetry messages per satellite after ``ticks`` ticks (sequence numbers 0..count-1).

    ``compute``: the twin runs with compute placement on (``--compute``); without it the twin does not
    publish the ``compute`` packet; ``network`` False: nor the ``net`` packet (``--no-network``).
    """
    sched = PacketSchedule(n, dt_s, rates)
    if not compute:
        sched.drop("compute")
    if not network:
        sched.drop("net")
    counts = np.zeros(n, dtype=np.int64)
    for k in range(1, ticks + 1):
        for rows in sched.due(k).values():
            counts[rows] += 1
    return counts

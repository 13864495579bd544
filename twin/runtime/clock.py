"""Pacing the sim clock against wall time: real time, N times faster, or as fast as possible."""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RUN_ID_SUFFIXES = 1000  # random suffixes per wall-clock millisecond


def new_run_id(wall_s: float | None = None) -> int:
    """A run id unique per process start and sortable by start time: Unix ms x 1000 + a random suffix.

    16 digits until the year 2286, below 2**53 (exact in JSON numbers, Grafana and InfluxDB
    floats). Two starts collide only within the same millisecond *and* with the same random
    suffix (1 in 1000), e.g. on two machines with fresh state; on one machine the twin also keeps
    its birth sequences above any it used before (:mod:`twin.runtime.mqtt_link`).
    """
    ms = int((time.time() if wall_s is None else wall_s) * 1000)
    return ms * RUN_ID_SUFFIXES + secrets.randbelow(RUN_ID_SUFFIXES)


def run_start_ms(run: int) -> int:
    """The wall-clock start (Unix ms) encoded in a :func:`new_run_id` run id."""
    return run // RUN_ID_SUFFIXES


def wall_clock_start(now_s: float | None = None) -> str:
    """The default sim start of a paced run: the wall clock now, to the second, ISO 8601 UTC."""
    t = dt.datetime.fromtimestamp(int(time.time() if now_s is None else now_s), dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_speed(text: str) -> float | None:
    """``"real"`` -> 1.0, ``"x10"`` or ``"10"`` -> 10.0, ``"max"``/``"afap"`` -> None (unpaced)."""
    t = text.strip().lower()
    if t in ("real", "realtime", "real-time", "1"):
        return 1.0
    if t in ("max", "afap", "fast"):
        return None
    try:
        value = float(t[1:] if t.startswith("x") else t)
    except ValueError:
        raise ValueError(f"speed must be 'real', 'max' or xN (e.g. x10), got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"speed must be a finite number > 0, got {text!r}")
    return value


@dataclass
class Pacer:
    """Holds sim time ``t_s`` to wall time at ``speed`` x real time (``None``: never waits).

    ``wall`` and ``sleep`` are injectable so tests run on a fake clock. ``lag_s`` is how far the
    sim is behind its schedule (a slow step, or a slow consumer): the pacer never skips ticks to
    catch up; it reports the lag instead.
    """

    speed: float | None = 1.0
    wall: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _wall0: float | None = field(default=None, init=False)
    _sim0: float = field(default=0.0, init=False)
    lag_s: float = field(default=0.0, init=False)

    def start(self, sim_t_s: float) -> None:
        self._wall0 = self.wall()
        self._sim0 = sim_t_s

    def due_wall(self, sim_t_s: float) -> float:
        """The wall time (``wall()`` clock, s) at which ``sim_t_s`` is due; now when unpaced."""
        if self._wall0 is None:
            self.start(sim_t_s)
        assert self._wall0 is not None
        if self.speed is None:
            return self.wall()
        return self._wall0 + (sim_t_s - self._sim0) / self.speed

    def lag_at(self, sim_t_s: float) -> float:
        """How far (s, >= 0) the wall clock is now past the time ``sim_t_s`` was due (0 when unpaced)."""
        if self.speed is None:
            return 0.0
        return max(self.wall() - self.due_wall(sim_t_s), 0.0)

    def wait_until(self, sim_t_s: float) -> float:
        """Sleep until ``sim_t_s`` is due; return the lag (s of wall time behind schedule, >= 0)."""
        if self._wall0 is None:
            self.start(sim_t_s)
        if self.speed is None:
            self.lag_s = 0.0
            return 0.0
        assert self._wall0 is not None
        due = self._wall0 + (sim_t_s - self._sim0) / self.speed
        now = self.wall()
        if due > now:
            self.sleep(due - now)
            self.lag_s = 0.0
        else:
            self.lag_s = now - due
        return self.lag_s

"""Which telemetry is consistent with the twin's births: the bridge stores nothing else.

The twin announces every connection with a retained birth on ``{prefix}/state`` (``run``: the
twin process, ``bseq``: the connection; a run's first ``bseq`` is the run) and then publishes its
retained catalogue on ``{prefix}/fleet/catalogue`` (the satellite names). The birth carries the
satellite *count* only, not the names and not the sim time, so the guard takes the names from the
catalogue that follows the birth, and the sim clock from the telemetry it has accepted.

A telemetry message (a fleet frame or one satellite's message, live or replayed) is consistent when

* ``run`` is a run whose birth the bridge has seen (the current one, or an earlier one it saw:
  messages of an older run still queued for the bridge are real data), and
  ``run <= bseq <= `` the highest ``bseq`` born in that run: an earlier connection's messages
  (live ones the broker kept, or replays, which keep their ``bseq``) are stored;
* every satellite is in the catalogue of that run (when the bridge has it);
* its sim time fits the run's clock: ``t - t_s`` is the run's epoch (the sim time at ``t_s`` 0,
  learned from the first message of the run accepted; within ``EPOCH_TOLERANCE_NS``),
  ``t_s >= 0``, and ``t_s`` is at most ``window_s`` beyond the latest ``t_s`` accepted, plus what
  the sim clock can have advanced since at twice the fastest rate measured (``default_rate``
  sim seconds per wall second before one is measured).

The guard also keeps what the ``runs`` measurement stores of each run (:meth:`run_info`): the
birth's wall time, satellite count, step and seed, and the run's sim window from its clock; and
it says which run a message that carries only a ``bseq`` belongs to (:meth:`run_of`: the fleet
summary and the twin status).

Anything else is refused with a reason code (``no_birth``, ``run``, ``bseq``, ``satellite``,
``sim_window``). A refused message is not taken as seen, so a real message refused by mistake
(its birth not arrived yet) is a gap that the twin's replay buffer fills. What the guard cannot
tell: a message forged with a born run and ``bseq``, known satellites and a plausible time;
restricting who may publish on the twin's topics is the broker's job (ACLs).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["BirthGuard", "RunClock"]

EPOCH_TOLERANCE_NS = 1_000_000_000
MAX_RUNS = 16  # births of this many runs are remembered


@dataclass
class RunClock:
    """A run's sim clock as the accepted telemetry shows it (ns since the Unix epoch; sim and wall seconds)."""

    epoch_ns: int  # sim time at t_s = 0
    t_s_hi: float  # latest sim seconds accepted
    wall_hi: float  # wall time (Unix s) when t_s_hi was accepted
    rate: float = 0.0  # fastest sim seconds per wall second measured (0: not yet)
    sample_t_s: float = 0.0
    sample_wall: float = 0.0


class BirthGuard:
    """The births, catalogue and sim clock the bridge checks telemetry against (``check``, then ``accept``)."""

    def __init__(self, *, window_s: float = 3600.0, default_rate: float = 1000.0) -> None:
        self.window_s = window_s
        self.default_rate = default_rate
        self.births: dict[int, int] = {}  # run -> highest bseq born
        self.birth_info: dict[int, dict[str, float]] = {}  # run -> wall_start_ms, sats, dt_s, seed of its birth
        self.run: int | None = None  # the current birth's run
        self.bseq: int | None = None
        self.sats: dict[int, frozenset[str]] = {}  # run -> catalogue names
        self._sorted: dict[int, list[str]] = {}  # the same, sorted, for saving
        self.clocks: dict[int, RunClock] = {}
        self.refused: Counter[str] = Counter()
        self.births_seen = 0

    # --- what the twin announces ----------------------------------------------------------
    def on_state(self, payload: bytes) -> int | None:
        """Apply a ``{prefix}/state`` message; the run when it is the birth of a run not seen before."""
        try:
            msg = json.loads(payload)
        except (ValueError, RecursionError):
            return None
        if not isinstance(msg, dict) or msg.get("state") != "online":
            return None  # a death changes nothing: data of that connection stays consistent with it
        run, bseq = msg.get("run"), msg.get("bseq")
        if type(run) is not int or type(bseq) is not int or bseq < run:
            return None
        self.births_seen += 1
        new = run not in self.births
        self.births[run] = max(self.births.get(run, bseq), bseq)
        if new or run not in self.birth_info:
            wall = msg.get("wall_time")
            info = {"wall_start_ms": float(wall) * 1000.0} if isinstance(wall, (int, float)) and math.isfinite(wall) else {}
            for key in ("sats", "dt_s", "seed"):
                if isinstance(msg.get(key), (int, float)) and not isinstance(msg.get(key), bool):
                    info[key] = msg[key]
            self.birth_info[run] = info
        if self.run is None or run >= self.run:
            self.run, self.bseq = run, self.births[run]
        for old in sorted(self.births)[:-MAX_RUNS]:
            del self.births[old]
            self.birth_info.pop(old, None)
            self.sats.pop(old, None)
            self._sorted.pop(old, None)
            self.clocks.pop(old, None)
        return run if new and run in self.births else None

    def on_catalogue(self, payload: bytes) -> None:
        """Apply the retained catalogue (``{"sats": [{"sat": name, ...}, ...]}``) to the current run."""
        try:
            msg = json.loads(payload)
            names = frozenset(str(row["sat"]) for row in msg["sats"])
        except (ValueError, KeyError, TypeError, RecursionError):
            return
        if self.run is not None and names and names != self.sats.get(self.run):
            self.sats[self.run] = names
            self._sorted[self.run] = sorted(names)

    def known_satellite(self, name: str) -> bool | None:
        """Whether ``name`` is in the current run's catalogue (None while no catalogue is known)."""
        names = self.sats.get(self.run) if self.run is not None else None
        return None if names is None else name in names

    def run_of(self, bseq: Any) -> int | None:
        """The run a connection's ``bseq`` belongs to (``run <= bseq <=`` its highest birth); None if unknown."""
        if type(bseq) is not int:
            return None
        for run, hi in self.births.items():
            if run <= bseq <= hi:
                return run
        return None

    def run_info(self, run: int) -> dict[str, float]:
        """What the ``runs`` measurement stores of a run: its birth (wall start, sats, dt, seed) and sim window (ms)."""
        info: dict[str, float] = dict(self.birth_info.get(run, {}))
        clock = self.clocks.get(run)
        if clock is not None:
            info["sim_start_ms"] = clock.epoch_ns // 1_000_000
            info["sim_latest_ms"] = clock.epoch_ns // 1_000_000 + int(clock.t_s_hi * 1000)
            if clock.rate > 0:
                info["speed"] = round(clock.rate, 3)
        return info

    # --- telemetry ------------------------------------------------------------------------
    def check(self, run: Any, bseq: Any, sats: list[str], t_ns: int, t_s: Any, wall: float) -> str | None:
        """None if the message is consistent with a birth, else ``(code)``: why not (counted in ``refused``)."""
        why = self._why(run, bseq, sats, t_ns, t_s, wall)
        if why is not None:
            self.refused[why.split(":", 1)[0]] += 1
        return why

    def _why(self, run: Any, bseq: Any, sats: list[str], t_ns: int, t_s: Any, wall: float) -> str | None:
        if self.run is None:
            return "no_birth: no birth of the twin seen yet"
        if run not in self.births:
            return f"run: run {run} was never born (current run {self.run})"
        if type(bseq) is not int or not run <= bseq <= self.births[run]:
            return f"bseq: bseq {bseq} is not a connection of run {run} (born up to {self.births[run]})"
        names = self.sats.get(run)
        if names is not None:
            ghost = next((s for s in sats if s not in names), None)
            if ghost is not None:
                return f"satellite: {ghost[:80]!r} is not in run {run}'s catalogue"
        if isinstance(t_s, bool) or not isinstance(t_s, (int, float)) or not math.isfinite(t_s) or t_s < 0:
            return f"sim_window: t_s {str(t_s)[:40]} is not a sim time"
        clock = self.clocks.get(run)
        if clock is None:
            return None
        if abs(t_ns - int(t_s * 1e9) - clock.epoch_ns) > EPOCH_TOLERANCE_NS:
            return f"sim_window: t - t_s is not run {run}'s start"
        rate = 2.0 * clock.rate + 1.0 if clock.rate > 0 else self.default_rate
        limit = clock.t_s_hi + self.window_s + rate * max(0.0, wall - clock.wall_hi)
        if t_s > limit:
            return f"sim_window: t_s {t_s:.0f} is beyond run {run}'s clock ({clock.t_s_hi:.0f} s, limit {limit:.0f} s)"
        return None

    def accept(self, run: int, t_ns: int, t_s: float, wall: float) -> None:
        """A checked message was accepted: its time advances the run's clock."""
        clock = self.clocks.get(run)
        if clock is None:
            self.clocks[run] = RunClock(t_ns - int(t_s * 1e9), float(t_s), wall, 0.0, float(t_s), wall)
            return
        if t_s <= clock.t_s_hi:
            return
        clock.t_s_hi, clock.wall_hi = float(t_s), wall
        if wall - clock.sample_wall >= 2.0:
            clock.rate = max(clock.rate, (t_s - clock.sample_t_s) / (wall - clock.sample_wall))
            clock.sample_t_s, clock.sample_wall = float(t_s), wall

    # --- persistence ----------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-ready state (births, catalogues, clocks)."""
        return {"births": {str(r): b for r, b in self.births.items()}, "run": self.run, "bseq": self.bseq,
                "birth_info": {str(r): i for r, i in self.birth_info.items()},
                "sats": {str(r): n for r, n in self._sorted.items()},
                "clocks": {str(r): [c.epoch_ns, c.t_s_hi, c.wall_hi, c.rate, c.sample_t_s, c.sample_wall]
                           for r, c in self.clocks.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`to_state`'s output."""
        self.births = {int(r): int(b) for r, b in state.get("births", {}).items()}
        self.birth_info = {int(r): {str(k): float(v) for k, v in i.items()}
                           for r, i in state.get("birth_info", {}).items()}
        self.run, self.bseq = state.get("run"), state.get("bseq")
        self._sorted = {int(r): sorted(map(str, n)) for r, n in state.get("sats", {}).items()}
        self.sats = {r: frozenset(n) for r, n in self._sorted.items()}
        self.clocks = {int(r): RunClock(int(c[0]), *map(float, c[1:])) for r, c in state.get("clocks", {}).items()}

    def status(self) -> dict[str, Any]:
        """Counts for the bridge's status: refusals by reason, the birth followed."""
        return {"refused_telemetry": sum(self.refused.values()), "refused": dict(self.refused),
                "birth_run": self.run if self.run is not None else -1,
                "birth_bseq": self.bseq if self.bseq is not None else -1}

"""Progress of long work (``orbitwin validate``, the benchmarks, the radiation grid build) with the time left.

The long library functions take a callback ``progress(done, total)`` in units of their own (sim
seconds, steps, grid nodes); :func:`progress_display` hands out one such callback per task and
shows them on stderr:

- on a terminal (stderr a TTY, not CI): a rich bar per task with the elapsed time and the time left;
- otherwise (a pipe, a log, CI): a plain line at most every ``every_s`` seconds, e.g.
  ``validate: nominal day 43% (10.3 of 24 h sim) elapsed 0:41 left ~0:54``;
- disabled (``--no-progress``): callbacks that do nothing.

The time left is the time taken so far per fraction done times the fraction left, counted from
the first report (setup before it is no measure of the work), its finish time smoothed over
:data:`SMOOTHING_S` of wall time; it reads ``?`` until :data:`MIN_FRACTION` of the work and
:data:`MIN_ELAPSED_S` have passed since the first report.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TextIO

ProgressFn = Callable[[float, float], None]
Clock = Callable[[], float]
Mode = Literal["rich", "plain", "off"]

MIN_FRACTION = 0.02  # no estimate of the time left before this fraction of the work is done
MIN_ELAPSED_S = 2.0  # ... nor before this much wall time, s
SMOOTHING_S = 5.0  # time constant of the exponential smoothing of the total-time estimate, s
PLAIN_EVERY_S = 10.0  # default interval between two plain lines, s
RICH_EVERY_S = 0.1  # least interval between two updates of a rich bar, s


class Estimator:
    """Fraction done, elapsed wall time and a smoothed estimate of the time left, on an injected monotone clock."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._t0 = clock()
        self._first: tuple[float, float] | None = None  # clock and fraction at the first report
        self._t_last = 0.0  # when the finish estimate was last updated
        self._finish: float | None = None  # smoothed estimate of the clock reading at the end, s
        self.fraction = 0.0
        self.done = 0.0
        self.total = 0.0

    @property
    def elapsed_s(self) -> float:
        """Wall time since the estimator was made, s."""
        return max(self._clock() - self._t0, 0.0)

    def update(self, done: float, total: float) -> None:
        """Record ``done`` of ``total`` (any unit; ValueError for a total that is not a positive number)."""
        d, t = _number(done), _number(total)
        if d is None:
            raise ValueError(f"progress: done must be a finite number, got {done!r}")
        if t is None or t <= 0:
            raise ValueError(f"progress: total must be a finite number > 0, got {total!r}")
        self.done, self.total = d, t
        self.fraction = min(max(d / t, 0.0), 1.0)
        now = self._clock()
        if self._first is None:
            self._first = (now, self.fraction)
        t1, f1 = self._first
        if self.fraction - f1 < MIN_FRACTION or now - t1 < MIN_ELAPSED_S:
            return
        finish = now + (now - t1) / (self.fraction - f1) * (1.0 - self.fraction)
        if self._finish is None:
            self._finish = finish
        else:
            self._finish += (1.0 - math.exp(-max(now - self._t_last, 0.0) / SMOOTHING_S)) * (finish - self._finish)
        self._t_last = now

    @property
    def remaining_s(self) -> float | None:
        """Estimated wall time left, s; None until there is enough progress to say."""
        if self.fraction >= 1.0:
            return 0.0
        if self._finish is None:
            return None
        return max(self._finish - self._clock(), 0.0)


def _number(x: object) -> float | None:
    """``x`` as a finite float, else None."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def format_clock(seconds: float | None) -> str:
    """``0:41``, ``12:05``, ``1:02:03``; ``?`` for None."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0.0)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_amount(value: float) -> str:
    """A quantity for a progress line: ``10.3``, ``24``, ``0.5``, ``1,234``."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}".rstrip("0").rstrip(".") if value else "0"


def plain_line(command: str, label: str, est: Estimator, unit: str = "", scale: float = 1.0) -> str:
    """``validate: nominal day 43% (10.3 of 24 h sim) elapsed 0:41 left ~0:54``."""
    amount = f" ({format_amount(est.done * scale)} of {format_amount(est.total * scale)}{' ' + unit if unit else ''})"
    left = est.remaining_s
    return (f"{command}: {label} {int(est.fraction * 100)}%{amount} elapsed {format_clock(est.elapsed_s)} "
            f"left {'?' if left is None else '~' + format_clock(left)}")


def choose_mode(enabled: bool, stream: TextIO, env: Mapping[str, str] | None = None) -> Mode:
    """``off`` when disabled; ``rich`` on a terminal outside CI; else ``plain``."""
    env = os.environ if env is None else env
    if not enabled:
        return "off"
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return "rich" if tty and not env.get("CI") and env.get("TERM") != "dumb" else "plain"


class ProgressDisplay:
    """Hands out one ``progress(done, total)`` callback per task and shows them (see the module docstring).

    ``command``: the prefix of plain lines; ``every_s``: least interval between two plain lines (s,
    shared by every task); ``clock``: monotone clock, s (injected by the tests).
    """

    def __init__(self, command: str, mode: Mode = "plain", stream: TextIO | None = None,
                 every_s: float = PLAIN_EVERY_S, clock: Clock = time.monotonic) -> None:
        if every_s < 0 or not math.isfinite(every_s):
            raise ValueError(f"progress: every_s must be a finite number >= 0, got {every_s!r}")
        self.command = command
        self.mode = mode
        self.stream = sys.stderr if stream is None else stream
        self.every_s = every_s
        self._clock = clock
        self._last_line = clock()
        self._rich: Any = None

    def __enter__(self) -> ProgressDisplay:
        if self.mode == "rich":
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30),
                                  TextColumn("{task.percentage:>3.0f}% {task.fields[amount]} elapsed "
                                             "{task.fields[elapsed]} left {task.fields[left]}"),
                                  console=Console(file=self.stream, force_terminal=True), transient=True)
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def task(self, label: str, unit: str = "", scale: float = 1.0) -> ProgressFn:
        """A callback for one task: ``label`` names it, ``unit`` and ``scale`` (unit per callback unit) show amounts."""
        if self.mode == "off":
            return _nothing
        est = Estimator(self._clock)
        if self.mode == "rich":
            return self._rich_task(label, est, unit, scale)
        return self._plain_task(label, est, unit, scale)

    def _plain_task(self, label: str, est: Estimator, unit: str, scale: float) -> ProgressFn:
        shown = [False, False]  # a line was printed, the last line was printed

        def update(done: float, total: float) -> None:
            est.update(done, total)
            now = self._clock()
            if est.fraction >= 1.0:
                if shown[0] and not shown[1]:  # a task that printed nothing ends silently
                    shown[1] = True
                    self._print(plain_line(self.command, label, est, unit, scale))
            elif now - self._last_line >= self.every_s:
                shown[0] = True
                self._last_line = now
                self._print(plain_line(self.command, label, est, unit, scale))

        return update

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def _rich_task(self, label: str, est: Estimator, unit: str, scale: float) -> ProgressFn:
        state: dict[str, Any] = {"id": None, "at": -math.inf}

        def update(done: float, total: float) -> None:
            est.update(done, total)
            now = self._clock()
            if self._rich is None or (now - state["at"] < RICH_EVERY_S and est.fraction < 1.0):
                return
            state["at"] = now
            left = est.remaining_s
            fields = {"amount": f"({format_amount(est.done * scale)} of {format_amount(est.total * scale)}"
                                f"{' ' + unit if unit else ''})",
                      "elapsed": format_clock(est.elapsed_s), "left": "?" if left is None else "~" + format_clock(left)}
            if state["id"] is None:
                state["id"] = self._rich.add_task(label, total=est.total, completed=est.done, **fields)
            else:
                self._rich.update(state["id"], total=est.total, completed=est.done, **fields)

        return update


def _nothing(done: float, total: float) -> None:
    """The callback of a disabled display."""


@contextmanager
def progress_display(command: str, enabled: bool = True, stream: TextIO | None = None,
                     every_s: float = PLAIN_EVERY_S) -> Iterator[ProgressDisplay]:
    """A :class:`ProgressDisplay` on ``stream`` (stderr) in the mode :func:`choose_mode` picks."""
    out = sys.stderr if stream is None else stream
    with ProgressDisplay(command, choose_mode(enabled, out), out, every_s) as display:
        yield display


def add_no_progress_option(parser: Any) -> None:
    """``--no-progress``: for scripts that want only the result."""
    parser.add_argument("--no-progress", action="store_true",
                        help="do not show progress and the estimated time left on stderr (shown by default: a bar "
                             "on a terminal, else a line every 10 s)")


__all__ = ["Estimator", "ProgressDisplay", "ProgressFn", "add_no_progress_option", "choose_mode", "format_amount",
           "format_clock", "plain_line", "progress_display"]

"""The status output of ``orbitwin run``: a live view in a terminal, plain text blocks otherwise, and the final summary.

:class:`StatusView` is the run loop's ``on_tick``. Every ``refresh_s`` wall seconds it builds a
:class:`~twin.runtime.fleet_view.Frame` and shows it: redrawn in place with rich in a terminal
(:mod:`twin.runtime.live_view`), else printed as a plain block (no ANSI) for logs and CI. It counts
the events: the MQTT service's (``attach``) or, without one, the engine's, drained here.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

import numpy as np

from twin.core.events import Event
from twin.runtime.fleet_view import (
    Connection, EventFeed, Frame, SpeedMeter, connection_lines, duration_text, mqtt_lines, render_plain, sat_rows,
    sim_when, speed_text, summary_lines, worst_first)
from twin.runtime.status_table import fleet_summary


class StatusView:
    """The live view (``tty``) or plain blocks on ``out`` every ``refresh_s`` wall seconds (never when <= 0).

    ``rows``: satellites shown (fewer when the terminal is too short); ``target``: the asked speed
    (``real``, ``xN``, ``max``); ``duration_s``: the run's sim duration, for the progress and the time left.
    """

    def __init__(self, out: TextIO, *, rows: int = 12, refresh_s: float = 1.0, tty: bool = False,
                 target: str = "real", duration_s: float | None = None, feed: int = 8,
                 clock: Any = time.monotonic) -> None:
        self.out, self.rows, self.refresh_s, self.tty = out, rows, refresh_s, tty
        self.target, self.duration_s, self.feed_size, self.clock = target, duration_s, feed, clock
        self.service: Any = None
        self.connection: Connection | None = None
        self.feed: EventFeed | None = None
        self.meter: SpeedMeter | None = None
        self.start_sim_s = 0.0
        self._name_rank: np.ndarray | None = None
        self._last_wall_s = -np.inf
        self._screen: Any = None
        if tty:
            from twin.runtime.live_view import LiveScreen

            self._screen = LiveScreen(out)

    # --- wiring ---------------------------------------------------------------------------
    def begin(self, twin: Any) -> None:
        """Start measuring (the run starts now, at the twin's sim time)."""
        self.meter = SpeedMeter(self.clock(), twin.t_s)
        self.start_sim_s = twin.t_s
        if self.feed is None:
            self.feed = EventFeed(twin.names, self.feed_size)
        self._name_rank = np.argsort(np.argsort(np.asarray(twin.names)), kind="stable")

    def attach(self, service: Any) -> None:
        """Show ``service``'s MQTT counters and its events (it drains the engine's events)."""
        self.service = service
        self.feed = EventFeed(service.twin.names, self.feed_size)
        feed = self.feed
        service.on_event = lambda ev: feed.add((ev,))

    @property
    def events(self) -> int:
        """Events so far: the MQTT service's count, else the engine's seen here."""
        if self.service is not None:
            return int(self.service.counters["events"])
        return self.feed.total if self.feed is not None else 0

    # --- per tick -------------------------------------------------------------------------
    def on_tick(self, twin: Any, stats: Any) -> None:
        """Count events; show the view when ``refresh_s`` has passed (the first tick at once)."""
        if self.meter is None:
            self.begin(twin)
        if self.service is None:
            self.add_events(twin.drain_events())
        now = self.clock()
        if self.refresh_s <= 0 or now - self._last_wall_s < self.refresh_s:
            return
        self._last_wall_s = now
        self.show(twin, stats, now)

    def add_events(self, events: list[Event]) -> None:
        assert self.feed is not None
        self.feed.add(events)

    def show(self, twin: Any, stats: Any, now: float) -> None:
        assert self.meter is not None
        speed = self.meter.recent(now, twin.t_s)
        if self._screen is None:
            print(render_plain(self.frame(twin, stats, speed, self.rows, self.feed_size)) + "\n", file=self.out,
                  flush=True)
            return
        from twin.runtime.live_view import fit, live_renderable

        height, width = self._screen.size
        f = self.frame(twin, stats, speed, self.rows, self.feed_size)
        rows, feed = fit(height, width, f, len(f.rows), len(f.feed))
        f.rows, f.feed = f.rows[:rows], f.feed[len(f.feed) - feed:]
        self._screen.show(live_renderable(f, self.events))

    def frame(self, twin: Any, stats: Any, speed: float, rows: int, feed: int) -> Frame:
        """What the view shows now, with ``rows`` satellites worst first and the last ``feed`` events."""
        progress = None
        if self.duration_s:
            done = min(1.0, max(0.0, (twin.t_s - self.start_sim_s) / self.duration_s))
            left = (1.0 - done) * self.duration_s / speed if speed > 0 else None
            progress = (done, left)
        lines = list(self.feed.lines)[-feed:] if self.feed is not None and feed > 0 else []
        return Frame(
            when=sim_when(twin), t_s=twin.t_s, tick=twin.tick, dt_s=twin.dt_s, step_ms=stats.last_step_s * 1e3,
            speed=speed, target=self.target, lag_s=stats.lag_s, events=self.events,
            summary=fleet_summary(twin, with_grid=False),
            rows=sat_rows(twin, worst_first(twin, rows, self._name_rank)), feed=lines, progress=progress,
            mqtt=mqtt_lines(self.service) if self.service is not None else [],
            connection=connection_lines(self.connection) if self.connection is not None else [])

    # --- the end ----------------------------------------------------------------------------
    def finish(self, twin: Any, stats: Any) -> None:
        """Show the final state (a last refresh) and leave the live view."""
        if self.meter is not None:
            self.show(twin, stats, self.clock())
        self.stop()

    def stop(self) -> None:
        """Leave the live view (its last frame stays on screen); safe to call twice."""
        if self._screen is not None:
            self._screen.stop()

    def summary(self, twin: Any, stats: Any, interrupted: bool = False) -> str:
        """The run in a few lines: ticks, sim and wall time, achieved speed, events, the fleet, MQTT counts."""
        wall_s, sim_s, speed = stats.wall_s, stats.sim_s, stats.speed
        line = (f"done{' (interrupted)' if interrupted else ''}: {stats.ticks} ticks, {sim_s:g} s sim in "
                f"{duration_text(wall_s) if wall_s >= 10 else f'{wall_s:.2f} s'} wall, speed x{speed_text(speed)} "
                f"({self.target}), mean step {stats.step_s_total / max(stats.ticks, 1) * 1e3:.2f} ms, "
                f"max lag {stats.max_lag_s:.3f} s, events {self.events}")
        if self.service is not None:
            st = self.service.link.stats
            line += f", published {st.published}, refused {st.refused_queue_full}"
        return "\n".join([line, summary_lines(fleet_summary(twin, with_grid=False))[0]])

    def print_summary(self, twin: Any, stats: Any, interrupted: bool = False) -> None:
        """Print :meth:`summary` (in bold in the live view)."""
        text = self.summary(twin, stats, interrupted)
        if self._screen is not None:
            self._screen.print(text, style="bold")
        else:
            print(text, file=self.out, flush=True)

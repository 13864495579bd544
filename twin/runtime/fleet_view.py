"""What the status view of ``orbitwin run`` shows, as plain values: one :class:`Frame` per refresh.

The satellites are ordered worst first (:func:`worst_first`, vectorised for a fleet of 10,000 refreshed
every second); :class:`SpeedMeter` measures the achieved speed (sim s per wall s), :class:`EventFeed`
keeps the last events, :func:`connection_lines` says how to watch and command the twin. The terminal
renderers (:mod:`twin.runtime.live_view` with rich, :func:`render_plain` for logs) only format a frame.
"""

from __future__ import annotations

import shlex
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.core.ephemeris import jd_to_datetime
from twin.core.events import Event
from twin.schema.telemetry import LIMIT_RED, LIMIT_STATES, LIMIT_YELLOW, MODE_LOST, MODE_SAFE, MODES

#: Row states, worst first: the sort rank of each (red and yellow are live satellites' limit states).
STATES = ("red", "yellow", "lost", "safe", "nominal")
COLUMNS = ("satellite", "mode", "limit", "lat", "lon", "alt km", "sun", "SoC", "pay K", "util", "rad/h")


def row_states(twin: Any, idx: np.ndarray | None = None) -> np.ndarray:
    """Each satellite's rank in :data:`STATES` (0 red ... 4 nominal), shape (n,) int8 (of ``idx`` only when given)."""
    lim = np.asarray(twin.tm["limit_state"])
    mode = np.asarray(twin.mode)
    if idx is not None:
        lim, mode = lim[idx], mode[idx]
    rank = np.full(mode.shape, 4, dtype=np.int8)
    rank[mode == MODE_SAFE] = 3
    rank[lim == LIMIT_YELLOW] = 1
    rank[lim == LIMIT_RED] = 0
    rank[mode == MODE_LOST] = 2
    return rank


def worst_first(twin: Any, k: int, name_rank: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` worst satellites: red, yellow, lost, safe, nominal, then by name.

    ``name_rank``: each satellite's position in name order (computed when None; pass it to save the sort).
    """
    k = min(k, twin.n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if name_rank is None:
        name_rank = np.argsort(np.argsort(np.asarray(twin.names)))
    key = row_states(twin).astype(np.int64) * twin.n + name_rank
    top = np.argpartition(key, k - 1)[:k] if k < twin.n else np.arange(twin.n)
    return top[np.argsort(key[top], kind="stable")]


class SpeedMeter:
    """Achieved speed [sim s per wall s]: over the last ``window_s`` wall seconds, and over the whole run."""

    def __init__(self, wall_s: float, sim_s: float, window_s: float = 2.0) -> None:
        self.start = (wall_s, sim_s)
        self.window_s = window_s
        self.readings: deque[tuple[float, float]] = deque([self.start])

    def recent(self, wall_s: float, sim_s: float) -> float:
        """Speed over the readings of about the last ``window_s`` (since the start in a shorter run)."""
        self.readings.append((wall_s, sim_s))
        while len(self.readings) > 2 and wall_s - self.readings[1][0] >= self.window_s:
            self.readings.popleft()
        w0, s0 = self.readings[0]
        return (sim_s - s0) / (wall_s - w0) if wall_s > w0 else 0.0

    def overall(self, wall_s: float, sim_s: float) -> float:
        """Speed since the start (0 when no wall time has passed)."""
        w0, s0 = self.start
        return (sim_s - s0) / (wall_s - w0) if wall_s > w0 else 0.0


@dataclass
class FeedLine:
    t_s: float
    sat: str
    severity: str  # info | warning | critical
    text: str


class EventFeed:
    """The last ``size`` events, as lines for the view, and how many were seen."""

    def __init__(self, names: list[str], size: int = 8) -> None:
        self.names, self.total = names, 0
        self.lines: deque[FeedLine] = deque(maxlen=size)

    def add(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.total += 1
            sat = self.names[ev.sat] if 0 <= ev.sat < len(self.names) else "fleet"
            self.lines.append(FeedLine(ev.t_s, sat, ev.severity, event_text(ev)))


def event_text(ev: Event) -> str:
    """One event in a few words: ``limit payload_temp_k green -> red (400)``, ``fault latchup applied``."""
    d = ev.detail
    if ev.kind == "limit" and "new" in d:
        return (f"limit {ev.name} {LIMIT_STATES.get(d.get('old', 0), '?')} -> {LIMIT_STATES.get(d['new'], '?')}"
                f" ({d.get('value', float('nan')):.6g})")
    if "request" in d:
        return f"{ev.kind} {d['request']} {ev.name.rsplit('_', 1)[-1]}"
    if ev.kind == "fault" and "fault" in d:
        return f"fault {d['fault']} {ev.name.rsplit('_', 1)[-1]}"
    return f"{ev.kind} {ev.name}"


@dataclass
class Connection:
    """Where the twin publishes and how to reach it, for the ready-to-copy lines."""

    url: str  # printable (no password)
    host: str
    port: int
    prefix: str
    sat: str  # a satellite for the example command
    note: str = ""  # e.g. "embedded mosquitto"
    username: str | None = None
    tls: bool = False
    ca_file: str | None = None


def connection_lines(c: Connection) -> list[str]:
    """The broker, a ``mosquitto_sub`` that watches everything and a ``mosquitto_pub`` that commands a satellite."""
    opts = f"-h {c.host} -p {c.port}"
    if c.username is not None:
        opts += f" -u {shlex.quote(c.username)} -P \"$MQTT_PASSWORD\""
    if c.tls:
        opts += f" --cafile {shlex.quote(c.ca_file)}" if c.ca_file else " --capath /etc/ssl/certs"
    cmd = '{"command":"throttle","args":{"factor":0.5}}'
    return [f"broker   {c.url}" + (f"  ({c.note})" if c.note else ""),
            f"watch    mosquitto_sub {opts} -t '{c.prefix}/#' -v",
            f"command  mosquitto_pub {opts} -t '{c.prefix}/sat/{c.sat}/cmd' -m '{cmd}'"]


@dataclass
class Frame:
    """One refresh of the status view."""

    when: str  # sim time, UTC
    t_s: float
    tick: int
    dt_s: float
    step_ms: float
    speed: float  # achieved, sim s per wall s
    target: str  # the asked speed: real, xN or max
    lag_s: float
    events: int
    summary: dict[str, Any]
    rows: list[tuple[str, list[str]]]  # (state of STATES, cells of COLUMNS)
    feed: list[FeedLine] = field(default_factory=list)
    progress: tuple[float, float | None] | None = None  # (done fraction, wall s left or None) with a duration
    mqtt: list[str] = field(default_factory=list)
    connection: list[str] = field(default_factory=list)


def sat_rows(twin: Any, idx: np.ndarray) -> list[tuple[str, list[str]]]:
    """The table rows of the satellites ``idx``: their state and formatted cells."""
    tm, states = twin.tm, row_states(twin, idx)
    out = []
    for i, st in zip(idx.tolist(), states.tolist()):
        out.append((STATES[st], [
            twin.names[i][:17], MODES[int(twin.mode[i])], LIMIT_STATES.get(int(tm["limit_state"][i]), "?"),
            f"{tm['lat_deg'][i]:.2f}", f"{tm['lon_deg'][i]:.2f}", f"{tm['alt_m'][i] / 1e3:.1f}",
            f"{tm['illumination'][i]:.2f}", f"{tm['battery_soc'][i]:.3f}", f"{tm['payload_temp_k'][i]:.1f}",
            f"{tm['payload_util'][i]:.2f}", f"{tm['dose_rate_rad_s'][i] * 3600:.4f}"]))
    return out


def header_line(f: Frame) -> str:
    """Sim time, tick, step, achieved speed, lag and events on one line."""
    return (f"sim {f.when}  t={f.t_s:.1f} s  tick {f.tick}  dt {f.dt_s:g} s  step {f.step_ms:.1f} ms  "
            f"speed x{speed_text(f.speed)} ({f.target})  lag {f.lag_s:.2f} s  events {f.events}")


def speed_text(speed: float) -> str:
    """``12.3``, ``1250``, ``0.50``: a speed with sensible digits."""
    return f"{speed:.0f}" if speed >= 100 else f"{speed:.1f}" if speed >= 1 else f"{speed:.2f}"


def progress_text(progress: tuple[float, float | None]) -> str:
    """``42% done, about 1 min 5 s left``."""
    done, left = progress
    eta = "" if left is None else f", about {duration_text(left)} left"
    return f"{done * 100:.0f}% done{eta}"


def duration_text(s: float) -> str:
    """``45 s``, ``3 min 5 s``, ``2 h 10 min``."""
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s // 60:.0f} min {s % 60:.0f} s"
    return f"{s // 3600:.0f} h {s % 3600 // 60:.0f} min"


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The fleet counts and totals of :func:`twin.runtime.status_table.fleet_summary`, as lines."""
    return [
        f"sats {s['sats']}  nominal {s['nominal']}  yellow {s['yellow']}  red {s['red']}  safe {s['safe']}  "
        f"lost {s['lost']}  sunlit {s['sunlit']}  in SAA {s['in_saa']}  latched {s['latched']}",
        f"array {s['array_power_mw']:.2f} MW  payload {s['payload_power_mw']:.2f} MW  "
        f"compute {s['throughput_eops']:.2f} EOPS  mean SoC {s['mean_soc']:.3f}",
        *([f"net links {s['net_links_up']}  partitioned {s['net_partitioned']}  overloaded "
           f"{s['net_overloaded_links']}  gateway delay p50 {s['net_gw_delay_p50_ms']:.1f} ms  "
           f"p99 {s['net_gw_delay_p99_ms']:.1f} ms"] if "net_links_up" in s else []),
        *([f"jobs ({s['compute_policy']}) running {s['jobs_running']}  queued {s['jobs_queued']}  completed "
           f"{s['jobs_completed']}  missed {s['jobs_deadline_missed']}  corrupt {s['jobs_corrupted']}  battery "
           f"{s['compute_battery_wh']:.1f} Wh  array {s['compute_array_wh']:.1f} Wh"] if "compute_policy" in s else []),
    ]


def mqtt_lines(svc: Any) -> list[str]:
    """The MQTT service's link and counters (:class:`twin.runtime.mqtt_service.TwinService`)."""
    st, out = svc.status()["mqtt"], svc.out
    return [f"mqtt  connected {st['connected']}  bseq {st['bseq']}  published {st['published']}  "
            f"outstanding {st['outstanding']}  refused {st['refused_queue_full']}  requests "
            f"{svc.counters['requests']}  rejected {svc.counters['rejected']}",
            f"link  overload {out.overload}  max backlog {out.max_backlog}  publish lag "
            f"{svc.link.delivery.last_s:.2f} s  waited {out.wait_s_total:.1f} s  shed {sum(out.shed.values())}"]


def sim_when(twin: Any) -> str:
    return jd_to_datetime(twin.now_jd).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_plain(f: Frame) -> str:
    """A frame as plain text (no ANSI): for logs, CI and a terminal with ``--plain``."""
    widths = (18, 8, 7, 8, 9, 8, 5, 6, 7, 6, 8)
    fmt = lambda cells: "".join(c.ljust(w) if j == 0 else c.rjust(w)  # noqa: E731
                                for j, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([
        "Orbitwin  " + header_line(f) + (f"  {progress_text(f.progress)}" if f.progress else ""),
        *summary_lines(f.summary), "", fmt(COLUMNS), *(fmt(cells) for _, cells in f.rows),
        *([""] + [f"{e.t_s:10.1f} s  {e.sat:<17} {e.severity:<8} {e.text}" for e in f.feed] if f.feed else []),
        *f.mqtt])

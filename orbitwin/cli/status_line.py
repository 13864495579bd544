"""The bridges' periodic status: one short line for people by default, the full JSON object with ``--json``.

Each ``*_line`` turns a bridge's status dict (the same dict ``--json`` prints, keys unchanged) into
one line such as ``12:00:01 serial board-1 -> STARLINK-1234  linked  rx 1,204 frames  tx 310  errors 0  rtt 4 ms``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

Status = dict[str, Any]

JSON_HELP = "print the status as one JSON object per line (for scripts) instead of a short line for people"


def add_status_options(parser: Any) -> None:
    """Add ``--report-every`` (seconds between status lines) and ``--json`` (machine-readable ones) to a bridge."""
    from orbitwin.cli.arg_types import positive_seconds

    parser.add_argument("--report-every", type=positive_seconds, default=10.0,
                        help="seconds between status lines (default 10)")
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def report_until_stopped(stopping: threading.Event, every_s: float, status: Callable[[], Status],
                         line: Callable[[Status], str], as_json: bool) -> None:
    """Every ``every_s`` s until ``stopping`` is set, print ``status()`` as JSON or as ``line(status)``."""
    while not stopping.wait(every_s):
        st = status()
        print(json.dumps(st, default=str) if as_json else line(st), flush=True)


def _now() -> str:
    return time.strftime("%H:%M:%S")


def _n(value: Any) -> str:
    """A count with thousands separators (``1,204``); ``?`` for a missing one."""
    return f"{value:,}" if isinstance(value, int) else "?"


def serial_line(st: Status) -> str:
    """``12:00:01 serial board-1 -> STARLINK-1234  linked  rx 1,204 frames  tx 310  errors 0  rtt 4 ms``."""
    link = st.get("link") or {}
    if st.get("port_error"):
        state = f"waiting for port ({st['port_error']}; retrying every {st.get('retry_s', 1.0):g} s)"
    elif st.get("linked"):
        state = "silent" if st.get("silent") else "linked"
    else:
        state = "port open, no handshake yet"
    errors = sum(int(link.get(k, 0)) for k in ("crc_errors", "garbage", "oversize", "board_errors", "timeouts"))
    rtt = st.get("rtt_ms")
    return (f"{_now()} serial {st.get('board')} -> {st.get('sat')}  {state}  rx {_n(link.get('frames_rx'))} frames  "
            f"tx {_n(link.get('frames_tx'))}  errors {_n(errors)}  rtt {'-' if rtt is None else f'{rtt:.0f}'} ms")


def influx_line(st: Status) -> str:
    """``12:00:01 influx  mqtt up  db ok  written 120,400 points  spool 0  dead letters 0  gaps 0  lag 0.1 s``."""
    db = "db ok" if st.get("db_ok") else f"db NOT OK ({st.get('db_error') or 'no reason given'})"
    return (f"{_now()} influx  mqtt {'up' if st.get('connected') else 'DOWN'}  {db}  "
            f"written {_n(st.get('points_written'))} points  spool {_n(st.get('spool_points'))}  "
            f"dead letters {_n(st.get('dead_letters'))}  gaps {_n(st.get('missing_now'))}  "
            f"lag {float(st.get('lag_s', 0.0)):.1f} s")


def grafana_line(st: Status) -> str:
    """``12:00:01 grafana  mqtt up  alerts 3  commands 2  pending 0  timeouts 0  [poller: 10 polls, 0 errors]``."""
    c = st.get("counters") or {}
    plan = st.get("planner") or {}
    text = (f"{_now()} grafana  mqtt {'up' if st.get('mqtt_connected') else 'DOWN'}  "
            f"alerts {_n(plan.get('alerts', 0))}  commands {_n(c.get('commands_published', 0))}  "
            f"pending {_n(st.get('pending_replies', 0))}  timeouts {_n(c.get('reply_timeouts', 0))}  "
            f"rejected requests {_n(c.get('http_rejected', 0))}")
    poller = st.get("poller")
    if poller:
        text += f"  poller: {_n(poller.get('polls', 0))} polls, {_n(poller.get('query_errors', 0))} errors"
    return text

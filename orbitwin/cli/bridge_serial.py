"""``orbitwin bridge serial``: a dev board (or a firmware-sim port) becomes a satellite's compute payload.

It fails fast: a port that cannot be opened is an error (exit 2) unless ``--retry``, and a ``--sat``
missing from the running twin's retained catalogue is an error with the closest names. When no
catalogue arrives within ``--sat-check-wait`` (no twin has run on the broker yet, or its ACL hides
the catalogue) the bridge prints one warning and goes on: the twin may start later.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orbitwin.cli import arg_types
from orbitwin.cli.lifecycle import stop_on_signals
from orbitwin.cli.mqtt_options import add_mqtt_options, mqtt_settings_from_args
from orbitwin.cli.status_line import add_status_options, report_until_stopped, serial_line


def add_parser(bsub: Any) -> None:
    b = bsub.add_parser("serial", help="bind a dev board on a serial port to a satellite's payload",
                        description="Bind a dev board on a serial port to a satellite's payload. "
                                    "`orbitwin boards` lists the serial ports.")
    b.add_argument("--port", required=True, help="device path, rfc2217://host:port, or a firmware-sim port")
    b.add_argument("--sat", required=True, help="the satellite whose payload the board becomes")
    b.add_argument("--board", help="board name in topics (default: the satellite's name)")
    b.add_argument("--baud", type=arg_types.positive_int, default=115200, help="serial baud rate (default 115200)")
    b.add_argument("--retry", action="store_true",
                   help="a port that cannot be opened is retried (backoff up to 1 s) instead of an error")
    b.add_argument("--sat-check-wait", type=arg_types.non_negative, default=3.0, metavar="SECONDS",
                   help="seconds to wait for the twin's retained catalogue to check --sat against (0: no check; "
                        "default 3)")
    add_status_options(b)
    add_mqtt_options(b, connect_timeout_s=10.0)
    b.set_defaults(func=cmd_bridge_serial)


def _check_sat(a: argparse.Namespace, broker: Any) -> None:
    from bridges.board.catalogue_check import catalogue_names, check_satellite

    if a.sat_check_wait <= 0:
        return
    names = catalogue_names(broker, a.prefix, a.sat_check_wait, a.connect_timeout)
    if names is None:
        print(f"orbitwin bridge serial: warning: no satellite catalogue on the broker within {a.sat_check_wait:g} s "
              f"(is the twin running?); --sat {a.sat} not checked", file=sys.stderr, flush=True)
        return
    check_satellite(a.sat, names)


def cmd_bridge_serial(a: argparse.Namespace) -> int:
    from bridges.board.bridge import SerialBridge, SerialBridgeSettings
    from bridges.board.link import PortUnavailable

    broker = mqtt_settings_from_args(a)
    bridge = SerialBridge(SerialBridgeSettings(a.port, a.sat, broker, a.board, a.prefix, a.baud,
                                               client_id=a.client_id))
    try:
        bridge.link.open_port()
    except PortUnavailable as exc:
        if not a.retry:
            raise ConnectionError(f"{exc} (--retry waits for it)") from None
        print(f"orbitwin bridge serial: {exc}; retrying until it opens (--retry)", file=sys.stderr, flush=True)
    try:
        _check_sat(a, broker)
        stopping = stop_on_signals()
        bridge.start(wait_s=a.connect_timeout)
    except BaseException:
        bridge.link.stop()
        raise
    print(f"orbitwin bridge serial: board {bridge.board} on {a.port} -> satellite {a.sat} via {broker.redacted_url}",
          flush=True)

    def status() -> dict[str, Any]:
        link = bridge.link
        sync = link.time_sync_result
        return {"board": bridge.board, "linked": link.connected, "silent": link.silent,
                **bridge.counters, "link": dict(link.stats), "sat": a.sat, "port": a.port,
                "port_error": "" if link.port_open else link.open_error, "retry_s": link.retry_delay_s,
                "rtt_ms": round(sync.rtt_s * 1e3, 3) if sync is not None else None}

    try:
        report_until_stopped(stopping, a.report_every, status, serial_line, a.json)
    finally:
        bridge.stop()
    return 0

"""``orbitwin bridge serial``: a dev board (or a firmware-sim port) becomes a satellite's compute payload."""

from __future__ import annotations

import argparse
from typing import Any

from orbitwin.cli.lifecycle import report_until_stopped, stop_on_signals
from orbitwin.cli.mqtt_options import add_mqtt_options, mqtt_settings_from_args


def add_parser(bsub: Any) -> None:
    b = bsub.add_parser("serial", help="bind a dev board on a serial port to a satellite's payload")
    b.add_argument("--port", required=True, help="device path, rfc2217://host:port, or a firmware-sim port")
    b.add_argument("--sat", required=True, help="the satellite whose payload the board becomes")
    b.add_argument("--board", help="board name in topics (default: the satellite's name)")
    b.add_argument("--baud", type=int, default=115200)
    b.add_argument("--report-every", type=float, default=10.0, help="seconds between status lines")
    add_mqtt_options(b, connect_timeout_s=10.0)
    b.set_defaults(func=cmd_bridge_serial)


def cmd_bridge_serial(a: argparse.Namespace) -> int:
    from bridges.board.bridge import SerialBridge, SerialBridgeSettings

    broker = mqtt_settings_from_args(a)
    bridge = SerialBridge(SerialBridgeSettings(a.port, a.sat, broker, a.board, a.prefix, a.baud,
                                               client_id=a.client_id))
    stopping = stop_on_signals()
    bridge.start(wait_s=a.connect_timeout)
    print(f"orbitwin bridge serial: board {bridge.board} on {a.port} -> satellite {a.sat} via {broker.redacted_url}",
          flush=True)

    def status() -> dict[str, Any]:
        return {"board": bridge.board, "linked": bridge.link.connected, "silent": bridge.link.silent,
                **bridge.counters, "link": dict(bridge.link.stats)}

    try:
        report_until_stopped(stopping, a.report_every, status)
    finally:
        bridge.stop()
    return 0

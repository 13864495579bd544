"""``orbitwin bridge {influx,serial,grafana}``: the bridges between the twin's MQTT contract and other systems."""

from __future__ import annotations

from typing import Any

from orbitwin.cli import bridge_grafana, bridge_influx, bridge_serial


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bridge", help="bridges between the twin's MQTT contract and other systems")
    bsub = p.add_subparsers(dest="bridge", required=True)
    bridge_influx.add_parser(bsub)
    bridge_grafana.add_parser(bsub)
    bridge_serial.add_parser(bsub)

"""Real server processes for tests: mosquitto (twin.runtime.embedded_broker) and influxd (orbitwin.bench.influxd).

Each server runs on free loopback ports with a generated config in a temp dir; no system service
is assumed or touched. The harnesses live in the package, so benchmarks use them without tests/.
"""

from __future__ import annotations

from orbitwin.bench.influxd import InfluxdProcess, find_influxd
from twin.runtime.embedded_broker import BrokerError, MosquittoProcess, find_mosquitto, free_port, wait_for_port

__all__ = [
    "BrokerError",
    "InfluxdProcess",
    "MosquittoProcess",
    "find_influxd",
    "find_mosquitto",
    "free_port",
    "wait_for_port",
]

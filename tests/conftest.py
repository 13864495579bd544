"""Shared fixtures: real mosquitto and influxd processes on free loopback ports.

Missing binaries skip the tests that need them, unless ORBITWIN_REQUIRE_SERVERS=1
(set it in CI so a missing install fails loudly instead of skipping).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from orbitwin.bench.influxd import InfluxdProcess, find_influxd
from twin.runtime.embedded_broker import MosquittoProcess, find_mosquitto


def _require(binary: str | None, name: str, hint: str) -> None:
    if binary:
        return
    msg = f"{name} not found ({hint})"
    if os.environ.get("ORBITWIN_REQUIRE_SERVERS") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(autouse=True)
def _close_left_recorders() -> Iterator[None]:
    """Close MQTT recorders a failed test left running (see ``mqtt_helpers.close_live_recorders``)."""
    yield
    import sys

    helpers = sys.modules.get("mqtt_helpers")
    if helpers is not None:
        helpers.close_live_recorders()


@pytest.fixture
def mosquitto() -> Iterator[MosquittoProcess]:
    """A fresh mosquitto broker per test (free port, own persistence dir)."""
    _require(find_mosquitto(), "mosquitto", "apt-get install mosquitto")
    broker = MosquittoProcess().start()
    try:
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture(scope="session")
def influxd() -> Iterator[InfluxdProcess]:
    """One influxd 1.x for the whole session; tests should use their own database names."""
    _require(find_influxd(), "influxd", "apt-get install influxdb")
    server = InfluxdProcess().start()
    try:
        yield server
    finally:
        server.cleanup()

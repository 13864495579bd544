"""The orbitwin pytest plugin (entry point ``pytest11``): a real broker, a twin, a client and boards as fixtures.

Fixtures (each torn down after its test):

- ``orbitwin_broker``: a mosquitto on a free loopback port (:class:`~twin.runtime.embedded_broker.MosquittoProcess`);
  skipped when mosquitto is not installed, failed instead with ``ORBITWIN_REQUIRE_SERVERS=1``.
- ``orbitwin_twin``: a twin on that broker (:class:`~orbitwin.testing.harness.TwinHarness`), configured by
  the marker ``@pytest.mark.orbitwin_twin(count=2, dt_s=5.0, seed=1, speed="lockstep")`` (the fields of
  :class:`~orbitwin.testing.harness.TwinConfig`); ``orbitwin_twin_factory(**config)`` starts more.
- ``orbitwin_client``: an :class:`~orbitwin.client.OrbitwinClient` on the broker (the marker's prefix).
- ``orbitwin_board_factory(sat)``: a firmware-sim board on a pty bridged as ``sat``'s payload
  (:class:`~orbitwin.testing.boards.SimBoard`).

Sim-time assertions: :mod:`orbitwin.testing.assertions` (``within``, ``assert_within``). The plugin loads in
every pytest run, so it imports nothing heavy until a fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from orbitwin.client import OrbitwinClient
    from orbitwin.testing.boards import SimBoard
    from orbitwin.testing.harness import TwinHarness
    from twin.runtime.embedded_broker import MosquittoProcess

MARKER = "orbitwin_twin"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(**config): the twin the orbitwin_twin fixture starts (count, "
                                       "names, seed, dt_s, speed: lockstep|real|xN|max, network, rates, start, keys, "
                                       "prefix; orbitwin.testing.harness.TwinConfig)")


def _marker_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keywords only (count=, dt_s=, ...), not {marker.args}")
    return dict(marker.kwargs)


@pytest.fixture
def orbitwin_broker() -> Iterator[MosquittoProcess]:
    """A fresh mosquitto on a free loopback port, with its own persistence directory."""
    from twin.runtime.embedded_broker import MosquittoProcess, find_mosquitto

    if find_mosquitto() is None:
        msg = "mosquitto not found (apt-get install mosquitto)"
        if os.environ.get("ORBITWIN_REQUIRE_SERVERS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    broker = MosquittoProcess().start()
    try:
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def orbitwin_twin_factory(orbitwin_broker: MosquittoProcess,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., TwinHarness]]:
    """``make(**config)``: start a twin of :class:`~orbitwin.testing.harness.TwinConfig` on the broker."""
    from orbitwin.testing.harness import TwinConfig, TwinHarness

    started: list[TwinHarness] = []

    def make(**config: Any) -> TwinHarness:
        try:
            cfg = TwinConfig(**config)
        except TypeError as exc:
            raise TypeError(f"orbitwin twin config: {exc}") from None
        harness = TwinHarness(cfg, orbitwin_broker.url, tmp_path_factory.mktemp("orbitwin-twin"))
        started.append(harness)
        return harness.start()

    try:
        yield make
    finally:
        errors = []
        for harness in reversed(started):
            try:
                harness.stop()
            except Exception as exc:  # noqa: BLE001 - every twin is stopped; the first failure is raised
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def orbitwin_twin(request: pytest.FixtureRequest, orbitwin_twin_factory: Callable[..., TwinHarness]) -> TwinHarness:
    """A twin configured by ``@pytest.mark.orbitwin_twin(...)`` (default: 3 satellites, dt 1 s, lockstep)."""
    return orbitwin_twin_factory(**_marker_config(request))


@pytest.fixture
def orbitwin_client(request: pytest.FixtureRequest, orbitwin_broker: MosquittoProcess) -> Iterator[OrbitwinClient]:
    """A client connected to the broker, under the marker's prefix (default ``orbitwin/v1``)."""
    from orbitwin.client import OrbitwinClient
    from twin.contract.topics import DEFAULT_PREFIX

    prefix = _marker_config(request).get("prefix", DEFAULT_PREFIX)
    with OrbitwinClient.connect(orbitwin_broker.url, prefix=prefix) as client:
        yield client


@pytest.fixture
def orbitwin_board_factory(orbitwin_broker: MosquittoProcess) -> Iterator[Callable[..., SimBoard]]:
    """``make(sat, seed=7)``: a firmware-sim board on a pty, bridged to the broker as ``sat``'s payload."""
    from orbitwin.testing.boards import SimBoard

    boards: list[SimBoard] = []

    def make(sat: str, **options: Any) -> SimBoard:
        board = SimBoard(sat, orbitwin_broker.url, **options)
        boards.append(board)
        return board

    try:
        yield make
    finally:
        for board in reversed(boards):
            board.stop()

"""A twin on MQTT inside the test process: paced (``speed``), or in lockstep with the test.

In **lockstep** the sim clock moves only when the test moves it (:meth:`TwinHarness.advance`) or when a
request arrives: a request makes the twin take one tick, the tick that executes it, as a live twin
does at its next tick (a time-tagged request waits for :meth:`advance`). A test in lockstep never
races the wall clock: a slow, shared machine only makes it take longer. **Paced** (``speed``
``real``, ``x10``, ``max``) the twin runs as ``orbitwin run`` does, in a thread; boards in the loop
need ``real`` (a board runs on its own clock).

The twin is the runtime's own :class:`~twin.runtime.mqtt_service.TwinService` over a real broker, so
what the test sees on MQTT is what ``orbitwin run`` publishes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.contract.topics import DEFAULT_PREFIX
from twin.mqtt import MqttSettings

LOCKSTEP = "lockstep"


@dataclass(frozen=True)
class TwinConfig:
    """What twin to run: the satellites (``count`` first of the catalogue, or ``names`` globs), the
    seed, the tick ``dt_s`` (sim s), ``speed`` (``lockstep``, ``real``, ``xN``, ``max``), the network
    model, compute placement (a policy name), packet ``rates`` (``hk=1,orbit=0.2``, Hz), the sim
    ``start`` (ISO 8601 UTC; None: the catalogue's epoch) and a request key file (``keys``)."""

    count: int | None = 3
    names: str | None = None
    seed: int = 0
    dt_s: float = 1.0
    speed: str = LOCKSTEP
    network: bool = False
    compute_policy: str | None = None
    rates: str | None = None
    start: str | None = None
    keys: str | None = None
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        from twin.runtime.clock import parse_speed

        if self.dt_s <= 0:
            raise ValueError(f"dt_s must be > 0 sim seconds, not {self.dt_s}")
        if self.speed != LOCKSTEP:
            try:
                parse_speed(self.speed)
            except ValueError:
                raise ValueError(f"speed must be lockstep, real, xN or max, not {self.speed!r}") from None


class _Inbox:
    """The link's request inbox, telling the lockstep loop when a request arrives."""

    def __init__(self, wake: threading.Condition) -> None:
        self._items: deque[Any] = deque()
        self._wake = wake

    def put(self, msg: Any) -> None:
        with self._wake:
            self._items.append(msg)
            self._wake.notify_all()

    def get_nowait(self) -> Any:
        return self._items.popleft()  # IndexError when empty: process_requests stops there

    def empty(self) -> bool:
        return not self._items


class TwinHarness:
    """A twin of ``config`` on the broker ``broker`` (settings or URL), its state under ``state_dir``."""

    def __init__(self, config: TwinConfig, broker: MqttSettings | str, state_dir: str | Path) -> None:
        from twin.contract.telemetry_encoder import PacketSchedule, parse_rates
        from twin.runtime.launch import RunSpec, request_verifier
        from twin.runtime.mqtt_link import LinkSettings, MqttLink
        from twin.runtime.mqtt_service import TwinService
        from twin.runtime.run_loop import FleetOptions, build_twin

        self.config = config
        verifier = request_verifier(RunSpec(keys_path=config.keys))
        self.twin = build_twin(FleetOptions(count=config.count, names=config.names, seed=config.seed,
                                            dt_s=config.dt_s, network=config.network, start=config.start,
                                            compute_policy=config.compute_policy))
        try:
            schedule = PacketSchedule(self.twin.n, self.twin.dt_s, parse_rates(config.rates))
            self.link = MqttLink(MqttSettings.coerce(broker),
                                 LinkSettings(prefix=config.prefix, state_dir=str(state_dir)))
            self.service = TwinService(self.twin, self.link, schedule, auth=verifier)
        except BaseException:
            self.twin.close()
            raise
        self._wake = threading.Condition()
        self._target_t = self.twin.t_s
        self._stop = threading.Event()
        self.error: BaseException | None = None
        if self.lockstep:
            self.link.inbox = _Inbox(self._wake)  # type: ignore[assignment]
        self._thread = threading.Thread(target=self._run, name="orbitwin-test-twin", daemon=True)

    @property
    def lockstep(self) -> bool:
        return self.config.speed == LOCKSTEP

    @property
    def speed_factor(self) -> float | None:
        """Sim seconds per wall second of a paced twin (None: lockstep, or unpaced ``max``)."""
        from twin.runtime.clock import parse_speed

        return None if self.lockstep else parse_speed(self.config.speed)

    @property
    def t_s(self) -> float:
        """Sim seconds since the twin's start (the ``t_s`` of its messages)."""
        return float(self.twin.t_s)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.twin.names)

    def start(self, timeout_s: float = 30.0) -> TwinHarness:
        """Connect (its birth is on the broker when this returns) and start the twin's thread."""
        self.link.start(wait_s=timeout_s)
        self._thread.start()
        return self

    # --- the twin's thread ---------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self.lockstep:
                self._lockstep()
            else:
                from twin.runtime.clock import Pacer, parse_speed

                self.service.run(Pacer(parse_speed(self.config.speed)), should_stop=self._stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - kept and raised in the test's thread
            self.error = exc
        finally:
            with self._wake:
                self._wake.notify_all()

    def _lockstep(self) -> None:
        inbox = self.link.inbox
        assert isinstance(inbox, _Inbox)
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._stop.is_set() or not inbox.empty()
                                    or self._target_t > self.twin.t_s + 1e-9)
            if self._stop.is_set():
                return
            taken = self.service.process_requests()
            if taken or self._target_t > self.twin.t_s + 1e-9:
                self.twin.step()
                self.service.publish_tick()
            with self._wake:
                self._wake.notify_all()

    # --- the test's side -----------------------------------------------------------------
    def advance(self, sim_s: float, timeout_s: float | None = None) -> float:
        """Lockstep: step the twin until ``sim_s`` more sim seconds have passed (whole ticks) and the broker
        has taken everything it published; returns the new sim time. ``timeout_s`` (wall s; default 60 s
        plus 50 ms per tick) only guards against a twin that stopped."""
        if not self.lockstep:
            raise RuntimeError(f"advance() is for a lockstep twin; this one runs at speed {self.config.speed}")
        if sim_s < 0:
            raise ValueError(f"cannot advance by {sim_s} s: sim time only moves forward")
        ticks = int(-(-round(sim_s / self.twin.dt_s, 9) // 1))
        wait = 60.0 + 0.05 * ticks if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait
        with self._wake:
            self._target_t = max(self._target_t, self.twin.t_s + ticks * self.twin.dt_s)
            self._wake.notify_all()
            reached = self._wake.wait_for(lambda: self.error is not None
                                          or self.twin.t_s >= self._target_t - 1e-9, wait)
        self._check()
        if not reached:
            raise TimeoutError(f"the twin did not reach sim t={self._target_t:g} s within {wait:g} s "
                               f"(at t={self.t_s:g} s)")
        self.flush(max(deadline - time.monotonic(), 1.0))
        return self.t_s

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until the broker has taken every message the twin published (wall ``timeout_s``)."""
        self.link.wait_for_room(0, timeout_s=timeout_s)
        if self.link.outstanding > 0:
            raise TimeoutError(f"the broker has not taken {self.link.outstanding} of the twin's messages "
                               f"within {timeout_s:g} s")

    def _check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the twin stopped: {self.error!r}") from self.error

    def stop(self) -> None:
        """Stop the twin (its death is published) and free it; raises if it had failed."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(30)
        try:
            self.link.stop(graceful=True)
        finally:
            self.twin.close()
        self._check()

    def __enter__(self) -> TwinHarness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

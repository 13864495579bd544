"""Hardware in the loop: a real board (over ``orbitwin bridge serial``) as a satellite's payload.

The serial bridge announces a board on ``{prefix}/board/{board}/state`` (retained, with the
satellite it binds to) and streams its measurements on ``{prefix}/board/{board}/tm``. The twin
then takes that satellite's payload from the board, scaled to flight hardware:

* utilisation: the board's utilisation is the fraction of the payload's accelerators at work;
* power: ``n_devices x idle + working devices x (peak - idle) x utilisation`` (design values);
* throughput: ``utilisation x working devices x device_peak_tops``;
* errors: the board's own detected SEU counts (corrected / uncorrectable); its latch-up latches
  the device the twin latched (device 0 if the board latched by itself).

Commands and radiation effects the twin decides for that satellite go to the board as requests
on ``{prefix}/board/{board}/cmd`` and ``/fault``. When the board's data is older than
``stale_s`` the twin falls back to the simulated payload (``payload_source`` 2) and says so in
events. Faster than real time, the board cannot keep up: the twin holds its last measurement
(``payload_source`` 3) rather than pretending the board ran faster.

Measurements arrive already checked (:func:`twin.contract.board_messages.parse_board_measurement`:
types, finiteness, ranges); the engine checks the scaled sample again before it enters the state.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from twin.contract.board_messages import BoardMeasurement
from twin.core.payload import HardwareSample, PayloadParams

SOURCE_SIM, SOURCE_BOARD, SOURCE_BOARD_LOST, SOURCE_BOARD_HELD = 0, 1, 2, 3


class BoardBackend:
    """A :class:`twin.core.payload.PayloadBackend` fed by one board's MQTT telemetry."""

    def __init__(self, board: str, sat: str, params: PayloadParams, publish: Callable[[str, bytes], Any],
                 prefix: str, *, stale_s: float = 2.0, realtime: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.board = board
        self.sat = sat
        self.p = params
        self.publish = publish
        self.prefix = prefix
        self.stale_s = stale_s
        self.realtime = realtime
        self.clock = clock
        self.last: BoardMeasurement | None = None
        self.last_at = -1e18
        self.latched_device = 0
        self.linked = True
        self._ids = itertools.count()
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def update(self, tm: BoardMeasurement) -> None:
        """A checked board telemetry message (``board/{board}/tm``) arrived."""
        self.last = tm
        self.last_at = self.clock()
        self.linked = tm.linked

    def sample(self) -> HardwareSample | None:
        """The latest measurement scaled to the flight payload; None when there is none, the link is
        down or (in real time) it is older than ``stale_s``."""
        age = self.clock() - self.last_at
        if self.last is None or not self.linked or (self.realtime and age > self.stale_s):
            return None
        m = self.last
        util = min(max(m.utilisation, 0.0), 1.0)
        latched = m.latched
        p = self.p
        working = p.n_devices - (1 if latched else 0)
        power = p.n_devices * p.device_idle_w + working * (p.device_peak_w - p.device_idle_w) * util
        power += p.latch_extra_w if latched else 0.0
        return HardwareSample(
            util=util * working / p.n_devices,
            power_w=power,
            throughput_tops=util * working * p.device_peak_tops,
            ecc_corrected_total=m.seu_corrected,
            ecc_uncorrectable_total=m.seu_uncorrectable,
            latched_mask=(1 << self.latched_device) if latched else 0,
            hung=False,
            held=not self.realtime,
        )

    def _request(self, leaf: str, body: dict[str, Any]) -> None:
        body = {**body, "id": f"twin-{self.sat}-{next(self._ids)}"}
        self.sent.append((leaf, body))
        del self.sent[:-100]
        self.publish(f"{self.prefix}/board/{self.board}/{leaf}", json.dumps(body).encode())

    def command(self, name: str, args: dict[str, Any]) -> None:
        if name == "set_payload_load":
            self._request("cmd", {"command": "set_load", "args": {"load": args["load"]}})
        elif name == "throttle":
            self._request("cmd", {"command": "set_throttle", "args": {"factor": args["factor"]}})
        elif name == "set_power_cap":
            p = self.p
            frac = (args["power_w"] - p.n_devices * p.device_idle_w) / (p.n_devices * (p.device_peak_w - p.device_idle_w))
            self._request("cmd", {"command": "set_throttle", "args": {"factor": min(max(frac, 0.0), 1.0)}})
        elif name == "power_cycle":
            self._request("cmd", {"command": "power_cycle", "args": {}})

    def radiation_effect(self, kind: str, device: int, count: int) -> None:
        if kind in ("seu", "seu_uncorrectable"):
            name = "seu" if kind == "seu" else "seu_double"
            self._request("fault", {"fault": name, "args": {"count": int(count)}})
        elif kind == "sel":
            self.latched_device = device
            self._request("fault", {"fault": "latchup", "args": {}})
        elif kind == "hang":
            self._request("fault", {"fault": "hang", "args": {}})

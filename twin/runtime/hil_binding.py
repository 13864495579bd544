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

Compute jobs the scheduler places on the bound satellite run on the board (:meth:`BoardBackend.run_job`:
a ``run_job`` request of ``work_dev_s x jobs_per_s_max`` unit jobs, so one device-second of twin work
is one second of the board at full duty); their ends come back on ``{prefix}/board/{board}/job`` with
the board-measured run time and the uncorrectable upsets during the job (:meth:`BoardBackend.job_done`),
and the engine collects them each tick (:meth:`BoardBackend.job_results`). A board keeps no jobs over
a reset: a job with no end after ``job_timeout_factor`` x its expected time + ``job_timeout_s``
(on the backend's clock) fails as ``board_timeout``; cancelled, refused or lost ones fail with that reason.

Measurements arrive already checked (:func:`twin.contract.board_messages.parse_board_measurement`:
types, finiteness, ranges); the engine checks the scaled sample again before it enters the state.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from twin.contract.board_messages import BoardJobResult, BoardMeasurement
from twin.core.payload import HardwareSample, PayloadParams

SOURCE_SIM, SOURCE_BOARD, SOURCE_BOARD_LOST, SOURCE_BOARD_HELD = 0, 1, 2, 3


class BoardBackend:
    """A :class:`twin.core.payload.PayloadBackend` fed by one board's MQTT telemetry."""

    def __init__(self, board: str, sat: str, params: PayloadParams, publish: Callable[[str, bytes], Any],
                 prefix: str, *, stale_s: float = 2.0, realtime: bool = True,
                 clock: Callable[[], float] = time.monotonic, jobs_per_s_max: float | None = None,
                 job_timeout_factor: float = 3.0, job_timeout_s: float = 5.0) -> None:
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
        self.jobs_per_s_max = jobs_per_s_max  # the board's unit jobs per second at full duty (CAPABILITIES)
        self.job_timeout_factor = job_timeout_factor
        self.job_timeout_s = job_timeout_s
        self.jobs_pending: dict[int, float] = {}  # job id -> its deadline on ``clock``
        self._job_results: list[tuple[int, float, int, str | None]] = []
        self.job_counters: dict[str, int] = dict.fromkeys(("sent", "done", "failed", "timeout", "unknown", "cancelled"), 0)

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

    def run_job(self, job_id: int, work_dev_s: float) -> None:
        """Run a dispatched job on the board: ``max(1, round(work_dev_s x jobs_per_s_max))`` unit jobs.
        Raises (the engine requeues the job) while the board's rate is unknown."""
        rate = self.jobs_per_s_max
        if not rate or rate <= 0:
            raise RuntimeError(f"board {self.board} has not reported its jobs_per_s_max")
        ops = min(max(1, round(float(work_dev_s) * rate)), 2**32 - 1)
        self.jobs_pending[int(job_id)] = self.clock() + self.job_timeout_factor * ops / rate + self.job_timeout_s
        self.job_counters["sent"] += 1
        self._request("cmd", {"command": "run_job", "args": {"job_id": int(job_id), "ops": ops}})

    def cancel_job(self, job_id: int) -> None:
        """Stop a job the twin no longer wants (its deadline passed): the board drops it and its late
        ``cancelled`` report is ignored (the job is no longer pending here)."""
        if self.jobs_pending.pop(int(job_id), None) is not None:
            self.job_counters["cancelled"] += 1
            self._request("cmd", {"command": "cancel_job", "args": {"job_id": int(job_id)}})

    def job_done(self, r: BoardJobResult) -> bool:
        """A checked job end (``board/{board}/job``) arrived; False for a job not pending here (ended, timed
        out, or another twin's)."""
        if self.jobs_pending.pop(r.job_id, None) is None:
            self.job_counters["unknown"] += 1
            return False
        failed = None if r.status == "done" else f"board_{r.status}"
        self.job_counters["done" if failed is None else "failed"] += 1
        self._job_results.append((r.job_id, r.busy_s, r.upsets, failed))
        return True

    def job_results(self) -> list[tuple[int, float, int, str | None]]:
        """The job ends since the last call, ``(job id, board_s, upsets, failed)``, with the pending jobs
        past their deadline as failed ``board_timeout``; cleared."""
        now = self.clock()
        for job_id, deadline in list(self.jobs_pending.items()):
            if now > deadline:
                del self.jobs_pending[job_id]
                self.job_counters["timeout"] += 1
                self._job_results.append((job_id, 0.0, 0, "board_timeout"))
        out, self._job_results = self._job_results, []
        return out

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

"""Hardware in the loop: satellites whose payload is a real board (a :class:`PayloadBackend`).

Functions over the engine (:class:`twin.core.engine.FleetTwin`, seen here through the
:class:`HilTwin` protocol so this module does not import the engine). Binding and unbinding a
board, replacing the model's payload row by the board's measurement each tick (utilisation 0..1,
power in W, throughput in TOPS, ECC counts, latched devices, hang), with ``payload_source``
(0 simulated, 1 board, 2 board lost: the model runs, 3 board held) and ``hil_divergence``
(the board's utilisation departs from the commanded one by more than :data:`HIL_DIVERGENCE`);
and, with compute placement on, the jobs a linked board runs: their results taken back at the
start of the tick, jobs past their deadline cancelled, new ones sent (work in device-seconds,
times in s of sim time). A board's bad data or failure never stops the step: it becomes an event.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from twin.core import payload as pl
from twin.core.compute.coupling import ComputeCoupling
from twin.core.design import Design

__all__ = ["HIL_DIVERGENCE", "HilTwin", "apply_backends", "attach_backend", "collect_board_jobs", "detach_backend",
           "send_board_jobs"]

HIL_DIVERGENCE = 0.25  # utilisation difference between board and twin that raises the alarm


class HilTwin(Protocol):
    """What the hardware in the loop reads and changes of the engine (:class:`twin.core.engine.FleetTwin`)."""

    design: Design
    t_s: float
    payload: pl.PayloadState
    payload_source: np.ndarray
    hil_divergence: np.ndarray
    board_samples_rejected: int
    compute: ComputeCoupling | None

    def _emit(self, sat: int, kind: str, name: str, severity: str, **detail: Any) -> None: ...


def collect_board_jobs(twin: HilTwin, t0: float) -> None:
    """Before the scheduler plans the tick starting at ``t0``: mark the satellites whose linked board runs
    their jobs, and hand the scheduler the results the boards report."""
    assert twin.compute is not None
    sched = twin.compute.scheduler
    sched.external[:] = False
    for i, backend in twin.payload.backends.items():
        # a linked board runs the jobs placed on its satellite (hardware in the loop); its results first
        sched.external[i] = callable(getattr(backend, "run_job", None)) and int(twin.payload_source[i]) in (1, 3)
        try:
            for job_id, board_s, upsets, failed in getattr(backend, "job_results", lambda: [])():
                sched.external_done(int(job_id), t0, float(board_s), int(upsets), failed)
        except Exception as exc:  # noqa: BLE001 - a board's bad report must never stop the step
            twin._emit(i, "hil", "board_job_result_rejected", "warning", board=getattr(backend, "board", None),
                       why=f"{type(exc).__name__}: {str(exc)[:120]}")


def send_board_jobs(twin: HilTwin, t0: float) -> None:
    """After the scheduler planned the tick starting at ``t0``: tell the boards which of their jobs were
    cancelled, and send them the jobs newly placed on their satellites."""
    assert twin.compute is not None
    p = twin.payload
    sched = twin.compute.scheduler
    cancelled, sched.external_cancelled = sched.external_cancelled, []
    for job_id, sat in cancelled:  # their deadline passed while a board ran them
        cancel = getattr(p.backends.get(sat), "cancel_job", None)
        if callable(cancel):
            try:
                cancel(job_id)
            except Exception:  # noqa: BLE001 - the job has ended here whatever the board does
                pass
    for job_id, sat, device, work_dev_s in sched.external_dispatch(twin.t_s):
        try:
            p.backends[sat].run_job(job_id, work_dev_s)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - the job goes back to the queue, the step goes on
            sched.external_done(job_id, t0, 0.0, 0, failed="board_unreachable")
            twin._emit(sat, "hil", "board_job_not_sent", "warning", board=getattr(p.backends[sat], "board", None),
                       job=job_id, why=f"{type(exc).__name__}: {str(exc)[:120]}")


def apply_backends(twin: HilTwin, plan: pl.PayloadOutput) -> pl.PayloadOutput:
    """Rows of satellites whose payload is a board: the board's measurement replaces the model."""
    if not twin.payload.backends:
        if twin.payload_source.any() or twin.hil_divergence.any():
            twin.payload_source[:] = 0
            twin.hil_divergence[:] = False
        return plan
    for i, backend in twin.payload.backends.items():
        why: str | None = None
        try:
            sample = backend.sample()
        except Exception as exc:  # noqa: BLE001 - a board's bad data must never stop the step
            sample, why = None, f"{type(exc).__name__}: {str(exc)[:120]}"
        else:
            why = None if sample is None else pl.sample_problem(sample, twin.design.payload)
            if why is not None:
                sample = None
        if why is not None:
            twin.board_samples_rejected += 1
            twin._emit(i, "hil", "board_sample_rejected", "warning", board=getattr(backend, "board", None),
                       why=why)
        old_src = int(twin.payload_source[i])
        if sample is None:
            src = 2
        else:
            src = 3 if sample.held else 1
            expected = float(plan.util[i])
            diverged = abs(sample.util - expected) > HIL_DIVERGENCE
            if diverged != bool(twin.hil_divergence[i]):
                twin.hil_divergence[i] = diverged
                twin._emit(i, "hil", "divergence" if diverged else "divergence_cleared",
                           "warning" if diverged else "info", board_util=sample.util, expected_util=expected)
            plan.util[i], plan.power_w[i], plan.throughput_tops[i] = sample.util, sample.power_w, sample.throughput_tops
            twin.payload.ecc_corrected[i, :] = 0
            twin.payload.ecc_corrected[i, 0] = sample.ecc_corrected_total
            twin.payload.ecc_uncorrectable[i, :] = 0
            twin.payload.ecc_uncorrectable[i, 0] = sample.ecc_uncorrectable_total
            bits = (sample.latched_mask >> np.arange(twin.design.payload.n_devices)) & 1
            twin.payload.latched[i, :] = bits.astype(bool)
            twin.payload.hung[i] = sample.hung
        if src != old_src:
            twin.payload_source[i] = src
            name = {1: "board_linked", 2: "board_lost_fallback", 3: "board_held"}[src]
            if src == 2 and old_src == 0:
                name = "board_waiting"  # bound, no measurement yet: the model runs meanwhile
            twin._emit(i, "hil", name, "warning" if src == 2 else "info",
                       board=getattr(backend, "board", None))
    return plan


def attach_backend(twin: HilTwin, sat: int, backend: pl.PayloadBackend) -> None:
    """Bind a hardware backend to satellite ``sat``'s payload."""
    twin.payload.backends[sat] = backend


def detach_backend(twin: HilTwin, sat: int) -> None:
    """Give satellite ``sat`` its simulated payload back."""
    if twin.payload.backends.pop(sat, None) is not None:
        twin.payload_source[sat] = 0
        twin.hil_divergence[sat] = False
        twin._emit(sat, "hil", "board_unbound", "info")

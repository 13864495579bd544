"""Replies to ``run_job`` requests through the job's life, from the scheduler's watched-job events.

A client submits a job with the ``run_job`` command (any MQTT client, signed where the twin
requires it, on a satellite topic or a fleet topic with a selection: the satellites it may run
on). It is answered on the request's reply route:

=============  =====================================================================================
``queued``     on receipt: the request is checked and waits for its tick (``execute_t_s``)
``accepted``   placed: ``job_id`` and ``placement`` (satellite, device, one-way delay, when it can run)
``migrated``   its checkpoint moved to another satellite (``from``, ``to``, bytes, arrival)
``requeued``   its device or board failed, or its satellite is leaving its jurisdiction: back in
               the queue (from its last checkpoint; with a jurisdiction its progress moves with it);
               ``accepted`` follows again when it is placed anew
``completed``  done: ``outcome`` done, late or corrupted, measured ``latency_ms`` (interactive),
               accelerator energy and its battery and array parts (Wh), upsets, migrations,
               ``board_s`` when a board in the loop ran it, and ``downlink_gateway`` for a job
               with a jurisdiction (always a gateway in it)
``failed``     its deadline passed first (``reason`` deadline_missed)
``rejected``   it could not be run: ``reason`` no_capacity, latency_bound, not_allowed (no free
               satellite in its selection or jurisdiction), invalid, or a request error as for
               any command
=============  =====================================================================================

Pure translation (no MQTT): :class:`JobReplies` keeps each watched job's reply route until the job
ends and turns a :class:`~twin.core.compute.jobs.JobEvent` into a reply status and fields.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from twin.core.compute.jobs import OUTCOMES, JobEvent

R = TypeVar("R")

__all__ = ["JOB_STATUSES", "OUTCOMES", "JobReplies", "job_reply"]
JOB_STATUSES = ("queued", "accepted", "migrated", "requeued", "completed", "failed", "rejected")
MESSAGES = {
    "no_capacity": "no working device was free where the job could start when it had to",
    "latency_bound": "no satellite can answer within the latency bound",
    "not_allowed": "no satellite with a free device in the job's selection or jurisdiction when it had to start",
    "invalid": "the job's sizes are not finite and non-negative, or its work is not positive",
    "deadline_missed": "the deadline passed before the work was done",
}


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else x


def job_reply(ev: JobEvent, names: Sequence[str], gateways: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
    """The reply status and fields for one event of a watched job (satellites and gateways by name)."""
    d = ev.detail
    base: dict[str, Any] = {"job_id": ev.job_id, "job_t_s": ev.t_s}
    if ev.what == "placed":
        return "accepted", base | {"placement": {"sat": names[d["sat"]], "device": d["device"],
                                                 "delay_ms": d["delay_s"] * 1e3, "ready_t_s": d["ready_s"]}}
    if ev.what == "migrated":
        return "migrated", base | {"from": names[d["from_sat"]], "to": names[d["sat"]], "bytes": d["bytes"],
                                   "arrives_t_s": d["arrives_s"], "done_dev_s": d["done_dev_s"]}
    if ev.what == "requeued":
        return "requeued", base | {"sat": names[d["sat"]] if d["sat"] >= 0 else None, "why": d["reason"],
                                   "resume_from_dev_s": d["resume_from_dev_s"]}
    sat = names[d["sat"]] if d["sat"] >= 0 else None
    if d["state"] == "completed":
        return "completed", base | {
            "outcome": d["reason"], "sat": sat, "latency_ms": _num(d["latency_s"] * 1e3),
            "energy_wh": d["energy_j"] / 3600.0, "battery_wh": d["battery_j"] / 3600.0,
            "array_wh": (d["energy_j"] - d["battery_j"]) / 3600.0, "upsets": d["upsets"],
            "migrations": d["migrations"], "bytes_moved": d["bytes_moved"], "board_s": _num(d["board_s"]),
            "downlink_gateway": gateways[d["gateway"]] if 0 <= d["gateway"] < len(gateways) else None}
    status = "failed" if d["state"] == "failed" else "rejected"
    return status, base | {"reason": d["reason"], "message": MESSAGES.get(d["reason"], d["reason"]), "sat": sat,
                           "energy_wh": d["energy_j"] / 3600.0}


class JobReplies(Generic[R]):
    """Reply routes of watched jobs, from the ``run_job`` command's completion until the job ends."""

    def __init__(self) -> None:
        self.routes: dict[int, R] = {}

    def __len__(self) -> int:
        return len(self.routes)

    def bind(self, job_id: int, route: R) -> None:
        """The ``run_job`` request that created ``job_id`` replies on ``route``."""
        self.routes[job_id] = route

    def replies(self, events: Sequence[JobEvent], names: Sequence[str],
                gateways: Sequence[str] = ()) -> list[tuple[R, str, dict[str, Any], bool]]:
        """``(route, status, fields, last)`` per event of a bound job; ``last``: the job ended (its route is
        dropped). Events of jobs nobody bound are skipped."""
        out: list[tuple[R, str, dict[str, Any], bool]] = []
        for ev in events:
            route = self.routes.get(ev.job_id)
            if route is None:
                continue
            status, fields = job_reply(ev, names, gateways)
            last = ev.what == "ended"
            if last:
                del self.routes[ev.job_id]
            out.append((route, status, fields, last))
        return out

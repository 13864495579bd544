"""Compute payload: N accelerators per satellite, vectorised over the fleet.

Utilisation follows a workload (a load set-point and a queue of work in tera-operations),
limited by the commanded throttle, power cap, onboard FDIR and thermal throttling at the
junction; power = idle + (peak - idle) x load per device. Latched devices draw a latch-up
current on top of idle and do no work until power-cycled.

A satellite's payload can be replaced by a hardware backend (a real board): the engine then
takes that row from :class:`PayloadBackend.sample` and routes commands and radiation effects
to it. Nothing else in the twin can tell the difference, except the ``payload_source`` flag.
Figures and sources: docs/physics.md#payload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from twin.core.params import param


@dataclass(frozen=True)
class PayloadParams:
    """Design of the compute payload (section ``payload``)."""

    n_devices: int = param("1", "Accelerators per satellite", min=1, max=64)
    device_peak_w: float = param("W", "Device power at full load", min=1.0)
    device_idle_w: float = param("W", "Device power when idle but powered", min=0.0)
    device_peak_tops: float = param("TOPS", "Device throughput at full load (dense int8)", min=0.0)
    junction_rise_k_per_w: float = param("K/W", "Junction-to-cold-plate thermal resistance", min=0.0)
    throttle_start_k: float = param("K", "Junction temperature where thermal throttling starts", min=250.0)
    throttle_max_k: float = param("K", "Junction temperature of the deepest throttle", min=250.0)
    throttle_floor: float = param("1", "Deepest thermal throttle factor", min=0.0, max=1.0)
    latch_extra_w: float = param("W", "Extra draw of a latched device (latch-up current x rail)", min=0.0)
    power_cycle_s: float = param("s", "Time a device stays off during a power cycle", min=0.0)
    initial_load: float = param("1", "Load set-point at start", min=0.0, max=1.0)

    def validate(self, section: str) -> None:
        from twin.core.params import DesignError

        if self.device_idle_w > self.device_peak_w:
            raise DesignError(f"{section}.device_idle_w", "must not exceed device_peak_w")
        if self.throttle_max_k <= self.throttle_start_k:
            raise DesignError(f"{section}.throttle_max_k", "must be above throttle_start_k")


class HardwareSample(NamedTuple):
    """What a hardware-backed payload reports, already scaled to flight-hardware units."""

    util: float
    power_w: float
    throughput_tops: float
    ecc_corrected_total: int
    ecc_uncorrectable_total: int
    latched_mask: int
    hung: bool
    held: bool = False  # faster than real time: the board's last measurement, held


def sample_problem(s: HardwareSample, p: PayloadParams) -> str | None:
    """Why a hardware sample cannot enter the state (not finite, or outside what the design's payload
    can do), or None when it is sound. The bounds come from ``p``: utilisation 0..1, power up to every
    device at peak plus latch-up current, throughput up to every device at peak, counts >= 0, a
    latch mask of ``n_devices`` bits."""
    for name in ("util", "power_w", "throughput_tops"):
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{name} is not a finite number"
    bounds = {"util": 1.0, "power_w": p.n_devices * (p.device_peak_w + p.latch_extra_w),
              "throughput_tops": p.n_devices * p.device_peak_tops}
    for name, high in bounds.items():
        if not 0.0 <= getattr(s, name) <= high:
            return f"{name}={getattr(s, name)!r} outside [0, {high:g}]"
    for name in ("ecc_corrected_total", "ecc_uncorrectable_total"):
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**63:
            return f"{name} is not a count"
    if isinstance(s.latched_mask, bool) or not isinstance(s.latched_mask, int) \
            or not 0 <= s.latched_mask < 1 << p.n_devices:
        return f"latched_mask is not a mask of {p.n_devices} devices"
    return None


class PayloadBackend(Protocol):
    """One satellite's payload provided by something else than the model (e.g. a board)."""

    def sample(self) -> HardwareSample | None:
        """Latest measurement, or ``None`` when the backend is not available (model takes over)."""

    def command(self, name: str, args: dict[str, Any]) -> None:
        """Forward a payload command (set_payload_load, throttle, power_cycle, ...)."""

    def radiation_effect(self, kind: str, device: int, count: int) -> None:
        """Forward an SEU (``kind='seu'``) or latch-up (``'sel'``) decided by the twin."""


class PayloadOutput(NamedTuple):
    util: np.ndarray  # (n,) mean utilisation of all devices
    power_w: np.ndarray  # (n,) electrical demand = heat into the payload node
    throughput_tops: np.ndarray  # (n,)
    throttle: np.ndarray  # (n,) effective throttle factor 0..1
    junction_temp_k: np.ndarray  # (n,) hottest junction
    devices_working: np.ndarray  # (n,) int, powered, not latched, not hung


@dataclass
class PayloadState:
    """Mutable payload state over the fleet (n satellites, d devices)."""

    load_setpoint: np.ndarray
    power_cap_w: np.ndarray
    cmd_throttle: np.ndarray
    fdir_throttle: np.ndarray
    backlog_top: np.ndarray
    latched: np.ndarray  # (n, d) bool
    off_remaining_s: np.ndarray  # (n, d) power-cycle countdown
    hung: np.ndarray  # (n,) bool
    ecc_corrected: np.ndarray  # (n, d) int64
    ecc_uncorrectable: np.ndarray  # (n, d) int64
    sel_total: np.ndarray  # (n,) int64
    backends: dict[int, PayloadBackend] = field(default_factory=dict)

    @classmethod
    def initial(cls, n: int, p: PayloadParams) -> PayloadState:
        d = p.n_devices
        return cls(
            load_setpoint=np.full(n, p.initial_load),
            power_cap_w=np.full(n, p.n_devices * p.device_peak_w),
            cmd_throttle=np.ones(n),
            fdir_throttle=np.ones(n),
            backlog_top=np.zeros(n),
            latched=np.zeros((n, d), dtype=bool),
            off_remaining_s=np.zeros((n, d)),
            hung=np.zeros(n, dtype=bool),
            ecc_corrected=np.zeros((n, d), dtype=np.int64),
            ecc_uncorrectable=np.zeros((n, d), dtype=np.int64),
            sel_total=np.zeros(n, dtype=np.int64),
        )


def latched_mask(latched: np.ndarray) -> np.ndarray:
    """(n, d) bool -> (n,) int bit mask, bit i = device i."""
    if not latched.any():
        return np.zeros(latched.shape[0], dtype=np.int64)
    weights = (1 << np.arange(latched.shape[1], dtype=np.int64))
    return latched.astype(np.int64) @ weights


def row_count(mask: np.ndarray) -> np.ndarray:
    """True values per row of an (n, d) bool array, as int64 (n,) (einsum: ~6x numpy's sum here)."""
    counts: np.ndarray = np.einsum("ij->i", mask.view(np.int8)).astype(np.int64)
    return counts


def row_sum(values: np.ndarray) -> np.ndarray:
    """Sum per row of an (n, d) numeric array."""
    sums: np.ndarray = np.einsum("ij->i", values)
    return sums


def plan(state: PayloadState, p: PayloadParams, node_temp_k: np.ndarray, safe_mode: np.ndarray) -> PayloadOutput:
    """Utilisation, power demand and throughput for this tick, before the power system decides."""
    d = p.n_devices
    n = state.hung.shape[0]
    if state.latched.any() or (state.off_remaining_s > 0.0).any():
        device_on = state.off_remaining_s <= 0.0  # (n, d)
        n_on = row_count(device_on)
        n_latched = row_count(state.latched)
        n_working = row_count(device_on & ~state.latched)
    else:
        n_on = np.full(n, d, dtype=np.int64)
        n_latched = np.zeros(n, dtype=np.int64)
        n_working = n_on
    n_working = np.where(state.hung, 0, n_working)
    load = np.where(state.backlog_top > 0.0, 1.0, state.load_setpoint)  # queued work runs at full load
    # the hottest junction sits above the cold plate by its own dissipation
    junction_k = node_temp_k + p.junction_rise_k_per_w * (p.device_idle_w + (p.device_peak_w - p.device_idle_w) * load)
    span = p.throttle_max_k - p.throttle_start_k
    thermal = 1.0 - (1.0 - p.throttle_floor) * np.clip((junction_k - p.throttle_start_k) / span, 0.0, 1.0)
    throttle = np.minimum(np.minimum(state.cmd_throttle, state.fdir_throttle), thermal)
    load = load * throttle
    # power cap: idle of every powered device is spent first, the rest buys load
    dyn_w = p.device_peak_w - p.device_idle_w
    with np.errstate(divide="ignore", invalid="ignore"):
        cap_load = (state.power_cap_w - n_on * p.device_idle_w - n_latched * p.latch_extra_w) / (
            np.maximum(n_working, 1) * dyn_w
        )
    load = np.clip(np.minimum(load, cap_load), 0.0, 1.0)
    load = np.where(safe_mode | (n_working == 0), 0.0, load)
    power_w = (
        n_on * p.device_idle_w
        + n_working * dyn_w * load
        + n_latched * p.latch_extra_w
        + np.where(state.hung, n_on * dyn_w * state.load_setpoint, 0.0)  # a hung device spins at its last load
    )
    util = n_working * load / d
    throughput = n_working * load * p.device_peak_tops
    return PayloadOutput(util, power_w, throughput, throttle, junction_k, n_working)


def commit(state: PayloadState, out: PayloadOutput, powered: np.ndarray, dt_s: float) -> PayloadOutput:
    """Apply the power system's decision, advance queues and power-cycle timers."""
    if not np.all(powered):
        z = np.zeros_like(out.util)
        out = PayloadOutput(
            np.where(powered, out.util, z), np.where(powered, out.power_w, z),
            np.where(powered, out.throughput_tops, z), out.throttle, out.junction_temp_k, out.devices_working,
        )
    np.maximum(state.backlog_top - out.throughput_tops * dt_s, 0.0, out=state.backlog_top)
    cycling = state.off_remaining_s > 0.0
    if cycling.any():
        state.off_remaining_s[cycling] -= dt_s
        np.maximum(state.off_remaining_s, 0.0, out=state.off_remaining_s)
    return out


def power_cycle(state: PayloadState, p: PayloadParams, sat: np.ndarray | int, device: int | None) -> None:
    """Switch a device (or all, ``device=None``) off for ``power_cycle_s``: clears latch-up and hang."""
    if device is None:
        state.latched[sat, :] = False
        state.off_remaining_s[sat, :] = p.power_cycle_s
        state.hung[sat] = False
    else:
        state.latched[sat, device] = False
        state.off_remaining_s[sat, device] = p.power_cycle_s

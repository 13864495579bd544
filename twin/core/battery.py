"""Li-ion battery pack as a first-order Thevenin model, vectorised over satellites.

Model per pack (``cells_series`` cells in series, ``strings_parallel`` strings in parallel)::

    V_term = OCV(SoC) - v_rc - I R0,   dv_rc/dt = I/C1 - v_rc/(R1 C1),   dSoC/dt = -eta I / Q

with I > 0 discharging and eta = 1 discharging, ``charge_efficiency`` charging (docs/physics.md#battery).
OCV(SoC) is piecewise linear through the table, so the stored chemical energy
``Q * integral_0^SoC OCV ds`` is piecewise quadratic and known exactly.

Within a step the current is constant and the RC pair is advanced with the exact exponential,
so the step-mean terminal power is an exact quadratic in I::

    P(I) = K + E_eff I - R_eff I^2,  E_eff = OCV_j(soc0) - v0 g,
    R_eff = R0 + R1 (1 - g) + b_j eta dt / (2 Q),  g = tau (1 - exp(-dt/tau)) / dt

(``j`` is the OCV segment the step ends in, ``K`` the offset when it crosses a knot). The solved
current delivers the requested power exactly unless a limit clips it. Losses are explicit:
``heat_w = I^2 R0 + mean(v_rc^2/R1) + coulombic loss``, and per step
``-(power_w + heat_w) dt == stored_energy_j(after) - stored_energy_j(before)`` (chemical plus the
C1 energy) to floating-point precision. A failed string removes its capacity and raises the
pack resistance (R_pack = Ns R_cell / N_ok); SoC is relative to the remaining capacity.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.core.params import DesignError, param

F64 = NDArray[np.float64]
_AS_PER_AH = 3600.0


@dataclasses.dataclass(frozen=True)
class BatteryParams:
    """Section ``battery`` of the design TOML (per-cell figures, pack built from them)."""

    cells_series: int = param("1", "cells in series per string", min=1, max=1000)
    strings_parallel: int = param("1", "strings in parallel", min=1, max=10000)
    cell_capacity_ah: float = param("A h", "rated cell capacity", min=0.01, max=1000.0)
    ocv_soc: tuple[float, ...] = param("1", "SoC knots of the OCV table, increasing", min=0.0, max=1.0)
    ocv_ratio: tuple[float, ...] = param("1", "OCV / OCV_max at each knot", min=0.0, max=1.5)
    ocv_max_cell_v: float = param("V", "cell OCV at SoC = 1", min=1.0, max=6.0)
    r0_cell_ohm: float = param("ohm", "cell ohmic resistance R0", min=0.0, max=10.0)
    r1_cell_ohm: float = param("ohm", "cell polarisation resistance R1", min=1e-6, max=10.0)
    c1_cell_f: float = param("F", "cell polarisation capacitance C1", min=1e-3, max=1e7)
    charge_efficiency: float = param("1", "coulombic efficiency when charging", min=0.5, max=1.0)
    max_charge_c_rate: float = param("1/h", "charge current limit in C", min=0.0, max=20.0)
    max_discharge_c_rate: float = param("1/h", "discharge current limit in C", min=0.0, max=50.0)
    v_cell_max_v: float = param("V", "cell terminal voltage limit while charging", min=1.0, max=6.0)
    v_cell_min_v: float = param("V", "cell terminal voltage limit while discharging", min=0.5, max=6.0)
    soc_min: float = param("1", "protection: lowest SoC the PCDU will discharge to", min=0.0, max=1.0)
    soc_max: float = param("1", "protection: highest SoC the PCDU will charge to", min=0.0, max=1.0)
    soc_initial: float = param("1", "SoC at scenario start", min=0.0, max=1.0)

    def validate(self, section: str = "battery") -> None:
        """Cross-field checks; raises :class:`DesignError`."""
        s = np.asarray(self.ocv_soc)
        if len(self.ocv_soc) < 2 or len(self.ocv_soc) != len(self.ocv_ratio):
            raise DesignError(f"{section}.ocv_ratio", "needs >= 2 entries, as many as ocv_soc")
        if s[0] != 0.0 or s[-1] != 1.0 or np.any(np.diff(s) <= 0):
            raise DesignError(f"{section}.ocv_soc", "must increase strictly from 0.0 to 1.0")
        if np.any(np.diff(self.ocv_ratio) < 0):
            raise DesignError(f"{section}.ocv_ratio", "OCV must not decrease with SoC")
        if not self.soc_min < self.soc_max:
            raise DesignError(f"{section}.soc_max", "must be above soc_min")
        if not self.soc_min <= self.soc_initial <= self.soc_max:
            raise DesignError(f"{section}.soc_initial", "must lie within [soc_min, soc_max]")
        if not self.v_cell_min_v < self.v_cell_max_v:
            raise DesignError(f"{section}.v_cell_max_v", "must be above v_cell_min_v")


class BatteryStep(NamedTuple):
    """Result of one step, arrays of shape (n,). Power sign: + out of the battery."""

    soc: F64
    v_rc_v: F64
    current_a: F64
    terminal_v: F64  # step-mean terminal voltage, power_w / current_a (OCV - v_rc when idle)
    power_w: F64
    heat_w: F64
    limited: NDArray[np.bool_]


@functools.lru_cache(maxsize=16)
def _table(p: BatteryParams) -> tuple[F64, F64, F64, F64]:
    """Pack OCV knots: soc (m,), ocv_v (m,), slope_v (m-1,), cumulative integral V*soc (m,)."""
    s = np.asarray(p.ocv_soc, dtype=float)
    v = np.asarray(p.ocv_ratio, dtype=float) * p.ocv_max_cell_v * p.cells_series
    b = np.diff(v) / np.diff(s)
    cum = np.concatenate(([0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(s))))
    return s, v, b, cum


def _segment(soc: F64, p: BatteryParams) -> NDArray[np.intp]:
    """Index of the OCV segment holding ``soc`` (end segments extend beyond [0, 1])."""
    s = _table(p)[0]
    if len(s) > 8:
        return np.clip(np.searchsorted(s, soc, side="right") - 1, 0, len(s) - 2)
    k = np.zeros(np.shape(soc), dtype=np.intp)
    for knot in s[1:-1]:  # a few comparisons beat searchsorted for short tables
        k += soc >= knot
    return k


def ocv_v(soc: ArrayLike, params: BatteryParams) -> F64:
    """Pack open-circuit voltage [V] at ``soc`` (linear extrapolation outside [0, 1])."""
    soc = np.asarray(soc, dtype=float)
    s, v, b, _ = _table(params)
    k = _segment(soc, params)
    return v[k] + b[k] * (soc - s[k])


def _ocv_integral(soc: F64, p: BatteryParams, k: NDArray[np.intp] | None = None) -> F64:
    """integral_0^soc OCV ds [V], evaluated on segment ``k`` (default: soc's own segment)."""
    s, v, b, cum = _table(p)
    k = _segment(soc, p) if k is None else k
    d = soc - s[k]
    return cum[k] + v[k] * d + 0.5 * b[k] * d * d


def healthy_strings(strings_failed: ArrayLike, params: BatteryParams) -> NDArray[np.int64]:
    """Working strings per satellite, clipped to [0, strings_parallel]."""
    return np.clip(params.strings_parallel - np.asarray(strings_failed, dtype=np.int64), 0, params.strings_parallel)


def capacity_c(params: BatteryParams, strings_failed: ArrayLike = 0) -> F64:
    """Pack charge capacity [C] (A s) of the working strings."""
    return np.multiply(healthy_strings(strings_failed, params), params.cell_capacity_ah * _AS_PER_AH, dtype=np.float64)


def stored_energy_j(
    soc: ArrayLike, params: BatteryParams, strings_failed: ArrayLike = 0, v_rc_v: ArrayLike = 0.0
) -> F64:
    """Energy [J] stored: Q * integral_0^soc OCV ds (chemical) + C1_pack v_rc^2 / 2.

    Consistent with :func:`battery_step`: its ``-(power_w + heat_w) * dt`` equals the change of
    this quantity. Pass ``v_rc_v`` to include the (small, ~kJ) polarisation-capacitor energy.
    """
    soc = np.asarray(soc, dtype=float)
    n_ok = healthy_strings(strings_failed, params)
    c1_pack_f = params.c1_cell_f * n_ok / params.cells_series
    chem = n_ok * params.cell_capacity_ah * _AS_PER_AH * _ocv_integral(soc, params)
    return chem + 0.5 * c1_pack_f * np.square(v_rc_v)


def battery_step(
    soc: ArrayLike,
    v_rc_v: ArrayLike,
    power_request_w: ArrayLike,
    dt_s: float,
    params: BatteryParams,
    strings_failed: ArrayLike = 0,
    charge_limit: ArrayLike = 1.0,
) -> BatteryStep:
    """Advance the pack by ``dt_s`` [s] delivering ``power_request_w`` [W] (+ discharge, - charge).

    The current is the root of P(I) = request nearest zero, clipped to the C-rate limits, the
    SoC protection window (soc_min..soc_max at the end of the step) and the cell terminal
    voltage limits; ``limited`` marks clipped rows. Any dt > 0 is stable. Inputs broadcast to
    (n,) (scalars give (1,)); ``strings_failed`` is the count of open strings per satellite;
    ``charge_limit`` (scalar or (n,), 0..1) scales the charge current limit ``max_charge_c_rate``
    (the battery management's temperature derating, set by onboard FDIR; 1 = the design limit).
    """
    p = params
    failed = np.asarray(strings_failed)
    shape = np.broadcast_shapes(np.shape(soc), np.shape(v_rc_v), np.shape(power_request_w), failed.shape) or (1,)
    soc0 = np.broadcast_to(np.asarray(soc, dtype=float), shape)
    v0 = np.broadcast_to(np.asarray(v_rc_v, dtype=float), shape)
    p_req = np.broadcast_to(np.asarray(power_request_w, dtype=float), shape)
    # Pack constants; scalars when no string has failed (the common, fast case).
    alive: NDArray[np.bool_] | bool = True
    n_ok: F64 | float = float(p.strings_parallel)
    if failed.any():
        n_arr = np.broadcast_to(healthy_strings(failed, p).astype(float), shape)
        alive = n_arr > 0.0
        n_ok = np.maximum(n_arr, 1.0)
    q_c = n_ok * (p.cell_capacity_ah * _AS_PER_AH)  # [C]
    q_dt = q_c / dt_s  # [A] per unit SoC over the step
    r0 = (p.cells_series * p.r0_cell_ohm) / n_ok
    r1 = (p.cells_series * p.r1_cell_ohm) / n_ok
    c1 = (p.c1_cell_f / p.cells_series) * n_ok
    tau = p.r1_cell_ohm * p.c1_cell_f
    decay = np.exp(-dt_s / tau)
    g = -np.expm1(-dt_s / tau) * tau / dt_s  # mean of exp(-t/tau) over the step
    loss_c = 1.0 - p.charge_efficiency
    eta = 1.0 - loss_c * (p_req < 0.0)  # SoC per unit charge, by the requested direction
    s, v, b, _ = _table(p)
    k0 = _segment(soc0, p)
    b0 = b[k0]
    ocv0 = v[k0] + b0 * (soc0 - s[k0])
    r_fix = r0 + r1 * (1.0 - g)
    e_eff = ocv0 - g * v0
    r_eff = r_fix + (b0 * eta) * (0.5 / q_dt)
    disc0 = e_eff * e_eff - 4.0 * r_eff * p_req
    i_req = 2.0 * p_req / (e_eff + np.sqrt(np.maximum(disc0, 0.0)))
    k1 = _segment(soc0 - eta * i_req / q_dt, p)
    cross = np.flatnonzero(k1 != k0)  # steps that end across an OCV knot: re-solve exactly there
    if cross.size:
        kc, so, qd, et = k1[cross], soc0[cross], _rows(q_dt, cross), eta[cross]
        k_w = qd / et * (_ocv_integral(so, p, k0[cross]) - _ocv_integral(so, p, kc))
        e = v[kc] + b[kc] * (so - s[kc]) - g * v0[cross]
        r = _rows(r_fix, cross) + b[kc] * et * (0.5 / qd)
        net = p_req[cross] - k_w
        i_req[cross] = 2.0 * net / (e + np.sqrt(np.maximum(e * e - 4.0 * r * net, 0.0)))
    over_power = disc0 < 0.0  # beyond the pack's maximum power
    # Current window: C-rate, SoC protection over the step, mean terminal-voltage limits.
    cap_ah = n_ok * p.cell_capacity_ah
    i_hi = np.minimum(np.minimum((soc0 - p.soc_min) * q_dt, (e_eff - p.v_cell_min_v * p.cells_series) / r_eff),
                      p.max_discharge_c_rate * cap_ah)
    i_lo = np.minimum(np.minimum((p.soc_max - soc0) * (q_dt / p.charge_efficiency),
                                 (p.v_cell_max_v * p.cells_series - e_eff) / r_eff),
                      p.max_charge_c_rate * cap_ah * np.asarray(charge_limit, dtype=float))
    np.maximum(i_hi, 0.0, out=i_hi)
    i_lo = -np.maximum(i_lo, 0.0)
    i_a = np.clip(i_req, i_lo, i_hi)
    if over_power.any():
        np.copyto(i_a, i_hi, where=over_power)
    limited = (over_power | (i_req > i_hi) | (i_req < i_lo)) & (p_req != 0.0)
    if alive is not True:
        i_a *= alive
        limited |= ~alive & (p_req != 0.0)
    # Exact bookkeeping for the chosen constant current.
    eta_i = 1.0 - loss_c * (i_a < 0.0)
    dsoc = eta_i * i_a / q_dt  # SoC drop over the step
    soc1 = soc0 - dsoc
    chem_out_w = q_dt * dsoc * (ocv0 - 0.5 * b0 * dsoc)  # stored chemical energy released, in-segment
    cross = np.flatnonzero(_segment(soc1, p) != k0)
    if cross.size:
        chem_out_w[cross] = _rows(q_dt, cross) * (
            _ocv_integral(soc0[cross], p, k0[cross]) - _ocv_integral(soc1[cross], p))
    emf_w = chem_out_w / eta_i  # power through the OCV source (charging: more than is stored)
    ir1 = i_a * r1
    v1 = ir1 + (v0 - ir1) * decay
    mean_v_rc = ir1 * (1.0 - g) + g * v0
    cap_w = (0.5 / dt_s) * c1 * (v1 - v0) * (v1 + v0)
    ohmic_w = i_a * (i_a * r0 + mean_v_rc)  # I^2 R0 + I mean(v_rc)
    power_w = emf_w - ohmic_w
    heat_w = ohmic_w - cap_w + (chem_out_w - emf_w)  # I^2 R0 + mean(v_rc^2/R1) + coulombic loss
    idle = i_a == 0.0  # arithmetic blend: np.where is slow on random masks
    terminal_v = power_w / (i_a + idle) + idle * e_eff
    if alive is not True:
        v1 *= alive
        terminal_v *= alive
        heat_w *= alive  # a dead pack holds no energy (stored_energy_j == 0)
    return BatteryStep(soc1, v1, i_a, terminal_v, power_w, heat_w, limited)


def _rows(x: F64 | float, idx: NDArray[np.intp]) -> F64 | float:
    """``x[idx]`` for per-row arrays, ``x`` for scalars."""
    return x[idx] if isinstance(x, np.ndarray) and x.ndim else x

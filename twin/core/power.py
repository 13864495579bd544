"""Loads and the power conditioning and distribution unit (PCDU), vectorised over satellites.

Per step and satellite the PCDU
1. updates the SoC-threshold shedding state with hysteresis (shed payload below
   ``shed_payload_below_soc``, restore above ``restore_payload_above_soc``; radio and ISL alike
   at lower thresholds; heaters and avionics are never shed by SoC),
2. charges the battery from any surplus (what it cannot take goes to the shunt) or discharges it
   to cover a deficit,
3. if the battery cannot cover the deficit (current, voltage or SoC limit) it sheds further whole
   loads in ``SHED_ORDER`` within the same step (``emergency_shed``, not latched), then re-runs the
   battery for the reduced load.

Energy balances exactly every step: ``gen_w + battery.power_w == load_w.sum(1) + shunt_w``.
Loads are bus-side powers (converter losses are inside the demands); the shunt models an S3R
regulator, so shunted power is mostly left on the array, with ``shunt_heat_fraction`` of it
dissipated in the PCDU (see :func:`shunt_heat_w`). Figures and sources: docs/physics.md#power.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.core.battery import BatteryParams, BatteryStep, battery_step
from twin.core.params import DesignError, param

F64 = NDArray[np.float64]
LOAD_NAMES = ("avionics", "isl", "radio", "heaters", "payload")
AVIONICS, ISL, RADIO, HEATERS, PAYLOAD = range(5)
SHED_ORDER = (PAYLOAD, RADIO, ISL, HEATERS, AVIONICS)  # first shed first


@dataclasses.dataclass(frozen=True)
class PowerParams:
    """Section ``power`` of the design TOML: nominal loads, shedding thresholds, bus."""

    avionics_w: float = param("W", "avionics, ADCS, propulsion standby", min=0.0, max=1e5)
    isl_terminal_w: float = param("W", "one laser inter-satellite link terminal", min=0.0, max=1e4)
    isl_terminal_count: int = param("1", "laser terminals", min=0, max=16)
    radio_w: float = param("W", "user/gateway phased arrays, transmitting", min=0.0, max=1e5)
    heaters_w: float = param("W", "nominal survival/operational heater demand", min=0.0, max=1e5)
    payload_w: float = param("W", "compute payload at full load", min=0.0, max=1e6)
    shed_payload_below_soc: float = param("1", "shed payload when SoC falls below", min=0.0, max=1.0)
    restore_payload_above_soc: float = param("1", "restore payload when SoC rises above", min=0.0, max=1.0)
    shed_radio_below_soc: float = param("1", "shed radio when SoC falls below", min=0.0, max=1.0)
    restore_radio_above_soc: float = param("1", "restore radio when SoC rises above", min=0.0, max=1.0)
    shed_isl_below_soc: float = param("1", "shed ISL terminals when SoC falls below", min=0.0, max=1.0)
    restore_isl_above_soc: float = param("1", "restore ISL terminals when SoC rises above", min=0.0, max=1.0)
    bus_voltage_nominal_v: float = param("V", "regulated main bus voltage", min=1.0, max=1000.0)
    bus_undervoltage_v: float = param(
        "V", "battery voltage below which the BDR cannot hold the bus", min=0.0, max=1000.0)
    shunt_heat_fraction: float = param("1", "fraction of shunted power dissipated in the PCDU", min=0.0, max=1.0)

    def validate(self, section: str = "power") -> None:
        """Hysteresis bands must be open and nested payload > radio > ISL."""
        for name in ("payload", "radio", "isl"):
            lo, hi = getattr(self, f"shed_{name}_below_soc"), getattr(self, f"restore_{name}_above_soc")
            if not lo < hi:
                raise DesignError(f"{section}.restore_{name}_above_soc", f"must be above shed_{name}_below_soc")
        if not self.shed_payload_below_soc >= self.shed_radio_below_soc >= self.shed_isl_below_soc:
            raise DesignError(f"{section}.shed_radio_below_soc", "thresholds must satisfy payload >= radio >= isl")

    def shed_below(self) -> F64:
        """SoC shed thresholds (5,) in LOAD_NAMES order (-inf: never shed)."""
        t = np.full(5, -np.inf)
        t[[PAYLOAD, RADIO, ISL]] = self.shed_payload_below_soc, self.shed_radio_below_soc, self.shed_isl_below_soc
        return t

    def restore_above(self) -> F64:
        """SoC restore thresholds (5,) in LOAD_NAMES order (-inf: always on)."""
        t = np.full(5, -np.inf)
        t[[PAYLOAD, RADIO, ISL]] = (
            self.restore_payload_above_soc, self.restore_radio_above_soc, self.restore_isl_above_soc)
        return t


class PowerStep(NamedTuple):
    """Result of :func:`power_step`; (n,) or (n, 5) arrays, powers in W."""

    load_on: NDArray[np.bool_]  # (n, 5) load powered this step
    load_w: F64  # (n, 5) power supplied to each load
    battery: BatteryStep
    shunt_w: F64  # generation not used (left on the array / dumped)
    shed_state: NDArray[np.bool_]  # (n, 5) SoC-hysteresis shed latch after this step
    bus_undervoltage: NDArray[np.bool_]  # demand not met by gen + battery, or battery below BDR limit
    emergency_shed: NDArray[np.bool_]  # (n,) loads shed within the step beyond the hysteresis latch


def nominal_demand_w(n: int, params: PowerParams) -> F64:
    """Full-operation demand (n, 5) [W] in LOAD_NAMES order."""
    row = np.array([params.avionics_w, params.isl_terminal_w * params.isl_terminal_count,
                    params.radio_w, params.heaters_w, params.payload_w])
    return np.tile(row, (n, 1))


def shunt_heat_w(shunt_w: ArrayLike, params: PowerParams) -> F64:
    """Heat [W] dissipated in the PCDU by the shunt regulator (for the thermal model)."""
    return np.asarray(shunt_w, dtype=float) * params.shunt_heat_fraction


def update_shed_state(soc: ArrayLike, shed_state: ArrayLike, params: PowerParams) -> NDArray[np.bool_]:
    """Hysteresis latch (n, 5): shed below the shed threshold, restore above the restore one."""
    soc = np.asarray(soc, dtype=float)
    shed = np.array(np.broadcast_to(shed_state, (soc.shape[0], 5)), dtype=bool)
    lo, hi = params.shed_below(), params.restore_above()
    for j in (PAYLOAD, RADIO, ISL):
        shed[:, j] = (shed[:, j] | (soc < lo[j])) & ~(soc > hi[j])
    for j in (AVIONICS, HEATERS):
        shed[:, j] = False
    return shed


def _total(load_w: F64) -> F64:
    """Row sums of an (n, 5) array (BLAS is far faster than a short-axis reduction)."""
    return load_w @ np.ones(load_w.shape[1])


def power_step(
    gen_w: ArrayLike,
    demand_w: ArrayLike,
    soc: ArrayLike,
    v_rc_v: ArrayLike,
    shed_state: ArrayLike,
    dt_s: float,
    battery_params: BatteryParams,
    power_params: PowerParams,
    strings_failed: ArrayLike = 0,
    charge_limit: ArrayLike = 1.0,
) -> PowerStep:
    """One PCDU step of ``dt_s`` [s]: shedding, battery charge/discharge, shunt (see module doc).

    ``charge_limit`` (scalar or (n,), 0..1) scales the battery's charge current limit (onboard
    FDIR's temperature derating); generation the battery may not take goes to the shunt.
    """
    gen = np.maximum(np.asarray(gen_w, dtype=float), 0.0)
    demand = np.maximum(np.asarray(demand_w, dtype=float), 0.0)
    soc = np.asarray(soc, dtype=float)
    v_rc = np.asarray(v_rc_v, dtype=float)
    failed = np.broadcast_to(np.asarray(strings_failed), soc.shape)
    c_lim = np.asarray(charge_limit, dtype=float)
    shed = update_shed_state(soc, shed_state, power_params)
    load_on = ~shed
    load = demand * load_on
    request = _total(load) - gen  # + discharge
    bat = battery_step(soc, v_rc, request, dt_s, battery_params, failed, c_lim)
    short = bat.limited & (request > 0.0)
    if short.any():
        idx = np.flatnonzero(short)
        available = gen[idx] + bat.power_w[idx]
        ordered = load[idx][:, SHED_ORDER]
        remaining = ordered[:, ::-1].cumsum(axis=1)[:, ::-1]  # load left if shedding the first j
        remaining = np.concatenate((remaining, np.zeros((len(idx), 1))), axis=1)
        n_shed = np.argmax(remaining <= available[:, None] * (1.0 - 1e-12), axis=1)
        off = np.zeros((len(idx), 5), dtype=bool)
        off[:, SHED_ORDER] = np.arange(5)[None, :] < n_shed[:, None]
        load_on[idx] &= ~off
        load[idx] = np.where(off, 0.0, load[idx])
        sub = battery_step(soc[idx], v_rc[idx], _total(load[idx]) - gen[idx], dt_s, battery_params, failed[idx],
                           c_lim[idx] if c_lim.ndim else c_lim)
        fields = [np.array(a, copy=True) for a in bat]
        for full, part in zip(fields, sub):
            full[idx] = part
        fields[-1][idx] = True  # the original request was limited
        bat = BatteryStep._make(fields)
    shunt = np.maximum(gen + bat.power_w - _total(load), 0.0)
    brownout = (bat.power_w > 0.0) & (bat.terminal_v < power_params.bus_undervoltage_v)
    return PowerStep(
        load_on=load_on, load_w=load, battery=bat, shunt_w=shunt, shed_state=shed,
        bus_undervoltage=short | brownout, emergency_shed=short,
    )


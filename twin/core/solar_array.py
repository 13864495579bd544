"""Solar array output, vectorised over satellites.

P = S * illumination * eta(T) * max(cos_incidence, 0) * area * packing * (1 - deg(dose)) * f_strings

with eta(T) = eta_ref (1 + beta (max(T, T_min) - T_ref)) (beta < 0, relative per kelvin): the
linear coefficient holds from ``temp_coeff_min_temp_k`` up, and a colder cell keeps the efficiency
it has there (bounded; the cold gain of real cells flattens, docs/physics.md#solar-array). The
semi-log radiation-degradation form deg = C log10(1 + D / D_x) is driven by the ionising dose D
[rad(Si)] behind the cells' cover glass (``cover_glass_thickness_mm``), which the radiation model
accumulates; C and D_x are the fluence fit of the cell (XTJ keeps 0.89 of its power after
5e14 1-MeV e/cm^2) converted to dose with the 1 MeV electron stopping power in silicon.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.core.params import param

F64 = NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class SolarArrayParams:
    """Section ``solar_array`` of the design TOML."""

    area_m2: float = param("m^2", "total array area (both wings)", min=0.0, max=10000.0)
    cell_efficiency_bol: float = param("1", "cell efficiency at AM0, reference temperature, BOL", min=0.0, max=0.7)
    temp_coeff_per_k: float = param("1/K", "relative efficiency change per kelvin", min=-0.05, max=0.0)
    ref_temp_k: float = param("K", "temperature at which cell_efficiency_bol is rated", min=100.0, max=500.0)
    temp_coeff_min_temp_k: float = param(
        "K", "coldest temperature of the linear coefficient; colder cells keep the efficiency they have here", min=50.0, max=500.0)
    packing_factor: float = param("1", "cell area / array area", min=0.0, max=1.0)
    n_strings: int = param("1", "independent cell strings", min=1, max=100000)
    degradation_c: float = param("1", "power loss per decade of dose/dose_x (semi-log fit)", min=0.0, max=1.0)
    degradation_dose_x_rad: float = param("rad(Si)", "dose behind the cover glass: scale of the semi-log fit", min=1e-3, max=1e9)
    cover_glass_thickness_mm: float = param("mm", "cover glass over the cells (front shield of the cell dose)", min=0.0, max=5.0)
    cover_glass_density_g_cm3: float = param("g/cm^3", "cover glass density", min=1.0, max=5.0)

    @property
    def cover_glass_g_cm2(self) -> float:
        """Areal density of the cover glass [g/cm^2] (treated as aluminium-equivalent for particle ranges)."""
        return self.cover_glass_thickness_mm * 0.1 * self.cover_glass_density_g_cm3


def efficiency(array_temp_k: ArrayLike, params: SolarArrayParams) -> F64:
    """Cell efficiency [1] at temperature [K]: linear above ``temp_coeff_min_temp_k``, constant below, floored at zero."""
    dt_k = np.maximum(np.asarray(array_temp_k, dtype=float), params.temp_coeff_min_temp_k) - params.ref_temp_k
    eta: F64 = np.maximum(params.cell_efficiency_bol * (1.0 + params.temp_coeff_per_k * dt_k), 0.0)
    return eta


def degradation(dose_rad: ArrayLike, params: SolarArrayParams) -> F64:
    """Fractional power loss [1] after an ionising dose [rad(Si)] behind the cover glass, within [0, 1]."""
    d = np.maximum(np.asarray(dose_rad, dtype=float), 0.0)
    loss: F64 = np.clip(params.degradation_c * np.log10(1.0 + d / params.degradation_dose_x_rad), 0.0, 1.0)
    return loss


def array_power_w(
    solar_flux_w_m2: ArrayLike,
    illumination: ArrayLike,
    cos_incidence: ArrayLike,
    array_temp_k: ArrayLike,
    dose_rad: ArrayLike,
    strings_failed: ArrayLike,
    params: SolarArrayParams,
) -> F64:
    """Electrical power [W] at the array output; arrays broadcast to (n,).

    ``illumination`` is the lit fraction (0 umbra .. 1 sun), ``cos_incidence`` the cosine of the
    sun angle to the array normal (backlit, < 0, gives 0 W), ``strings_failed`` the open strings,
    ``dose_rad`` the dose [rad(Si)] behind the cover glass.
    """
    ok = np.clip(1.0 - np.asarray(strings_failed, dtype=float) / params.n_strings, 0.0, 1.0)
    irradiance_w_m2 = (
        np.asarray(solar_flux_w_m2, dtype=float)
        * np.clip(np.asarray(illumination, dtype=float), 0.0, 1.0)
        * np.maximum(np.asarray(cos_incidence, dtype=float), 0.0)
    )
    area_eff_m2 = params.area_m2 * params.packing_factor
    eta = efficiency(array_temp_k, params) * (1.0 - degradation(dose_rad, params))
    power_w: F64 = irradiance_w_m2 * eta * area_eff_m2 * ok
    return power_w

"""Orbital thermal environment: solar flux, Earth view factors, albedo and Earth IR.

Pure numpy over satellites (arrays of shape ``(n,)``), SI units. Fluxes are per unit area of
the receiving surface before absorptivity/emissivity is applied. See
``docs/physics.md#environment`` for the figures, their sources and the checks.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.core.constants import AU_M, EARTH_ALBEDO, EARTH_IR_W_M2, R_EARTH_M, SOLAR_CONSTANT_W_M2

FloatArray = NDArray[np.float64]


def solar_flux_w_m2(sun_distance_m: ArrayLike) -> FloatArray:
    """Solar irradiance (W/m^2) at distance ``sun_distance_m`` (m): S0 * (AU/d)^2."""
    d = np.asarray(sun_distance_m, dtype=float)
    return SOLAR_CONSTANT_W_M2 * (AU_M / d) ** 2


def _rho(alt_m: ArrayLike) -> FloatArray:
    """Angular-radius ratio R/(R+h) of the Earth seen from altitude ``alt_m`` (m)."""
    return R_EARTH_M / (R_EARTH_M + np.asarray(alt_m, dtype=float))


def earth_view_factor_plate(alt_m: ArrayLike) -> FloatArray:
    """View factor (-) from a nadir-facing flat plate to the Earth: (R/(R+h))^2."""
    return _rho(alt_m) ** 2


def earth_view_factor_sphere(alt_m: ArrayLike) -> FloatArray:
    """View factor (-) from a small sphere to the Earth: (1 - sqrt(1 - rho^2)) / 2."""
    rho = _rho(alt_m)
    return 0.5 * (1.0 - np.sqrt(1.0 - rho**2))


def albedo_flux_w_m2(
    solar_flux_w_m2: ArrayLike,
    cos_sun_zenith_subsat: ArrayLike,
    alt_m: ArrayLike,
    albedo: ArrayLike = EARTH_ALBEDO,
) -> FloatArray:
    """Reflected sunlight (W/m^2) on a nadir-facing plate.

    Standard simple model: ``S * a * F_plate(h) * max(cos(zeta), 0)`` with ``zeta`` the solar
    zenith angle at the sub-satellite point (gives ~346 W/m^2 subsolar at 550 km).
    """
    cos_z = np.clip(np.asarray(cos_sun_zenith_subsat, dtype=float), 0.0, 1.0)
    s = np.asarray(solar_flux_w_m2, dtype=float)
    flux: FloatArray = s * np.asarray(albedo, dtype=float) * earth_view_factor_plate(alt_m) * cos_z
    return flux


def earth_ir_flux_w_m2(alt_m: ArrayLike, olr_w_m2: ArrayLike = EARTH_IR_W_M2) -> FloatArray:
    """Earth infrared flux (W/m^2) on a nadir-facing plate: OLR * F_plate(h) (~201 at 550 km)."""
    return np.asarray(olr_w_m2, dtype=float) * earth_view_factor_plate(alt_m)

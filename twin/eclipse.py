"""Conical Earth shadow (umbra + penumbra) for the whole fleet.

The Sun and the Earth are discs seen from the satellite; the illuminated fraction is the part
of the Sun's disc not covered by the Earth's (Montenbruck & Gill, Satellite Orbits, 3.4.2).
Earth is a sphere of the equatorial radius, as in skyfield's ``is_sunlit``.
"""

from __future__ import annotations

import numpy as np

from .constants import R_EARTH_M, R_SUN_M


def illumination_fraction(r_sat_m: np.ndarray, r_sun_m: np.ndarray) -> np.ndarray:
    """Fraction 0..1 of the solar disc visible from each satellite.

    ``r_sat_m`` (n, 3) and ``r_sun_m`` (3,) are geocentric positions in one inertial frame.
    """
    d_sun = r_sun_m[None, :] - r_sat_m  # satellite -> Sun
    d_sun_norm = np.sqrt(np.einsum("ij,ij->i", d_sun, d_sun))
    r_norm = np.sqrt(np.einsum("ij,ij->i", r_sat_m, r_sat_m))
    a = np.arcsin(np.minimum(R_SUN_M / d_sun_norm, 1.0))  # apparent solar radius
    b = np.arcsin(np.minimum(R_EARTH_M / r_norm, 1.0))  # apparent Earth radius
    cos_c = -np.einsum("ij,ij->i", r_sat_m, d_sun) / (r_norm * d_sun_norm)
    c = np.arccos(np.clip(cos_c, -1.0, 1.0))  # angle between Earth and Sun centres

    frac = np.ones_like(c)
    partial = (c < a + b) & (c > np.abs(a - b))
    if np.any(partial):
        ap, bp, cp = a[partial], b[partial], c[partial]
        x = (cp**2 + ap**2 - bp**2) / (2.0 * cp)
        y = np.sqrt(np.maximum(ap**2 - x**2, 0.0))
        area = ap**2 * np.arccos(np.clip(x / ap, -1, 1)) + bp**2 * np.arccos(np.clip((cp - x) / bp, -1, 1)) - cp * y
        frac[partial] = 1.0 - area / (np.pi * ap**2)
    inside = c <= np.abs(a - b)
    if np.any(inside):
        frac[inside] = np.where(b[inside] >= a[inside], 0.0, 1.0 - (b[inside] / a[inside]) ** 2)
    return np.clip(frac, 0.0, 1.0)


def cylindrical_eclipse_fraction(alt_m: float, beta_rad: float) -> float:
    """Fraction of a circular orbit spent in the cylindrical shadow (closed form, physics.md)."""
    r = R_EARTH_M + alt_m
    beta_star = np.arcsin(R_EARTH_M / r)
    if abs(beta_rad) >= beta_star:
        return 0.0
    return float(np.arccos(np.sqrt(alt_m**2 + 2 * R_EARTH_M * alt_m) / (r * np.cos(beta_rad))) / np.pi)

"""Conical Earth shadow (umbra + penumbra) for the whole fleet.

The Sun and the Earth are discs seen from the satellite; the illuminated fraction is the part
of the Sun's disc not covered by the Earth's (Montenbruck & Gill, Satellite Orbits, 3.4.2).
Earth is a sphere of the equatorial radius, as in skyfield's ``is_sunlit``.
"""

from __future__ import annotations

import numpy as np

from twin.core.constants import R_EARTH_M, R_SUN_M


def illumination_fraction(r_sat_m: np.ndarray, r_sun_m: np.ndarray) -> np.ndarray:
    """Fraction 0..1 of the solar disc visible from each satellite.

    ``r_sat_m`` (n, 3) and ``r_sun_m`` (3,) are geocentric positions in one inertial frame.
    """
    sun_dist_m = float(np.sqrt(r_sun_m @ r_sun_m))
    r_norm = np.sqrt(np.einsum("ij,ij->i", r_sat_m, r_sat_m))
    # the satellite is < 1e-4 AU from Earth's centre: the Sun's apparent radius is the same for all
    a = float(np.arcsin(R_SUN_M / sun_dist_m))
    b = np.arcsin(np.minimum(R_EARTH_M / r_norm, 1.0))  # apparent Earth radius
    d_sun = r_sun_m[None, :] - r_sat_m  # satellite -> Sun
    d_sun_norm = np.sqrt(np.einsum("ij,ij->i", d_sun, d_sun))
    cos_c = -np.einsum("ij,ij->i", r_sat_m, d_sun) / (r_norm * d_sun_norm)
    # fully lit when the discs do not overlap: c >= a + b  <=>  cos c <= cos(a + b)
    frac = np.ones_like(cos_c)
    shadow = np.flatnonzero(cos_c > np.cos(a + b))
    if shadow.size:
        bs = b[shadow]
        cs = np.arccos(np.clip(cos_c[shadow], -1.0, 1.0))  # angle between Earth and Sun centres
        fs = np.zeros_like(cs)
        partial = cs > np.abs(a - bs)
        if np.any(partial):
            bp, cp = bs[partial], cs[partial]
            x = (cp**2 + a**2 - bp**2) / (2.0 * cp)
            y = np.sqrt(np.maximum(a**2 - x**2, 0.0))
            area = a**2 * np.arccos(np.clip(x / a, -1, 1)) + bp**2 * np.arccos(np.clip((cp - x) / bp, -1, 1)) - cp * y
            fs[partial] = 1.0 - area / (np.pi * a**2)
        annular = ~partial & (bs < a)  # Earth's disc inside the Sun's (never in LEO, kept for completeness)
        fs[annular] = 1.0 - (bs[annular] / a) ** 2
        frac[shadow] = fs
    lit: np.ndarray = np.clip(frac, 0.0, 1.0)
    return lit


def cylindrical_eclipse_fraction(alt_m: float, beta_rad: float) -> float:
    """Fraction of a circular orbit spent in the cylindrical shadow (closed form, docs/physics.md#eclipse)."""
    r = R_EARTH_M + alt_m
    beta_star = np.arcsin(R_EARTH_M / r)
    if abs(beta_rad) >= beta_star:
        return 0.0
    return float(np.arccos(np.sqrt(alt_m**2 + 2 * R_EARTH_M * alt_m) / (r * np.cos(beta_rad))) / np.pi)

"""Fleet orbit propagation: SGP4 over all satellites at once, Earth-fixed frame, geodetic coordinates.

Positions are in TEME (the frame SGP4 produces) and ITRS (Earth-fixed, via GMST 1982 on UT1,
polar motion neglected: < 15 m at the surface, below SGP4's own accuracy). Satellites whose
elements fail (decayed, bad elements) come back with their SGP4 error code and NaN rows; the
rest are unaffected. Methods and sources: docs/physics.md#orbit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sgp4.api import SGP4_ERRORS, SatrecArray

from twin.core.catalogue import Catalogue, satrecs_from_elements
from twin.core.constants import JD_J2000, R_EARTH_M, WGS84_FLATTENING

# WGS-84 ellipsoid
_A_M = R_EARTH_M
_F = WGS84_FLATTENING
_E2 = _F * (2.0 - _F)
_B_M = _A_M * (1.0 - _F)
_EP2 = (_A_M**2 - _B_M**2) / _B_M**2

SGP4_ERROR_MESSAGES: dict[int, str] = dict(SGP4_ERRORS)


@dataclass
class OrbitState:
    """One tick of the fleet's orbit; arrays over satellites (n,) or (n, 3)."""

    r_teme_m: np.ndarray
    v_teme_m_s: np.ndarray
    r_itrs_m: np.ndarray
    lat_rad: np.ndarray
    lon_rad: np.ndarray
    alt_m: np.ndarray
    error_code: np.ndarray  # 0 = ok, else an SGP4 error code (see SGP4_ERROR_MESSAGES)


def gmst82_rad(jd_ut1: float, fr_ut1: float) -> float:
    """Greenwich mean sidereal time (IAU 1982), the angle SGP4's TEME frame is defined with (rad)."""
    t = (jd_ut1 - JD_J2000 + fr_ut1) / 36525.0
    g = 67310.54841 + (8640184.812866 + (0.093104 + (-6.2e-6) * t) * t) * t
    return ((jd_ut1 % 1.0 + fr_ut1 % 1.0) * 2.0 * np.pi + g / 43200.0 * np.pi) % (2.0 * np.pi)


def teme_to_itrs(r_teme_m: np.ndarray, gmst_rad: float) -> np.ndarray:
    """Rotate TEME positions (n, 3) about z by GMST to the Earth-fixed frame."""
    c, s = np.cos(gmst_rad), np.sin(gmst_rad)
    out = np.empty_like(r_teme_m)
    x, y = r_teme_m[:, 0], r_teme_m[:, 1]
    np.multiply(x, c, out=out[:, 0])
    out[:, 0] += y * s
    np.multiply(y, c, out=out[:, 1])
    out[:, 1] -= x * s
    out[:, 2] = r_teme_m[:, 2]
    return out


def geodetic(r_itrs_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WGS-84 geodetic latitude (rad), longitude (rad, -pi..pi) and height (m) of ITRS points.

    Bowring's formula with one refinement of the parametric latitude, with the trigonometry
    done algebraically: sub-millimetre for heights up to ~10,000 km.
    """
    # contiguous columns and plain products: numpy's hypot and ** are several times slower
    x, y, z = (np.ascontiguousarray(r_itrs_m[:, k]) for k in range(3))
    p = np.sqrt(x * x + y * y)
    lon = np.arctan2(y, x)
    # parametric latitude beta from tan(beta) = a z / (b p), then one Bowring refinement
    tb = (_A_M * z) / (_B_M * p)
    cb = 1.0 / np.sqrt(1.0 + tb * tb)
    sb = tb * cb
    num = z + _EP2 * _B_M * sb * sb * sb
    den = p - _E2 * _A_M * cb * cb * cb
    tb = (1.0 - _F) * num / den
    cb = 1.0 / np.sqrt(1.0 + tb * tb)
    sb = tb * cb
    num = z + _EP2 * _B_M * sb * sb * sb
    den = p - _E2 * _A_M * cb * cb * cb
    hyp = np.sqrt(num * num + den * den)
    sin_lat = num / hyp
    cos_lat = den / hyp
    lat = np.arctan2(num, den)
    n = _A_M / np.sqrt(1.0 - _E2 * sin_lat * sin_lat)
    alt = p * cos_lat + (z + _E2 * n * sin_lat) * sin_lat - n
    return lat, lon, alt


class FleetPropagator:
    """SGP4 for a whole catalogue in one vectorised call per tick."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.satrecs = list(catalogue.satrecs)  # the element sets in use (replace() changes some)
        self._array = SatrecArray(self.satrecs)
        self._jd = np.zeros(1)
        self._fr = np.zeros(1)

    def __len__(self) -> int:
        return len(self.catalogue)

    def teme(self, jd_utc: float, fr_utc: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bare SGP4: TEME position (m), velocity (m/s) and error codes for one instant."""
        self._jd[0] = jd_utc
        self._fr[0] = fr_utc
        err, r_km, v_km_s = self._array.sgp4(self._jd, self._fr)
        return r_km[:, 0, :] * 1e3, v_km_s[:, 0, :] * 1e3, err[:, 0]

    def replace(self, rows: np.ndarray, elements: np.ndarray) -> None:
        """New element sets for satellites ``rows`` (:func:`~twin.core.catalogue.element_table` rows: an
        orbit manoeuvre); the rest keep theirs."""
        for i, sat in zip(np.asarray(rows).tolist(), satrecs_from_elements(elements)):
            self.satrecs[i] = sat
        self._array = SatrecArray(self.satrecs)

    def propagate(self, jd_utc: float, fr_utc: float, gmst_rad: float) -> OrbitState:
        """Position, velocity, Earth-fixed position and geodetic coordinates at one instant."""
        r, v, err = self.teme(jd_utc, fr_utc)
        r_itrs = teme_to_itrs(r, gmst_rad)
        lat, lon, alt = geodetic(r_itrs)
        return OrbitState(r, v, r_itrs, lat, lon, alt, err.astype(np.int8))


def beta_angle_rad(r_m: np.ndarray, v_m_s: np.ndarray, sun_unit: np.ndarray) -> np.ndarray:
    """Angle between the Sun direction and each orbit plane (rad), signed like the orbit normal."""
    rx, ry, rz = r_m[:, 0], r_m[:, 1], r_m[:, 2]
    vx, vy, vz = v_m_s[:, 0], v_m_s[:, 1], v_m_s[:, 2]
    hx, hy, hz = ry * vz - rz * vy, rz * vx - rx * vz, rx * vy - ry * vx  # np.cross is ~5x slower here
    h_norm = np.sqrt(hx * hx + hy * hy + hz * hz)
    beta: np.ndarray = np.arcsin(np.clip((hx * sun_unit[0] + hy * sun_unit[1] + hz * sun_unit[2]) / h_norm, -1.0, 1.0))
    return beta

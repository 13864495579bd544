"""Closed-form link geometry over a spherical Earth of the WGS-84 equatorial radius.

A sphere of the equatorial radius is conservative for line-of-sight checks (the real surface is
up to 21 km lower near the poles). Sources: docs/physics.md#network, docs/network.md.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.core.constants import R_EARTH_M, WGS84_FLATTENING

F64 = NDArray[np.float64]
C_M_S = 299_792_458.0  # speed of light in vacuum (SI definition)
# group index of standard single-mode fibre near 1550 nm, ~1.468 (ITU-T G.652 class fibre datasheets);
# network.md's 1.47 rounds it: docs/network.md#latency
FIBRE_GROUP_INDEX = 1.468
R_MEAN_M = 6_371_008.8  # IUGG mean Earth radius, for great-circle distances
_E2 = WGS84_FLATTENING * (2.0 - WGS84_FLATTENING)


def max_isl_range_m(alt_m: ArrayLike, grazing_alt_m: float, r_m: float = R_EARTH_M) -> F64:
    """Longest chord between two satellites at ``alt_m`` whose line of sight stays above ``grazing_alt_m`` (m).

    ``2 sqrt((R + h)^2 - (R + g)^2)``: both ends at the same altitude, the chord tangent to the
    sphere of radius R + g.
    """
    h = np.asarray(alt_m, dtype=np.float64)
    out: F64 = 2.0 * np.sqrt(np.maximum((r_m + h) ** 2 - (r_m + grazing_alt_m) ** 2, 0.0))
    return out


def max_slant_range_m(alt_m: ArrayLike, min_elevation_rad: float, r_m: float = R_EARTH_M) -> F64:
    """Slant range from a ground point to a satellite at ``alt_m`` seen at ``min_elevation_rad`` (m).

    ``sqrt((R + h)^2 - (R cos e)^2) - R sin e``.
    """
    h = np.asarray(alt_m, dtype=np.float64)
    out: F64 = np.sqrt((r_m + h) ** 2 - (r_m * np.cos(min_elevation_rad)) ** 2) - r_m * np.sin(min_elevation_rad)
    return out


def segment_min_radius_m(a_m: F64, b_m: F64) -> F64:
    """Smallest distance from the Earth's centre to each segment ``a[k]``-``b[k]`` (m); (k, 3) in, (k,) out.

    ``|a + t d|^2 = |a|^2 + 2 t a.d + t^2 |d|^2`` with ``d = b - a``, minimised over t in [0, 1].
    """
    d = b_m - a_m
    dd = np.einsum("ij,ij->i", d, d)
    ad = np.einsum("ij,ij->i", a_m, d)
    aa = np.einsum("ij,ij->i", a_m, a_m)
    t = np.clip(-ad / np.where(dd > 0, dd, 1.0), 0.0, 1.0)
    out: F64 = np.sqrt(np.maximum(aa + t * (2.0 * ad + t * dd), 0.0))
    return out


def isl_feasible(a_m: F64, b_m: F64, max_range_m: float, grazing_alt_m: float,
                 r_m: float = R_EARTH_M) -> tuple[NDArray[np.bool_], F64]:
    """Which links ``a[k]``-``b[k]`` close (range and line of sight) and their lengths (m).

    A link closes when both ends are finite, its length is at most ``max_range_m`` and its line of
    sight stays at least ``grazing_alt_m`` above the sphere of radius ``r_m``.
    """
    d = b_m - a_m
    dd = np.einsum("ij,ij->i", d, d)
    ad = np.einsum("ij,ij->i", a_m, d)
    aa = np.einsum("ij,ij->i", a_m, a_m)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(-ad / np.where(dd > 0, dd, 1.0), 0.0, 1.0)
        min_r2 = aa + t * (2.0 * ad + t * dd)
        length = np.sqrt(dd)
        ok = (length <= max_range_m) & (min_r2 >= (r_m + grazing_alt_m) ** 2)
    return ok, length


def finite_rows(pos_m: F64) -> NDArray[np.bool_]:
    """Rows of ``pos_m`` (n, 3) with three finite coordinates (a NaN or inf in any makes their sum non-finite)."""
    out: NDArray[np.bool_] = np.isfinite(pos_m[:, 0] + pos_m[:, 1] + pos_m[:, 2])
    return out


def link_feasible(x_m: F64, y_m: F64, z_m: F64, i: NDArray[np.int64], j: NDArray[np.int64], max_range_m: float,
                  grazing_alt_m: float, r_m: float = R_EARTH_M) -> tuple[NDArray[np.bool_], F64]:
    """:func:`isl_feasible` for links ``i[k]``-``j[k]`` between satellites with coordinates ``x_m, y_m, z_m`` (n,) each.

    The same test component by component (1-D gathers, no (k, 3) temporaries).
    """
    ax, ay, az = x_m[i], y_m[i], z_m[i]
    dx, dy, dz = x_m[j] - ax, y_m[j] - ay, z_m[j] - az
    dd = dx * dx + dy * dy + dz * dz
    ad = ax * dx + ay * dy + az * dz
    aa = ax * ax + ay * ay + az * az
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(-ad / np.where(dd > 0, dd, 1.0), 0.0, 1.0)
        min_r2 = aa + t * (2.0 * ad + t * dd)
        length = np.sqrt(dd)
        ok = (length <= max_range_m) & (min_r2 >= (r_m + grazing_alt_m) ** 2)
    return ok, length


def geodetic_to_itrs(lat_deg: ArrayLike, lon_deg: ArrayLike, height_m: ArrayLike = 0.0) -> tuple[F64, F64]:
    """WGS-84 Earth-fixed positions (m) and local up unit vectors of geodetic points, each (k, 3)."""
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))
    h = np.broadcast_to(np.asarray(height_m, dtype=np.float64), lat.shape)
    sl, cl, so, co = np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)
    n = R_EARTH_M / np.sqrt(1.0 - _E2 * sl * sl)
    pos = np.stack([(n + h) * cl * co, (n + h) * cl * so, (n * (1.0 - _E2) + h) * sl], axis=-1)
    up = np.stack([cl * co, cl * so, sl], axis=-1)
    return pos.reshape(-1, 3), up.reshape(-1, 3)


def great_circle_m(lat1_deg: ArrayLike, lon1_deg: ArrayLike, lat2_deg: ArrayLike, lon2_deg: ArrayLike,
                   r_m: float = R_MEAN_M) -> F64:
    """Great-circle distance on a sphere of radius ``r_m`` (haversine), m."""
    p1, p2 = np.radians(np.asarray(lat1_deg, dtype=np.float64)), np.radians(np.asarray(lat2_deg, dtype=np.float64))
    dl = np.radians(np.asarray(lon2_deg, dtype=np.float64) - np.asarray(lon1_deg, dtype=np.float64))
    s = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out: F64 = 2.0 * r_m * np.arcsin(np.sqrt(np.clip(s, 0.0, 1.0)))
    return out


def fibre_rtt_s(distance_m: ArrayLike) -> F64:
    """Round-trip time over a fibre laid along ``distance_m`` (s): ``2 d n / c``."""
    out: F64 = 2.0 * np.asarray(distance_m, dtype=np.float64) * FIBRE_GROUP_INDEX / C_M_S
    return out


def light_bound_rtt_s(a_m: F64, b_m: F64) -> F64:
    """Lower bound on the round trip between ground points ``a`` and ``b`` over any path outside the Earth (s).

    Radial projection onto the sphere of radius ``min(|a|, |b|)`` never lengthens a path that stays
    outside it, so the path is at least that sphere's arc between them; twice that over c.
    """
    ra = np.sqrt(np.einsum("ij,ij->i", a_m, a_m))
    rb = np.sqrt(np.einsum("ij,ij->i", b_m, b_m))
    cosang = np.clip(np.einsum("ij,ij->i", a_m, b_m) / (ra * rb), -1.0, 1.0)
    out: F64 = 2.0 * np.minimum(ra, rb) * np.arccos(cosang) / C_M_S
    return out

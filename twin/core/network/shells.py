"""Shells and orbital planes from the mean elements of a real, irregular catalogue.

A shell is a dense band of mean altitude at one inclination; satellites between bands (raising or
lowering their orbits) belong to no shell and get no +Grid links. Within a shell, planes are runs
of right ascension of the ascending node (RAAN, propagated to one reference time with each
satellite's secular J2 rate) separated by gaps wider than :data:`PLANE_GAP_DEG`. Unevenly filled
planes are fine: each plane is just its members, ordered by argument of latitude. The settings
below are documented in docs/network.md#shells-and-planes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from twin.core.catalogue import Catalogue
from twin.core.constants import MU_EARTH_M3_S2, R_EARTH_M, SECONDS_PER_DAY

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

INCLINATION_GAP_DEG = 0.5  # setting: inclinations further apart than this start a new group
ALT_BIN_M = 2_000.0  # setting: altitude histogram bin of the shell search
SHELL_BIN_MIN = 20  # setting: a bin with at least this many satellites is part of a shell's core
SHELL_MARGIN_M = 3_000.0  # setting: members lie within the core's altitude span plus this margin
SHELL_MIN_SIZE = 50  # setting: fewer satellites do not make a shell
PLANE_GAP_DEG = 1.0  # setting: a RAAN gap wider than this separates two planes


@dataclass(frozen=True)
class MeanElements:
    """Per-satellite mean elements at a reference time: angles in rad, rates in rad/s, altitude in m."""

    inclination_rad: F64
    altitude_m: F64
    raan_rad: F64
    arg_latitude_rad: F64
    arg_latitude_rate_rad_s: F64
    raan_rate_rad_s: F64 | None = None  # secular J2 nodal rate (None: fixed planes)

    def __len__(self) -> int:
        return int(self.inclination_rad.size)

    @cached_property
    def cos_inclination(self) -> F64:
        out: F64 = np.cos(self.inclination_rad)
        return out

    @cached_property
    def sin_inclination(self) -> F64:
        out: F64 = np.sin(self.inclination_rad)
        return out


def elements_from_catalogue(cat: Catalogue, jd_utc: float) -> MeanElements:
    """SGP4 mean elements of ``cat`` advanced to ``jd_utc`` with their secular rates (J2, drag-free)."""
    s = cat.satrecs
    dt_min = (jd_utc - cat.epoch_jd) * 1440.0
    inc = np.array([x.inclo for x in s], dtype=np.float64)
    no = np.array([x.no_kozai for x in s], dtype=np.float64) / 60.0
    nodedot = np.array([x.nodedot for x in s], dtype=np.float64)
    raan = np.array([x.nodeo for x in s]) + nodedot * dt_min
    u_rate_min = np.array([x.argpdot for x in s]) + np.array([x.mdot for x in s])
    u = np.array([x.argpo for x in s]) + np.array([x.mo for x in s]) + u_rate_min * dt_min
    alt = np.cbrt(MU_EARTH_M3_S2 / no**2) - R_EARTH_M
    return MeanElements(inc, alt, np.mod(raan, 2 * np.pi), np.mod(u, 2 * np.pi), u_rate_min / 60.0, nodedot / 60.0)


@dataclass(frozen=True)
class Planes:
    """Shell and plane of every satellite (-1: none) and the planes' neighbours.

    ``plane`` numbers planes globally; ``plane_shell[p]`` is the shell of plane ``p``,
    ``plane_raan_rad[p]`` its median RAAN at the reference time, ``right_plane[p]`` the next plane
    east (higher RAAN) in the same shell, -1 when there is none (a shell of one plane; a shell of
    two links its planes once).
    """

    shell: I64
    plane: I64
    plane_shell: I64
    plane_raan_rad: F64
    right_plane: I64
    shell_altitude_m: F64
    shell_inclination_deg: F64

    @property
    def n_planes(self) -> int:
        return int(self.plane_shell.size)

    @property
    def n_shells(self) -> int:
        return int(self.shell_altitude_m.size)


def _runs(sorted_values: F64, gap: float) -> list[F64]:
    """Split sorted values where consecutive ones differ by more than ``gap``."""
    cuts = np.flatnonzero(np.diff(sorted_values) > gap) + 1
    return np.split(sorted_values, cuts)


def _shell_bands(alt_m: F64) -> list[tuple[float, float]]:
    """Altitude bands (lo, hi) of the dense cores of one inclination group."""
    lo = np.floor(alt_m.min() / ALT_BIN_M) * ALT_BIN_M
    edges = np.arange(lo, alt_m.max() + 2 * ALT_BIN_M, ALT_BIN_M)
    counts, _ = np.histogram(alt_m, bins=edges)
    dense = counts >= SHELL_BIN_MIN
    bands: list[tuple[float, float]] = []
    k = 0
    while k < dense.size:
        if not dense[k]:
            k += 1
            continue
        j = k
        while j + 1 < dense.size and dense[j + 1]:
            j += 1
        bands.append((float(edges[k]) - SHELL_MARGIN_M, float(edges[j + 1]) + SHELL_MARGIN_M))
        k = j + 1
    return bands


def group_planes(el: MeanElements, active: NDArray[np.bool_] | None = None) -> Planes:
    """Shells and planes of the satellites ``active`` (default: all) from their mean elements."""
    n = len(el)
    act = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    act &= np.isfinite(el.altitude_m) & np.isfinite(el.raan_rad)
    shell = np.full(n, -1, dtype=np.int64)
    plane = np.full(n, -1, dtype=np.int64)
    plane_shell: list[int] = []
    plane_raan: list[float] = []
    right: list[int] = []
    shell_alt: list[float] = []
    shell_inc: list[float] = []
    inc_deg = np.degrees(el.inclination_rad)
    idx_act = np.flatnonzero(act)
    order = idx_act[np.argsort(inc_deg[idx_act], kind="stable")]
    cuts = np.flatnonzero(np.diff(inc_deg[order]) > INCLINATION_GAP_DEG) + 1
    for group in np.split(order, cuts):
        if group.size < SHELL_MIN_SIZE:
            continue
        for lo, hi in _shell_bands(el.altitude_m[group]):
            members = group[(el.altitude_m[group] >= lo) & (el.altitude_m[group] < hi)]
            members = members[shell[members] < 0]
            if members.size < SHELL_MIN_SIZE:
                continue
            s = len(shell_alt)
            shell[members] = s
            shell_alt.append(float(np.median(el.altitude_m[members])))
            shell_inc.append(float(np.median(inc_deg[members])))
            first_plane = len(plane_shell)
            for m, raan in _planes_of(members, el.raan_rad[members]):
                plane[m] = len(plane_shell)
                plane_shell.append(s)
                plane_raan.append(raan)
            count = len(plane_shell) - first_plane
            for k in range(count):
                nxt = first_plane + (k + 1) % count
                right.append(nxt if count >= 3 or (count == 2 and k == 0) else -1)
    return Planes(shell, plane, np.array(plane_shell, dtype=np.int64), np.array(plane_raan, dtype=np.float64),
                  np.array(right, dtype=np.int64), np.array(shell_alt), np.array(shell_inc))


def _planes_of(members: I64, raan_rad: F64) -> list[tuple[I64, float]]:
    """Members of one shell split into planes by RAAN gaps (circular), in increasing RAAN."""
    gap = np.radians(PLANE_GAP_DEG)
    order = np.argsort(raan_rad, kind="stable")
    r = raan_rad[order]
    gaps = np.diff(np.r_[r, r[0] + 2 * np.pi])
    big = np.flatnonzero(gaps > gap)
    if big.size == 0:  # one plane (or RAAN spread evenly with no gap)
        return [(members[order], float(np.median(r)))]
    start = (big[-1] + 1) % r.size  # begin after the last big gap so no plane straddles the wrap
    rolled = np.roll(order, -start)
    rr = np.unwrap(raan_rad[rolled])
    cuts = np.flatnonzero(np.diff(rr) > gap) + 1
    out = []
    for part, vals in zip(np.split(rolled, cuts), np.split(rr, cuts)):
        out.append((members[part], float(np.mod(np.median(vals), 2 * np.pi))))
    out.sort(key=lambda pr: pr[1])
    return out


def arg_latitude_rad(el: MeanElements, t_s: float, pos_m: F64 | None = None, gmst_rad: float | None = None) -> F64:
    """Argument of latitude of every satellite ``t_s`` after the reference time (rad, 0..2 pi).

    With Earth-fixed positions ``pos_m`` and the Greenwich sidereal angle ``gmst_rad`` of that
    instant: measured from each satellite's position in its plane (node from the J2-advanced
    RAAN), so drag, manoeuvres and element age do not scramble the order; rows that are not finite
    fall back to the mean elements. Without them: the mean argument of latitude advanced linearly.
    """
    mean: F64 = np.mod(el.arg_latitude_rad + el.arg_latitude_rate_rad_s * t_s, 2 * np.pi)
    if pos_m is None or gmst_rad is None:
        return mean
    raan = el.raan_rad + (el.raan_rate_rad_s * t_s if el.raan_rate_rad_s is not None else 0.0)
    # the node's Earth-fixed longitude: rotating the position to the inertial frame by the sidereal
    # angle and projecting on the node is projecting the Earth-fixed position on (cos lam, sin lam)
    lam = raan - gmst_rad
    cl, sl = np.cos(lam), np.sin(lam)
    x, y, z = pos_m[:, 0], pos_m[:, 1], pos_m[:, 2]
    along_node = x * cl + y * sl
    # in-plane axis 90 deg ahead of the node: h x N = (-sin O cos i, cos O cos i, sin i), in the same frame
    ahead = (y * cl - x * sl) * el.cos_inclination + z * el.sin_inclination
    u = np.arctan2(ahead, along_node)
    u += np.where(u < 0.0, 2 * np.pi, 0.0)
    out: F64 = np.where(np.isfinite(u), u, mean)
    return out


__all__ = ["MeanElements", "Planes", "arg_latitude_rad", "elements_from_catalogue", "group_planes",
           "PLANE_GAP_DEG", "SECONDS_PER_DAY"]

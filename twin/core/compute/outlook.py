"""What lies ahead of each satellite: time to the next eclipse and to the next SAA pass.

The scheduler needs, per satellite, how long it stays sunlit (or dark) and when it next crosses
the South Atlantic Anomaly. Both come from the present state vector flown ahead as a circular
orbit: the eclipse in closed form (cylindrical shadow, the same geometry as
:func:`twin.core.eclipse.cylindrical_eclipse_fraction`), the SAA by sampling the ground track ahead
on a latitude/longitude mask. Pure numpy. Model and limits: docs/physics.md#compute-jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from twin.core.constants import OMEGA_EARTH_RAD_S, R_EARTH_M

F64 = NDArray[np.float64]
B = NDArray[np.bool_]


@dataclass(frozen=True)
class Outlook:
    """Per satellite (n,): ``in_*`` now; ``time_to_*_s`` until the next entry (0 inside, inf never);
    ``*_left_s``: inside, until the exit; outside, the length of the next pass (0 none)."""

    in_eclipse: B
    time_to_eclipse_s: F64
    eclipse_left_s: F64


def eclipse_outlook(r_m: F64, v_m_s: F64, sun_unit: F64) -> Outlook:
    """Next eclipse of each satellite from its inertial state (n, 3) and the Sun's unit vector (3,).

    The orbit is taken as circular (radius |r|, rate |r x v| / |r|^2) and the shadow as a cylinder of
    Earth's equatorial radius: in the orbit plane, with theta measured from the point nearest the
    anti-Sun direction, the satellite is dark while cos(theta) > sqrt(1 - R^2/r^2) / cos(beta). The
    penumbra (~8 s at 550 km) and the orbit's eccentricity are ignored. Non-finite rows give
    ``in_eclipse`` False, times inf.
    """
    r = np.asarray(r_m, dtype=np.float64)
    v = np.asarray(v_m_s, dtype=np.float64)
    s = np.asarray(sun_unit, dtype=np.float64)
    s = s / np.sqrt(s @ s)
    h = np.cross(r, v)
    h_norm = np.sqrt(np.einsum("ij,ij->i", h, h))
    r_norm = np.sqrt(np.einsum("ij,ij->i", r, r))
    ok = np.isfinite(h_norm) & (h_norm > 0) & (r_norm > R_EARTH_M)
    safe_h = np.where(ok, h_norm, 1.0)
    h_hat = h / safe_h[:, None]
    omega = np.where(ok, h_norm / np.where(ok, r_norm, 1.0) ** 2, np.nan)  # rad/s
    sin_beta = h_hat @ s
    cos_beta = np.sqrt(np.clip(1.0 - sin_beta**2, 0.0, 1.0))
    a = -s[None, :] + sin_beta[:, None] * h_hat  # anti-Sun direction projected on the plane
    a_norm = np.sqrt(np.einsum("ij,ij->i", a, a))
    a_hat = a / np.where(a_norm > 0, a_norm, 1.0)[:, None]
    b_hat = np.cross(h_hat, a_hat)
    theta = np.arctan2(np.einsum("ij,ij->i", r, b_hat), np.einsum("ij,ij->i", r, a_hat))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.sqrt(np.clip(1.0 - (R_EARTH_M / np.where(ok, r_norm, 2 * R_EARTH_M)) ** 2, 0.0, 1.0)) / cos_beta
    has = ok & (c < 1.0) & (a_norm > 0)
    half = np.where(has, np.arccos(np.clip(c, -1.0, 1.0)), 0.0)
    inside = has & (np.abs(theta) < half)
    two_pi = 2.0 * np.pi
    with np.errstate(invalid="ignore"):
        to_entry = np.mod(-half - theta, two_pi) / omega
        to_exit = (half - theta) / omega
        length = 2.0 * half / omega
    tte = np.where(inside, 0.0, np.where(has, to_entry, np.inf))
    left = np.where(inside, to_exit, np.where(has, length, 0.0))
    return Outlook(inside, tte, left)


def region_outlook(r_m: F64, v_m_s: F64, gmst_rad: float, mask: B, horizon_s: float, step_s: float) -> Outlook:
    """Next pass through a region of a latitude/longitude mask, from the inertial (TEME-like) state.

    ``mask`` (n_lat, n_lon) bool covers latitude -90..90 and longitude -180..180 in equal cells;
    the state is flown ahead as a circular orbit (rotation about its angular momentum) and sampled
    every ``step_s`` up to ``horizon_s``, the Earth turning under it from ``gmst_rad``. Times are
    good to ``step_s``; a pass beyond the horizon gives inf (and ``*_left_s`` 0). Reuses the
    :class:`Outlook` fields: ``in_eclipse`` means in the region.
    """
    r = np.asarray(r_m, dtype=np.float64)
    v = np.asarray(v_m_s, dtype=np.float64)
    n = r.shape[0]
    n_lat, n_lon = mask.shape
    h = np.cross(r, v)
    h_norm = np.sqrt(np.einsum("ij,ij->i", h, h))
    r_norm = np.sqrt(np.einsum("ij,ij->i", r, r))
    ok = np.isfinite(h_norm) & (h_norm > 0)
    r_safe = np.where(ok, r_norm, 1.0)
    k_hat = h / np.where(ok, h_norm, 1.0)[:, None]
    x_hat = r / r_safe[:, None]
    y_hat = np.cross(k_hat, x_hat)
    omega = np.where(ok, h_norm / r_safe**2, 0.0)
    times = np.arange(0.0, horizon_s + step_s / 2, step_s)
    # every sample at once, (times, satellites): a loop over the samples is overhead-bound for a slice of the fleet
    ang = omega[None, :] * times[:, None]
    c, s = np.cos(ang), np.sin(ang)
    px = c * x_hat[None, :, 0] + s * y_hat[None, :, 0]
    py = c * x_hat[None, :, 1] + s * y_hat[None, :, 1]
    pz = c * x_hat[None, :, 2] + s * y_hat[None, :, 2]
    lat = np.arcsin(np.clip(pz, -1.0, 1.0))
    lon = np.arctan2(py, px) - (gmst_rad + OMEGA_EARTH_RAD_S * times)[:, None]
    lon = np.mod(lon + np.pi, 2 * np.pi) - np.pi
    i_lat = np.clip(((lat + np.pi / 2) / np.pi * n_lat).astype(np.int64), 0, n_lat - 1)
    i_lon = np.clip(((lon + np.pi) / (2 * np.pi) * n_lon).astype(np.int64), 0, n_lon - 1)
    inside = mask[i_lat, i_lon] & ok[None, :]
    now = inside[0]
    # first sample that differs from now: exit when inside, entry when outside
    change = inside != now[None, :]
    has_change = change.any(axis=0)
    first = np.argmax(change, axis=0)
    t_change = np.where(has_change, times[first], np.inf)
    # outside: length of the pass that starts at t_change (until the next change after it)
    after = np.where(np.arange(times.size)[:, None] > first[None, :], inside != inside[first, np.arange(n)][None, :],
                     False)
    has_end = after.any(axis=0)
    t_end = np.where(has_end, times[np.argmax(after, axis=0)], times[-1])
    tte = np.where(now, 0.0, t_change)
    left = np.where(now, np.where(has_change, t_change, np.inf),
                    np.where(has_change, t_end - t_change, 0.0))
    return Outlook(now, tte, left)


class OutlookCache:
    """An outlook kept per satellite and counted down between refreshes, refreshed a slice at a time.

    Each satellite's outlook is recomputed every ``interval_s`` of sim time, a different slice of the
    fleet each tick (``index % k == tick % k``), so the cost is spread evenly over the ticks instead of
    landing on one. Between refreshes :meth:`at` counts the stored times down: an entry that falls due
    turns into being inside for the rest of the pass; an exit that falls due turns into being outside
    with the next entry unknown (inf) until the next refresh. ``interval_s`` must be well below the
    passes' lengths (minutes) for that to be rare.
    """

    def __init__(self, n: int, interval_s: float) -> None:
        self.interval_s = interval_s
        self.t_ref = np.full(n, -np.inf)
        self.inside = np.zeros(n, dtype=bool)
        self.tte = np.full(n, np.inf)
        self.left = np.zeros(n)

    def due(self, t_s: float, dt_s: float) -> NDArray[np.int64]:
        """Satellites to refresh at ``t_s``: this tick's slice (``index % k == tick % k``, k = interval / dt),
        and any never computed or left older than twice the interval (ticks skipped)."""
        n = self.t_ref.size
        k = max(1, int(round(self.interval_s / dt_s))) if dt_s > 0 else 1
        tick = int(round(t_s / dt_s)) if dt_s > 0 else 0
        due = ~np.isfinite(self.t_ref) | (t_s - self.t_ref >= 2 * self.interval_s)  # new, or skipped ticks
        if k > 1:
            due |= (np.arange(n) % k) == (tick % k)
        else:
            due[:] = True
        out: NDArray[np.int64] = np.flatnonzero(due)
        return out

    def refresh(self, idx: NDArray[np.int64], fresh: Outlook, t_s: float) -> None:
        """Store ``fresh`` (computed at ``t_s`` for satellites ``idx``, arrays of ``idx``'s length)."""
        self.t_ref[idx] = t_s
        self.inside[idx] = fresh.in_eclipse
        self.tte[idx] = fresh.time_to_eclipse_s
        self.left[idx] = fresh.eclipse_left_s

    def at(self, t_s: float) -> Outlook:
        """The outlook of every satellite at ``t_s``, counted down from its last refresh."""
        age = np.maximum(t_s - self.t_ref, 0.0)
        was_in = self.inside
        entered = ~was_in & (self.tte <= age)
        left_in = np.where(was_in, self.left - age, np.where(entered, self.left - (age - self.tte), 0.0))
        now_in = (was_in | entered) & (left_in > 0)
        exited = (was_in | entered) & ~now_in
        tte = np.where(now_in, 0.0, np.where(exited, np.inf, self.tte - age))
        left = np.where(now_in, left_in, np.where(exited, 0.0, self.left))
        return Outlook(now_in, tte, left)

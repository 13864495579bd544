"""Data sovereignty for compute jobs: where a job's data may be processed and downlinked, per tick.

A job with a jurisdiction (:class:`~twin.core.compute.territory.Jurisdiction`) may be processed
only on a satellite that is above the allowed territory for the whole tick, and its result may
be downlinked only through gateways in that territory. :class:`TrackTerritory` decides the first
from the satellite's ground track over the tick: the track from the position at the tick's start
to the one at its end (Earth-fixed; the chord, whose sub-points are within ~0.1 km of the true
track for a 10 s tick at 550 km) is sampled every ``SAMPLE_KM`` of ground distance or less, and
every sample must lie in an allowed cell of the jurisdiction's raster eroded so that each such
cell's neighbourhood of ``SAMPLE_KM`` is allowed too. So every point between two samples is in an
allowed cell, and an allowed cell lies wholly inside the territory (the raster's rule): no part of
the tick's track can be outside it. The price: a strip of one cell (28 km; more in longitude
near the poles) inside every border and coast, on top of the raster's own.

Pure numpy: no clock, no I/O. Figures and limits: docs/network.md#data-sovereignty-territory.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from twin.core.compute.territory import CELL_DEG, NCOLS, NROWS, Jurisdiction, cell_of
from twin.core.constants import R_EARTH_M
from twin.core.network.ground import GroundSites
from twin.core.orbit import geodetic

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

SAMPLE_KM = 5.0  # setting: largest ground distance between two tested points of a tick's track
_KM_PER_DEG = math.radians(1.0) * R_EARTH_M / 1000.0


def erode(mask: B, margin_km: float) -> B:
    """Cells of ``mask`` (NROWS, NCOLS; rows from -90 deg, columns from -180 deg) whose every point's
    neighbourhood of ``margin_km`` lies in cells of ``mask``: one cell north and south (a cell is 27.8 km
    tall, ``margin_km`` must be less), and east and west as many cells as ``margin_km`` spans at the
    row's poleward edge (wrapping at the antimeridian). Rows touching a pole are dropped."""
    cell_km = CELL_DEG * _KM_PER_DEG
    if margin_km >= cell_km:
        raise ValueError(f"margin {margin_km} km must be less than one cell ({cell_km:.1f} km)")
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[0] = out[-1] = False
    edge_lat = np.radians(np.maximum(np.abs(-90.0 + CELL_DEG * np.arange(NROWS)),
                                     np.abs(-90.0 + CELL_DEG * (np.arange(NROWS) + 1))))
    width_km = cell_km * np.cos(edge_lat)
    k_lon = np.where(width_km > 0, np.ceil(margin_km / np.maximum(width_km, 1e-9)), NCOLS).astype(np.int64)
    base = out.copy()
    for k in range(1, int(min(k_lon.max(), NCOLS // 2)) + 1):
        rows = k_lon >= k
        out[rows] &= np.roll(base[rows], k, axis=1) & np.roll(base[rows], -k, axis=1)
    out[k_lon >= NCOLS // 2] = False
    return out


class TrackTerritory:
    """A jurisdiction as the scheduler tests it: satellites whose ground track over the tick is above it."""

    def __init__(self, jurisdiction: Jurisdiction, gateways: GroundSites | None = None,
                 sample_km: float = SAMPLE_KM) -> None:
        """``gateways``: the twin's gateways; those in the territory (``Jurisdiction.gateways_allowed``) are
        the only ones its jobs' results may be downlinked through (``gateway_index``)."""
        self.jurisdiction = jurisdiction
        self.sample_km = sample_km
        # a sample stands for the track within half the spacing of it, plus the chord's sag (< 0.2 km)
        self.mask = erode(np.asarray(jurisdiction.mask, dtype=bool), 0.5 * sample_km + 0.2)
        self.gateways = gateways
        ok = np.zeros(0, bool) if gateways is None else jurisdiction.gateways_allowed(gateways.lat_deg, gateways.lon_deg)
        self.gateway_index: I64 = np.flatnonzero(ok).astype(np.int64)

    def allowed_cells(self, lat_rad: F64, lon_rad: F64) -> B:
        """Whether each point (rad) is in an allowed cell of the eroded raster (non-finite: False)."""
        with np.errstate(invalid="ignore"):
            row, col, ok = cell_of(np.degrees(lat_rad), np.degrees(lon_rad))
        out: B = self.mask[row, col] & ok
        return out

    def allowed_m(self, pos_m: F64, other_m: F64 | None) -> B:
        """Satellites (n,) whose ground track between ``pos_m`` and ``other_m`` (Earth-fixed, m) is above the
        territory (``other_m`` None: the point only); non-finite rows False."""
        pos = np.asarray(pos_m, dtype=np.float64)
        end = pos if other_m is None else np.asarray(other_m, dtype=np.float64)
        finite: B = np.asarray(np.isfinite(pos).all(axis=1) & np.isfinite(end).all(axis=1), dtype=bool)
        safe0 = np.where(finite[:, None], pos, 1.0)
        safe1 = np.where(finite[:, None], end, 1.0)
        ok = finite.copy()
        lat, lon, _ = geodetic(safe0)
        ok &= self.allowed_cells(lat, lon)
        if other_m is None or not ok.any():
            return ok
        # ground distance of the chord, scaled from the orbit radius down to the surface
        r = np.sqrt(np.einsum("ij,ij->i", safe0, safe0))
        ground_km = np.sqrt(np.einsum("ij,ij->i", safe1 - safe0, safe1 - safe0)) * (R_EARTH_M / np.maximum(r, R_EARTH_M)) / 1e3
        steps = np.where(ok, np.ceil(ground_km / self.sample_km), 0).astype(np.int64)
        for k in range(1, int(steps.max()) + 1):
            sel = np.flatnonzero(ok & (steps >= k))
            if sel.size == 0:
                break
            f = (k / steps[sel])[:, None]
            p = safe0[sel] + f * (safe1[sel] - safe0[sel])
            la, lo, _ = geodetic(p)
            ok[sel] &= self.allowed_cells(la, lo)
        return ok

    def downlink(self, sat_pos_m: F64) -> tuple[int, float]:
        """The allowed gateway nearest to a satellite (index into ``gateways``) and the straight-line
        distance to it (m); (-1, inf) when the territory has no gateway."""
        if self.gateways is None or self.gateway_index.size == 0 or not np.isfinite(sat_pos_m).all():
            return -1, math.inf
        d = np.sqrt(np.sum((self.gateways.pos_m[self.gateway_index] - sat_pos_m) ** 2, axis=1))
        j = int(np.argmin(d))
        return int(self.gateway_index[j]), float(d[j])

"""Ground sites (gateways, cities, any latitude/longitude) and which satellites they see.

Gateways default to the operational gateways of the shipped Starlink site list
(``twin/data/starlink_gateways.csv``), cities to the 100 most populous
(``twin/data/cities_top100.csv``); either can be replaced by a CSV with ``name,lat_deg,lon_deg``
columns (and optionally ``type`` and ``status``). Sources: docs/network.md#ground-segment.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.core.constants import R_EARTH_M
from twin.core.network.geometry import finite_rows, geodetic_to_itrs

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

DEFAULT_GATEWAYS_NAME = "starlink_gateways.csv"
DEFAULT_CITIES_NAME = "cities_top100.csv"


class GroundError(ValueError):
    """A ground-site file that cannot be used; the message names the line."""


@dataclass(frozen=True)
class GroundSites:
    """Named ground points: geodetic latitude/longitude (deg), Earth-fixed position and up vector (m, unit)."""

    names: tuple[str, ...]
    lat_deg: F64
    lon_deg: F64
    pos_m: F64
    up: F64

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_lat_lon(cls, names: tuple[str, ...] | list[str], lat_deg: ArrayLike, lon_deg: ArrayLike) -> GroundSites:
        lat = np.atleast_1d(np.asarray(lat_deg, dtype=np.float64))
        lon = np.atleast_1d(np.asarray(lon_deg, dtype=np.float64))
        if lat.shape != lon.shape or lat.size != len(names):
            raise GroundError("names, latitudes and longitudes differ in length")
        if not (np.all(np.abs(lat) <= 90.0) and np.all(np.abs(lon) <= 360.0)):
            raise GroundError("latitude must be within +-90 deg and longitude within +-360 deg")
        pos, up = geodetic_to_itrs(lat, lon)
        return cls(tuple(names), lat, lon, pos, up)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise GroundError(f"no ground site named {name!r}") from None


def parse_sites_csv(text: str, source: str = "<csv>", only_operational_gateways: bool = False) -> GroundSites:
    """Sites from CSV text with ``name``, ``lat_deg``, ``lon_deg`` columns.

    ``only_operational_gateways``: keep rows whose ``type`` is ``gateway`` and ``status``
    ``operational`` when those columns exist.
    """
    reader = csv.DictReader(io.StringIO(text))
    fields = set(reader.fieldnames or ())
    if not {"name", "lat_deg", "lon_deg"} <= fields:
        raise GroundError(f"{source}: need the columns name, lat_deg, lon_deg (got {sorted(fields)})")
    names: list[str] = []
    lat: list[float] = []
    lon: list[float] = []
    for line, row in enumerate(reader, 2):
        if only_operational_gateways and (row.get("type", "gateway") != "gateway"
                                          or row.get("status", "operational") != "operational"):
            continue
        try:
            la, lo = float(row["lat_deg"]), float(row["lon_deg"])
        except (TypeError, ValueError):
            raise GroundError(f"{source}: line {line}: latitude/longitude are not numbers") from None
        if not (np.isfinite(la) and np.isfinite(lo) and abs(la) <= 90.0 and abs(lo) <= 360.0):
            raise GroundError(f"{source}: line {line}: latitude/longitude out of range")
        names.append(row["name"])
        lat.append(la)
        lon.append(lo)
    if not names:
        raise GroundError(f"{source}: no site")
    return GroundSites.from_lat_lon(names, lat, lon)


def _read(path: str | Path | None, default: str) -> tuple[str, str]:
    if path is None:
        return (resources.files("twin") / "data" / default).read_text(encoding="utf-8"), default
    try:
        return Path(path).read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise GroundError(f"{path}: cannot read: {exc.strerror}") from exc


def load_gateways(path: str | Path | None = None) -> GroundSites:
    """Gateways: the operational gateways of ``path`` (default: the shipped Starlink list)."""
    return parse_sites_csv(*_read(path, DEFAULT_GATEWAYS_NAME), only_operational_gateways=True)


def load_cities(path: str | Path | None = None) -> GroundSites:
    """User endpoints: every row of ``path`` (default: the 100 most populous cities)."""
    return parse_sites_csv(*_read(path, DEFAULT_CITIES_NAME))


@dataclass(frozen=True)
class Visibility:
    """Site-satellite pairs above the minimum elevation: indices and slant range (m)."""

    site: I64
    sat: I64
    range_m: F64


_CELL_DEG = 1.0  # setting: latitude/longitude cell of the site index
_BRUTE_FORCE_SITES = 4  # setting: up to this many sites without an index, visible_pairs checks every satellite
_CELL_MARGIN_DEG = 1.0  # a point in a cell is within this of the cell's centre (half-diagonal 0.71 deg, plus slack)


class SiteIndex:
    """Which sites can see a point in each 1 deg latitude/longitude cell, for one largest central angle.

    Built once per site list; a satellite's candidates are the sites listed for its cell, then the
    elevation is checked exactly. Rebuilt (automatically) when satellites fly higher than it covers.
    """

    def __init__(self, sites: GroundSites, max_central_angle_rad: float) -> None:
        self.max_central_angle_rad = float(max_central_angle_rad)
        n_lat, n_lon = int(180 / _CELL_DEG), int(360 / _CELL_DEG)
        lat_c = np.radians(-90.0 + _CELL_DEG * (np.arange(n_lat) + 0.5))
        lon_c = np.radians(-180.0 + _CELL_DEG * (np.arange(n_lon) + 0.5))
        la, lo = np.meshgrid(lat_c, lon_c, indexing="ij")
        centre = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1).reshape(-1, 3)
        unit = sites.pos_m / np.linalg.norm(sites.pos_m, axis=1)[:, None]
        limit = np.cos(min(self.max_central_angle_rad + np.radians(_CELL_MARGIN_DEG), np.pi))
        cell, site = np.nonzero(centre @ unit.T >= limit)
        self.indptr = np.zeros(centre.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(cell, minlength=centre.shape[0]), out=self.indptr[1:])
        self.indices = site.astype(np.int64)
        self.n_lon = n_lon

    def candidates(self, pos_m: F64) -> tuple[I64, I64]:
        """(site, satellite) pairs that may be in view: a superset of the true ones."""
        x, y, z = pos_m[:, 0], pos_m[:, 1], pos_m[:, 2]
        lat = np.degrees(np.arctan2(z, np.sqrt(x * x + y * y)))
        lon = np.degrees(np.arctan2(y, x))
        i_lat = np.clip(((lat + 90.0) / _CELL_DEG).astype(np.int64), 0, int(180 / _CELL_DEG) - 1)
        i_lon = np.clip(((lon + 180.0) / _CELL_DEG).astype(np.int64), 0, self.n_lon - 1)
        cell = i_lat * self.n_lon + i_lon
        first = self.indptr[cell]
        count = self.indptr[cell + 1] - first
        total = int(count.sum())
        sat = np.repeat(np.arange(pos_m.shape[0], dtype=np.int64), count)
        # the k-th candidate of a satellite is indices[first + k]: one repeat of (first - where its run starts)
        run_start = np.cumsum(count) - count
        return self.indices[np.repeat(first - run_start, count) + np.arange(total, dtype=np.int64)], sat


def central_angle_rad(alt_m: float, min_elevation_rad: float) -> float:
    """Largest Earth-central angle between a ground site and a satellite at ``alt_m`` seen above the elevation."""
    r = R_EARTH_M - 21_385.0  # the polar radius: the lowest site makes the widest angle
    return float(np.arccos(r * np.cos(min_elevation_rad) / (R_EARTH_M + alt_m)) - min_elevation_rad)


def highest_altitude_m(sat_pos_m: F64) -> float:
    """Altitude above the equatorial radius of the farthest finite satellite of (n, 3) positions (m; 0 when none)."""
    x, y, z = sat_pos_m[:, 0], sat_pos_m[:, 1], sat_pos_m[:, 2]
    r2 = x * x + y * y + z * z
    r2_max = float(np.fmax.reduce(r2)) if r2.size else math.nan  # fmax skips the NaN rows of lost satellites
    return max(math.sqrt(r2_max) - R_EARTH_M, 0.0) if math.isfinite(r2_max) else 0.0


def ensure_index(index: SiteIndex | None, sites: GroundSites, sat_pos_m: F64, min_elevation_rad: float,
                 margin_m: float = 50_000.0) -> SiteIndex:
    """``index`` if it covers the highest finite satellite of ``sat_pos_m``, else a new one ``margin_m`` higher."""
    alt_max = highest_altitude_m(sat_pos_m)
    if index is not None and index.max_central_angle_rad >= central_angle_rad(max(alt_max, 0.0), min_elevation_rad):
        return index
    return SiteIndex(sites, central_angle_rad(max(alt_max, 0.0) + margin_m, min_elevation_rad))


def visible_pairs(sites: GroundSites, sat_pos_m: F64, min_elevation_rad: float,
                  site_ok: NDArray[np.bool_] | None = None, index: SiteIndex | None = None) -> Visibility:
    """Every (site, satellite) pair with the satellite at or above ``min_elevation_rad`` (non-finite rows never).

    ``index`` (a :class:`SiteIndex` of ``sites`` covering the highest satellite: :func:`ensure_index`)
    prunes the candidates; without it one is built for this call.
    """
    finite = finite_rows(sat_pos_m)
    if not finite.any():
        e = np.zeros(0, dtype=np.int64)
        return Visibility(e, e.copy(), np.zeros(0))
    all_finite = bool(finite.all())
    pos = sat_pos_m if all_finite else sat_pos_m[finite]
    if index is None and len(sites) <= _BRUTE_FORCE_SITES:
        # a few sites (a route's ends): every satellite is a candidate, cheaper than building an index
        k = np.repeat(np.arange(pos.shape[0], dtype=np.int64), len(sites))
        s = np.tile(np.arange(len(sites), dtype=np.int64), pos.shape[0])
    else:
        if index is None:
            index = ensure_index(None, sites, pos, min_elevation_rad)
        s, k = index.candidates(pos)
    # component by component (1-D gathers; no (k, 3) temporaries): line of sight v, its length d and v . up
    sp, up = sites.pos_m, sites.up
    vx = pos[:, 0][k] - sp[:, 0][s]
    vy = pos[:, 1][k] - sp[:, 1][s]
    vz = pos[:, 2][k] - sp[:, 2][s]
    d = np.sqrt(vx * vx + vy * vy + vz * vz)
    ok = vx * up[:, 0][s] + vy * up[:, 1][s] + vz * up[:, 2][s] >= np.sin(min_elevation_rad) * d
    if site_ok is not None:
        ok &= site_ok[s]
    keep = np.flatnonzero(ok)
    sat = k[keep] if all_finite else np.flatnonzero(finite)[k[keep]]
    return Visibility(s[keep], sat, d[keep])



class VisibilityCache:
    """The pairs :func:`visible_pairs` gives, from a candidate list kept across ticks.

    Satellites up to ``FAR_ALT_M`` are listed with the sites within the largest central angle a
    satellite ``RISE_M`` higher than the highest of them can be seen at, plus ``MOVE_RAD`` (a
    superset, in satellite order). A satellite keeps its listed sites while it has moved less than
    ``MOVE_RAD`` as seen from the Earth's centre (a displacement below R sin(MOVE_RAD) bounds it)
    and flies below that altitude; any other satellite with a position (not listed then, moved,
    risen, or beyond ``FAR_ALT_M``: SGP4 output of element sets long past their epoch can be absurd
    without an error) is checked against every site. When more than ``RELIST_FRACTION`` of the
    fleet that a list would serve is in that case, everything is listed again. Each call checks the pairs' elevations with
    :func:`visible_pairs`' own expressions, so the pairs, their order and their ranges are the same.
    One cache per fleet and site list.
    """

    MOVE_RAD = math.radians(1.0)  # setting: a satellite's listed sites serve it for this much motion (~15 s)
    RISE_M = 20_000.0  # setting: ... and while it flies at most this much higher than the highest at listing
    FAR_ALT_M = 2_000_000.0  # setting: satellites above this are never listed (every site, every call)
    RELIST_FRACTION = 0.01  # setting: list again when more than this fraction of the fleet is not served

    def __init__(self, sites: GroundSites, min_elevation_rad: float) -> None:
        self.sites = sites
        self.min_elevation_rad = float(min_elevation_rad)
        self._index: SiteIndex | None = None
        self._pos = np.zeros((0, 3))
        self._listed = np.zeros(0, dtype=bool)
        self._r2_limit = 0.0
        self._site = np.zeros(0, dtype=np.int64)
        self._sat = np.zeros(0, dtype=np.int64)
        self.refreshes = 0

    def _served(self, pos: F64, r2: F64) -> NDArray[np.bool_]:
        """Satellites whose listed sites still cover them (NaN rows: False)."""
        if self._pos.shape != pos.shape:
            return np.zeros(pos.shape[0], dtype=bool)
        dx, dy, dz = pos[:, 0] - self._pos[:, 0], pos[:, 1] - self._pos[:, 1], pos[:, 2] - self._pos[:, 2]
        served: NDArray[np.bool_] = (self._listed & (dx * dx + dy * dy + dz * dz < (R_EARTH_M * math.sin(self.MOVE_RAD)) ** 2)
                                     & (r2 <= self._r2_limit))
        return served

    def _refresh(self, pos: F64, r2: F64) -> None:
        listed = np.isfinite(r2) & (r2 <= (R_EARTH_M + self.FAR_ALT_M) ** 2)
        ids = np.flatnonzero(listed)
        r_max = math.sqrt(float(r2[ids].max())) if ids.size else R_EARTH_M
        alt = max(r_max - R_EARTH_M, 0.0) + self.RISE_M
        if self._index is None or self._index.max_central_angle_rad < (
                central_angle_rad(alt, self.min_elevation_rad) + self.MOVE_RAD):
            self._index = SiteIndex(self.sites, central_angle_rad(alt + self.RISE_M, self.min_elevation_rad)
                                    + self.MOVE_RAD)
        s, k = self._index.candidates(pos[ids]) if ids.size else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._site, self._sat = s, ids[k]
        self._pos, self._listed = pos.copy(), listed
        self._r2_limit = (R_EARTH_M + alt) ** 2
        self.refreshes += 1

    def visible(self, sat_pos_m: F64, site_ok: NDArray[np.bool_] | None = None) -> Visibility:
        """Every (site, satellite) pair in view now, as :func:`visible_pairs` (same pairs, order and ranges)."""
        pos = np.asarray(sat_pos_m, dtype=np.float64)
        x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
        r2 = x * x + y * y + z * z
        served = self._served(pos, r2)
        finite = np.isfinite(r2)
        unserved = np.flatnonzero(finite & ~served)
        # those a new list would serve: listed then (moved or risen), or with a position only now
        listable = finite & (r2 <= (R_EARTH_M + self.FAR_ALT_M) ** 2)
        if int(np.count_nonzero(listable & ~served)) > self.RELIST_FRACTION * pos.shape[0]:
            self._refresh(pos, r2)
            served = self._served(pos, r2)
            unserved = np.flatnonzero(np.isfinite(r2) & ~served)
        keep_listed = np.flatnonzero(served[self._sat])
        s, k = self._site[keep_listed], self._sat[keep_listed]
        if unserved.size:  # every site for these, merged into satellite order (sites ascending within each)
            n_sites = len(self.sites)
            k = np.concatenate([k, np.repeat(unserved, n_sites)])
            s = np.concatenate([s, np.tile(np.arange(n_sites, dtype=np.int64), unserved.size)])
            o = np.argsort(k, kind="stable")  # two sorted runs: a linear merge
            s, k = s[o], k[o]
        sp, up = self.sites.pos_m, self.sites.up
        vx = x[k] - sp[:, 0][s]
        vy = y[k] - sp[:, 1][s]
        vz = z[k] - sp[:, 2][s]
        d = np.sqrt(vx * vx + vy * vy + vz * vz)
        ok = vx * up[:, 0][s] + vy * up[:, 1][s] + vz * up[:, 2][s] >= np.sin(self.min_elevation_rad) * d
        if site_ok is not None:
            ok &= site_ok[s]
        keep = np.flatnonzero(ok)
        return Visibility(s[keep], k[keep], d[keep])


def elevation_rad(sites: GroundSites, sat_pos_m: F64) -> F64:
    """Elevation of every satellite from every site (rad), (sites, satellites)."""
    v = sat_pos_m[None, :, :] - sites.pos_m[:, None, :]
    dist = np.sqrt(np.einsum("ijk,ijk->ij", v, v))
    out: F64 = np.arcsin(np.clip(np.einsum("ijk,ik->ij", v, sites.up) / dist, -1.0, 1.0))
    return out

"""Which country's land is under a point: data-sovereignty constraints for compute jobs.

Data: Natural Earth 1:110m admin-0 countries (public domain; v5.1.1 as shipped in geopandas 0.14.4,
``twin/data/countries_110m.json``, built by ``scripts/build_countries.py``; docs/network.md#data-sovereignty-territory).
"Above allowed territory" means above its land area as drawn at 1:110m: territorial waters and
exclusive economic zones are not included (conservative), disputed areas follow Natural Earth's
de facto boundaries (except Crimea, which geopandas assigns to Ukraine), and countries too small
to be drawn at 1:110m (Malta, Singapore, Andorra) have no land at all here.

The satellites are tested against a raster of ``CELL_DEG`` latitude/longitude cells (int16): the
index of a country where the whole closed cell lies inside that one country's polygons, ``SEA``
(-1) where it lies wholly outside every country, ``MIXED`` (-2) where any polygon edge touches the
cell (a border or a coastline crosses it; every edge is rasterised exactly, a supercover with a
1e-7 deg margin). Conservative by construction: a point is allowed only when its whole cell is
inside allowed territory, so a border or coastline cell is never allowed and no allowed point
can lie outside the allowed polygons; the price is a strip up to one cell (28 km, 39 km across
the diagonal) inside every border and coast. Ground sites (gateways, cities) are fixed and few,
so they are tested exactly against the polygons instead.

Pure numpy, no I/O but the package data file, no cache on disk; the world raster is built once
per process (well under a second).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.core.constants import R_EARTH_M
from twin.schema.compute_summary import CONTINENTS as CONTINENTS  # the continents of the data (re-exported)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I16 = NDArray[np.int16]
Bool = NDArray[np.bool_]

COUNTRIES_NAME = "countries_110m.json"
CELL_DEG = 0.25  # raster cell (deg of latitude and of longitude): 27.8 km north-south
NROWS = round(180.0 / CELL_DEG)  # rows from -90 deg latitude northwards
NCOLS = round(360.0 / CELL_DEG)  # columns from -180 deg longitude eastwards
SEA = -1  # the whole cell is outside every country (sea, or land too small for 1:110m)
MIXED = -2  # a border or coastline touches the cell: never allowed
_EPS_CELLS = 1e-7 / CELL_DEG  # margin of the edge rasterisation (1e-7 deg, about 1 cm), in cells
_CHUNK = 1 << 21  # point-edge pairs per block of the exact test
_KM_PER_DEG = math.radians(1.0) * R_EARTH_M / 1000.0  # km per degree of great circle
# A ground site outside every 1:110m polygon (a coastal gateway or city: the generalised coastline is off
# by a few km) belongs to the country with the nearest polygon edge when that edge is within this (km).
COAST_KM = 25.0

EU27 = ("AUT", "BEL", "BGR", "HRV", "CYP", "CZE", "DNK", "EST", "FIN", "FRA", "DEU", "GRC", "HUN", "IRL",
        "ITA", "LVA", "LTU", "LUX", "MLT", "NLD", "POL", "PRT", "ROU", "SVK", "SVN", "ESP", "SWE")
# Named regions (ISO-3 codes). Members without a polygon at 1:110m (e.g. Malta, Liechtenstein) are kept
# in `Jurisdiction.missing`: they can never be allowed. "US": the United States with Puerto Rico,
# its only territory drawn at 1:110m.
REGIONS: dict[str, tuple[str, ...]] = {
    "EU": EU27,
    "EEA": (*EU27, "ISL", "LIE", "NOR"),
    "US": ("USA", "PRI"),
    "Five Eyes": ("AUS", "CAN", "GBR", "NZL", "USA"),
}


@dataclass(frozen=True)
class Countries:
    """The 1:110m countries: codes, names, continents and rings (each an (n, 2) array of lon, lat in deg)."""

    codes: tuple[str, ...]
    names: tuple[str, ...]
    continents: tuple[str, ...]
    polygons: tuple[tuple[F64, ...], ...] = field(repr=False, compare=False)
    source: str = ""
    version: str = ""

    def __len__(self) -> int:
        return len(self.codes)

    def index(self, code: str) -> int:
        """Index of an ISO-3 code (``ValueError`` when not in the data)."""
        try:
            return self.codes.index(code)
        except ValueError:
            raise ValueError(f"{code!r} is not an ISO-3 code of the 1:110m countries") from None

    def edges(self, indices: Sequence[int] | None = None) -> tuple[F64, F64, F64, F64, I64]:
        """Every ring edge of the given countries (default all): x0, y0, x1, y1 (lon/lat deg) and owner index."""
        chosen = range(len(self)) if indices is None else indices
        return _edges([(i, ring) for i in chosen for ring in self.polygons[i]])

    @functools.cached_property
    def bounds(self) -> F64:
        """(n, 4) lon min, lon max, lat min, lat max of each country (deg)."""
        out = np.empty((len(self), 4))
        for i, rings in enumerate(self.polygons):
            pts = np.concatenate(rings)
            out[i] = pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max()
        return out


@functools.cache
def load_countries() -> Countries:
    """The shipped 1:110m countries (``twin/data/countries_110m.json``), parsed once per process."""
    text = (resources.files("twin") / "data" / COUNTRIES_NAME).read_text(encoding="utf-8")
    data = json.loads(text)
    rows = data["countries"]
    polygons = tuple(tuple(_read_only(np.asarray(ring, dtype=np.float64).reshape(-1, 2)) for ring in c["polygons"])
                     for c in rows)
    return Countries(codes=tuple(str(c["iso_a3"]) for c in rows), names=tuple(str(c["name"]) for c in rows),
                     continents=tuple(str(c["continent"]) for c in rows), polygons=polygons,
                     source=str(data.get("source", "")), version=str(data.get("version", "")))


def _read_only(a: F64) -> F64:
    a.setflags(write=False)
    return a


# --- rasterisation -------------------------------------------------------------------------------------------

def _edges(rings: Sequence[tuple[int, F64]]) -> tuple[F64, F64, F64, F64, I64]:
    """Closed-ring edges of (owner, ring) pairs: x0, y0, x1, y1 (deg) and owner."""
    if not rings:
        e = np.empty(0)
        return e, e, e, e, np.empty(0, dtype=np.int64)
    start = np.concatenate([r for _, r in rings])
    end = np.concatenate([np.roll(r, -1, axis=0) for _, r in rings])
    owner = np.concatenate([np.full(len(r), i, dtype=np.int64) for i, r in rings])
    return start[:, 0], start[:, 1], end[:, 0], end[:, 1], owner


def _expand(lo: F64, hi: F64, ok: Bool) -> tuple[I64, I64]:
    """For each i with ok[i], the integers k in [lo[i], hi[i]]: (edge index, k) pairs."""
    k_lo = np.ceil(lo).astype(np.int64)
    n = np.where(ok, np.maximum(np.floor(hi).astype(np.int64) - k_lo + 1, 0), 0)
    idx = np.repeat(np.arange(len(n), dtype=np.int64), n)
    first = np.cumsum(n) - n
    k = k_lo[idx] + (np.arange(len(idx), dtype=np.int64) - first[idx])
    return idx, k


def _touched(u0: F64, v0: F64, u1: F64, v1: F64) -> I64:
    """Flat indices of every cell within 1e-7 deg of a segment (u, v: column, row coordinates in cells).

    A segment meets a closed cell either at an endpoint inside it or where it crosses one of the cell's
    grid lines; at each endpoint and grid-line crossing both cells on either side (and the diagonal ones
    at a corner, with the margin) are marked: a superset of the cells the segment touches.
    """
    du, dv = u1 - u0, v1 - v0
    rows: list[I64] = []
    cols: list[I64] = []

    def mark(r: F64, c: F64) -> None:
        for rr in (np.floor(r - _EPS_CELLS), np.floor(r + _EPS_CELLS)):
            for cc in (np.floor(c - _EPS_CELLS), np.floor(c + _EPS_CELLS)):
                rows.append(rr.astype(np.int64))
                cols.append(cc.astype(np.int64))

    mark(v0, u0)  # every vertex is the start of one edge
    i, k = _expand(np.minimum(u0, u1), np.maximum(u0, u1), du != 0)  # vertical grid lines u = k
    mark(v0[i] + (k - u0[i]) / du[i] * dv[i], k.astype(np.float64))
    i, k = _expand(np.minimum(v0, v1), np.maximum(v0, v1), dv != 0)  # horizontal grid lines v = k
    mark(k.astype(np.float64), u0[i] + (k - v0[i]) / dv[i] * du[i])
    r = np.clip(np.concatenate(rows), 0, NROWS - 1)
    c = np.concatenate(cols) % NCOLS
    out: I64 = r * NCOLS + c
    return out


def _fill(u0: F64, v0: F64, u1: F64, v1: F64, owner: I64) -> tuple[I64, I64]:
    """Even-odd scanline fill at the cell centres: per cell, the sum of (owner + 1) and the number of owners
    whose rings contain the centre (half-open crossing rule, the rings of one owner combined)."""
    vmin, vmax = np.minimum(v0, v1), np.maximum(v0, v1)
    i, r = _expand(vmin - 0.5, vmax - 0.5, v0 != v1)  # rows whose centre r + 0.5 is in [vmin, vmax)
    keep = (r >= 0) & (r < NROWS) & (vmin[i] <= r + 0.5) & (r + 0.5 < vmax[i])
    i, r = i[keep], r[keep]
    x = u0[i] + (r + 0.5 - v0[i]) / (v1[i] - v0[i]) * (u1[i] - u0[i])
    who = owner[i]
    order = np.lexsort((x, r, who))
    x, r, who = x[order], r[order], who[order]
    key = who * NROWS + r
    new = np.ones(len(key), dtype=bool)
    new[1:] = key[1:] != key[:-1]
    start = np.maximum.accumulate(np.where(new, np.arange(len(key)), 0))
    sign = 1 - 2 * ((np.arange(len(key)) - start) % 2)  # +1 entering, -1 leaving
    col = np.clip(np.floor(x + 0.5), 0, NCOLS).astype(np.int64)  # first cell whose centre is east of x
    flat = r * (NCOLS + 1) + col
    size = NROWS * (NCOLS + 1)
    total = np.bincount(flat, weights=sign * (who + 1), minlength=size).reshape(NROWS, NCOLS + 1)
    count = np.bincount(flat, weights=sign, minlength=size).reshape(NROWS, NCOLS + 1)
    return (np.rint(np.cumsum(total, axis=1)[:, :NCOLS]).astype(np.int64),
            np.rint(np.cumsum(count, axis=1)[:, :NCOLS]).astype(np.int64))


def rasterise(x0: F64, y0: F64, x1: F64, y1: F64, owner: I64) -> I16:
    """(NROWS, NCOLS) int16 raster of the edges' owners: owner index, ``SEA`` or ``MIXED`` (module docstring).

    Row ``r`` spans latitudes ``-90 + r * CELL_DEG`` to one cell north, column ``c`` longitudes
    ``-180 + c * CELL_DEG`` to one cell east. Rings of one owner combine by the even-odd rule.
    """
    u0, u1 = (x0 + 180.0) / CELL_DEG, (x1 + 180.0) / CELL_DEG
    v0, v1 = (y0 + 90.0) / CELL_DEG, (y1 + 90.0) / CELL_DEG
    total, count = _fill(u0, v0, u1, v1, owner)
    out = np.where(count == 0, SEA, np.where(count == 1, total - 1, MIXED)).astype(np.int16)
    out.reshape(-1)[_touched(u0, v0, u1, v1)] = MIXED
    return out


def build_world_raster(countries: Countries | None = None) -> I16:
    """The world raster of ``countries`` (default: the shipped ones), built afresh (``world_raster`` caches)."""
    c = load_countries() if countries is None else countries
    return rasterise(*c.edges())


@functools.cache
def world_raster() -> I16:
    """The shipped countries' raster (read-only), built once per process."""
    out = build_world_raster()
    out.setflags(write=False)
    return out


def cell_of(lat_deg: ArrayLike, lon_deg: ArrayLike) -> tuple[I64, I64, Bool]:
    """Row, column of each point's cell and whether the point is valid (finite, |lat| <= 90 deg)."""
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    lat, lon = np.broadcast_arrays(lat, lon)
    ok = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0)
    with np.errstate(invalid="ignore"):
        lat0 = np.where(ok, lat, 0.0)
        lon0 = np.where(ok, np.mod(lon + 180.0, 360.0), 0.0)
    row = np.clip(np.floor((lat0 + 90.0) / CELL_DEG), 0, NROWS - 1).astype(np.int64)
    col = np.clip(np.floor(lon0 / CELL_DEG), 0, NCOLS - 1).astype(np.int64)
    return row, col, ok


# --- exact tests -------------------------------------------------------------------------------------------------

def _wrap_lon(lon: F64) -> F64:
    """Longitude (deg) into [-180, 180); NaN for non-finite input, without a warning."""
    with np.errstate(invalid="ignore"):
        out: F64 = np.mod(lon + 180.0, 360.0) - 180.0
    return out


def _even_odd(lat: F64, lon: F64, x0: F64, y0: F64, x1: F64, y1: F64) -> Bool:
    """Exact even-odd point-in-polygon of points (deg, lon already wrapped) against all the given edges."""
    out = np.zeros(lat.shape, dtype=bool)
    if len(x0) == 0 or lat.size == 0:
        return out
    px, py = lon.reshape(-1), lat.reshape(-1)
    flat = out.reshape(-1)
    step = max(1, _CHUNK // len(x0))
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(0, len(px), step):
            qx, qy = px[a:a + step, None], py[a:a + step, None]
            spans = (y0 > qy) != (y1 > qy)
            xs = x0 + (qy - y0) * (x1 - x0) / (y1 - y0)
            flat[a:a + step] = np.count_nonzero(spans & (qx < xs), axis=1) % 2 == 1
    return out


def _country_exact(countries: Countries, lat: F64, lon: F64) -> I64:
    """Index of the country whose polygons contain each point exactly, -1 for none (1-d deg arrays)."""
    out = np.full(lat.shape, -1, dtype=np.int64)
    b = countries.bounds
    for p in range(len(lat)):
        if not (np.isfinite(lat[p]) and np.isfinite(lon[p])):
            continue
        near = np.flatnonzero((b[:, 0] <= lon[p]) & (lon[p] <= b[:, 1]) & (b[:, 2] <= lat[p]) & (lat[p] <= b[:, 3]))
        for i in near:
            x0, y0, x1, y1, _ = countries.edges([int(i)])
            if _even_odd(lat[p:p + 1], lon[p:p + 1], x0, y0, x1, y1)[0]:
                out[p] = i
                break
    return out


def _nearest_country(countries: Countries, lat: float, lon: float) -> tuple[int, float]:
    """Index of the country with the polygon edge nearest to a point (deg), and that distance (km, local
    equirectangular: good to a fraction of a percent within a few hundred km)."""
    x0, y0, x1, y1, owner = countries.edges()
    k = math.cos(math.radians(lat))
    ax, ay = _wrap_lon(x0 - lon) * k, y0 - lat
    dx, dy = _wrap_lon(x1 - x0) * k, y1 - y0  # each edge continuous, even half a world away
    den = dx * dx + dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip(np.where(den > 0, -(ax * dx + ay * dy) / den, 0.0), 0.0, 1.0)
    d2 = (ax + t * dx) ** 2 + (ay + t * dy) ** 2
    j = int(np.argmin(d2))
    return int(owner[j]), math.sqrt(float(d2[j])) * _KM_PER_DEG


def continent_of(lat_deg: ArrayLike, lon_deg: ArrayLike) -> list[str]:
    """Continent (Natural Earth's name) of each ground point (deg): of the country containing it exactly, or
    of the nearest country when the point is at sea at 1:110m (a coastal city just off the coastline);
    ``""`` for a non-finite point."""
    c = load_countries()
    lat = np.atleast_1d(np.asarray(lat_deg, dtype=np.float64)).reshape(-1)
    lon = _wrap_lon(np.atleast_1d(np.asarray(lon_deg, dtype=np.float64)).reshape(-1))
    idx = _country_exact(c, lat, lon)
    out = []
    for p in range(len(lat)):
        if not (np.isfinite(lat[p]) and np.isfinite(lon[p])):
            out.append("")
            continue
        i = int(idx[p]) if idx[p] >= 0 else _nearest_country(c, float(lat[p]), float(lon[p]))[0]
        out.append(c.continents[i])
    return out


# --- jurisdictions ----------------------------------------------------------------------------------------------

def _resolve(entries: Sequence[str], countries: Countries) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """ISO-3 codes (present in the data, and region members missing from it) of codes, regions, continents;
    sorted, so that equal territories compare equal."""
    regions = {k.casefold(): v for k, v in REGIONS.items()}
    continents = sorted(set(countries.continents))
    by_continent = {k.casefold(): k for k in continents}
    known = set(countries.codes)
    codes: list[str] = []
    missing: list[str] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"jurisdiction entry {entry!r} is not a non-empty string")
        key = entry.strip()
        if key.upper() in known:
            codes.append(key.upper())
        elif key.casefold() in regions:
            for m in regions[key.casefold()]:
                (codes if m in known else missing).append(m)
        elif key.casefold() in by_continent:
            name = by_continent[key.casefold()]
            codes += [code for code, cont in zip(countries.codes, countries.continents, strict=True) if cont == name]
        else:
            hint = (" (countries too small for 1:110m, e.g. Malta, Singapore, Andorra, have no polygon: configure "
                    "a polygon for them)" if len(key) == 3 and key.isalpha() else "")
            raise ValueError(
                f"unknown jurisdiction entry {entry!r}{hint}: expected an ISO-3 code of the Natural Earth 1:110m "
                f"countries (e.g. FRA, USA; {len(known)} known), a region ({', '.join(REGIONS)}), a continent "
                f"({', '.join(continents)}), or instead of the list a mapping {{'polygon': [[lat_deg, lon_deg], ...]}}")
    return tuple(sorted(set(codes))), tuple(sorted(set(missing) - set(codes)))


def _polygon_rings(vertices: Any) -> tuple[tuple[tuple[float, float], ...], list[F64]]:
    """The configured polygon's (lat, lon) vertices and its lon/lat rings: continuous in longitude, with a copy
    shifted by 360 deg when it crosses the antimeridian."""
    try:
        arr = np.asarray(vertices, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("jurisdiction polygon: vertices must be [[lat_deg, lon_deg], ...] numbers") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 3:
        raise ValueError(f"jurisdiction polygon: need at least 3 [lat_deg, lon_deg] vertices, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(np.abs(arr[:, 0]) > 90.0):
        raise ValueError("jurisdiction polygon: vertices must be finite with |lat| <= 90 deg")
    lat = arr[:, 0]
    lon = np.unwrap(_wrap_lon(arr[:, 1]), period=360.0)  # each edge the shorter way round
    closing = _wrap_lon(np.asarray(lon[0] - lon[-1]))
    if abs(float(lon[-1] + closing - lon[0])) > 1e-9 or lon.max() - lon.min() >= 360.0:
        raise ValueError("jurisdiction polygon: it winds around a pole; split it or use country codes")
    shift = 360.0 * math.floor((float(lon.min()) + 180.0) / 360.0)
    lon = lon - shift  # min in [-180, 180)
    ring = np.column_stack([lon, lat])
    rings = [ring]
    if lon.max() > 180.0:
        rings.append(ring - np.array([360.0, 0.0]))
    return tuple((float(a), float(b)) for a, b in arr), rings


@dataclass(frozen=True)
class Jurisdiction:
    """Where a job's data may be processed: countries' land at 1:110m, or a configured polygon.

    Build with `Jurisdiction.parse`. ``codes``: the allowed countries (ISO-3, in the data); ``missing``:
    region members without a polygon at 1:110m (never allowed); ``polygon``: the configured (lat, lon)
    vertices (deg), straight edges in latitude/longitude.
    """

    kind: str  # "countries" or "polygon"
    mask: Bool = field(repr=False, compare=False)  # (NROWS, NCOLS) allowed cells, read-only
    edges: tuple[F64, F64, F64, F64] = field(repr=False, compare=False)  # x0, y0, x1, y1 (deg) of the exact test
    codes: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    polygon: tuple[tuple[float, float], ...] = ()

    @classmethod
    def parse(cls, spec: str | Sequence[str] | Mapping[str, Any]) -> Jurisdiction:
        """From ISO-3 codes, region names (``REGIONS``) and continent names, or ``{"polygon": [[lat, lon], ...]}``
        (deg, at least 3 vertices). ``ValueError`` names a bad entry and what is allowed."""
        if isinstance(spec, Mapping):
            if set(spec) != {"polygon"}:
                keys = sorted(map(str, spec))
                raise ValueError(f"jurisdiction mapping: expected exactly the key 'polygon', got {keys}")
            vertices, rings = _polygon_rings(spec["polygon"])
            x0, y0, x1, y1, owner = _edges([(0, r) for r in rings])
            mask = rasterise(x0, y0, x1, y1, owner) == 0
            mask.setflags(write=False)
            return cls(kind="polygon", polygon=vertices, mask=mask, edges=(x0, y0, x1, y1))
        entries = [spec] if isinstance(spec, str) else list(spec)
        if not entries:
            raise ValueError("jurisdiction: empty list; give ISO-3 codes, regions, continents or a polygon")
        countries = load_countries()
        codes, missing = _resolve(entries, countries)
        idx = [countries.index(code) for code in codes]
        mask = np.isin(world_raster(), np.asarray(idx, dtype=np.int16))
        mask.setflags(write=False)
        x0, y0, x1, y1, _ = countries.edges(idx)
        return cls(kind="countries", codes=codes, missing=missing, mask=mask, edges=(x0, y0, x1, y1))

    def allowed(self, lat_rad: ArrayLike, lon_rad: ArrayLike) -> Bool:
        """True where the point's (a satellite's sub-point, rad) whole raster cell is inside allowed territory;
        False in border and coastline cells and for non-finite input. Never True outside the territory."""
        with np.errstate(invalid="ignore"):
            row, col, ok = cell_of(np.degrees(np.asarray(lat_rad, dtype=np.float64)),
                                   np.degrees(np.asarray(lon_rad, dtype=np.float64)))
        out: Bool = self.mask[row, col] & ok
        return out

    def contains_exact(self, lat_deg: ArrayLike, lon_deg: ArrayLike) -> Bool:
        """Exact point-in-polygon (even-odd) of points (deg) in the allowed polygons; False for non-finite input."""
        lat, lon = np.broadcast_arrays(np.asarray(lat_deg, dtype=np.float64), np.asarray(lon_deg, dtype=np.float64))
        ok = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0)
        with np.errstate(invalid="ignore"):
            inside = _even_odd(np.where(ok, lat, 0.0), _wrap_lon(np.where(ok, lon, 0.0)), *self.edges)
        out: Bool = inside & ok
        return out

    def gateways_allowed(self, lat_deg: ArrayLike, lon_deg: ArrayLike, coast_km: float = COAST_KM) -> Bool:
        """Whether fixed ground sites (deg) are in the territory, by the exact test, so that a site in a coastline
        or border cell counts. For country jurisdictions a site outside every 1:110m polygon (on a coast the
        generalised coastline misses) counts when its nearest country, within ``coast_km``, is allowed; a site
        inside another country's polygon never counts. Configured polygons: the exact test only."""
        lat, lon = np.broadcast_arrays(np.asarray(lat_deg, dtype=np.float64), np.asarray(lon_deg, dtype=np.float64))
        out = self.contains_exact(lat, lon)
        if self.kind != "countries" or coast_km <= 0.0:
            return out
        countries = load_countries()
        flat, la, lo = out.reshape(-1), lat.reshape(-1), _wrap_lon(lon.reshape(-1))
        rest = np.flatnonzero(~flat & np.isfinite(la) & np.isfinite(lo) & (np.abs(la) <= 90.0))
        owner = _country_exact(countries, la[rest], lo[rest])
        allowed = set(self.codes)
        for p in rest[owner < 0]:
            i, km = _nearest_country(countries, float(la[p]), float(lo[p]))
            flat[p] = km <= coast_km and countries.codes[i] in allowed
        return out

    def describe(self) -> dict[str, Any]:
        """Short JSON-able summary: kind, codes (and missing ones) or the vertex count, allowed cells."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "polygon":
            out["vertices"] = len(self.polygon)
        else:
            out["codes"] = list(self.codes)
            if self.missing:
                out["missing"] = list(self.missing)
        out["allowed_cells"] = int(np.count_nonzero(self.mask))
        out["cell_deg"] = CELL_DEG
        return out

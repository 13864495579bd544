"""Data-sovereignty territory (twin/core/compute/territory.py) against an independent oracle (shapely/GEOS).

The raster is conservative by construction: wherever `Jurisdiction.allowed` says True, the point lies inside
the allowed 1:110m polygons (property test over random points, and every corner, centre and a random point
of every allowed cell). It is not trivially False: the interior of a country far from its borders is
allowed. Known places, parse errors, coastal gateways and the continents of ground cities.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.core.compute.territory import (
    CELL_DEG, COAST_KM, MIXED, NCOLS, NROWS, SEA, Jurisdiction, build_world_raster, cell_of, continent_of,
    load_countries, world_raster,
)
from twin.core.network.ground import load_cities, load_gateways

PARIS = (48.8566, 2.3522)
NEW_YORK = (40.7128, -74.0060)
MADRID = (40.4168, -3.7038)
LONDON = (51.5074, -0.1278)
MID_ATLANTIC = (30.0, -40.0)
BOX = {"polygon": [[40.0, -10.0], [50.0, -10.0], [50.0, 10.0], [40.0, 10.0]]}
TRIANGLE = {"polygon": [[10.3, 20.1], [35.7, 31.9], [-5.2, 44.4]]}  # edges off the grid lines
ACROSS_180 = {"polygon": [[-10.0, 170.0], [10.0, 170.0], [10.0, -170.0], [-10.0, -170.0]]}
SPECS: dict[str, Any] = {"FRA": ["FRA"], "EU": ["EU"], "USA": ["USA"], "box": BOX, "triangle": TRIANGLE,
                         "across_180": ACROSS_180}


@functools.cache
def jurisdiction(name: str) -> Jurisdiction:
    return Jurisdiction.parse(SPECS[name])


def _country_geometry(i: int) -> shapely.Geometry:
    """One country as GEOS sees it: its rings combined by the even-odd rule (holes are rings too)."""
    geom = shapely.Polygon()
    for ring in load_countries().polygons[i]:
        geom = shapely.symmetric_difference(geom, shapely.make_valid(shapely.Polygon(ring)))
    return geom


@functools.cache
def oracle(name: str) -> shapely.Geometry:
    """The jurisdiction's closed territory (lon/lat deg) in shapely: the independent reference."""
    spec = SPECS[name]
    if isinstance(spec, dict):
        lat_lon = np.asarray(spec["polygon"], dtype=float)
        lon = np.unwrap(lat_lon[:, 1], period=360.0)
        ring = np.column_stack([lon, lat_lon[:, 0]])
        geom = shapely.Polygon(ring)
        if lon.max() > 180.0:  # across the antimeridian: the part east of it, moved west by 360 deg
            geom = shapely.union(geom, shapely.Polygon(ring - [360.0, 0.0]))
    else:
        c = load_countries()
        geom = shapely.union_all([_country_geometry(c.index(code)) for code in jurisdiction(name).codes])
    shapely.prepare(geom)
    return geom


def inside_oracle(name: str, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
    return np.asarray(shapely.intersects_xy(oracle(name), lon, lat))  # closed: the boundary counts as inside


def allowed_deg(j: Jurisdiction, lat: Sequence[float] | np.ndarray, lon: Sequence[float] | np.ndarray) -> np.ndarray:
    return j.allowed(np.radians(np.asarray(lat, dtype=float)), np.radians(np.asarray(lon, dtype=float)))


# --- (a) conservative by construction ---------------------------------------------------------------------------

def _bbox(name: str) -> tuple[float, float, float, float]:
    lon0, lat0, lon1, lat1 = oracle(name).bounds
    return max(lat0 - 2.0, -90.0), min(lat1 + 2.0, 90.0), lon0 - 2.0, lon1 + 2.0


@st.composite
def near(draw: st.DrawFn, name: str) -> tuple[float, float]:
    """A point near the jurisdiction: uniform in its bounding box, or on / just off a raster grid line."""
    lat0, lat1, lon0, lon1 = _bbox(name)
    lat = draw(st.floats(lat0, lat1))
    lon = draw(st.floats(lon0, lon1))
    if draw(st.booleans()):  # snap to a grid line (± a hair): the cell rule's edge cases
        hair = draw(st.sampled_from([0.0, 1e-12, -1e-12, 1e-9, -1e-9]))
        lat = float(np.clip(round(lat / CELL_DEG) * CELL_DEG + hair, -90.0, 90.0))
        lon = round(lon / CELL_DEG) * CELL_DEG + hair
    return lat, lon


@pytest.mark.parametrize("name", list(SPECS))
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_allowed_implies_inside(name: str, data: st.DataObject) -> None:
    j = jurisdiction(name)
    lat, lon = data.draw(st.one_of(near(name), st.tuples(st.floats(-90.0, 90.0), st.floats(-540.0, 540.0))))
    if allowed_deg(j, [lat], [lon])[0]:
        assert inside_oracle(name, np.array([lat]), np.array([lon]))[0], (name, lat, lon)
        assert j.contains_exact([lat], [lon])[0], (name, lat, lon)


@pytest.mark.parametrize("name", list(SPECS))
def test_every_allowed_cell_lies_inside(name: str) -> None:
    """Exhaustive: the 4 corners, the centre and a random point of every allowed cell are in the territory."""
    j = jurisdiction(name)
    rows, cols = np.nonzero(j.mask)
    assert len(rows) > 100
    rng = np.random.default_rng(7)
    for dr, dc in [(0, 0), (0, 1), (1, 0), (1, 1), (0.5, 0.5), (rng.random(len(rows)), rng.random(len(rows)))]:
        lat = -90.0 + (rows + dr) * CELL_DEG
        lon = -180.0 + (cols + dc) * CELL_DEG
        assert inside_oracle(name, lat, lon).all()
        assert j.contains_exact(lat, lon).all()


def test_world_raster_agrees_with_the_oracle_in_every_pure_cell() -> None:
    """Sea cells are outside every country, country cells inside that one (random point in 100,000 random cells)."""
    raster = world_raster()
    c = load_countries()
    rng = np.random.default_rng(3)
    pure = np.flatnonzero(raster.reshape(-1) != MIXED)
    pick = rng.choice(pure, 100_000, replace=False)
    rows, cols = np.divmod(pick, NCOLS)
    lat = -90.0 + (rows + rng.random(len(rows))) * CELL_DEG
    lon = -180.0 + (cols + rng.random(len(rows))) * CELL_DEG
    truth = np.full(len(rows), SEA)
    for i in range(len(c)):
        hit = shapely.intersects_xy(_country_geometry(i), lon, lat)
        assert not (hit & (truth != SEA)).any(), "two countries at one point"
        truth[hit] = i
    np.testing.assert_array_equal(raster[rows, cols], truth)


def test_non_finite_and_out_of_range_input_is_never_allowed() -> None:
    j = jurisdiction("FRA")
    lat = np.radians([np.nan, PARIS[0], np.inf, 95.0, PARIS[0]])
    lon = np.radians([PARIS[1], np.nan, PARIS[1], PARIS[1], -np.inf])
    assert not j.allowed(lat, lon).any()
    assert not j.contains_exact(np.degrees(lat), np.degrees(lon)).any()
    assert not j.gateways_allowed(np.degrees(lat), np.degrees(lon)).any()


def test_allowed_keeps_the_shape_and_wraps_longitude() -> None:
    j = jurisdiction("FRA")
    lat = np.radians(np.full((2, 3), PARIS[0]))
    lon = np.radians(np.array([[PARIS[1], PARIS[1] + 360.0, PARIS[1] - 720.0], [0.0, 90.0, -90.0]]))
    np.testing.assert_array_equal(j.allowed(lat, lon), [[True, True, True], [True, False, False]])


# --- (b) known places ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "place", "expected"), [
    (["FRA"], PARIS, True), (["USA"], NEW_YORK, True), (["EU"], MADRID, True), (["EU"], LONDON, False),
    (["Five Eyes"], LONDON, True), (["EEA"], (59.9139, 10.7522), True), (["EU"], (59.9139, 10.7522), False),
    (["Europe"], PARIS, True), (["USA"], PARIS, False),
    (["FRA"], (4.0, -53.0), True),  # French Guiana: part of France's polygons at 1:110m
])
def test_known_places(spec: list[str], place: tuple[float, float], expected: bool) -> None:
    j = Jurisdiction.parse(spec)
    assert j.contains_exact([place[0]], [place[1]])[0] == expected


@pytest.mark.parametrize("place", [PARIS, MADRID, (39.0, -98.0)])  # Kansas
def test_inland_places_are_allowed_by_the_raster(place: tuple[float, float]) -> None:
    assert allowed_deg(Jurisdiction.parse(["EU", "USA"]), [place[0]], [place[1]])[0]


def test_mid_atlantic_is_in_no_jurisdiction() -> None:
    for spec in (["FRA"], ["EU"], ["USA"], ["Europe", "Africa", "North America", "South America"]):
        j = Jurisdiction.parse(spec)
        assert not j.contains_exact([MID_ATLANTIC[0]], [MID_ATLANTIC[1]])[0]
        assert not allowed_deg(j, [MID_ATLANTIC[0]], [MID_ATLANTIC[1]])[0]
    assert world_raster()[cell_of(*MID_ATLANTIC)[:2]] == SEA


def test_polygon_across_the_antimeridian() -> None:
    j = jurisdiction("across_180")
    assert list(allowed_deg(j, [0.0, 0.0, 0.0, 0.0], [179.9, -179.9, 175.0, 0.0])) == [True, True, True, False]
    assert list(j.contains_exact([0.0, 0.0, 20.0], [180.0, -165.0, 175.0])) == [True, False, False]


def test_a_polygon_smaller_than_a_cell_allows_no_cell() -> None:
    """A ring that crosses no grid line (a small island or lake) still makes its cell mixed."""
    lat, lon = 45.125, 7.125  # a cell centre
    j = Jurisdiction.parse({"polygon": [[lat - 0.05, lon - 0.05], [lat + 0.05, lon], [lat - 0.05, lon + 0.05]]})
    assert j.contains_exact([lat], [lon])[0]
    assert j.describe()["allowed_cells"] == 0 and not allowed_deg(j, [lat], [lon])[0]


def test_coastal_gateway_counts_exactly_but_its_cell_is_not_allowed() -> None:
    g = load_gateways()
    usa, mexico = Jurisdiction.parse(["USA"]), Jurisdiction.parse(["MEX"])
    boca = g.index("Boca Chica, TX")  # just off the 1:110m coastline, next to Mexico
    lat, lon = g.lat_deg[boca:boca + 1], g.lon_deg[boca:boca + 1]
    assert not usa.contains_exact(lat, lon)[0]  # at sea at 1:110m ...
    assert usa.gateways_allowed(lat, lon)[0]  # ... but the nearest country (within COAST_KM) is the USA
    assert not mexico.gateways_allowed(lat, lon)[0]
    assert not usa.gateways_allowed(lat, lon, coast_km=0.0)[0]
    assert not allowed_deg(usa, lat, lon)[0]  # a satellite above it: coastline cell, never allowed
    tijuana = ([32.52], [-117.03])  # inside Mexico's polygon, within COAST_KM of the USA: never the USA's
    assert mexico.gateways_allowed(*tijuana)[0] and not usa.gateways_allowed(*tijuana)[0]
    guam = g.index("Guam")  # not drawn at 1:110m and far from any drawn country: counts for nobody
    assert not usa.gateways_allowed(g.lat_deg[guam:guam + 1], g.lon_deg[guam:guam + 1])[0]
    assert COAST_KM <= 30.0


# --- (c) not trivially False ---------------------------------------------------------------------------------------

def _km_to_boundary(geom: shapely.Geometry, lat: float, lon: float) -> float:
    """Distance (km) from a point to a geometry's boundary, in a local equirectangular plane around the point."""
    k = math.cos(math.radians(lat))
    local = shapely.transform(geom.boundary, lambda xy: np.column_stack([(xy[:, 0] - lon) * k, xy[:, 1] - lat]))
    return float(shapely.distance(local, shapely.Point(0.0, 0.0))) * 111.195


def test_most_of_the_contiguous_usa_far_from_its_borders_is_allowed() -> None:
    usa = jurisdiction("USA")
    contiguous = max(shapely.get_parts(oracle("USA")), key=lambda p: p.intersection(
        shapely.box(-125.0, 24.0, -66.0, 50.0)).area)
    rng = np.random.default_rng(11)
    lat = rng.uniform(24.0, 50.0, 6000)
    lon = rng.uniform(-125.0, -66.0, 6000)
    inside = shapely.contains_xy(contiguous, lon, lat)
    far = np.array([inside[i] and _km_to_boundary(contiguous, lat[i], lon[i]) > 100.0 for i in range(len(lat))])
    assert far.sum() > 1000
    share = allowed_deg(usa, lat[far], lon[far]).mean()
    assert share > 0.8, share
    # farther than a cell's diagonal (0.354 deg) from every border: always allowed, no exception
    deg = np.array([shapely.distance(contiguous.boundary, shapely.Point(lon[i], lat[i])) for i in range(len(lat))])
    clear = inside & (deg > math.hypot(CELL_DEG, CELL_DEG) + 1e-6)
    assert clear.sum() > 1000 and allowed_deg(usa, lat[clear], lon[clear]).all()


def test_allowed_area_is_a_large_share_of_each_jurisdiction() -> None:
    for name, least in [("FRA", 0.5), ("EU", 0.5), ("USA", 0.7), ("box", 0.9)]:
        j = jurisdiction(name)
        rows, _ = np.nonzero(j.mask)
        lat = -90.0 + (rows + 0.5) * CELL_DEG
        area = (np.cos(np.radians(lat)) * CELL_DEG * CELL_DEG).sum()  # spherical deg^2, like the oracle's below
        geom = oracle(name)
        cy = geom.centroid.y
        assert area / (geom.area * math.cos(math.radians(cy))) > least, name


# --- (d) parsing -----------------------------------------------------------------------------------------------------

def test_parse_regions_continents_and_case() -> None:
    eu = Jurisdiction.parse(["EU"])
    assert len(eu.codes) + len(eu.missing) == 27 and eu.missing == ("MLT",)
    assert "FRA" in eu.codes and "GBR" not in eu.codes
    assert Jurisdiction.parse(["fra", " eu "]) == eu  # codes and names are case-insensitive; duplicates merged
    assert set(Jurisdiction.parse(["EEA"]).codes) - set(eu.codes) == {"ISL", "NOR"}
    assert Jurisdiction.parse(["Five Eyes"]).codes == ("AUS", "CAN", "GBR", "NZL", "USA")
    assert "PRI" in Jurisdiction.parse(["US"]).codes
    africa = Jurisdiction.parse(["africa"])
    assert {"NGA", "EGY", "ZAF"} <= set(africa.codes) and "FRA" not in africa.codes
    assert Jurisdiction.parse("FRA") == Jurisdiction.parse(["FRA"])


def test_describe_is_json() -> None:
    d = json.loads(json.dumps(Jurisdiction.parse(["EU"]).describe()))
    assert d["kind"] == "countries" and d["missing"] == ["MLT"] and d["allowed_cells"] > 1000
    d = json.loads(json.dumps(jurisdiction("box").describe()))
    assert d == {"kind": "polygon", "vertices": 4, "allowed_cells": 38 * 78, "cell_deg": CELL_DEG}


@pytest.mark.parametrize(("spec", "words"), [
    (["FRA", "XYZ"], ["'XYZ'", "ISO-3", "EU", "Europe", "polygon"]),
    (["MLT"], ["'MLT'", "too small", "polygon"]),
    (["Atlantis"], ["'Atlantis'", "region", "continent"]),
    (["FRA", 3], ["3", "string"]),
    ([""], ["''"]),
    ([], ["empty"]),
    ({"polygon": [[0.0, 0.0], [1.0, 1.0]]}, ["at least 3"]),
    ({"polygon": [[0.0, 0.0], [1.0, 1.0], [float("nan"), 2.0]]}, ["finite"]),
    ({"polygon": [[0.0, 0.0], [91.0, 1.0], [1.0, 2.0]]}, ["lat"]),
    ({"polygon": [["a", 0.0], [1.0, 1.0], [1.0, 2.0]]}, ["numbers"]),
    ({"polygon": [[80.0, lon] for lon in (0.0, 90.0, 180.0, 270.0)]}, ["pole"]),
    ({"polygon": [[0, 0], [1, 1], [1, 0]], "codes": ["FRA"]}, ["'polygon'"]),
])
def test_parse_errors_name_the_bad_entry(spec: Any, words: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        Jurisdiction.parse(spec)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_jurisdiction_is_frozen_and_read_only() -> None:
    j = jurisdiction("FRA")
    with pytest.raises(AttributeError):
        j.codes = ("USA",)  # type: ignore[misc]
    with pytest.raises(ValueError):
        j.mask[0, 0] = True
    with pytest.raises(ValueError):
        world_raster()[0, 0] = 0


# --- (e) continents ------------------------------------------------------------------------------------------------

def test_continents_of_ground_cities() -> None:
    cities = load_cities()
    cont = dict(zip(cities.names, continent_of(cities.lat_deg, cities.lon_deg), strict=True))
    assert cont["Tokyo"] == "Asia" and cont["Lagos"] == "Africa" and cont["São-Paulo"] == "South America"
    assert cont["Paris"] == "Europe" and cont["Sydney"] == "Oceania" and cont["Chicago"] == "North America"
    assert cont["Istanbul"] == "Asia"  # on the Bosporus, at sea at 1:110m: the nearest country, Turkey (Asia)
    assert "" not in cont.values()
    assert continent_of([float("nan")], [0.0]) == [""]


# --- the data and the build -----------------------------------------------------------------------------------------

def test_data_file() -> None:
    c = load_countries()
    assert len(c) == 177 and len(set(c.codes)) == 177
    assert all(len(code) == 3 and code.isalpha() and code.isupper() for code in c.codes)
    assert {"FRA", "NOR", "XKX", "SOL", "CYN"} <= set(c.codes)  # the -99 codes of Natural Earth, fixed
    header = json.loads((resources.files("twin") / "data" / "countries_110m.json").read_text(encoding="utf-8"))
    assert header["licence"] == "public domain, Natural Earth" and "v5.1.1" in header["version"]


@pytest.mark.timing
def test_world_raster_build_time(capsys: pytest.CaptureFixture[str]) -> None:
    build_world_raster()  # warm (imports, data)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        raster = build_world_raster()
        times.append(time.perf_counter() - t0)
    assert raster.shape == (NROWS, NCOLS) and raster.dtype == np.int16
    with capsys.disabled():
        print(f"\nworld territory raster ({NROWS}x{NCOLS}, {CELL_DEG} deg): built in {min(times) * 1e3:.0f} ms "
              f"(mixed {np.count_nonzero(raster == MIXED)}, sea {np.count_nonzero(raster == SEA)} cells)")
    assert min(times) < 3.0

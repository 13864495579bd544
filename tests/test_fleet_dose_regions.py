"""The fleet's dose split by region (SAA, horns, elsewhere): one classifier for the summary and ``orbitwin validate``.

The classifier against hand-worked dipole cases (L = (1 + h/R) / cos^2(magnetic latitude)), the fleet
summary's per-region dose rates against a satellite-by-satellite sum with the region computed here
from the dipole pole, the validation's split using the same classifier, and the summary's schema and
bridge mapping.
"""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from bridges.influx.line_protocol import summary_lines
from twin.contract.asyncapi_payloads import summary_schema
from twin.contract.topics import dumps, header
from twin.core.constants import R_EARTH_M
from twin.core.radiation import (
    DIPOLE_POLE_LAT_DEG,
    DIPOLE_POLE_LON_DEG,
    RadiationParams,
    dose_rate_by_region,
    dose_region,
    load_environment,
    region_of,
)
from twin.core.radiation_grid import circular_ground_track
from twin.runtime.run_loop import FleetOptions, build_twin
from twin.runtime.status_table import fleet_dose_by_region, fleet_summary
from twin.schema.dose_regions import DOSE_REGIONS, HORN_MIN_L, SUMMARY_FIELDS
from twin.schema.telemetry import MODE_LOST


def _on_pole_meridian(mlat_deg: float) -> tuple[float, float]:
    """Geographic (lat, lon) [rad] of a point at magnetic latitude ``mlat_deg`` on the dipole pole's meridian."""
    return np.radians(DIPOLE_POLE_LAT_DEG - (90.0 - mlat_deg)), np.radians(DIPOLE_POLE_LON_DEG)


def test_regions_hand_worked() -> None:
    assert [r.name for r in DOSE_REGIONS] == ["saa", "horns", "elsewhere"] and HORN_MIN_L == 3.0
    alt = 550e3
    # L = 3 at 550 km: cos^2(mlat) = (1 + h/R) / 3 -> mlat = 53.01 deg
    edge = np.degrees(np.arccos(np.sqrt((1 + alt / R_EARTH_M) / 3.0)))
    assert edge == pytest.approx(53.01, abs=0.01)
    pts = [_on_pole_meridian(m) for m in (edge + 0.2, edge - 0.2, 0.0, -(edge + 0.2), 75.0)]
    lat, lon = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    h = np.full(len(pts), alt)
    assert dose_region(np.zeros(len(pts), bool), lat, lon, h).tolist() == [1, 2, 2, 1, 1]
    assert dose_region(np.ones(len(pts), bool), lat, lon, h).tolist() == [0] * len(pts)  # in_saa wins
    # on the ground the L = 3 edge lies at 54.74 deg: 54 deg is no horn there
    assert dose_region(np.zeros(1, bool), *(np.array([v]) for v in _on_pole_meridian(54.0)), np.zeros(1)).tolist() == [2]
    sums = dose_rate_by_region(np.array([1.0, 2.0, np.nan, 4.0, 8.0]), np.array([0, 1, 1, 2, 0]))
    assert sums.tolist() == [9.0, 2.0, 4.0]  # NaN left out; every region present even when empty
    assert dose_rate_by_region(np.array([]), np.array([], dtype=np.int64)).tolist() == [0.0, 0.0, 0.0]


def test_validation_split_uses_the_same_classifier() -> None:
    """``orbitwin validate``'s split (region_of) is dose_region with in_saa as the telemetry sets it."""
    p = RadiationParams()
    env = load_environment(p, 0.0254)
    track = circular_ground_track(550e3, 53.0, 86400.0, 30.0)
    local = env.sample(*track)
    got = region_of(local, *track, p)
    assert np.array_equal(got, dose_region(local.proton_flux_cm2_s > p.saa_proton_flux_cm2_s, *track))
    assert set(got.tolist()) == {0, 1, 2}  # a day at 53 deg crosses all three


def _l_shell(lat_deg: np.ndarray, lon_deg: np.ndarray, alt_m: np.ndarray) -> np.ndarray:
    """Dipole L computed here: unit vectors of the point and the pole, sin(mlat) = their dot product."""
    def unit(la: np.ndarray, lo: np.ndarray) -> np.ndarray:
        la, lo = np.radians(la), np.radians(lo)
        return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)

    s = unit(lat_deg, lon_deg) @ unit(np.array(DIPOLE_POLE_LAT_DEG), np.array(DIPOLE_POLE_LON_DEG))
    return (1.0 + alt_m / R_EARTH_M) / (1.0 - s**2)


def test_fleet_summary_sums_the_dose_rate_by_region_satellite_by_satellite() -> None:
    twin = build_twin(FleetOptions(count=300, dt_s=60.0, seed=5, start="2026-02-23T00:00:00Z"))
    try:
        seen = np.zeros(3)
        for _ in range(100):  # a little over an orbit: every region visited
            twin.step()
            s = fleet_summary(twin, with_grid=False)
            tm = twin.tm
            lat, lon, alt = (np.asarray(tm[k], float) for k in ("lat_deg", "lon_deg", "alt_m"))
            dose, saa = np.asarray(tm["dose_rate_rad_s"], float), np.asarray(tm["in_saa"], bool)
            live = (twin.mode != MODE_LOST) & np.isfinite(lat) & np.isfinite(dose)
            horns = live & ~saa & (_l_shell(lat, lon, alt) >= 3.0)
            want = [dose[live & saa].sum(), dose[horns].sum(), dose[live & ~saa & ~horns].sum()]
            got = [s[f] for f in SUMMARY_FIELDS]
            assert got == pytest.approx(want, rel=1e-12, abs=0.0)
            assert sum(got) == pytest.approx(np.nansum(dose[twin.mode != MODE_LOST]), rel=1e-12)
            seen += np.array(got) > 0
        assert (seen > 0).all(), seen
        body = json.loads(dumps(header(None, "2026-02-23T01:40:00.000Z", twin.t_s, 1, tick=twin.tick,
                                       **fleet_summary(twin, with_grid=False))))
        jsonschema.validate(body, summary_schema())
        line = summary_lines(body, 1_000, {"run": "42"})[0].decode()
        fields = dict(kv.split("=") for kv in line.split(" ")[1].split(","))
        for f in SUMMARY_FIELDS:  # floats in the fleet point, exactly as published
            assert float(fields[f]) == body[f] and not fields[f].endswith("i")
        neg = dict(body, **{SUMMARY_FIELDS[0]: -1.0})
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(neg, summary_schema())
        twin.mode[:] = MODE_LOST
        assert fleet_dose_by_region(twin) == dict.fromkeys(SUMMARY_FIELDS, 0.0)
    finally:
        twin.close()

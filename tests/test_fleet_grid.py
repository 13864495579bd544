"""The fleet grid: the summary's per-cell aggregates (what the fleet maps read instead of 10,000 series).

The twin's binning against a satellite-by-satellite count, the cell geometry against hand-worked
cases, the summary against its AsyncAPI schema (both ways: no field missing from either), the
bridge's mapping (a fixed set of tags, typed fields, bad grids refused) and the dashboards' names.
"""

from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest

from bridges.influx.line_protocol import MappingError, grid_lines, summary_lines
from twin.contract.asyncapi_payloads import summary_schema
from twin.contract.topics import dumps, header
from twin.runtime.run_loop import FleetOptions, build_twin
from twin.runtime.status_table import GridPacer, fleet_summary
from twin.schema import fleet_grid as grid
from twin.schema.telemetry import LIMIT_RED, LIMIT_YELLOW, MODE_LOST, MODE_SAFE


@pytest.fixture(scope="module")
def twin():  # type: ignore[no-untyped-def]
    # compute placement on: the summary then holds every key of its schema (checked both ways below)
    t = build_twin(FleetOptions(count=300, dt_s=5.0, seed=4, start="2026-02-20T10:00:00Z", compute_policy="aware"))
    t.submit("fault", "sensor_stuck", {"field": "payload_temp_k", "value": 400.0}, t.names[3])  # red
    t.submit("fault", "sensor_stuck", {"field": "payload_temp_k", "value": 356.0}, t.names[4])  # yellow
    for _ in range(6):
        t.step()
    t.mode[7] = MODE_SAFE
    yield t
    t.close()


def test_cell_geometry_hand_worked() -> None:
    assert (grid.ROWS, grid.COLS, grid.N_CELLS) == (18, 36, 648)
    lat = np.array([-90.0, 89.99, 90.0, -35.0, 0.0, 51.5])
    lon = np.array([-180.0, 179.99, 180.0, -55.0, 0.0, -0.1])
    cells = grid.cell_of(lat, lon).tolist()
    assert cells[:3] == [0, 647, 647]  # the edges clamp into the last row/column
    assert [grid.cell_name(c) for c in cells[3:]] == ["S40W060", "N00E000", "N50W010"]
    assert grid.cell_centre_deg(cells[3]) == (-35.0, -55.0)
    assert grid.cell_centre_deg(0) == (-85.0, -175.0) and grid.cell_centre_deg(647) == (85.0, 175.0)
    assert len({grid.cell_name(c) for c in range(grid.N_CELLS)}) == grid.N_CELLS
    with pytest.raises(ValueError):
        grid.cell_centre_deg(grid.N_CELLS)


@pytest.mark.parametrize(("dt_s", "every"), [(1.0, 10), (3.0, 4), (5.0, 2), (15.0, 1)])
def test_grid_in_the_first_summary_at_or_after_every_period(dt_s: float, every: int) -> None:
    pacer = GridPacer()
    assert grid.PERIOD_S == 10.0
    due = [k for k in range(1, 41) if pacer.due(k * dt_s)]
    assert due == list(range(1, 41, every))  # dt 3: 3, 15, 27 s (12 s apart: the first summary at or after 10 s)
    assert "grid" not in fleet_summary_stub(with_grid=False) and "grid" in fleet_summary_stub(with_grid=True)


def fleet_summary_stub(with_grid: bool) -> dict:  # type: ignore[type-arg]
    t = build_twin(FleetOptions(count=3, dt_s=1.0, seed=1, start="2026-02-20T10:00:00Z"))
    t.step()
    try:
        return fleet_summary(t, with_grid=with_grid)
    finally:
        t.close()


def test_grid_counts_every_satellite_once(twin) -> None:  # type: ignore[no-untyped-def]
    s = fleet_summary(twin)
    g = s["grid"]
    tm = twin.tm
    lat, lon = np.asarray(tm["lat_deg"]), np.asarray(tm["lon_deg"])
    # satellite by satellite: the cell whose centre is within half a cell of its position
    want: dict[int, list[int]] = {}
    for i in range(twin.n):
        if twin.mode[i] == MODE_LOST or not (np.isfinite(lat[i]) and np.isfinite(lon[i])):
            continue
        (k,) = [k for k in range(grid.N_CELLS)
                if abs(lat[i] - grid.cell_centre_deg(k)[0]) <= grid.CELL_DEG / 2
                and abs(lon[i] - grid.cell_centre_deg(k)[1]) <= grid.CELL_DEG / 2][:1]
        want.setdefault(k, []).append(i)
    assert sum(g["sats"]) == sum(map(len, want.values())) == twin.n - s["lost"]
    states = np.asarray(tm["limit_state"])
    assert s["red"] >= 1 and s["yellow"] >= 1 and s["safe"] >= 1  # the injected cases
    for k in range(grid.N_CELLS):
        members = want.get(k, [])
        assert g["sats"][k] == len(members)
        assert g["yellow"][k] == sum(states[i] == LIMIT_YELLOW for i in members)
        assert g["red"][k] == sum(states[i] == LIMIT_RED for i in members)
        assert g["safe"][k] == sum(twin.mode[i] == MODE_SAFE for i in members)
        assert g["limit_state"][k] == max((int(states[i]) for i in members), default=0)
        dose = [float(tm["dose_rate_rad_s"][i]) for i in members if np.isfinite(tm["dose_rate_rad_s"][i])]
        if dose:  # 4 significant digits in the message
            assert g["dose_rate_mean_rad_s"][k] == pytest.approx(sum(dose) / len(dose), rel=5e-4, abs=1e-30)
            assert g["dose_rate_max_rad_s"][k] == pytest.approx(max(dose), rel=5e-4, abs=1e-30)
        else:
            assert g["dose_rate_mean_rad_s"][k] is None and g["dose_rate_max_rad_s"][k] is None
    assert sum(g["red"]) == s["red"] and sum(g["yellow"]) == s["yellow"]
    assert s["boards"] == int(np.sum((twin.mode != MODE_LOST) & (np.asarray(tm["payload_source"]) > 0)))


def test_summary_matches_its_schema_both_ways(twin) -> None:  # type: ignore[no-untyped-def]
    schema = summary_schema()
    body = json.loads(dumps(header(None, "2026-02-20T10:00:30.000Z", 30.0, 1, tick=twin.tick, **fleet_summary(twin))))
    jsonschema.validate(body, schema)
    assert set(body) - {"v", "t", "t_s", "bseq", "sat"} <= set(schema["properties"])
    assert set(schema["properties"]) - {"sat", "run"} <= set(body)
    gs = schema["properties"]["grid"]
    assert set(gs["properties"]) == set(body["grid"]) == {"cell_deg", *grid.GRID_FIELD_BY_NAME}
    bad = json.loads(json.dumps(body))
    bad["grid"]["sats"] = bad["grid"]["sats"][:-1]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_bridge_mapping_one_point_per_cell_bounded_and_typed(twin) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(dumps(header(None, "2026-02-20T10:00:30.000Z", 30.0, 1, tick=twin.tick, **fleet_summary(twin))))
    lines = summary_lines(body, 1_000, {"run": "42"})
    assert lines[0].startswith(b"fleet,run=42 ") and b"grid" not in lines[0] and b"boards=" in lines[0]
    cells = [ln.decode() for ln in lines[1:]]
    assert len(cells) == grid.N_CELLS
    names = {grid.cell_name(k) for k in range(grid.N_CELLS)}
    pat = re.compile(r"^fleet_grid,cell=([NS]\d\d[EW]\d{3}),run=42 (\S+) 1000$")
    seen = set()
    for k, ln in enumerate(cells):
        m = pat.match(ln)
        assert m and m.group(1) == grid.cell_name(k) in names, ln
        seen.add(m.group(1))
        fields = dict(kv.split("=") for kv in m.group(2).split(","))
        lat, lon = grid.cell_centre_deg(k)
        assert (float(fields["lat_deg"]), float(fields["lon_deg"])) == (lat, lon)
        assert fields["sats"] == f"{body['grid']['sats'][k]}i" and fields["limit_state"].endswith("i")
        dose = body["grid"]["dose_rate_max_rad_s"][k]
        assert ("dose_rate_max_rad_s" in fields) == (dose is not None)  # null: left out
        if dose is not None:
            assert float(fields["dose_rate_max_rad_s"]) == dose
    assert seen == names  # the tags are the fixed set, whatever the message says
    for broken, why in (({**body["grid"], "cell_deg": 5}, "cell_deg"),
                        ({**body["grid"], "red": body["grid"]["red"] * 2}, "grid.red"),
                        ({**body["grid"], "sats": [1.5] * grid.N_CELLS}, "grid.sats"),
                        ({k: v for k, v in body["grid"].items() if k != "safe"}, "grid.safe")):
        with pytest.raises(MappingError, match=why):
            grid_lines({**body, "grid": broken}, 1_000)
    assert grid_lines({k: v for k, v in body.items() if k != "grid"}, 1_000) == []  # an older twin: no grid


def test_dashboards_read_only_grid_fields() -> None:
    from dashboards.fleet import fleet_overview

    maps = [p for p in fleet_overview()["panels"] if p["type"] == "geomap"]
    assert len(maps) == 2
    for p in maps:
        (t,) = p["targets"]
        read = set(re.findall(r'last\("(\w+)"\)', t["query"]))
        assert read <= {*grid.GRID_FIELD_BY_NAME, *grid.CENTRE_FIELDS}, read
        assert f'FROM "{grid.MEASUREMENT}"' in t["query"] and f'GROUP BY "{grid.TAG}"' in t["query"]


def test_grid_network_fields_equal_the_mesh_satellite_by_satellite() -> None:
    """The per-cell network fields (satellites without a gateway route, their gateway delay, the largest link
    utilisation, the traffic carried) against the tick's MeshState cell by cell: one shell with the network,
    every third satellite's terminals failed so that some are cut off; null and 0 without the network."""
    from twin.core.design import load_design
    from twin.core.engine import FleetTwin
    from twin.core.ephemeris import iso_to_jd
    from twin.runtime.run_loop import select_catalogue

    start = "2026-02-20T10:00:00Z"
    cat = select_catalogue(FleetOptions(alt_km="350:365", inc_deg="42.9:43.1", start=start))
    with FleetTwin(cat, load_design(), start_jd=iso_to_jd(start), dt_s=10.0, seed=2, network=True) as t:
        for name in t.names[::3]:
            t.submit("fault", "laser_terminal_failure", {"terminals": 4}, name)
        for _ in range(3):
            t.step()
        net, tm = t.net, t.tm
        assert net is not None
        g = fleet_summary(t)["grid"]
        lat, lon = np.asarray(tm["lat_deg"]), np.asarray(tm["lon_deg"])
        here = (t.mode != MODE_LOST) & np.isfinite(lat) & np.isfinite(lon)
        cell = grid.cell_of(lat[here], lon[here])
        idx = np.flatnonzero(here)
        cut = int(np.sum(net.gw_hops[here] < 0))
        assert 0 < cut < here.sum() and sum(g["no_route"]) == cut
        for k in np.unique(cell):
            members = idx[cell == k]
            assert g["no_route"][k] == int(np.sum(net.gw_hops[members] < 0))
            d = net.gw_delay_s[members][np.isfinite(net.gw_delay_s[members])] * 1e3
            if d.size:  # 4 significant digits in the message
                assert g["gw_delay_mean_ms"][k] == pytest.approx(d.mean(), rel=5e-4)
                assert g["gw_delay_max_ms"][k] == pytest.approx(d.max(), rel=5e-4)
            else:
                assert g["gw_delay_mean_ms"][k] is None and g["gw_delay_max_ms"][k] is None
            u = net.sat_max_util[members][np.isfinite(net.sat_max_util[members])]
            assert g["link_util_max"][k] == (pytest.approx(u.max(), rel=5e-4) if u.size else None)
            thr = net.sat_throughput_gbps[members][np.isfinite(net.sat_throughput_gbps[members])]
            assert g["throughput_gbps"][k] == (pytest.approx(thr.sum(), rel=5e-4, abs=1e-9) if thr.size else None)
        assert any(v is not None and v > 0 for v in g["throughput_gbps"])  # the cities' traffic flows
        empty = sorted(set(range(grid.N_CELLS)) - set(cell.tolist()))
        assert all(g["no_route"][k] == 0 and g["gw_delay_mean_ms"][k] is None for k in empty)
        t.net = None  # a twin without the network model: nobody cut off, no values
        g = fleet_summary(t)["grid"]
        assert sum(g["no_route"]) == 0 and all(v is None for v in g["gw_delay_mean_ms"] + g["throughput_gbps"])

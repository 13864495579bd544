"""The Grafana network dashboard and the network alert rules (issue 15 item 6).

(a) structure: the dashboard reads the schema's ``net`` fields with their units and limits, the
    fleet summary's network aggregates and the ``city_rtt`` measurement; its panels, transformations
    and map layers name columns its queries return; the two network rules have Grafana 11's shape;
(b) the real pipeline: ``orbitwin run`` (one shell, network on) -> Mosquitto -> ``orbitwin bridge
    influx`` -> influxd 1.6.7, three runs: nominal, a partition (every laser terminal fails) and an
    overload (offered traffic x100 over the fleet default). Every panel and variable query returns the
    columns its panel reads; stored city-pair RTTs respect the light bound and their stretch; the
    partition and overload rules, evaluated at the wall clock's now() as Grafana does, fire for the
    faulted runs and stay quiet on the nominal one.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dashboard_data import Filled
from dashboards import build as gen
from dashboards.alerts import NET_OVERLOAD_UID, NET_PARTITION_UID
from dashboards.network import (CITY_RTT, CITY_RTT_FIELDS, CITY_RTT_TAGS, CITY_WHERE, GRID_NET_FIELDS, NET,
                                NET_FLEET_FIELDS, PARTITION_ALERT_SHARE)
from dashboards.panels import DS_UID, UNITS, threshold_steps
from mqtt_helpers import wait_for
from pipeline import bridge_proc, last_status, twin_proc, wait_settled
from test_dashboards import _regex_escape, expected_columns, series_of, substitute
from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.schema import fleet_grid as grid
from twin.schema.telemetry import FIELD_BY_NAME, MODE_LOST, PACKET_FIELDS

REPO = Path(__file__).resolve().parents[1]
FILES = gen.build()
NETWORK = json.loads(FILES["json/network.json"])
RULES = [r for g in yaml.safe_load(FILES["provisioning/alerting/rules.yaml"])["groups"] for r in g["rules"]]
PANELS = [p for p in NETWORK["panels"] if p["type"] != "row"][1:]  # after the Runs table
C_M_S = 299_792_458.0
R_MEAN_M = 6_371_008.8  # IUGG mean Earth radius (docs/network.md "Latency")
FIBRE_INDEX = 1.468  # group index of G.652 fibre at 1550 nm (docs/network.md "Latency")

# One shell: 332 satellites at ~356 km, 43 deg (26 planes): fully meshed, no satellite without a gateway
# route over a measured orbit (dashboards/network.py). Offered traffic scaled to its share of the fleet.
SHELL = ("--alt-km", "350:365", "--inc-deg", "42.9:43.1")
SHELL_SATS = 332
DEFAULT_TRAFFIC_GBPS = load_design().network.offered_traffic_gbps  # the shipped design's
FLEET_SATS = len(load_catalogue())
DURATION, SPEED = 90, 6
RATES = "hk=0.2"  # fewer hk messages: 332 satellites at x6 beside the other tests on 2 cores


def _queries(d: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["query"]) for p in PANELS for t in p["targets"]]


def _read_fields(q: str, measurement: str) -> set[str]:
    """Fields a query reads from ``measurement`` (its aggregates' arguments)."""
    if f'FROM "{measurement}"' not in q:
        return set()
    inner = q.split(f'FROM "{measurement}"')[0].rsplit("SELECT ", 1)[1]
    return set(re.findall(r'\w+\("(\w+)"', inner)) | {m for m in re.findall(r'(?<!AS )"(\w+)"', inner)}


# --- (a) structure -----------------------------------------------------------------------------
def test_the_network_dashboard_is_generated_run_scoped_and_committed() -> None:
    assert "network.json" in gen.dashboards()
    assert gen.differences(REPO / "dashboards") == [], "run: orbitwin dashboards build"
    assert NETWORK["uid"] == "orbitwin-network" and "network" in NETWORK["tags"]
    variables = {v["name"]: v for v in NETWORK["templating"]["list"]}
    assert list(variables) == ["run", "sat", "city"]
    sat, city = variables["sat"], variables["city"]
    assert sat["multi"] and not sat["includeAll"] and f'FROM "{NET}"' in sat["query"]  # no "All": a fleet's regex
    assert not city["multi"] and not city["includeAll"] and f'FROM "{CITY_RTT}"' in city["query"]
    for title, q in _queries(NETWORK):
        assert "\"run\" = '$run'" in q.split(" WHERE ", 1)[1], title
    titles = [p["title"] for p in PANELS]
    assert len(titles) == len(set(titles))


def test_no_panel_reads_every_satellite_or_every_city_pair() -> None:
    """Issue 12 (every panel under a second over the whole fleet): per-satellite series only for $sat, city
    pairs only for $city; the maps read the fleet grid's cells, the counts the fleet point."""
    for title, q in _queries(NETWORK):
        if f'FROM "{NET}"' in q or 'FROM "orbit"' in q:
            assert '"sat" =~ /^$sat$/' in q, title
        if f'FROM "{CITY_RTT}"' in q:
            assert CITY_WHERE in q, title
        assert 'FROM "fleet"' in q or f'FROM "{grid.MEASUREMENT}"' in q or "$sat" in q or "$city" in q, title


def test_panels_read_the_schema_fields_with_their_units_and_limits() -> None:
    net_fields, fleet_fields, city, cells = set(), set(), set(), set()
    for title, q in _queries(NETWORK):
        net_fields |= _read_fields(q, NET)
        fleet_fields |= _read_fields(q, "fleet")
        city |= _read_fields(q, CITY_RTT)
        cells |= _read_fields(q, grid.MEASUREMENT)
    assert net_fields == set(PACKET_FIELDS[NET]), "every net field shown, none invented"
    assert fleet_fields == set(NET_FLEET_FIELDS) | {"sats", "lost"}
    assert city == set(CITY_RTT_FIELDS)
    assert set(GRID_NET_FIELDS) <= cells <= set(grid.GRID_FIELD_BY_NAME) | set(grid.CENTRE_FIELDS)
    by_title = {p["title"]: p for p in PANELS}
    util, delay, thr = FIELD_BY_NAME["max_link_util"], FIELD_BY_NAME["gw_delay_ms"], FIELD_BY_NAME["throughput_gbps"]
    assert (delay.unit, thr.unit, util.unit) == ("ms", "Gbps", "1") and util.limits is not None
    for title in ("One-way delay to the nearest gateway", "One-way delay to the nearest gateway ($sat)"):
        assert by_title[title]["fieldConfig"]["defaults"]["unit"] == UNITS[delay.unit] == "ms", title
    for title in ("Largest link utilisation", "Max link utilisation ($sat)"):
        d = by_title[title]["fieldConfig"]["defaults"]
        assert d["unit"] == UNITS[util.unit] and d["thresholds"]["steps"] == threshold_steps(util.limits), title
        assert d["thresholds"]["steps"][-1] == {"color": "red", "value": 1.0}  # overloaded above 1
    for title in ("Traffic carried", "Throughput ($sat)"):
        assert by_title[title]["fieldConfig"]["defaults"]["unit"] == UNITS[thr.unit] == "Gbits", title
    for title in ("Round trips from $city (latest)", "Round trips from $city over time"):
        assert by_title[title]["fieldConfig"]["defaults"]["unit"] == "ms", title
    share = by_title["Share without a route"]["fieldConfig"]["defaults"]
    assert share["unit"] == "percentunit" and share["thresholds"]["steps"][-1]["value"] == PARTITION_ALERT_SHARE


GRAFANA_PANELS = {"stat", "timeseries", "geomap", "table", "heatmap"}
TRANSFORMS = {"filterByValue", "sortBy"}


def _columns(p: dict[str, Any]) -> set[str]:
    """Columns a panel's frames hold: each query's selected names and its GROUP BY tags."""
    cols: set[str] = set()
    for t in p["targets"]:
        cols |= set(expected_columns(t["query"]))
        cols |= set(re.findall(r'"(\w+)"', t["query"].rsplit("GROUP BY", 1)[1])) if "GROUP BY" in t["query"] else set()
    return cols


def test_panels_transformations_and_map_layers_name_columns_their_queries_return() -> None:
    for p in PANELS:
        assert p["type"] in GRAFANA_PANELS, p["type"]
        assert p["datasource"]["uid"] == DS_UID and all(t["datasource"]["uid"] == DS_UID for t in p["targets"])
        cols = _columns(p)
        for tf in p.get("transformations", []):
            assert tf["id"] in TRANSFORMS, tf
            o = tf["options"]
            named = [f["fieldName"] for f in o.get("filters", [])] + [s["field"] for s in o.get("sort", [])]
            assert set(named) <= cols, (p["title"], named, cols)
        for s in p["options"].get("sortBy", []):
            assert s["displayName"] in cols, p["title"]
        for o in p["fieldConfig"]["overrides"]:
            assert o["matcher"]["options"] in cols, (p["title"], o["matcher"]["options"])
        if p["type"] == "geomap":
            (layer,) = p["options"]["layers"]
            loc, style = layer["location"], layer["config"]["style"]
            assert {loc["latitude"], loc["longitude"], style["color"]["field"], style["size"]["field"]} <= cols
            (t,) = p["targets"]
            assert f'FROM "{grid.MEASUREMENT}"' in t["query"] and t["query"].endswith(f'GROUP BY "{grid.TAG}"')
        if p["type"] == "heatmap":
            assert p["options"]["calculate"] is True and expected_columns(p["targets"][0]["query"]) == ["rtt_ms"]


def test_network_alert_rules_have_grafana_11_fields_and_their_thresholds() -> None:
    by_uid = {r["uid"]: r for r in RULES}
    part, over = by_uid[NET_PARTITION_UID], by_uid[NET_OVERLOAD_UID]
    for r, value in ((part, PARTITION_ALERT_SHARE), (over, 0)):
        q = r["data"][0]["model"]["query"]
        assert r["condition"] == "C" and r["data"][0]["datasourceUid"] == DS_UID and "$" not in q
        assert 'FROM "fleet" WHERE time > now() - 60s' in q and q.endswith('GROUP BY "run"') and "time <" not in q
        assert r["data"][1]["model"]["reducer"] == "last"
        assert r["data"][2]["model"]["conditions"][0]["evaluator"] == {"type": "gt", "params": [value]}
        assert r["labels"] == {"severity": "warning", "scope": "network", "service": "orbitwin"}
    assert 0 < PARTITION_ALERT_SHARE < 1
    # the per-satellite overload: the max_link_util red-high limit rule, generated from the schema like the others
    assert by_uid["orbitwin-max_link_util-red-high"]["data"][2]["model"]["conditions"][0]["evaluator"]["params"] == \
        [FIELD_BY_NAME["max_link_util"].limits.red_high]  # type: ignore[union-attr]


# --- (b) the real pipeline -------------------------------------------------------------------------
def _design(tmp: Path, traffic_gbps: float) -> Path:
    """The shipped design with another offered traffic."""
    text = (REPO / "twin" / "data" / "v3_compute_sat.toml").read_text()
    line = re.search(r"^offered_traffic_gbps = ([\d.e+]+)", text, re.M)
    assert line and float(line.group(1)) == DEFAULT_TRAFFIC_GBPS
    p = tmp / f"design-{traffic_gbps:g}.toml"
    p.write_text(text.replace(line.group(0), f"offered_traffic_gbps = {traffic_gbps!r}"))
    return p


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, influxd: Any) -> Any:
    """Three runs of one shell stored by the real bridge: {"nominal"|"partition"|"overload": run id}."""
    from twin.runtime.embedded_broker import MosquittoProcess

    tmp = tmp_path_factory.mktemp("netdash")
    broker = MosquittoProcess().start()
    db = f"net{uuid.uuid4().hex[:8]}"
    influxd.create_database(db)
    scaled = DEFAULT_TRAFFIC_GBPS * SHELL_SATS / FLEET_SATS  # the shell's share of the fleet's offered traffic
    partition = tmp / "partition.toml"
    partition.write_text('[[request]]\nat = 20\nselect = "*"\nfault = "laser_terminal_failure"\n'
                         "args = { terminals = 4 }\n")
    plans = {"nominal": ("--design", str(_design(tmp, scaled))),
             "partition": ("--design", str(_design(tmp, scaled)), "--scenario", str(partition)),
             "overload": ("--design", str(_design(tmp, 100 * DEFAULT_TRAFFIC_GBPS)))}
    bridge = bridge_proc(tmp, broker.url, influxd.url, db).start()
    ids: dict[str, str] = {}
    try:
        wait_for(lambda: last_status(bridge).get("connected"), 30, 0.1, what="bridge connected")
        for label, extra in plans.items():
            sub = tmp / label
            sub.mkdir()
            twin = twin_proc(sub, broker.url, 1000, *SHELL, "--speed", f"x{SPEED}", "--duration", str(DURATION),
                             "--rates", RATES, "--seed", "5", *extra).start()
            try:
                assert twin.popen is not None
                assert twin.popen.wait(DURATION / SPEED + 120) == 0, twin.log.read_text()[-3000:]
            finally:
                twin.stop()
            wait_settled(bridge)
            known = set(ids.values())
            new = wait_for(lambda: [r for r in _runs(influxd, db) if r not in known and _complete(influxd, db, r)],
                           30, 0.5, what=f"the {label} run stored")
            ids[label] = new[0]
        yield influxd, db, ids
    finally:
        bridge.stop()
        broker.stop()


def _runs(influxd: Any, db: str) -> list[str]:
    rows = series_of(influxd, db, 'SHOW TAG VALUES FROM "runs" WITH KEY = "run"')
    return [v[1] for v in rows[0]["values"]] if rows else []


def _window(influxd: Any, db: str, run: str) -> tuple[int, int]:
    """(sim start ms, latest sim ms) of a run, as the Runs table shows them."""
    (s,) = series_of(influxd, db,
                     f'SELECT last("sim_start_ms"), last("sim_latest_ms") FROM "runs" WHERE "run" = \'{run}\'')
    return int(s["values"][0][1]), int(s["values"][0][2])


def _complete(influxd: Any, db: str, run: str) -> bool:
    start, latest = _window(influxd, db, run)
    return latest - start >= DURATION * 1000


def _filled(influxd: Any, db: str, run: str) -> Filled:
    start, latest = _window(influxd, db, run)
    return Filled(start * 10**6, (latest + 5000) * 10**6, [], "", "")


def _panel_series(influxd: Any, db: str, run: str, q: str, city: str | None = None) -> list[dict[str, Any]]:
    """A panel query's series for ``run``: ``$sat`` three of its satellites, ``$city`` ``city`` (default: the
    city with the most pairs with a route)."""
    f = _filled(influxd, db, run)
    subst = {}
    if "$sat" in q:
        rows = series_of(influxd, db, f"SHOW TAG VALUES FROM \"{NET}\" WITH KEY = \"sat\" WHERE \"run\" = '{run}'")
        subst["sat"] = "(" + "|".join(_regex_escape(v[1]) for v in rows[0]["values"][:3]) + ")"
    if "$city" in q:
        subst["city"] = _regex_escape(city or _best_city(influxd, db, run))
    return series_of(influxd, db, substitute(q, f, subst, run))


def _best_city(influxd: Any, db: str, run: str) -> str:
    """The city with the most pairs with a route in the run's matrices."""
    rows = series_of(influxd, db, f'SELECT count("rtt_ms") FROM "{CITY_RTT}" WHERE "run" = \'{run}\' GROUP BY "src"')
    return max(rows, key=lambda s: s["values"][0][1])["tags"]["src"]


def _latest_grid(influxd: Any, db: str, run: str, title: str) -> dict[str, dict[str, Any]]:
    """The latest grid cells of a map or table panel, by cell."""
    (t,) = next(p for p in PANELS if p["title"] == title)["targets"]
    return {s["tags"][grid.TAG]: dict(zip(s["columns"], s["values"][-1])) for s in _panel_series(influxd, db, run,
                                                                                                   t["query"])}


def test_the_fleet_aggregates_and_city_rtt_the_dashboard_reads_are_those_stored(runs: Any) -> None:
    """Drift (these names are not in the telemetry schema): what the twin and the bridge wrote."""
    from bridges.influx import line_protocol

    influxd, db, _ = runs
    keys = {m: {v[0]: v[1] for v in series_of(influxd, db, f'SHOW FIELD KEYS FROM "{m}"')[0]["values"]}
            for m in ("fleet", CITY_RTT, NET, grid.MEASUREMENT)}
    assert set(NET_FLEET_FIELDS) <= set(keys["fleet"]), keys["fleet"]
    assert line_protocol.CITY_RTT == CITY_RTT and set(CITY_RTT_FIELDS) <= set(keys[CITY_RTT]), keys[CITY_RTT]
    tags = {v[0] for v in series_of(influxd, db, f'SHOW TAG KEYS FROM "{CITY_RTT}"')[0]["values"]}
    assert set(CITY_RTT_TAGS) | {"run"} == tags
    assert set(keys[NET]) == set(PACKET_FIELDS[NET]) | {"seq"}, keys[NET]
    assert set(GRID_NET_FIELDS) <= set(keys[grid.MEASUREMENT]), keys[grid.MEASUREMENT]


def test_every_network_panel_query_returns_its_columns_from_the_real_pipeline(runs: Any) -> None:
    influxd, db, ids = runs
    for title, q in _queries(NETWORK):
        # satellites without a route exist in the partition run only (the nominal shell has none)
        run = ids["partition"] if "without a gateway route" in title or "cut off" in title else ids["nominal"]
        series = _panel_series(influxd, db, run, q)
        assert series, f"{title}: no data for {q}"
        for s in series:
            assert s["columns"] == ["time", *expected_columns(q)], (title, s["columns"])
    for v in NETWORK["templating"]["list"]:
        rows = series_of(influxd, db, v["query"].replace("$run", ids["nominal"]))[0]["values"]
        values = {row[1] for row in rows}
        if v["name"] == "run":
            assert ids["nominal"] in values
        elif v["name"] == "sat":
            assert len(values) == SHELL_SATS
        else:  # every city of the matrix, as a source or a destination
            assert len(values) == 100 and _best_city(influxd, db, ids["nominal"]) in values


def test_the_maps_show_the_routes_and_the_cut_off_satellites(runs: Any) -> None:
    """Nominal: no cell holds a satellite without a route, and every cell's delays lie between the height
    over c and 100 ms. Partition: the cells' cut-off satellites add up to the fleet point's count of the
    same summary, the share panel shows them over the live satellites (above the alert threshold), and the
    cut-off table lists those cells."""
    influxd, db, ids = runs
    nominal = _latest_grid(influxd, db, ids["nominal"], "One-way delay to the nearest gateway")
    occupied = {c: r for c, r in nominal.items() if r["sats"] > 0}
    assert sum(r["sats"] for r in occupied.values()) == SHELL_SATS
    assert sum(r["no_route"] for r in occupied.values()) == 0
    means = np.array([r["gw_delay_mean_ms"] for r in occupied.values()], dtype=float)
    peaks = np.array([r["gw_delay_max_ms"] for r in occupied.values()], dtype=float)
    # one-way delay at least the satellite's height over c (356 km: 1.19 ms), well under a half-Earth detour
    assert np.all(means >= 350e3 / C_M_S * 1e3) and np.all(peaks >= means) and peaks.max() < 100.0
    cells = _latest_grid(influxd, db, ids["partition"], "Satellites without a gateway route, by cell")
    cut = sum(r["no_route"] for r in cells.values())
    run = f'"run" = \'{ids["partition"]}\''
    (latest,) = series_of(influxd, db, f'SELECT "no_route" FROM "{grid.MEASUREMENT}" WHERE {run} ORDER BY time DESC '
                                       "LIMIT 1")
    at = f'{run} AND time = \'{latest["values"][0][0]}\''  # the summary that carried the latest grid
    (summed,) = series_of(influxd, db, f'SELECT sum("no_route") FROM "{grid.MEASUREMENT}" WHERE {at}')
    (fleet,) = series_of(influxd, db, f'SELECT "net_partitioned", "sats", "lost" FROM "fleet" WHERE {at}')
    assert cut == summed["values"][0][1] == fleet["values"][0][1] > 0
    assert fleet["values"][0][2] - fleet["values"][0][3] == SHELL_SATS
    by_title = {p["title"]: p for p in PANELS}
    (share,) = _panel_series(influxd, db, ids["partition"], by_title["Share without a route"]["targets"][0]["query"])
    # the share panel reads the last summary (the grid's may be a few ticks older: satellites pass in and out of view)
    assert share["values"][-1][1] == pytest.approx(cut / SHELL_SATS, abs=0.02)
    assert cut / SHELL_SATS > PARTITION_ALERT_SHARE
    listed = _latest_grid(influxd, db, ids["partition"], "Cells with satellites cut off (latest grid)")
    assert {c for c, r in listed.items() if r["no_route"] > 0} == {c for c, r in cells.items() if r["no_route"] > 0}


def test_city_pair_rtts_respect_the_light_bound_and_their_stretch(runs: Any) -> None:
    """Every stored pair with a route: RTT >= the great-circle light time on the mean sphere; stretch = RTT /
    fibre RTT (2 d n / c, n = 1.468) to the stored precision; the $city table shows the city's pairs."""
    import csv

    influxd, db, ids = runs
    cities = {r["name"]: (math.radians(float(r["lat_deg"])), math.radians(float(r["lon_deg"])))
              for r in csv.DictReader(open(REPO / "twin" / "data" / "cities_top100.csv", encoding="utf-8"))}
    src, dst = CITY_RTT_TAGS
    series = series_of(influxd, db, f'SELECT "rtt_ms", "stretch" FROM "{CITY_RTT}" WHERE "run" = \'{ids["nominal"]}\' '
                                    f'AND "reachable" = true GROUP BY "{src}", "{dst}"')
    assert len(series) >= 20, len(series)  # pairs of cities under the 43 deg shell with a route
    for s in series:
        (a_lat, a_lon), (b_lat, b_lon) = cities[s["tags"][src]], cities[s["tags"][dst]]
        angle = math.acos(min(1.0, math.sin(a_lat) * math.sin(b_lat)
                              + math.cos(a_lat) * math.cos(b_lat) * math.cos(a_lon - b_lon)))
        light_ms = 2 * R_MEAN_M * angle / C_M_S * 1e3
        for _, rtt_ms, stretch in s["values"]:
            assert rtt_ms >= light_ms * (1 - 1e-3), (s["tags"], rtt_ms, light_ms)
            assert stretch == pytest.approx(rtt_ms / (light_ms * FIBRE_INDEX), rel=2e-3), (s["tags"], rtt_ms, stretch)
    city = _best_city(influxd, db, ids["nominal"])
    table_q = next(t["query"] for p in PANELS if p["title"] == "Round trips from $city (latest)" for t in p["targets"])
    rows = _panel_series(influxd, db, ids["nominal"], table_q, city)
    assert len(rows) == 99 and all(city in (r["tags"][src], r["tags"][dst]) for r in rows)


def _firing_runs(influxd: Any, db: str, rule: dict[str, Any]) -> set[str]:
    """Runs for which Grafana would fire: query at the wall clock's now(), reduce per series, threshold."""
    q = rule["data"][0]["model"]["query"]
    reducer = rule["data"][1]["model"]["reducer"]
    ev = rule["data"][2]["model"]["conditions"][0]["evaluator"]
    out = set()
    for s in series_of(influxd, db, q):
        values = [v[1] for v in s["values"] if v[1] is not None]
        value = {"last": values[-1], "max": max(values), "min": min(values)}[reducer]
        if (value > ev["params"][0]) if ev["type"] == "gt" else (value < ev["params"][0]):
            out.add(s["tags"].get("run", ""))
    return out


def test_partition_and_overload_rules_fire_for_the_faulted_runs_and_stay_quiet_on_the_nominal_one(runs: Any) -> None:
    influxd, db, ids = runs
    by_uid = {r["uid"]: r for r in RULES}
    assert _firing_runs(influxd, db, by_uid[NET_PARTITION_UID]) == {ids["partition"]}
    assert _firing_runs(influxd, db, by_uid[NET_OVERLOAD_UID]) == {ids["overload"]}
    # per satellite: the max_link_util red-high rule names satellites of the overloaded run only
    sat_rule = by_uid["orbitwin-max_link_util-red-high"]
    hot = {(s["tags"]["run"], s["tags"]["sat"]) for s in series_of(influxd, db, sat_rule["data"][0]["model"]["query"])}
    assert hot and {run for run, _ in hot} == {ids["overload"]}
    # and the overload shows on the dashboard: the fleet count, and cells above 1 on the utilisation map
    by_title = {p["title"]: p for p in PANELS}
    (row,) = _panel_series(influxd, db, ids["overload"], by_title["Overloaded links"]["targets"][0]["query"])
    assert row["values"][-1][1] > 0
    for run, hot_map in ((ids["overload"], True), (ids["nominal"], False)):
        cells = _latest_grid(influxd, db, run, "Largest link utilisation")
        assert (max(r["link_util_max"] or 0 for r in cells.values()) > 1.0) == hot_map, run

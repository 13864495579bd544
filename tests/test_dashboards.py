"""The generated Grafana provisioning: committed = generated, structurally valid, and every query runs.

(a) the committed files under dashboards/ are byte-identical to ``orbitwin dashboards build``;
(b) structure: YAML/JSON parse (YAML round-trips to the generator's data), datasource uid on every
    panel/target/annotation/variable, unique ids, grid positions, Grafana 11 alert rule fields,
    thresholds equal to the schema's limits and every limited field covered;
(c) every query of every panel, variable, annotation and alert rule runs against a real influxd
    1.6.7 holding a real short twin run, with Grafana's variables substituted, and returns data
    with the columns its panel reads.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dashboard_data import RUN, Filled, fill
from dashboards import build as gen
from orbitwin.cli.main import main
from dashboards.panels import DS_UID, RUN_WHERE, RUNS_TABLE_QUERY, UNITS, threshold_steps
from twin.schema.telemetry import FIELD_BY_NAME, LIMITED_FIELDS

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "dashboards"
FILES = gen.build()
DASHBOARDS = {name: json.loads(FILES[f"json/{name}"]) for name in gen.dashboards()}
RULES = yaml.safe_load(FILES["provisioning/alerting/rules.yaml"])


def panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in d["panels"] if p["type"] != "row"]


def all_rules() -> list[dict[str, Any]]:
    return [r for g in RULES["groups"] for r in g["rules"]]


# --- (a) committed = generated -------------------------------------------------------------
def test_committed_files_equal_generator_output() -> None:
    assert gen.differences(OUT) == [], "run: orbitwin dashboards build"
    assert main(["dashboards", "build", "--check", "--out", str(OUT)]) == 0


def test_check_fails_on_a_changed_file(tmp_path: Path) -> None:
    assert main(["dashboards", "build", "--out", str(tmp_path)]) == 0
    assert main(["dashboards", "build", "--check", "--out", str(tmp_path)]) == 0
    p = tmp_path / "json" / "fleet-overview.json"
    p.write_text(p.read_text().replace("Fleet overview", "Fleet overvieW"))
    assert main(["dashboards", "build", "--check", "--out", str(tmp_path)]) == 1
    shutil.rmtree(tmp_path / "provisioning" / "alerting")
    assert main(["dashboards", "build", "--check", "--out", str(tmp_path)]) == 1


# --- (b) structure ---------------------------------------------------------------------------
def test_yaml_round_trips_to_the_generator_data() -> None:
    expected = {"provisioning/datasources/influxdb.yaml": gen.datasource(),
                "provisioning/dashboards/orbitwin.yaml": gen.dashboard_provider(),
                "provisioning/alerting/rules.yaml": gen.alert_rules(),
                "provisioning/alerting/contact-points.yaml": gen.contact_points(),
                "provisioning/alerting/policies.yaml": gen.notification_policies()}
    for rel, data in expected.items():
        assert yaml.safe_load(FILES[rel]) == data, rel


def test_datasource_provider_contact_point_and_policy() -> None:
    ds = yaml.safe_load(FILES["provisioning/datasources/influxdb.yaml"])["datasources"][0]
    assert (ds["uid"], ds["type"], ds["url"], ds["database"]) == (DS_UID, "influxdb", "http://influxdb:8086",
                                                                   "${INFLUXDB_BUCKET}")
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUXDB_TOKEN}"
    prov = yaml.safe_load(FILES["provisioning/dashboards/orbitwin.yaml"])["providers"][0]
    assert prov["type"] == "file" and prov["options"]["path"] == "/var/lib/grafana/dashboards"
    cp = yaml.safe_load(FILES["provisioning/alerting/contact-points.yaml"])["contactPoints"][0]
    recv = cp["receivers"][0]
    assert recv["type"] == "webhook" and recv["settings"]["url"] == "http://grafana-bridge:8090/grafana/webhook"
    assert (recv["settings"]["username"], recv["settings"]["password"]) == ("${GRAFANA_WEBHOOK_USER}",
                                                                            "${GRAFANA_WEBHOOK_PASSWORD}")
    pol = yaml.safe_load(FILES["provisioning/alerting/policies.yaml"])["policies"][0]
    assert pol["receiver"] == cp["name"] and all(r["receiver"] == cp["name"] for r in pol["routes"])


def test_dashboard_panels_are_well_formed() -> None:
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(uids) == len(set(uids))
    for name, d in DASHBOARDS.items():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: set[tuple[int, int]] = set()
        for p in d["panels"]:
            g = p["gridPos"]
            assert all(isinstance(g[k], int) for k in "hwxy") and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not mine & cells, f"{name}: panel {p['id']} overlaps"
            cells |= mine
        for p in panels(d):
            assert p["datasource"]["uid"] == DS_UID and p["targets"], (name, p["title"])
            for t in p["targets"]:
                assert t["datasource"]["uid"] == DS_UID and t["rawQuery"] is True and t["query"].startswith("SELECT")
            assert p["fieldConfig"]["defaults"]["unit"] in set(UNITS.values()) | {"megwatt", "suffix: EOPS", "wps", "ms",
                                                                                  "s", "short", "watth", "h",
                                                                                  "decbytes"}
        for a in d["annotations"]["list"][1:]:
            assert a["datasource"]["uid"] == DS_UID and a["target"]["query"] == a["query"]
        for v in d["templating"]["list"]:
            assert v["datasource"]["uid"] == DS_UID


def _field_of(p: dict[str, Any]) -> str | None:
    """The one schema field a panel shows (None when it shows several)."""
    names = {n for t in p["targets"] for n in re.findall(r'AS "(\w+)"', t["query"])}
    return names.pop() if len(names) == 1 and next(iter(names)) in FIELD_BY_NAME else None


def test_thresholds_equal_schema_limits_and_cover_every_limited_field() -> None:
    unit_map = {"K": "kelvin", "W": "watt", "V": "volt", "A": "amp", "m": "lengthm", "deg": "degree", "1": "percentunit"}
    assert all(UNITS[k] == v for k, v in unit_map.items())
    covered: set[str] = set()
    for d in DASHBOARDS.values():
        for p in panels(d):
            name = _field_of(p)
            f = FIELD_BY_NAME.get(name or "")
            if f is None or f.limits is None:
                continue
            steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
            lim = f.limits
            limits = {v for v in (lim.red_low, lim.yellow_low, lim.yellow_high, lim.red_high) if v is not None}
            assert {s["value"] for s in steps[1:]} == limits, (p["title"], steps)
            assert steps == threshold_steps(lim)
            colors = {s["value"]: s["color"] for s in steps}
            if lim.red_high is not None:
                assert colors[lim.red_high] == "red"
            if lim.red_low is not None:
                assert steps[0]["color"] == "red"
            if lim.yellow_low is not None:
                assert colors[lim.yellow_low] == "green"
            if f.dtype != "bool":
                assert p["fieldConfig"]["defaults"]["unit"] == UNITS[f.unit]
            covered.add(f.name)
    assert covered == {f.name for f in LIMITED_FIELDS}


def test_alert_rules_have_grafana_11_fields_and_schema_limits() -> None:
    assert RULES["apiVersion"] == 1
    uids = [r["uid"] for r in all_rules()]
    assert len(uids) == len(set(uids)) and all(len(u) <= 40 for u in uids)
    for g in RULES["groups"]:
        assert {"orgId", "name", "folder", "interval", "rules"} <= set(g)
    for r in all_rules():
        assert {"uid", "title", "condition", "data", "noDataState", "execErrState", "for", "labels", "annotations"} <= set(r)
        refs = {d["refId"]: d for d in r["data"]}
        assert r["condition"] in refs and refs["A"]["datasourceUid"] == DS_UID
        assert refs["A"]["model"]["rawQuery"] is True and refs["A"]["relativeTimeRange"]["from"] > 0
        assert [refs[k]["model"]["type"] for k in "BC"] == ["reduce", "threshold"]
        assert all(refs[k]["datasourceUid"] == "__expr__" for k in "BC")
        assert r["noDataState"] in ("OK", "NoData", "Alerting", "KeepLast")
        assert r["execErrState"] in ("OK", "Error", "Alerting", "KeepLast")
        assert re.fullmatch(r"\d+[smh]", r["for"]) and r["labels"]["severity"] in ("critical", "warning")
        # Grafana interpolates env vars in provisioned queries and labels: no "$" there
        assert "$" not in refs["A"]["model"]["query"] and "$" not in json.dumps(r["labels"])
    by_uid = {r["uid"]: r for r in all_rules()}
    wanted = [("payload_temp_k", "high"), ("battery_soc", "low"), ("devices_latched", "high"), ("payload_hung", "high")]
    for f in LIMITED_FIELDS:
        for side, value in (("high", f.limits.red_high), ("low", f.limits.red_low)):  # type: ignore[union-attr]
            if value is None:
                continue
            r = by_uid[f"orbitwin-{f.name}-red-{side}"]
            assert r["data"][2]["model"]["conditions"][0]["evaluator"]["params"] == [value]
            assert r["data"][0]["model"]["query"].endswith('GROUP BY "sat", "run"') and r["labels"]["scope"] == "satellite"
            wanted = [w for w in wanted if w != (f.name, side)]
    assert not wanted
    assert "orbitwin-fleet-red" in by_uid


def test_every_dashboard_has_the_run_variable_and_every_query_is_scoped_to_it() -> None:
    """``$run`` first, newest run first (the default), every panel and annotation query filtered on it."""
    for name, d in DASHBOARDS.items():
        var = d["templating"]["list"][0]
        assert (var["name"], var["sort"], var["multi"], var["includeAll"], var["current"]) == ("run", 4, False, False, {})
        assert var["query"] == 'SHOW TAG VALUES FROM "runs" WITH KEY = "run"', name
        for v in d["templating"]["list"][1:]:
            assert RUN_WHERE in v["query"], (name, v["name"])  # chained: the run's satellites only
        runs = d["panels"][0]
        assert runs["type"] == "table" and runs["targets"][0]["query"] == RUNS_TABLE_QUERY, name
        links = [prop["value"] for o in runs["fieldConfig"]["overrides"] for prop in o["properties"]
                 if prop["id"] == "links"]
        assert links and links[0][0]["url"].startswith(f"/d/{d['uid']}/?var-run=${{__data.fields.run}}&from="), name
        for title, q in dashboard_queries(d):
            if q != RUNS_TABLE_QUERY:
                assert RUN_WHERE in q.split(" WHERE ", 1)[1], (name, title, q)


def test_no_alert_rule_is_bounded_above_by_the_wall_clock() -> None:
    """Sim time runs ahead of the wall clock at xN: rules have a lower bound only (no upper one, no
    GROUP BY time(), which would cap the window at now()), and per-satellite and fleet rules label the run."""
    for r in all_rules():
        q = r["data"][0]["model"]["query"]
        assert "time > now() - " in q and "time <" not in q and "GROUP BY time" not in q, r["uid"]
        if r["labels"]["scope"] == "satellite" or r["uid"] in ("orbitwin-fleet-red", "orbitwin-fleet-latched",
                                                                "orbitwin-fleet-safe", "orbitwin-twin-lag"):
            assert q.endswith('"run"'), r["uid"]


# --- (c) every query against a real influxd -------------------------------------------------------
@pytest.fixture(scope="module")
def filled(influxd: Any) -> tuple[Any, str, Filled]:
    db = f"dash_{uuid.uuid4().hex[:8]}"
    influxd.create_database(db)
    return influxd, db, fill(influxd, db)


def _regex_escape(s: str) -> str:
    """What Grafana does to a variable value used in an InfluxQL regex."""
    return re.sub(r"([-\[\]{}()*+?.,\\^$|#\s/])", r"\\\1", s)


def substitute(q: str, f: Filled, sats: dict[str, str], run: str = str(RUN)) -> str:
    start_ms, end_ms = f.start_ns // 10**6, f.end_ns // 10**6
    q = q.replace("$run", run)
    q = q.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms").replace("$__interval", "20s")
    q = q.replace("${__to}", str(end_ms)).replace("${__from}", str(start_ms))
    for var, value in sats.items():
        q = q.replace(f"${var}", value)
    assert not re.search(r"\$(\w|\{)", q), q
    return q


def expected_columns(q: str) -> list[str]:
    """Column names a SELECT returns after ``time``: its aliases or quoted names, in order."""
    sel = re.match(r"SELECT (.*?) FROM ", q)
    assert sel, q
    items, depth, cur = [], 0, ""
    for ch in sel.group(1) + ",":
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [(re.search(r' AS "(\w+)"$', it) or re.findall(r'"(\w+)"', it) and re.search(r'"(\w+)"', it)).group(1)
            for it in items]


def series_of(influxd: Any, db: str, q: str) -> list[dict[str, Any]]:
    return influxd.query(q, db)["results"][0].get("series", [])


def city_with_routes(influxd: Any, db: str, run: str = str(RUN)) -> str | None:
    """The city (network dashboard's ``$city``) with the most pairs with a route in the run's latency matrices."""
    rows = series_of(influxd, db, f'SELECT count("rtt_ms") FROM "city_rtt" WHERE "run" = \'{run}\' GROUP BY "src"')
    return max(rows, key=lambda s: s["values"][0][1])["tags"]["src"] if rows else None


def _run_panel_query(influxd: Any, db: str, f: Filled, q: str, run: str = str(RUN)) -> list[dict[str, Any]]:
    """Series of a query (``$run`` = ``run``); for per-satellite variables, the first satellite that has data;
    ``$city`` the city with the most routed pairs."""
    candidates = [f.subject, f.board_sat, *f.red_sats.values(), *f.names] if "$sat" in q or "$hil_sat" in q else [None]
    city = city_with_routes(influxd, db, run) if "$city" in q else None
    for sat in candidates:
        subst = {} if sat is None else {"hil_sat": f"({_regex_escape(sat)})", "sat": _regex_escape(sat)}
        subst |= {"city": _regex_escape(city)} if city else {}
        series = series_of(influxd, db, substitute(q, f, subst, run))
        if series:
            return series
    return []


def dashboard_queries(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, InfluxQL) of every panel target and annotation of a dashboard."""
    queries = [(p["title"], t["query"]) for p in panels(d) for t in p["targets"]]
    return queries + [(f"annotation {a['name']}", a["query"]) for a in d["annotations"]["list"][1:]]


def test_every_panel_and_annotation_query_returns_the_expected_columns(filled: tuple[Any, str, Filled]) -> None:
    influxd, db, f = filled
    checked = 0
    for name, d in DASHBOARDS.items():
        for title, q in dashboard_queries(d):
            series = _run_panel_query(influxd, db, f, q)
            assert series, f"{name} / {title}: no data for {q}"
            for s in series:
                assert s["columns"] == ["time", *expected_columns(q)], (title, s["columns"])
            outer = re.sub(r"FROM \(.*\)", "FROM ()", q)  # a subquery's GROUP BY "sat" (the top tables) is inside
            if re.search(r'GROUP BY [^"]*"sat"|GROUP BY time\(\$__interval\), "sat"', outer):
                assert all("sat" in s.get("tags", {}) for s in series), title
            checked += 1
    assert checked > 60


def test_template_variables_list_the_satellites(filled: tuple[Any, str, Filled]) -> None:
    influxd, db, f = filled
    for d in DASHBOARDS.values():
        for v in d["templating"]["list"]:
            series = series_of(influxd, db, v["query"].replace("$run", str(RUN)))
            assert series and series[0]["columns"] == ["key", "value"]
            values = {row[1] for row in series[0]["values"]}
            if v["name"] == "run":
                assert str(RUN) in values
                continue
            if v["name"] == "city":  # the network dashboard's: the cities of the run's latency matrices
                assert city_with_routes(influxd, db) in values
                continue
            assert (f.board_sat in values) if v["name"] == "hil_sat" else (set(f.names) - values == set()), v["name"]
            assert not series_of(influxd, db, v["query"].replace("$run", "1")), v["name"]  # another run: none


def test_geomaps_read_the_fleet_grid_and_count_every_satellite(filled: tuple[Any, str, Filled]) -> None:
    """The maps read one series per grid cell (not per satellite): the latest cells hold every live satellite."""
    from twin.schema import fleet_grid

    influxd, db, f = filled
    # the network dashboard's maps are per satellite by design (tests/test_dashboard_network.py)
    maps = [p for p in panels(DASHBOARDS["fleet-overview.json"]) if p["type"] == "geomap"]
    assert len(maps) == 2
    for p in maps:
        (t,) = p["targets"]
        assert f'FROM "{fleet_grid.MEASUREMENT}"' in t["query"] and "GROUP BY \"cell\"" in t["query"], p["title"]
        cells = {s["tags"]["cell"]: dict(zip(s["columns"], s["values"][-1]))
                 for s in series_of(influxd, db, substitute(t["query"], f, {}))}
        assert len(cells) == fleet_grid.N_CELLS, p["title"]  # dense: empty cells too, filtered in Grafana
        occupied = {c: row for c, row in cells.items() if row["sats"] > 0}
        assert sum(row["sats"] for row in occupied.values()) == f.live_at_grid, p["title"]
        for c, row in occupied.items():
            k = [fleet_grid.cell_name(i) for i in range(fleet_grid.N_CELLS)].index(c)
            assert (row["lat"], row["lon"]) == fleet_grid.cell_centre_deg(k)
        color = p["options"]["layers"][0]["config"]["style"]["color"]["field"]
        assert all(row[color] is not None for row in occupied.values()), (p["title"], color)
        if "red" in color or "limit_state" in color:  # the satellites stuck beyond a red limit show
            assert sum(row["red"] for row in occupied.values()) >= 1 and max(r["limit_state"] for r in occupied.values()) == 2
        if "dose_rate_mean_rad_s" in next(iter(occupied.values())):
            assert all(r["dose_rate_max_rad_s"] >= r["dose_rate_mean_rad_s"] >= 0 for r in occupied.values())
            assert max(r["dose_rate_max_rad_s"] for r in occupied.values()) > 0
        assert p["transformations"][0]["id"] == "filterByValue"


def _reduce(values: list[float], reducer: str) -> float:
    return {"last": values[-1], "max": max(values), "min": min(values)}[reducer]


def test_every_alert_rule_query_runs_and_limit_rules_fire_for_the_red_satellite(filled: tuple[Any, str, Filled]) -> None:
    influxd, db, f = filled
    for r in all_rules():
        q, reducer = r["data"][0]["model"]["query"], r["data"][1]["model"]["reducer"]
        ev = r["data"][2]["model"]["conditions"][0]["evaluator"]
        series = series_of(influxd, db, q)
        assert series, f"{r['uid']}: no data for {q}"
        fld = expected_columns(q)[0]
        for s in series:
            assert s["columns"] == ["time", fld]
        if r["labels"]["scope"] != "satellite":
            continue
        side = r["uid"].rsplit("-", 1)[1]
        firing = {s["tags"]["sat"] for s in series
                  if (_reduce([v[1] for v in s["values"]], reducer) > ev["params"][0]) == (ev["type"] == "gt")}
        assert f.red_sats[(fld, side)] in firing, (r["uid"], firing)


def test_fleet_measurement_fields_exist(filled: tuple[Any, str, Filled]) -> None:
    from dashboards.panels import FLEET_FIELDS

    _, _, f = filled
    assert set(FLEET_FIELDS) <= f.fleet_fields


def test_fleet_dose_by_region_panels_read_the_fleet_point_and_integrate_it(filled: tuple[Any, str, Filled]) -> None:
    """Issue 13: the fleet's dose split by region (twin.schema.dose_regions) from the ``fleet`` point only: the pie
    equals the trapezoidal time integral of the stored per-region dose rates, the running total ends there."""
    from twin.schema.dose_regions import DOSE_REGIONS

    influxd, db, f = filled
    fleet = {p["title"]: p for p in panels(DASHBOARDS["fleet-overview.json"])}
    pie, running = fleet["Fleet dose by region"], fleet["Fleet dose by region, running total"]
    assert pie["type"] == "piechart" and running["type"] == "timeseries"
    labels = [r.label for r in DOSE_REGIONS]
    for p in (pie, running):
        (t,) = p["targets"]
        assert 'FROM "fleet" ' in t["query"] and '"sat"' not in t["query"] and expected_columns(t["query"]) == labels
        assert p["fieldConfig"]["defaults"]["unit"] == UNITS["rad(Si)"]
    (pie_row,) = series_of(influxd, db, substitute(pie["targets"][0]["query"], f, {}))[0]["values"]
    run_rows = series_of(influxd, db, substitute(running["targets"][0]["query"], f, {}))[0]["values"]
    raw = series_of(influxd, db, substitute(
        "SELECT " + ", ".join(f'"{r.summary_field}"' for r in DOSE_REGIONS) + ' FROM "fleet" WHERE "run" = \'$run\' '
        "AND $timeFilter", f, {}))[0]["values"]
    t_s = np.array([dt.datetime.fromisoformat(v[0].replace("Z", "+00:00")).timestamp() for v in raw])
    assert len(t_s) > 50
    for k, r in enumerate(DOSE_REGIONS):
        rate = np.array([v[k + 1] for v in raw], dtype=float)
        want = float(np.sum((rate[1:] + rate[:-1]) / 2 * np.diff(t_s)))
        assert pie_row[k + 1] == pytest.approx(want, rel=1e-9, abs=1e-15), r.name
        assert run_rows[-1][k + 1] == pytest.approx(want, rel=1e-9, abs=1e-15), r.name
        cum = [row[k + 1] for row in run_rows]
        assert all(b >= a for a, b in zip(cum, cum[1:]))  # a running total of rates >= 0
    assert sum(pie_row[1:]) > 0  # the fleet accrued dose over the run

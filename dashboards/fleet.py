"""The fleet overview and pipeline health dashboards.

The fleet overview reads the ``fleet`` measurement (aggregates the twin computes every tick)
for counts, power and compute, and the ``fleet_grid`` measurement (the same summary binned on
fixed latitude/longitude cells, :mod:`twin.schema.fleet_grid`) for its maps: never a GROUP BY over
every satellite's series (10,000 series take InfluxDB about a second; the grid's few hundred do not).
"""

from __future__ import annotations

from typing import Any

from dashboards.panels import (
    FLEET_STATES,
    UNITS,
    STATE_COLORS,
    Layout,
    dashboard,
    event_annotations,
    field,
    field_config,
    geomap,
    grafana_unit,
    override,
    series_query,
    stat,
    table,
    target,
    thresholds,
    timeseries,
    value_mappings,
)
from twin.schema import dose_regions
from twin.schema import fleet_grid as grid
from twin.schema.telemetry import LIMIT_GREEN, LIMIT_RED, LIMIT_STATES, LIMIT_YELLOW

# The maps read each cell's latest grid point in this window before the end of the time range: it
# holds two grids or more while the twin publishes summaries at least every PERIOD_S (default: every tick).
GRID_WINDOW_S = int(3 * grid.PERIOD_S)

FLEET_UID = "orbitwin-fleet"  # the fleet overview dashboard (the Grafana bridge annotates it)


def _count_steps(color: str) -> list[dict[str, Any]]:
    return [{"color": "green", "value": None}, {"color": color, "value": 1}]


def _fleet_last(name: str) -> str:
    return f'SELECT last("{name}") AS "{name}" FROM "fleet" WHERE $timeFilter'


def grid_latest_query(fields: list[str], where: str = "") -> str:
    """Latest value of each grid cell (``lat``, ``lon`` = its centre, then ``fields``) before ``$__to``.

    One series per cell (a fixed few hundred) instead of one per satellite; ``where`` adds conditions
    on tags (e.g. the run).
    """
    cols = ", ".join(['last("lat_deg") AS "lat"', 'last("lon_deg") AS "lon"',
                      *(f'last("{f}") AS "{f}"' for f in fields)])
    cond = f"{where} AND " if where else ""
    return (f'SELECT {cols} FROM "{grid.MEASUREMENT}" WHERE {cond}time > ${{__to}}ms - {GRID_WINDOW_S}s '
            f'AND time <= ${{__to}}ms GROUP BY "{grid.TAG}"')


def dose_by_region_query(running: bool = False) -> str:
    """The fleet's dose [rad(Si), summed over its satellites] per region of :mod:`twin.schema.dose_regions`.

    The time integral of the ``fleet`` point's per-region dose rates over the time range (one value per
    region: the pie's slices), or with ``running`` the running total per ``$__interval``. Reads the
    ``fleet`` measurement only (one series per run), never a satellite's series.
    """
    agg = "cumulative_sum(integral(\"{f}\", 1s))" if running else "integral(\"{f}\", 1s)"
    cols = ", ".join(f'{agg.format(f=r.summary_field)} AS "{r.label}"' for r in dose_regions.DOSE_REGIONS)
    group = " GROUP BY time($__interval) fill(none)" if running else ""
    return f'SELECT {cols} FROM "fleet" WHERE $timeFilter{group}'


def _piechart(title: str, targets: list[dict[str, Any]], fc: dict[str, Any], description: str = "") -> dict[str, Any]:
    """A pie of one value per series (the last of each), labelled with its percentage."""
    return {"type": "piechart", "title": title, "description": description, "datasource": targets[0]["datasource"],
            "targets": targets, "fieldConfig": fc,
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "pieType": "pie", "displayLabels": ["name", "percent"],
                        "legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                                   "values": ["value", "percent"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def _grid_map(title: str, fields: list[str], color_field: str, fc: dict[str, Any], description: str) -> dict[str, Any]:
    """A geomap of grid cells: one marker per occupied cell at its centre, sized by its satellites."""
    assert set(fields) <= set(grid.GRID_FIELD_BY_NAME), fields
    p = geomap(title, [target(grid_latest_query(fields), "A", "table")], color_field, fc,
               description=description + f" Cells of {grid.CELL_DEG} deg (fleet summary grid), the latest summary "
                                         f"in the last {GRID_WINDOW_S} s before the end of the time range.",
               transformations=[{"id": "filterByValue", "options": {
                   "type": "include", "match": "any",
                   "filters": [{"fieldName": "sats", "config": {"id": "greater", "options": {"value": 0}}}]}}])
    p["options"]["layers"][0]["config"]["style"]["size"] = {"field": "sats", "fixed": 5, "min": 3, "max": 14}
    return p


def fleet_overview() -> dict[str, Any]:
    lay = Layout()
    lay.row("Fleet state (fleet aggregates written by the twin)")
    lay.add(stat("Satellites", [target(_fleet_last("sats"))], field_config(color="fixed")), w=4, h=4)
    for state in FLEET_STATES:
        steps = [{"color": "green", "value": None}] if state == "nominal" else _count_steps(STATE_COLORS[state])
        lay.add(stat(state.capitalize(), [target(_fleet_last(state))], field_config(thr=thresholds(steps=steps),
                                                                                      color="thresholds"),
                     description=f"Satellites {state} now (fleet.{state})"), w=4, h=4)
    overrides = [override(s, color={"mode": "fixed", "fixedColor": c}) for s, c in STATE_COLORS.items()]
    lay.add(timeseries("Satellites by state", [target(series_query("fleet", list(FLEET_STATES), agg="last"))],
                       field_config(overrides=overrides), stack=True), w=24, h=7)

    lay.row("Where they are")
    state_steps: list[dict[str, Any]] = [{"color": "green", "value": None}, {"color": "yellow", "value": LIMIT_YELLOW},
                                         {"color": "red", "value": LIMIT_RED}]
    assert LIMIT_GREEN < LIMIT_YELLOW < LIMIT_RED
    lay.add(_grid_map("Satellites by limit state", ["sats", "yellow", "red", "safe", "limit_state"], "limit_state",
                      field_config(thr=thresholds(steps=state_steps), color="thresholds",
                                   overrides=[override("limit_state", mappings=value_mappings(LIMIT_STATES))]),
                      "Where the fleet is and where its yellow and red satellites are: each cell coloured by its "
                      "worst limit state, sized by its satellites."), w=12, h=12)
    dose = field("dose_rate_rad_s")
    lay.add(_grid_map("Dose rate (the South Atlantic Anomaly)", ["sats", "dose_rate_max_rad_s", "dose_rate_mean_rad_s"],
                      "dose_rate_max_rad_s", field_config(grafana_unit(dose), thresholds(dose), color="thresholds",
                                                          overrides=[override("sats", unit="none")]),
                      "Dose rate of the satellites in each cell, coloured by the largest against the dose-rate "
                      "limits: the SAA shows as the high dose-rate patch over South America and the South "
                      "Atlantic."), w=12, h=12)

    lay.row("Radiation and single-event effects")
    lay.add(timeseries("Satellites in the SAA", [target(series_query("fleet", ["in_saa"], agg="last"))],
                       field_config()), w=8)
    seu = ('SELECT count("name") AS "{k}" FROM "events" WHERE "kind" = \'{k}\' AND $timeFilter '
           "GROUP BY time($__interval) fill(0)")
    lay.add(timeseries("SEU / SEL events", [target(seu.format(k="seu"), "A"), target(seu.format(k="sel"), "B")],
                       field_config(), description="Single-event upsets and latch-ups reported per interval"), w=8)
    lay.add(stat("Satellites with latched devices", [target(_fleet_last("latched"))],
                 field_config(thr=thresholds(steps=_count_steps("red")), color="thresholds")), w=4)
    lay.add(stat("Satellites with a board", [target(_fleet_last("boards"))], field_config(color="fixed"),
                 description="Payloads that are a hardware board now (fleet.boards; see the HIL bench dashboard)"),
            w=4)
    regions = "; ".join(f"{r.label}: {r.description}" for r in dose_regions.DOSE_REGIONS)
    lay.add(_piechart("Fleet dose by region", [target(dose_by_region_query())], field_config(UNITS["rad(Si)"]),
                      description="Share of the fleet's dose (summed over its satellites) accrued in each region over "
                                  f"the time range: the time integral of the fleet summary's dose rate per region ({regions})."
                                  " orbitwin validate prints the same split for one 550 km orbit."), w=8)
    lay.add(timeseries("Fleet dose by region, running total", [target(dose_by_region_query(running=True))],
                       field_config(UNITS["rad(Si)"]), stack=True,
                       description="The fleet's dose accrued in each region since the start of the time range "
                                   "(stacked: the top is the fleet's total)."), w=16)

    lay.row("Power and compute")
    lay.add(timeseries("Fleet power", [target(series_query("fleet", ["array_power_mw", "payload_power_mw"]))],
                       field_config("megwatt")), w=8)
    lay.add(timeseries("Compute delivered", [target(series_query("fleet", ["throughput_eops"]))],
                       field_config("suffix: EOPS")), w=8)
    lay.add(timeseries("Mean battery SoC and sunlit satellites",
                       [target(series_query("fleet", ["mean_soc"]), "A"),
                        target(series_query("fleet", ["sunlit"], agg="last"), "B")],
                       field_config("percentunit", overrides=[override("sunlit", unit="none")])), w=8)

    lay.row("Recent critical events")
    crit = ('SELECT "sat", "kind", "name", "detail" FROM "events" WHERE "severity" = \'critical\' AND $timeFilter '
            "ORDER BY time DESC LIMIT 200")
    lay.add(table("Critical events", [target(crit, fmt="table")]), w=24, h=8)
    return dashboard(FLEET_UID, "Orbitwin / Fleet overview", lay, tags=["fleet"],
                     annotations=event_annotations(), description="Constellation state, positions, SAA, power, compute")


def pipeline_health() -> dict[str, Any]:
    lay = Layout()
    grp = ', "bridge"'
    alias = "$tag_bridge $col"
    lay.row("InfluxDB bridge (bridge measurement, wall time)")
    rate = ('SELECT non_negative_derivative(last("{f}"), 1s) AS "{f}" FROM "bridge" WHERE $timeFilter '
            'GROUP BY time($__interval), "bridge" fill(none)')
    lay.add(timeseries("Points written /s", [target(rate.format(f="points_written"), alias=alias)],
                       field_config("wps")), w=8)
    lay.add(timeseries("Spool", [target(series_query("bridge", ["spool_points", "spool_dropped_points"], agg="last",
                                                     group=grp), alias=alias)],
                       field_config(thr=thresholds(steps=_count_steps("orange")), style="line")), w=8)
    lay.add(timeseries("Write latency", [target(series_query("bridge", ["write_latency_p50_ms", "write_latency_p99_ms"],
                                                             agg="max", group=grp), alias=alias)],
                       field_config("ms")), w=8)
    lay.add(timeseries("Dead letters", [target(series_query("bridge", ["dead_letters"], agg="last", group=grp),
                                               alias=alias)],
                       field_config(thr=thresholds(steps=_count_steps("red")), style="line")), w=8)
    lay.add(timeseries("Sequence gaps", [target(series_query("bridge", ["gaps_detected", "missing_now", "gaps_filled",
                                                                        "gaps_unrecoverable"], agg="last", group=grp),
                                                alias=alias)], field_config()), w=8)
    lay.add(timeseries("Inbox and duplicates", [target(series_query("bridge", ["inbox", "duplicates_seen"], agg="last",
                                                                    group=grp), alias=alias)], field_config()), w=8)
    lay.row("Twin (twin measurement, sim time)")
    lay.add(timeseries("Lag behind the sim clock and step time",
                       [target(series_query("twin", ["lag_s", "max_lag_s"], agg="max"), "A"),
                        target(series_query("twin", ["step_ms"], agg="max"), "B")],
                       field_config("s", overrides=[override("step_ms", unit="ms")])), w=8)
    lay.add(timeseries("MQTT published /s",
                       [target('SELECT non_negative_derivative(last("mqtt_published"), 1s) AS "mqtt_published" '
                               'FROM "twin" WHERE $timeFilter GROUP BY time($__interval) fill(none)')],
                       field_config("short")), w=8)
    lay.add(timeseries("MQTT outstanding and refused",
                       [target(series_query("twin", ["mqtt_outstanding", "mqtt_refused_queue_full"], agg="last"))],
                       field_config()), w=8)
    return dashboard("orbitwin-pipeline", "Orbitwin / Pipeline health", lay, tags=["pipeline"], annotations=[],
                     description="Twin and InfluxDB bridge counters: throughput, spool, drops, dead letters, gaps, lag")

"""The network dashboard (issue 15): the laser mesh, the routes to the gateways, traffic and city-pair latency.

Data: the network aggregates of the ``fleet`` summary (:data:`NET_FLEET_FIELDS`, one series per
run), the network fields of the fleet grid (:mod:`twin.schema.fleet_grid`: per 10 deg cell, the
satellites without a gateway route, their gateway delay, the largest link utilisation, the traffic
carried), the per-satellite ``net`` packet (:mod:`twin.schema.telemetry`: fields, units and limits
come from there) for the satellites chosen in ``$sat``, and the ``city_rtt`` measurement
(:data:`CITY_RTT`: one point per city pair and matrix) for the pairs of the city chosen in ``$city``.

Query cost (issue 12: every panel under a second over the whole fleet). No panel reads one series
per satellite or every city pair: measured on the shared 2-core machine (load ~8), a map of every
satellite's latest ``orbit`` and ``net`` points took 5.1 s, each per-satellite table 2.6-3.2 s, and
a table of the latest RTT of all 4,950 city pairs 1.5-2.3 s (their percentiles over an hour did not
answer in 30 s). The maps read the few hundred grid cells like the fleet overview's; the per
satellite and per city panels read the selected satellites' and the selected city's 99 pairs' series.
"""

from __future__ import annotations

from typing import Any

from dashboards.fleet import GRID_WINDOW_S, grid_latest_query
from dashboards.panels import (
    DS,
    Layout,
    dashboard,
    event_annotations,
    field,
    field_config,
    geomap,
    grafana_unit,
    override,
    sat_where,
    series_query,
    stat,
    table,
    target,
    thresholds,
    timeseries,
)
from dashboards.satellite import query_variable
from twin.schema import fleet_grid as grid
from twin.schema.telemetry import PACKET_FIELDS

NET = "net"  # the packet (and InfluxDB measurement) of the per-satellite network fields
NET_FIELDS = PACKET_FIELDS[NET]
# Network aggregates of the fleet summary (twin/runtime/status_table.py fleet_network; drift-tested against
# what the twin stores in tests/test_dashboard_network.py):
NET_FLEET_FIELDS = ("net_links_up", "net_partitioned", "net_overloaded_links", "net_gw_delay_p50_ms",
                    "net_gw_delay_p99_ms")
GRID_NET_FIELDS = ("no_route", "gw_delay_mean_ms", "gw_delay_max_ms", "link_util_max", "throughput_gbps")
CITY_RTT = "city_rtt"  # measurement (bridges/influx/line_protocol.py; drift-tested): one point per pair and matrix
CITY_RTT_TAGS = ("src", "dst")  # the two cities' names
CITY_RTT_FIELDS = ("rtt_ms", "stretch", "reachable")  # rtt_ms and stretch absent for a pair without a route
# The share of live satellites without a gateway route above which the partition alert fires (a setting).
# Measured nominal shares over one orbit (96 steps of 60 s, network on): the shipped fleet 6.2-6.7 %
# (mostly the ~810 satellites between shells, which have no laser links and reach a gateway only when
# one is in view), a single shell (332 satellites at 356 km, 43 deg; 1,360 at 540 km, 53.2 deg) 0-0.3 %.
PARTITION_ALERT_SHARE = 0.10
SAT_VAR_QUERY = f'SHOW TAG VALUES FROM "{NET}" WITH KEY = "sat" WHERE "run" = \'$run\''
CITY_VAR_QUERY = f'SHOW TAG VALUES FROM "{CITY_RTT}" WITH KEY IN ("src", "dst") WHERE "run" = \'$run\''
CITY_WHERE = '("src" =~ /^$city$/ OR "dst" =~ /^$city$/)'

assert set(GRID_NET_FIELDS) <= set(grid.GRID_FIELD_BY_NAME), "twin.schema.fleet_grid lacks the network fields"


def sat_variable() -> dict[str, Any]:
    """``$sat``: the run's satellites with a ``net`` packet, several at once, no "All" (a whole fleet's regex)."""
    v = query_variable("sat", "Satellites", SAT_VAR_QUERY, multi=True)
    v["includeAll"] = False
    return v


def city_variable() -> dict[str, Any]:
    """``$city``: one city of the run's latency matrices (its pairs with every other city)."""
    return query_variable("city", "City", CITY_VAR_QUERY)


def partition_share_query(where: str = "$timeFilter") -> str:
    """The share (0..1) of live satellites (``sats - lost``) without a gateway route, from the ``fleet`` point."""
    return (f'SELECT last("net_partitioned") / (last("sats") - last("lost")) AS "net_partitioned_share" '
            f'FROM "fleet" WHERE {where}')


def _fleet_last(name: str) -> str:
    return f'SELECT last("{name}") AS "{name}" FROM "fleet" WHERE $timeFilter'


def _count_steps(color: str) -> list[dict[str, Any]]:
    return [{"color": "green", "value": None}, {"color": color, "value": 1}]


def _continuous(unit: str, scheme: str = "continuous-GrYlRd") -> dict[str, Any]:
    """A field config coloured by value on a continuous scheme (no limits in the schema)."""
    fc = field_config(unit, minmax=(0, None))
    fc["defaults"]["color"] = {"mode": scheme}
    return fc


def _only(fld: str) -> list[dict[str, Any]]:
    """Keep the rows (grid cells) where ``fld`` > 0."""
    return [{"id": "filterByValue", "options": {"type": "include", "match": "any", "filters": [
        {"fieldName": fld, "config": {"id": "greater", "options": {"value": 0}}}]}}]


def _grid_map(title: str, fields: list[str], color: str, size: str, fc: dict[str, Any],
              description: str) -> dict[str, Any]:
    """A geomap of the fleet grid's cells holding ``size`` > 0, coloured by ``color``, sized by ``size``."""
    assert set(fields) <= set(grid.GRID_FIELD_BY_NAME) and {color, size} <= set(fields), fields
    p = geomap(title, [target(grid_latest_query(fields), "A", "table")], color, fc, transformations=_only(size),
               description=description + f" Cells of {grid.CELL_DEG} deg (fleet summary grid), the latest summary "
                                         f"in the last {GRID_WINDOW_S} s before the end of the time range.")
    p["options"]["layers"][0]["config"]["style"]["size"] = {"field": size, "fixed": 5, "min": 3, "max": 14}
    return p


def _per_sat(fields: list[str]) -> str:
    return series_query(NET, fields, sat_where(), group=', "sat"')


def network() -> dict[str, Any]:
    """The "Orbitwin / Network" dashboard."""
    lay = Layout()
    delay, util, thr = field("gw_delay_ms"), field("max_link_util"), field("throughput_gbps")
    g = grid.GRID_FIELD_BY_NAME
    assert g["gw_delay_mean_ms"].unit == delay.unit and g["link_util_max"].unit == util.unit
    assert g["throughput_gbps"].unit == thr.unit

    lay.row("Network state (fleet aggregates written by the twin)")
    lay.add(stat("Links up", [target(_fleet_last("net_links_up"))], field_config(color="fixed"),
                 description="Laser inter-satellite links up in the fleet now (each link counted once)"), w=4, h=4)
    lay.add(stat("No gateway route", [target(_fleet_last("net_partitioned"))],
                 field_config(thr=thresholds(steps=_count_steps("orange")), color="thresholds"),
                 description="Live satellites (not lost) with no route to any gateway in service"), w=4, h=4)
    share_steps: list[dict[str, Any]] = [{"color": "green", "value": None},
                                         {"color": "red", "value": PARTITION_ALERT_SHARE}]
    lay.add(stat("Share without a route", [target(partition_share_query())],
                 field_config("percentunit", thresholds(steps=share_steps), color="thresholds", decimals=1),
                 description="No-route satellites over live satellites; red at the partition alert's threshold "
                             f"({PARTITION_ALERT_SHARE:.0%})"), w=4, h=4)
    lay.add(stat("Overloaded links", [target(_fleet_last("net_overloaded_links"))],
                 field_config(thr=thresholds(steps=_count_steps("red")), color="thresholds"),
                 description="Links (laser and ground) whose offered load exceeds their capacity now"), w=4, h=4)
    for q in ("p50", "p99"):
        lay.add(stat(f"Gateway delay {q}", [target(_fleet_last(f"net_gw_delay_{q}_ms"))],
                     field_config(grafana_unit(delay), color="fixed", decimals=1),
                     description=f"{q} over the satellites with a route of the one-way delay to their nearest gateway"),
                w=4, h=4)
    lay.add(timeseries("Links up over time", [target(series_query("fleet", ["net_links_up"], agg="last"))],
                       field_config(),
                       description="Laser links up in the fleet: links go down with terminal failures, safe mode, "
                                   "load shedding, lost satellites, link outages, range and line of sight"), w=6)
    lay.add(timeseries("Satellites without a gateway route", [target(series_query("fleet", ["net_partitioned"],
                                                                                  agg="last"))],
                       field_config(thr=thresholds(steps=_count_steps("orange")), style="line"),
                       description="Live satellites cut off from every gateway (partition)"), w=6)
    lay.add(timeseries("Gateway delay p50 and p99",
                       [target(series_query("fleet", ["net_gw_delay_p50_ms", "net_gw_delay_p99_ms"], agg="max"))],
                       field_config(grafana_unit(delay)),
                       description="Median and 99th percentile over the satellites with a route (fleet summary)"), w=6)
    lay.add(timeseries("Overloaded links over time",
                       [target(series_query("fleet", ["net_overloaded_links"], agg="last"))],
                       field_config(thr=thresholds(steps=_count_steps("red")), style="line"),
                       description="Links whose offered load exceeds their capacity: reported, not hidden (loads are "
                                   "never clipped to capacity)"), w=6)

    lay.row("Where (fleet grid)")
    lay.add(_grid_map("One-way delay to the nearest gateway",
                      ["sats", "no_route", "gw_delay_mean_ms", "gw_delay_max_ms"], "gw_delay_mean_ms", "sats",
                      _continuous(grafana_unit(delay)) | {"overrides": [override(n, unit="none")
                                                                        for n in ("sats", "no_route")]},
                      f"Mean (and largest) {delay.description[0].lower()}{delay.description[1:]} of each cell's "
                      "routed satellites, sized by its satellites."), w=12, h=11)
    lay.add(_grid_map("Satellites without a gateway route, by cell", ["sats", "no_route"], "no_route", "no_route",
                      field_config(thr=thresholds(steps=[{"color": "orange", "value": None},
                                                         {"color": "red", "value": 5}]), color="thresholds"),
                      "Cells holding live satellites with no route to any gateway, sized and coloured by how many "
                      "(red from 5)."), w=12, h=11)
    lay.add(_grid_map("Largest link utilisation", ["sats", "link_util_max", "throughput_gbps"], "link_util_max",
                      "sats", field_config(grafana_unit(util), thresholds(util), color="thresholds",
                                           overrides=[override("throughput_gbps", unit=grafana_unit(thr)),
                                                      override("sats", unit="none")]),
                      f"The largest {util.name} of each cell's satellites, coloured by its limits (red: overloaded)."),
            w=12, h=11)
    lay.add(_grid_map("Traffic carried", ["sats", "throughput_gbps", "link_util_max"], "throughput_gbps", "sats",
                      _continuous(grafana_unit(thr), "continuous-BlPu") | {"overrides": [
                          override("link_util_max", unit=grafana_unit(util)), override("sats", unit="none")]},
                      f"{thr.name} summed over each cell's satellites (relayed traffic counts on every satellite it "
                      "crosses)."), w=12, h=11)
    cut = grid_latest_query(["sats", "no_route", "gw_delay_mean_ms"])
    t = table("Cells with satellites cut off (latest grid)", [target(cut, fmt="table")],
              field_config(overrides=[override("gw_delay_mean_ms", unit=grafana_unit(delay))]),
              description="Grid cells holding live satellites without a gateway route, most first",
              transformations=[*_only("no_route"), {"id": "sortBy", "options": {
                  "sort": [{"field": "no_route", "desc": True}]}}])
    t["options"]["sortBy"] = [{"displayName": "no_route", "desc": True}]
    lay.add(t, w=24, h=7)

    lay.row("Satellites ($sat)")
    alias = "$tag_sat $col"
    lay.add(timeseries("One-way delay to the nearest gateway ($sat)", [target(_per_sat([delay.name]), alias=alias)],
                       field_config(grafana_unit(delay)), description=delay.description), w=12)
    counts = ["links_up", "gateways_visible", "gw_hops"]
    assert set(counts) <= set(NET_FIELDS)
    lay.add(timeseries("Links, gateways in view and hops ($sat)", [target(_per_sat(counts), alias=alias)],
                       field_config(), description="; ".join(f"{n}: {field(n).description}" for n in counts)), w=12)
    lay.add(timeseries("Max link utilisation ($sat)", [target(_per_sat([util.name]), alias=alias)],
                       field_config(grafana_unit(util), thresholds(util), style="line+area"),
                       description=f"{util.description} (limits drawn)"), w=12)
    lay.add(timeseries("Throughput ($sat)", [target(_per_sat([thr.name]), alias=alias)],
                       field_config(grafana_unit(thr)), description=thr.description), w=12)

    lay.row("City pairs ($city)")
    src, dst = CITY_RTT_TAGS
    rtt, stretch, reachable = CITY_RTT_FIELDS
    pairs = (f'SELECT last("{rtt}") AS "{rtt}", last("{stretch}") AS "{stretch}", last("{reachable}") AS '
             f'"{reachable}" FROM "{CITY_RTT}" WHERE {CITY_WHERE} AND $timeFilter GROUP BY "{src}", "{dst}"')
    stretch_steps: list[dict[str, Any]] = [{"color": "green", "value": None}, {"color": "yellow", "value": 1.0}]
    tb = table("Round trips from $city (latest)", [target(pairs, fmt="table")],
               field_config("ms", overrides=[override(stretch, unit="none", decimals=2,
                                                      thresholds=thresholds(steps=stretch_steps),
                                                      custom_cellOptions={"type": "color-text"})]),
               description="Round-trip time over the mesh between $city and every other city, and its stretch "
                           "(RTT over the great-circle fibre RTT: below 1 the mesh beats fibre): the latest of each "
                           f"pair in the time range; {reachable}: whether the latest matrix had a route (when false, "
                           "the RTT shown is the last one the pair had)",
               transformations=[{"id": "sortBy", "options": {"sort": [{"field": rtt, "desc": False}]}}])
    tb["options"]["sortBy"] = [{"displayName": rtt, "desc": False}]
    lay.add(tb, w=12, h=10)
    heat = f'SELECT "{rtt}" FROM "{CITY_RTT}" WHERE {CITY_WHERE} AND $timeFilter'
    lay.add({"type": "heatmap", "title": "Round trips from $city over time", "datasource": DS,
             "description": "Distribution of the RTT of $city's pairs with a route, per matrix (every "
                            "network.city_matrix_interval_s of sim time)",
             "targets": [target(heat)], "fieldConfig": field_config("ms"),
             "options": {"calculate": True, "calculation": {"yBuckets": {"mode": "count", "value": "20"}},
                         "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                         "yAxis": {"unit": "ms"}, "cellGap": 1, "legend": {"show": True},
                         "tooltip": {"mode": "single", "yHistogram": True}}}, w=12, h=10)
    return dashboard("orbitwin-network", "Orbitwin / Network", lay, tags=["network"], annotations=event_annotations(),
                     variables=[sat_variable(), city_variable()],
                     description="Laser mesh, routes to the gateways, link utilisation, throughput, city-pair RTT")

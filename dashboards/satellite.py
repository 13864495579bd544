"""The satellite detail and HIL bench dashboards, generated field by field from the schema.

Satellite detail: one row per packet; enum fields as a state timeline, each limited field in
its own panel with the schema's yellow/red limits as thresholds, booleans as "samples true per
interval", the remaining fields grouped by unit. A "limits" row shows the latest value of every
limited field coloured by its limits.
"""

from __future__ import annotations

from typing import Any

from dashboards.panels import (
    DS,
    Layout,
    dashboard,
    event_annotations,
    field_config,
    grafana_unit,
    is_boolean,
    latest_per_sat_query,
    override,
    sat_where,
    series_query,
    stat,
    state_timeline,
    table,
    target,
    thresholds,
    timeseries,
    true_count_query,
    value_mappings,
)
from twin.schema.telemetry import FIELD_BY_NAME, FIELDS, LIMITED_FIELDS, PACKETS, Field

SAT_VAR_QUERY = 'SHOW TAG VALUES FROM "hk" WITH KEY = "sat" WHERE "run" = \'$run\''  # the run's satellites
HIL_VAR_QUERY = 'SHOW TAG VALUES FROM "events" WITH KEY = "sat" WHERE "kind" = \'hil\' AND "run" = \'$run\''


def query_variable(name: str, label: str, query: str, multi: bool = False) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DS, "query": query, "definition": query,
            "refresh": 1, "sort": 1, "multi": multi, "includeAll": multi, "regex": "", "hide": 0,
            "current": {}, "options": []}


def _minmax(f: Field) -> tuple[float | None, float | None] | None:
    return (0, 1) if f.unit == "1" else None


def limited_panel(f: Field, where: str, title: str | None = None) -> dict[str, Any]:
    """A time series of one limited field with its limits drawn (booleans: samples true per interval)."""
    q = true_count_query(f.packet, f.name, where) if is_boolean(f) else series_query(f.packet, [f.name], where)
    unit = "none" if is_boolean(f) else grafana_unit(f)
    return timeseries(title or f"{f.name} ({f.packet})", [target(q)],
                      field_config(unit, thresholds(f), style="line+area", minmax=_minmax(f)), description=f.description)


def _limit_stat(f: Field, where: str) -> dict[str, Any]:
    q = true_count_query(f.packet, f.name, where) if is_boolean(f) else series_query(f.packet, [f.name], where)
    unit = "none" if is_boolean(f) else grafana_unit(f)
    return stat(f.name, [target(q)], field_config(unit, thresholds(f), color="thresholds"), description=f.description)


def packet_panels(lay: Layout, packet: str, where: str) -> None:
    """Every field of a packet, grouped as described in the module docstring."""
    fields = [f for f in FIELDS if f.packet == packet]
    enums = [f for f in fields if f.enum]
    if enums:
        q = series_query(packet, [f.name for f in enums], where, agg="last")
        lay.add(state_timeline(f"{packet}: states", [target(q)],
                               field_config(overrides=[override(f.name, mappings=value_mappings(f.enum))
                                                       for f in enums if f.enum])), w=24, h=5)
    for f in fields:
        if f.limits is not None:
            lay.add(limited_panel(f, where), w=8)
    bools = [f for f in fields if is_boolean(f) and f.limits is None]
    for f in bools:
        lay.add(timeseries(f"{f.name} (samples true)", [target(true_count_query(packet, f.name, where))],
                           field_config(), description=f.description), w=8)
    groups: dict[str, list[Field]] = {}
    for f in fields:
        if not f.enum and f.limits is None and not is_boolean(f):
            groups.setdefault(f.unit, []).append(f)
    for unit, fs in groups.items():
        title = f"{packet}: " + (", ".join(f.name for f in fs) if len(fs) <= 3 else f"{len(fs)} fields in {unit or 'counts'}")
        lay.add(timeseries(title, [target(series_query(packet, [f.name for f in fs], where))],
                           field_config(grafana_unit(fs[0]), minmax=_minmax(fs[0])),
                           description="; ".join(f"{f.name}: {f.description}" for f in fs)), w=8)


def satellite_detail() -> dict[str, Any]:
    lay = Layout()
    where = sat_where()
    lay.row("Limits: latest value of every limited field")
    for f in LIMITED_FIELDS:
        lay.add(_limit_stat(f, where), w=4, h=4)
    for p in PACKETS:
        lay.row(f"{p.name}: {p.description}")
        packet_panels(lay, p.name, where)
    lay.row("Events")
    ev = (f'SELECT "kind", "severity", "name", "detail" FROM "events" WHERE {where} AND $timeFilter '
          "ORDER BY time DESC LIMIT 500")
    lay.add(table("Events of $sat", [target(ev, fmt="table")]), w=24, h=8)
    return dashboard("orbitwin-satellite", "Orbitwin / Satellite detail", lay, tags=["satellite"],
                     annotations=event_annotations(where),
                     variables=[query_variable("sat", "Satellite", SAT_VAR_QUERY)],
                     description="Every telemetry field of one satellite with the schema's limits")


def hil_bench() -> dict[str, Any]:
    """Boards bound to satellites: source, divergence from the twin's command, payload health, HIL events."""
    lay = Layout()
    where = sat_where("hil_sat")
    src = FIELD_BY_NAME["payload_source"]
    lay.row("Boards now")
    now_q = latest_per_sat_query("payload", {"payload_source": "payload_source",
                                             "payload_throughput_tops": "payload_throughput_tops",
                                             "devices_latched": "devices_latched"}, f'{where} AND "payload_source" > 0')
    lay.add(table("Satellites with a board (latest payload packet)", [target(now_q, fmt="table")],
                  field_config(overrides=[override("payload_source", mappings=value_mappings(src.enum or {}))]),
                  description="Among the satellites with HIL events ($hil_sat): the tag index narrows the query to "
                              "their series instead of every satellite's (the fleet count is fleet.boards)"),
            w=12, h=8)
    hil_ev = ('SELECT "sat", "name", "severity", "detail" FROM "events" WHERE "kind" = \'hil\' AND $timeFilter '
              "ORDER BY time DESC LIMIT 500")
    lay.add(table("HIL events (bind, link lost, held, divergence)", [target(hil_ev, fmt="table")]), w=12, h=8)
    lay.row("Board satellites ($hil_sat)")
    lay.add(state_timeline("Payload source", [target(series_query("payload", ["payload_source"], where, agg="last",
                                                                  group=', "sat"'), alias="$tag_sat")],
                           field_config(mappings=value_mappings(src.enum or {}))), w=24, h=5)
    div = FIELD_BY_NAME.get("hil_divergence")
    if div is not None:
        lay.add(limited_panel(div, where, "Divergence from the commanded load (samples true)"), w=8)
    lay.add(timeseries("Measured utilisation (hk) vs commanded load and throttle (payload)",
                       [target(series_query("hk", ["payload_util"], where), "A"),
                        target(series_query("payload", ["payload_load_setpoint", "payload_throttle"], where), "B")],
                       field_config("percentunit", minmax=(0, 1))), w=8)
    lay.add(timeseries("Throughput", [target(series_query("payload", ["payload_throughput_tops"], where))],
                       field_config(grafana_unit(FIELD_BY_NAME["payload_throughput_tops"]))), w=8)
    for name in ("devices_latched", "payload_hung"):
        lay.add(limited_panel(FIELD_BY_NAME[name], where), w=8)
    lay.add(timeseries("ECC errors reported by the board",
                       [target(series_query("payload", ["ecc_corrected_total", "ecc_uncorrectable_total"], where))],
                       field_config()), w=8)
    return dashboard("orbitwin-hil", "Orbitwin / HIL bench", lay, tags=["hil"],
                     annotations=event_annotations(where),
                     variables=[query_variable("hil_sat", "Board satellite", HIL_VAR_QUERY, multi=True)],
                     description="Hardware-in-the-loop boards: empty until a board is bound (orbitwin bridge serial)")

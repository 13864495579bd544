"""Building blocks of the generated Grafana dashboards: datasource, units, thresholds, panels, layout.

Everything about a telemetry field (unit, limits, enum labels) comes from :mod:`twin.schema.telemetry`;
the queries follow the InfluxDB schema of :mod:`bridges.influx.line_protocol` (a measurement per
packet with the ``sat`` tag; ``events``; ``fleet``; ``twin``; ``bridge``; ``runs``; every point
tagged ``run``).

Runs: every dashboard has the variable ``$run`` (the runs in the ``runs`` measurement, newest
first, so it defaults to the latest run) and :func:`dashboard` scopes every panel and annotation
query to it (:func:`run_scoped`). Every dashboard opens with a "Runs" table whose rows link to
the same dashboard on that run and its sim window (sim time is not wall time at ``xN`` or with
``--start``).
"""

from __future__ import annotations

from typing import Any

from twin.schema import dose_regions
from twin.schema.codec import codec
from twin.schema.telemetry import FIELD_BY_NAME, PACKET_BY_NAME, Field, Limits

DS_UID = "orbitwin-influx"
DS: dict[str, str] = {"type": "influxdb", "uid": DS_UID}
SCHEMA_VERSION_GRAFANA = 39  # dashboard JSON schemaVersion of Grafana 11

# schema unit -> Grafana unit id ("1" fields are all fractions 0..1 in this schema)
UNITS: dict[str, str] = {
    "K": "kelvin", "W": "watt", "V": "volt", "A": "amp", "m": "lengthm", "deg": "degree",
    "1": "percentunit", "m/s": "velocityms", "TOPS": "suffix: TOPS", "TOP": "suffix: TOP",
    "rad(Si)/s": "suffix: rad(Si)/s", "rad(Si)": "suffix: rad(Si)", "1/(cm2 s)": "suffix: /cm²/s", "": "none",
    "ms": "ms", "Gbps": "Gbits",
}

# Fleet aggregates written by the twin (``fleet`` measurement = twin.status_view.fleet_summary + tick).
FLEET_STATES = ("nominal", "yellow", "red", "safe", "lost")
STATE_COLORS = {"nominal": "green", "yellow": "yellow", "red": "red", "safe": "orange", "lost": "purple"}
FLEET_FIELDS = ("sats", *FLEET_STATES, "sunlit", "in_saa", "array_power_mw", "payload_power_mw",
                "throughput_eops", "mean_soc", "latched", "boards", "tick", *dose_regions.SUMMARY_FIELDS)

# A "latest position" query looks back this many packet periods (never less than MIN_WINDOW_S):
# one period holds exactly one packet per satellite; the second absorbs ingest latency.
WINDOW_PERIODS = 2
MIN_WINDOW_S = 10


def grafana_unit(field: Field) -> str:
    """The Grafana unit of a schema field (raises on a unit nobody mapped: add it to UNITS)."""
    return UNITS[field.unit]


def window_s(packet: str) -> int:
    """Look-back in seconds that holds the latest packet of every satellite."""
    period = 1.0 / PACKET_BY_NAME[packet].rate_hz
    return int(max(MIN_WINDOW_S, round(WINDOW_PERIODS * period)))


def threshold_steps(lim: Limits) -> list[dict[str, Any]]:
    """Grafana absolute threshold steps of yellow/red limits (a value >= step.value takes its colour)."""
    base = "red" if lim.red_low is not None else "yellow" if lim.yellow_low is not None else "green"
    steps: list[dict[str, Any]] = [{"color": base, "value": None}]
    if lim.red_low is not None:
        steps.append({"color": "yellow" if lim.yellow_low is not None else "green", "value": lim.red_low})
    if lim.yellow_low is not None:
        steps.append({"color": "green", "value": lim.yellow_low})
    if lim.yellow_high is not None and lim.yellow_high != lim.red_high:
        steps.append({"color": "yellow", "value": lim.yellow_high})
    if lim.red_high is not None:
        steps.append({"color": "red", "value": lim.red_high})
    return steps


def thresholds(field: Field | None = None, steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A thresholds object from a field's limits (green only without limits) or explicit steps."""
    if steps is None:
        steps = threshold_steps(field.limits) if field is not None and field.limits else [{"color": "green", "value": None}]
    return {"mode": "absolute", "steps": steps}


ENUM_COLORS = {"nominal": "green", "safe": "orange", "lost": "purple", "green": "green", "yellow": "yellow",
               "red": "red", "simulated": "blue", "board": "green", "board_lost_fallback": "red", "board_held": "yellow"}


def value_mappings(enum: dict[int, str]) -> list[dict[str, Any]]:
    """Grafana value mappings of an enum field (state names keep their natural colour)."""
    return [{"type": "value", "options": {str(k): {"text": v, "index": i, "color": ENUM_COLORS.get(v, "text")}
                                          for i, (k, v) in enumerate(sorted(enum.items()))}}]


def target(query: str, ref: str = "A", fmt: str = "time_series", alias: str | None = None) -> dict[str, Any]:
    """A raw InfluxQL query target."""
    t: dict[str, Any] = {"refId": ref, "datasource": DS, "query": query, "rawQuery": True, "resultFormat": fmt}
    if alias:
        t["alias"] = alias
    return t


def sat_where(var: str = "sat") -> str:
    return f'"sat" =~ /^${var}$/'


def is_boolean(f: Field) -> bool:
    """The field is an InfluxDB boolean (:mod:`twin.schema.codec`): InfluxQL can count it, not average it."""
    return codec(f).line_kind == "boolean"


def agg_of(name: str) -> str:
    """Per-interval aggregate of a field: mean of floats, last of integers (bit masks, counters)."""
    f = FIELD_BY_NAME.get(name)
    return "mean" if f is None or codec(f).line_kind == "float" else "last"


def series_query(measurement: str, fields: list[str], where: str = "", agg: str | None = None,
                 group: str = "") -> str:
    """Per-interval aggregate of fields over the dashboard's time range."""
    cols = ", ".join(f'{agg or agg_of(f)}("{f}") AS "{f}"' for f in fields)
    cond = f"{where} AND " if where else ""
    return (f'SELECT {cols} FROM "{measurement}" WHERE {cond}$timeFilter '
            f"GROUP BY time($__interval){group} fill(none)")


def true_count_query(measurement: str, field: str, where: str = "") -> str:
    """Samples per interval where a boolean field is true (booleans cannot be averaged in InfluxQL)."""
    cond = f"{where} AND " if where else ""
    return (f'SELECT count("{field}") AS "{field}" FROM "{measurement}" WHERE {cond}"{field}" = true AND '
            f"$timeFilter GROUP BY time($__interval) fill(0)")


def latest_per_sat_query(measurement: str, fields: dict[str, str], where: str = "") -> str:
    """Last value per satellite in a short window ending at the dashboard's end time (``$__to``).

    One packet period or two instead of the whole range: with 10,000 satellites this reads
    ~10,000-20,000 points instead of millions, still one series per satellite.
    """
    cols = ", ".join(f'last("{f}") AS "{a}"' for f, a in fields.items())
    cond = f"{where} AND " if where else ""
    return (f'SELECT {cols} FROM "{measurement}" WHERE {cond}time > ${{__to}}ms - {window_s(measurement)}s '
            f'AND time <= ${{__to}}ms GROUP BY "sat"')


RUN_VAR = "run"
RUN_WHERE = "\"run\" = '$run'"
RUNS_TABLE_QUERY = ('SELECT last("sim_start_ms") AS "sim_start_ms", last("sim_latest_ms") AS "sim_latest_ms", '
                    'last("wall_start_ms") AS "wall_start_ms", last("sats") AS "sats", last("speed") AS "speed" '
                    'FROM "runs" GROUP BY "run"')
RUN_VAR_QUERY = 'SHOW TAG VALUES FROM "runs" WITH KEY = "run"'
RUNS_TABLE_H = 5


def run_scoped(query: str) -> str:
    """``query`` restricted to the dashboard's run (``"run" = '$run'`` first in its WHERE clause).

    The ``runs`` table lists every run and stays unscoped; any other query must have a WHERE clause.
    """
    if query == RUNS_TABLE_QUERY or RUN_WHERE in query:
        return query
    head, sep, tail = query.partition(" WHERE ")
    if not sep:
        raise ValueError(f"a dashboard query without a WHERE clause cannot be scoped to the run: {query}")
    return f"{head} WHERE {RUN_WHERE} AND {tail}"


def run_variable() -> dict[str, Any]:
    """``$run``: the runs stored, numerically descending (run ids grow with their start), so the latest is the default."""
    return {"name": RUN_VAR, "label": "Run", "type": "query", "datasource": DS, "query": RUN_VAR_QUERY,
            "definition": RUN_VAR_QUERY, "refresh": 2, "sort": 4, "multi": False, "includeAll": False, "regex": "",
            "hide": 0, "current": {}, "options": [],
            "description": "Twin run (newest first); the Runs table opens a run on its sim window"}


def runs_table(uid: str) -> dict[str, Any]:
    """Every run with its sim window; a row's link opens dashboard ``uid`` on that run and window."""
    # .numeric: the number behind the formatted (ISO time) cell
    link = (f"/d/{uid}/?var-run=${{__data.fields.run}}&from=${{__data.fields.sim_start_ms.numeric}}"
            f"&to=${{__data.fields.sim_latest_ms.numeric}}")
    times = [override(name, unit="dateTimeAsIso") for name in ("sim_start_ms", "sim_latest_ms", "wall_start_ms")]
    fc = field_config(overrides=[*times, override("run", links=[{"title": "Open this run on its sim window",
                                                                 "url": link}])])
    t = table("Runs (newest first): click a run to open it on its sim window", [target(RUNS_TABLE_QUERY, fmt="table")],
              fc, description="One row per twin run (the runs measurement the InfluxDB bridge writes): sim start, "
                              "latest sim time, wall-clock start, satellites, measured speed (sim s per wall s). "
                              "The dashboard's time range is wall-clock time; a run paced faster than real time, or "
                              "started with --start, lies elsewhere in time: open it from here.")
    t["options"]["sortBy"] = [{"displayName": "run", "desc": True}]
    return t


def field_config(unit: str = "none", thr: dict[str, Any] | None = None, *, style: str | None = None,
                 mappings: list[dict[str, Any]] | None = None, color: str | None = None,
                 overrides: list[dict[str, Any]] | None = None, decimals: int | None = None,
                 minmax: tuple[float | None, float | None] | None = None) -> dict[str, Any]:
    """``fieldConfig`` with unit, thresholds, optional threshold drawing style and value mappings."""
    d: dict[str, Any] = {"unit": unit, "thresholds": thr or thresholds(),
                         "color": {"mode": "thresholds" if color == "thresholds" else "palette-classic"}
                         if color != "fixed" else {"mode": "fixed", "fixedColor": "blue"},
                         "mappings": mappings or []}
    if style:
        d["custom"] = {"thresholdsStyle": {"mode": style}}
    if decimals is not None:
        d["decimals"] = decimals
    if minmax is not None:
        lo, hi = minmax
        if lo is not None:
            d["min"] = lo
        if hi is not None:
            d["max"] = hi
    return {"defaults": d, "overrides": overrides or []}


def override(name: str, **props: Any) -> dict[str, Any]:
    """A by-name field override (property ids as keyword names, e.g. unit=..., thresholds=...)."""
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": k.replace("_", "."), "value": v} for k, v in props.items()]}


def timeseries(title: str, targets: list[dict[str, Any]], fc: dict[str, Any], description: str = "",
               stack: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {
        "type": "timeseries", "title": title, "description": description, "datasource": DS, "targets": targets,
        "fieldConfig": fc,
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}}}
    if stack:
        p["fieldConfig"]["defaults"].setdefault("custom", {})["stacking"] = {"mode": "normal", "group": "A"}
    return p


def stat(title: str, targets: list[dict[str, Any]], fc: dict[str, Any], description: str = "",
         calc: str = "lastNotNull", color_mode: str = "background") -> dict[str, Any]:
    return {"type": "stat", "title": title, "description": description, "datasource": DS, "targets": targets,
            "fieldConfig": fc,
            "options": {"reduceOptions": {"calcs": [calc], "fields": "", "values": False},
                        "colorMode": color_mode, "graphMode": "area", "justifyMode": "auto",
                        "textMode": "auto", "orientation": "auto"}}


def state_timeline(title: str, targets: list[dict[str, Any]], fc: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"type": "state-timeline", "title": title, "description": description, "datasource": DS,
            "targets": targets, "fieldConfig": fc,
            "options": {"showValue": "auto", "mergeValues": True, "rowHeight": 0.8,
                        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}}


def table(title: str, targets: list[dict[str, Any]], fc: dict[str, Any] | None = None, description: str = "",
          transformations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "table", "title": title, "description": description, "datasource": DS, "targets": targets,
            "fieldConfig": fc or field_config(), "options": {"showHeader": True, "cellHeight": "sm"},
            "transformations": transformations or []}


def geomap(title: str, targets: list[dict[str, Any]], color_field: str, fc: dict[str, Any], description: str = "",
           transformations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Markers at ``lat``/``lon`` coloured by ``color_field`` (its thresholds)."""
    layer = {"type": "markers", "name": "Satellites", "tooltip": True,
             "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
             "config": {"showLegend": True,
                        "style": {"color": {"field": color_field, "fixed": "dark-green"}, "opacity": 0.8,
                                  "size": {"fixed": 4}, "symbol": {"fixed": "img/icons/marker/circle.svg",
                                                                     "mode": "fixed"}}}}
    return {"type": "geomap", "title": title, "description": description, "datasource": DS, "targets": targets,
            "fieldConfig": fc, "transformations": transformations or [],
            "options": {"view": {"id": "zero", "lat": 0, "lon": 0, "zoom": 1, "allLayers": True},
                        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
                        "basemap": {"type": "default", "name": "Basemap"}, "layers": [layer],
                        "tooltip": {"mode": "details"}}}


def join_by_sat() -> list[dict[str, Any]]:
    """Join per-satellite tables (e.g. position and state) on the ``sat`` tag column."""
    return [{"id": "joinByField", "options": {"byField": "sat", "mode": "inner"}}]


class Layout:
    """Assigns unique panel ids and flows panels left to right on the 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = self.row_h = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "id": self.next_id, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.next_id += 1
        self.y += 1

    def add(self, panel: dict[str, Any], w: int = 12, h: int = 8) -> dict[str, Any]:
        if self.x + w > 24:
            self._newline()
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)
        return panel

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x = self.row_h = 0


def annotation(name: str, query: str, color: str, enable: bool = True) -> dict[str, Any]:
    """An InfluxQL annotation of ``events`` rows (title = event name, text = detail JSON)."""
    return {"name": name, "datasource": DS, "enable": enable, "hide": False, "iconColor": color,
            "query": query, "target": {"refId": "Anno", "query": query, "rawQuery": True},
            "titleColumn": "name", "textColumn": "detail", "tagsColumn": "sat,kind,severity"}


def events_query(kinds: tuple[str, ...], where: str = "", limit: int = 1000) -> str:
    """Events of some kinds in the time range, newest first, capped (a fleet fault storm stays readable)."""
    kind = " OR ".join(f"\"kind\" = '{k}'" for k in kinds)
    cond = f"{where} AND " if where else ""
    return (f'SELECT "name", "detail", "sat", "kind", "severity" FROM "events" WHERE {cond}({kind}) AND $timeFilter '
            f"ORDER BY time DESC LIMIT {limit}")


def event_annotations(where: str = "") -> list[dict[str, Any]]:
    """Fault injections, commands and FDIR actions (and HIL board events) as dashboard annotations."""
    return [annotation("Faults", events_query(("fault",), where), "red"),
            annotation("Commands", events_query(("command",), where), "blue"),
            annotation("FDIR", events_query(("fdir",), where), "orange"),
            annotation("HIL", events_query(("hil",), where), "purple", enable=False)]


def dashboard(uid: str, title: str, layout: Layout, *, tags: list[str], annotations: list[dict[str, Any]],
              variables: list[dict[str, Any]] | None = None, refresh: str = "10s", time_from: str = "now-1h",
              description: str = "") -> dict[str, Any]:
    """The dashboard JSON: a "Runs" table on top, ``$run`` first among the variables, every query scoped to it."""
    runs = runs_table(uid)
    runs["id"] = layout.next_id
    runs["gridPos"] = {"h": RUNS_TABLE_H, "w": 24, "x": 0, "y": 0}
    panels = [runs]
    for p in layout.panels:
        p["gridPos"] = {**p["gridPos"], "y": p["gridPos"]["y"] + RUNS_TABLE_H}
        for t in p.get("targets", []):
            t["query"] = run_scoped(t["query"])
        panels.append(p)
    for a in annotations:
        a["query"] = a["target"]["query"] = run_scoped(a["query"])
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
               "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}
    return {"uid": uid, "title": title, "description": description, "tags": ["orbitwin", *tags],
            "timezone": "utc", "editable": True, "graphTooltip": 1, "refresh": refresh,
            "schemaVersion": SCHEMA_VERSION_GRAFANA, "version": 1, "time": {"from": time_from, "to": "now"},
            "annotations": {"list": [builtin, *annotations]}, "templating": {"list": [run_variable(), *(variables or [])]},
            "links": [{"type": "dashboards", "tags": ["orbitwin"], "asDropdown": True, "title": "Orbitwin",
                       "includeVars": True, "keepTime": True}],
            "panels": panels}


def field(name: str) -> Field:
    return FIELD_BY_NAME[name]

"""Grafana 11 alert rules (file provisioning), contact point and notification policy, from the schema.

Per-satellite rules: one per red limit side of every limited field. Their InfluxQL takes each
satellite's latest sample per run (``last()`` grouped by ``sat`` and ``run``) and keeps it only
when it is beyond the limit (``WHERE field > red_high`` around that subquery), so Grafana gets a
series (an alert instance, labelled ``sat`` and ``run``) only for satellites in alarm now, not
10,000 instances per rule. No alarm means no series: ``noDataState: OK``.

Sim time and the window. Points carry sim time; Grafana evaluates ``now()`` on the wall clock.
A paced run starts its sim clock at the wall clock (``orbitwin run`` without ``--start``), so
at ``xN`` its sim time runs ahead of the wall clock. InfluxDB 1.x gives a query with only a
lower time bound and no ``GROUP BY time()`` no upper bound (checked on influxd 1.6.7:
``time > now() - 60s`` returns points an hour in the future), so ``time > now() - Ns`` holds
the latest samples of every run whose sim clock is at or ahead of the wall clock, whatever its
speed, and ``last()`` picks them. A run whose sim time lies in the past (``--speed max`` at
the catalogue epoch, or ``--start`` in the past) is not evaluated. Cost: InfluxDB answers
``last()`` without ``GROUP BY time()`` from each series' newest point, not from every point in
the window, so the cost follows the series, not the run's speed (influxd 1.6.7 on the shared
2-core machine, 10,000 series with 100 points each ahead of now: 1.5 s for ``last()``, 1.6 s as
the rule's subquery, 4.2 s for ``count()`` over the same points). A run that ended ahead of the
wall clock keeps its last samples in the window until the wall clock passes them: its alerts
carry its ``run`` label.

Fleet rules read the ``fleet`` aggregates the twin writes every tick (one series per run); so do
the network and compute rules.
Queries carry their own ``time > now() - Ns`` and no ``$`` at all: Grafana interpolates
environment variables in provisioned alerting files (labels, queries), and annotations use
``{{ $labels.sat }}``, which it leaves alone.
"""

from __future__ import annotations

from typing import Any

from dashboards.compute import (ALERT_WINDOW_S, COMPUTE_BATTERY_ALERT_W_PER_SAT, DEADLINE_MISS_ALERT_PER_H,
                                battery_power_query, deadline_miss_rate_query)
from dashboards.network import PARTITION_ALERT_SHARE, partition_share_query
from dashboards.panels import DS_UID, is_boolean, window_s
from twin.schema.telemetry import LIMITED_FIELDS, Field

# One folder for the dashboards and the alert rules. File provisioning names it by title on both sides:
# alerting files take only a folder title (Grafana 11 looks it up or creates it, with a generated uid) and
# are provisioned before the dashboards, so a dashboards provider with its own folderUid would create a
# second "Orbitwin" folder (grafana/grafana#125079); a provider with the title alone finds the first.
# `orbitwin dashboards push` creates the folder with FOLDER_UID and puts everything in it by uid.
FOLDER = "Orbitwin"
FOLDER_UID = "orbitwin"
INTERVAL = "30s"
MIN_RULE_WINDOW_S = 30
CONTACT_POINT = "orbitwin-grafana-bridge"
WEBHOOK_URL = "http://grafana-bridge:8090/grafana/webhook"
EXPR = {"type": "__expr__", "uid": "__expr__"}
# the schema limits (twin.schema.telemetry.Limits names) that get a Grafana rule: comparison, threshold type, reducer
_RULE_SIDES = {"red_high": (">", "gt", "max"), "red_low": ("<", "lt", "min")}
RULE_LIMITS = tuple(_RULE_SIDES)
UID_MAX = 40  # Grafana's longest rule uid
NET_PARTITION_UID = "orbitwin-net-partition"
NET_OVERLOAD_UID = "orbitwin-net-overload"
COMPUTE_MISSES_UID = "orbitwin-compute-deadline-misses"
COMPUTE_BATTERY_UID = "orbitwin-compute-battery"

SERVICE_LABEL = {"service": "orbitwin"}  # every rule carries it; the notification route matches on it


def limit_rule_uid(field: str, limit: str) -> str:
    """The alert rule uid of a field's limit: ``orbitwin-{field}-{red-high}`` (``limit`` a :class:`Limits` name).

    Grafana has rules for :data:`RULE_LIMITS`; the alert-action table's conditions use the same
    scheme for any limit, so a rule matches one uid whichever source raises the alert.
    """
    return f"orbitwin-{field}-{limit.replace('_', '-')}"[:UID_MAX]


def limit_rule_title(field: str, limit: str) -> str:
    """The alert rule title (Grafana's label ``alertname``) of a field's limit: ``payload_temp_k red high``."""
    return f"{field} {limit.replace('_', ' ')}"


def _data(query: str, window: int, reducer: str, op: str, value: float) -> list[dict[str, Any]]:
    """Query A (InfluxQL) -> B = reduce(A) -> C = threshold(B) (the condition)."""
    return [
        {"refId": "A", "relativeTimeRange": {"from": window, "to": 0}, "datasourceUid": DS_UID,
         "model": {"refId": "A", "query": query, "rawQuery": True, "resultFormat": "time_series",
                   "intervalMs": 1000, "maxDataPoints": 43200}},
        {"refId": "B", "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": "__expr__",
         "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": reducer,
                   "settings": {"mode": "dropNN"}, "datasource": EXPR}},
        {"refId": "C", "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": "__expr__",
         "model": {"refId": "C", "type": "threshold", "expression": "B",
                   "conditions": [{"evaluator": {"type": op, "params": [value]}}], "datasource": EXPR}},
    ]


def _rule(uid: str, title: str, data: list[dict[str, Any]], *, severity: str, scope: str, summary: str,
          description: str, no_data: str = "OK", for_: str = "30s") -> dict[str, Any]:
    return {"uid": uid, "title": title, "condition": "C", "data": data, "noDataState": no_data,
            "execErrState": "Error", "for": for_, "isPaused": False,
            "labels": {"severity": severity, "scope": scope, **SERVICE_LABEL},
            "annotations": {"summary": summary, "description": description}}


def limit_rules(f: Field) -> list[dict[str, Any]]:
    """Red-limit rules of one field (per satellite)."""
    lim = f.limits
    assert lim is not None
    window = max(MIN_RULE_WINDOW_S, window_s(f.packet))
    out = []
    for limit, (cmp, op, agg) in _RULE_SIDES.items():
        value = getattr(lim, limit)
        if value is None:
            continue
        if is_boolean(f):
            select, cond, agg, op = f'count("{f.name}")', f'"{f.name}" = true', "count", "gt"
        else:
            select, cond = f'{agg}("{f.name}")', f'"{f.name}" {cmp} {value!r}'
        latest = (f'SELECT last("{f.name}") AS "{f.name}" FROM "{f.packet}" WHERE time > now() - {window}s '
                  f'GROUP BY "sat", "run"')
        q = f'SELECT {select} AS "{f.name}" FROM ({latest}) WHERE {cond} GROUP BY "sat", "run"'
        what = "true" if is_boolean(f) else f"{cmp} {value:g} {f.unit}".rstrip()
        side = limit.removeprefix("red_")
        out.append(_rule(
            limit_rule_uid(f.name, limit), limit_rule_title(f.name, limit),
            _data(q, window, agg if agg != "count" else "max", op, value), severity="critical", scope="satellite",
            summary=f"{{{{ $labels.sat }}}}: {f.name} {what} (red {side} limit, run {{{{ $labels.run }}}})",
            description=f"{f.description} ({f.packet} packet) crossed its red {side} limit {value:g} {f.unit}; "
                        f"value {{{{ $values.B }}}}."))
    return out


def fleet_rules() -> list[dict[str, Any]]:
    """Rules on the fleet aggregates and the pipeline's own counters (one series each)."""
    def last(meas: str, fld: str, window: int = 60, agg: str = "last", group: str = ' GROUP BY "run"') -> str:
        return f'SELECT {agg}("{fld}") AS "{fld}" FROM "{meas}" WHERE time > now() - {window}s{group}'

    return [
        _rule("orbitwin-fleet-red", "Fleet: satellites at a red limit", _data(last("fleet", "red"), 60, "last", "gt", 0),
              severity="critical", scope="fleet", summary="Run {{ $labels.run }}: {{ $values.B }} satellites at a red limit",
              description="fleet.red > 0: see the per-satellite limit alerts and the fleet overview.", no_data="NoData"),
        _rule("orbitwin-fleet-latched", "Fleet: satellites with latched devices",
              _data(last("fleet", "latched"), 60, "last", "gt", 0), severity="warning", scope="fleet",
              summary="{{ $values.B }} satellites with a device in latch-up", description="fleet.latched > 0."),
        _rule("orbitwin-fleet-safe", "Fleet: satellites in safe mode", _data(last("fleet", "safe"), 60, "last", "gt", 0),
              severity="warning", scope="fleet", summary="{{ $values.B }} satellites in safe mode",
              description="fleet.safe > 0: FDIR put satellites in safe mode."),
        _rule("orbitwin-fleet-silent", "Fleet telemetry silent",
              _data(last("fleet", "sats", 60, "count", ""), 60, "last", "lt", 1), severity="critical", scope="pipeline",
              summary="No fleet summary stored for 60 s", no_data="Alerting", for_="1m",
              description="Twin, broker, bridge or InfluxDB down: no fleet point in the last minute."),
        _rule("orbitwin-bridge-spool", "Bridge spooling (InfluxDB writes failing)",
              _data(last("bridge", "spool_points", 120, group=' GROUP BY "bridge"'), 120, "last", "gt", 0),
              severity="warning", scope="pipeline", summary="{{ $labels.bridge }}: {{ $values.B }} points spooled",
              description="The bridge cannot write to InfluxDB and spools to disk.", for_="1m"),
        _rule("orbitwin-bridge-dead-letters", "Bridge dead letters increasing",
              _data(last("bridge", "dead_letters", 300, "spread", ' GROUP BY "bridge"'), 300, "last", "gt", 0),
              severity="warning", scope="pipeline", summary="{{ $labels.bridge }}: {{ $values.B }} new dead letters",
              description="Messages or points that cannot be stored went to the dead-letter file (5 min).",
              for_="0s"),
        _rule("orbitwin-bridge-gaps-lost", "Bridge: telemetry lost for good",
              _data(last("bridge", "gaps_unrecoverable", 300, "spread", ' GROUP BY "bridge"'), 300, "last", "gt", 0),
              severity="warning", scope="pipeline", summary="{{ $labels.bridge }}: {{ $values.B }} messages unrecoverable",
              description="Sequence gaps the twin's replay buffer could not fill (5 min).", for_="0s"),
        _rule("orbitwin-twin-lag", "Twin lagging behind its clock", _data(last("twin", "lag_s", 120, "max"), 120, "max",
                                                                          "gt", 5.0),
              severity="warning", scope="pipeline", summary="Twin {{ $values.B }} s behind",
              description="The twin cannot step as fast as its --speed asks.", for_="1m"),
    ]


def network_rules() -> list[dict[str, Any]]:
    """Rules on the network aggregates of the ``fleet`` point (one series per run; :mod:`dashboards.network`).

    Partition: the share of live satellites with no route to any gateway above
    :data:`~dashboards.network.PARTITION_ALERT_SHARE` (a full fleet has some nominally: satellites
    between shells have no laser links). Overload: any link whose offered load exceeds its capacity
    (``net_overloaded_links`` > 0; per satellite, the ``max_link_util`` red-high limit rule says which).
    """
    share = partition_share_query("time > now() - 60s") + ' GROUP BY "run"'
    over = ('SELECT last("net_overloaded_links") AS "net_overloaded_links" FROM "fleet" WHERE time > now() - 60s '
            'GROUP BY "run"')
    return [
        _rule(NET_PARTITION_UID, "Network: satellites cut off from the gateways",
              _data(share, 60, "last", "gt", PARTITION_ALERT_SHARE), severity="warning", scope="network", for_="1m",
              summary="Run {{ $labels.run }}: {{ $values.B }} of the live satellites have no gateway route",
              description=f"More than {PARTITION_ALERT_SHARE:.0%} of the live satellites have no route to any gateway "
                          "in service (gateway outages, link outages, terminal failures, safe mode): see the network "
                          "dashboard's map and table of satellites without a route."),
        _rule(NET_OVERLOAD_UID, "Network: overloaded links", _data(over, 60, "last", "gt", 0), severity="warning",
              scope="network", summary="Run {{ $labels.run }}: {{ $values.B }} links loaded beyond their capacity",
              description="Offered traffic exceeds the capacity of some laser or ground links (utilisation > 1): "
                          "see the network dashboard's most loaded satellites."),
    ]


def compute_rules() -> list[dict[str, Any]]:
    """Rules on the compute figures of the ``fleet`` point (a twin with compute placement on; :mod:`dashboards.compute`).

    Deadline misses: the run's ``jobs_deadline_missed`` per hour above
    :data:`~dashboards.compute.DEADLINE_MISS_ALERT_PER_H`. Battery: the jobs' battery power per live
    satellite (the rate of ``compute_battery_wh`` over ``sats - lost``) above
    :data:`~dashboards.compute.COMPUTE_BATTERY_ALERT_W_PER_SAT` W. Both average the point-to-point
    derivative of the fleet totals over the last ``ALERT_WINDOW_S`` (and, for a run ahead of the wall
    clock, up to its latest summary); a twin without compute writes neither total: no series, OK.
    """
    window = ALERT_WINDOW_S
    return [
        _rule(COMPUTE_MISSES_UID, "Compute: deadline misses", _data(deadline_miss_rate_query(window), window, "last",
                                                                    "gt", DEADLINE_MISS_ALERT_PER_H),
              severity="warning", scope="compute", for_="1m",
              summary="Run {{ $labels.run }}: {{ $values.B }} compute jobs per hour miss their deadline",
              description=f"More than {DEADLINE_MISS_ALERT_PER_H:g} jobs per hour of sim time (mean over the last "
                          f"{window // 60} min) completed past their deadline or latency bound, or failed at their "
                          "deadline: the placement policy or the fleet (eclipse, SAA, throttling, lost satellites) "
                          "no longer keeps up; see the compute dashboard."),
        _rule(COMPUTE_BATTERY_UID, "Compute: battery energy spent on jobs",
              _data(battery_power_query(window), window, "last", "gt", COMPUTE_BATTERY_ALERT_W_PER_SAT),
              severity="warning", scope="compute", for_="1m",
              summary="Run {{ $labels.run }}: compute jobs draw {{ $values.B }} W per satellite from the batteries",
              description=f"The jobs' accelerator power taken from the batteries averaged more than "
                          f"{COMPUTE_BATTERY_ALERT_W_PER_SAT:g} W per live satellite over the last {window // 60} min "
                          "(rate of the fleet summary's compute_battery_wh): jobs run in eclipse and eat into the "
                          "batteries' reserve; see the compute dashboard's top satellites."),
    ]


def alert_rules() -> dict[str, Any]:
    sat_rules = [r for f in LIMITED_FIELDS for r in limit_rules(f)]
    return {"apiVersion": 1, "groups": [
        {"orgId": 1, "name": "orbitwin-satellite-limits", "folder": FOLDER, "interval": INTERVAL, "rules": sat_rules},
        {"orgId": 1, "name": "orbitwin-fleet", "folder": FOLDER, "interval": INTERVAL, "rules": fleet_rules()},
        {"orgId": 1, "name": "orbitwin-network", "folder": FOLDER, "interval": INTERVAL, "rules": network_rules()},
        {"orgId": 1, "name": "orbitwin-compute", "folder": FOLDER, "interval": INTERVAL, "rules": compute_rules()},
    ]}


def contact_points() -> dict[str, Any]:
    return {"apiVersion": 1, "contactPoints": [{"orgId": 1, "name": CONTACT_POINT, "receivers": [{
        "uid": "orbitwin-webhook", "type": "webhook", "disableResolveMessage": False,
        "settings": {"url": WEBHOOK_URL, "httpMethod": "POST", "username": "${GRAFANA_WEBHOOK_USER}",
                     "password": "${GRAFANA_WEBHOOK_PASSWORD}", "maxAlerts": 0}}]}]}


def notification_policies() -> dict[str, Any]:
    return {"apiVersion": 1, "policies": [{
        "orgId": 1, "receiver": CONTACT_POINT, "group_by": ["grafana_folder", "alertname"],
        "group_wait": "10s", "group_interval": "1m", "repeat_interval": "4h",
        "routes": [{"receiver": CONTACT_POINT, "object_matchers": [["severity", "=", "critical"]],
                    "group_wait": "5s", "group_interval": "30s", "repeat_interval": "1h"}]}]}

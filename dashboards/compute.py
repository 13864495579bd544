"""The compute dashboard (issue 16): jobs the scheduler places on the fleet's accelerators.

Data: the compute figures of the ``fleet`` summary (:data:`COMPUTE_FLEET_FIELDS`: one series per
run, written only by a twin with compute placement on, ``orbitwin run --compute POLICY``; the
placement policy is the string field ``compute_policy``) and the per-satellite ``compute`` packet
(:mod:`twin.schema.telemetry`: fields and units come from there) for the top satellites and the
satellites chosen in ``$sat``.

Rates. The summary's job counts and energies are totals since the run started; the panels show
them per hour as InfluxQL ``non_negative_derivative(last(...), 1h)`` per interval (a counter's
increase per hour; Wh per hour is W). The alert rules (:func:`dashboards.alerts.compute_rules`)
cannot group by time (a run's sim time may lie ahead of the wall clock, see dashboards/alerts.py):
they average the point-to-point derivative over their window, which for evenly spaced summaries
is the increase over the window divided by its length.

Query cost: like the network dashboard, no panel reads every satellite's series over the time
range; the top-satellite tables read each satellite's latest ``compute`` point in a window of two
packet periods ending at the end of the time range (one point per satellite).
"""

from __future__ import annotations

from typing import Any

from dashboards.panels import (
    Layout,
    dashboard,
    event_annotations,
    field,
    field_config,
    grafana_unit,
    override,
    sat_where,
    series_query,
    stat,
    table,
    target,
    thresholds,
    timeseries,
    window_s,
)
from dashboards.satellite import query_variable
from twin.schema.compute_summary import NUMERIC_KEYS, POLICY_KEY, latency_region_keys
from twin.schema.telemetry import PACKET_FIELDS

COMPUTE = "compute"  # the packet (and InfluxDB measurement) of the per-satellite compute fields
COMPUTE_FIELDS = PACKET_FIELDS[COMPUTE]
# Compute figures of the fleet summary (twin/runtime/status_table.py fleet_compute =
# twin.core.compute.coupling.ComputeCoupling.summary; drift-tested in tests/test_compute_telemetry.py):
COMPUTE_POLICY_FIELD = POLICY_KEY  # a string field of the fleet point (bridges/influx/line_protocol.py)
COMPUTE_FLEET_FIELDS = NUMERIC_KEYS
# Deadline misses per hour (fleet) above which the miss-rate alert fires (a setting). Measured at the
# default demand over the whole fleet (docs/physics.md#compute-jobs, 2 h of sim time): aware 0 misses,
# nearest ~1,400/h, random and round robin ~27,000/h; 100/h is ~0.3 % of the default ~30,000 jobs/h
# and far above the aware policy's nominal none, so it flags a policy or a fleet that no longer keeps
# its deadlines without firing on a stray late job.
DEADLINE_MISS_ALERT_PER_H = 100.0
# Battery power spent on compute jobs per live satellite above which the battery alert fires, W (a
# setting). Same measurement: the aware policy drew 155 kWh from the batteries over 2 h of the whole
# fleet (~8 W per satellite), nearest 7,021 kWh (~370 W), random and round robin ~8,950 kWh (~470 W);
# 100 W is over 10x aware's nominal and under a third of any baseline: compute is eating into the
# eclipse reserve.
COMPUTE_BATTERY_ALERT_W_PER_SAT = 100.0
ALERT_WINDOW_S = 600  # the compute rules' rates average the last 10 min of the run's summaries
TOP = 10  # satellites in the top-satellite tables
SAT_VAR_QUERY = f'SHOW TAG VALUES FROM "{COMPUTE}" WITH KEY = "sat" WHERE "run" = \'$run\''


def per_hour(name: str, alias: str | None = None) -> str:
    """``name``'s increase per hour in each interval (a total since start -> a rate; Wh -> W)."""
    return f'non_negative_derivative(last("{name}"), 1h) AS "{alias or name + "_per_h"}"'


def rate_query(names: dict[str, str]) -> str:
    """Per-interval rates per hour of fleet totals (``{field: alias}``)."""
    cols = ", ".join(per_hour(n, a) for n, a in names.items())
    return f'SELECT {cols} FROM "fleet" WHERE $timeFilter GROUP BY time($__interval) fill(none)'


def battery_per_sat_wh(where: str) -> str:
    """A subquery: the fleet's battery energy for compute per live satellite, Wh (``sats - lost``)."""
    return f'SELECT "compute_battery_wh" / ("sats" - "lost") AS "wh" FROM "fleet" WHERE {where}'


def deadline_miss_rate_query(window_s: int = ALERT_WINDOW_S) -> str:
    """The alert's deadline misses per hour: the mean derivative of the run's ``jobs_deadline_missed`` over the window."""
    inner = (f'SELECT non_negative_derivative("jobs_deadline_missed", 1h) AS "r" FROM "fleet" '
             f'WHERE time > now() - {window_s}s GROUP BY "run"')
    return f'SELECT mean("r") AS "deadline_misses_per_h" FROM ({inner}) GROUP BY "run"'


def battery_power_query(window_s: int = ALERT_WINDOW_S) -> str:
    """The alert's battery power for compute per live satellite, W: the mean derivative of
    ``compute_battery_wh / (sats - lost)`` over the window (Wh per hour)."""
    inner = (f'SELECT non_negative_derivative("wh", 1h) AS "w" FROM '
             f'({battery_per_sat_wh(f"time > now() - {window_s}s")} GROUP BY "run") GROUP BY "run"')
    return f'SELECT mean("w") AS "compute_battery_w_per_sat" FROM ({inner}) GROUP BY "run"'


def _fleet_last(name: str) -> str:
    return f'SELECT last("{name}") AS "{name}" FROM "fleet" WHERE $timeFilter'


def _top_query(by: str, also: list[str]) -> str:
    """The ``TOP`` satellites by ``by`` at their latest ``compute`` point before the end of the time range."""
    cols = [by, *also]
    latest = ", ".join(f'last("{c}") AS "{c}"' for c in cols)
    inner = (f'SELECT {latest} FROM "{COMPUTE}" WHERE time > ${{__to}}ms - {window_s(COMPUTE)}s '
             f'AND time <= ${{__to}}ms GROUP BY "sat"')
    rest = ", ".join(f'"{c}"' for c in also)
    return f'SELECT top("{by}", {TOP}) AS "{by}", "sat", {rest} FROM ({inner})'


def _steps(red: float) -> dict[str, Any]:
    return thresholds(steps=[{"color": "green", "value": None}, {"color": "red", "value": red}])


def sat_variable() -> dict[str, Any]:
    """``$sat``: the run's satellites with a ``compute`` packet, several at once, no "All"."""
    v = query_variable("sat", "Satellites", SAT_VAR_QUERY, multi=True)
    v["includeAll"] = False
    return v


def compute() -> dict[str, Any]:
    """The "Orbitwin / Compute" dashboard."""
    lay = Layout()
    watt = grafana_unit(field("compute_battery_w"))
    miss_thr, batt_thr = _steps(DEADLINE_MISS_ALERT_PER_H), _steps(COMPUTE_BATTERY_ALERT_W_PER_SAT)

    lay.row("Jobs (fleet aggregates written by the twin)")
    policy = stat("Placement policy", [target(_fleet_last(COMPUTE_POLICY_FIELD))], field_config(color="fixed"),
                  description="The scheduler's placement policy of the run (orbitwin run --compute POLICY): nearest, "
                              "random, round_robin or aware")
    policy["options"]["reduceOptions"]["fields"] = f"/^{COMPUTE_POLICY_FIELD}$/"  # a string: shown as text
    policy["options"]["colorMode"] = "none"
    lay.add(policy, w=4, h=4)
    lay.add(stat("Jobs running", [target(_fleet_last("jobs_running"))], field_config(color="fixed"),
                 description="Jobs holding an accelerator now (running or arriving by migration)"), w=4, h=4)
    lay.add(stat("Jobs queued", [target(_fleet_last("jobs_queued"))], field_config(color="fixed"),
                 description="Jobs waiting for a device now"), w=4, h=4)
    lay.add(stat("Completed per hour", [target(rate_query({"jobs_completed": "jobs_completed_per_h"}))],
                 field_config(color="fixed", decimals=0),
                 description="Jobs completed per hour of sim time in the latest interval (corrupt results included)"),
            w=4, h=4)
    lay.add(stat("Deadline misses per hour", [target(rate_query({"jobs_deadline_missed": "deadline_misses_per_h"}))],
                 field_config(thr=miss_thr, color="thresholds", decimals=0),
                 description="Jobs that completed late or failed at their deadline, per hour, in the latest interval; "
                             f"red at the miss-rate alert's threshold ({DEADLINE_MISS_ALERT_PER_H:g}/h)"), w=4, h=4)
    batt_q = (f'SELECT non_negative_derivative(last("wh"), 1h) AS "compute_battery_w_per_sat" FROM '
              f'({battery_per_sat_wh("$timeFilter")}) WHERE $timeFilter GROUP BY time($__interval) fill(none)')
    lay.add(stat("Battery power for compute per satellite", [target(batt_q)],
                 field_config(watt, batt_thr, color="thresholds", decimals=1),
                 description="The jobs' battery energy per hour per live satellite (W) in the latest interval; red at "
                             f"the battery alert's threshold ({COMPUTE_BATTERY_ALERT_W_PER_SAT:g} W)"), w=4, h=4)

    lay.add(timeseries("Jobs completed per hour",
                       [target(rate_query({"jobs_completed": "jobs_completed_per_h",
                                           "jobs_interactive_completed": "interactive_completed_per_h",
                                           "jobs_submitted": "jobs_submitted_per_h"}))],
                       field_config(),
                       description="non_negative_derivative of the fleet totals jobs_completed, "
                                   "jobs_interactive_completed and jobs_submitted over 1 h: jobs completed (and "
                                   "submitted) per hour of sim time"), w=8)
    lay.add(timeseries("Deadline misses per hour",
                       [target(rate_query({"jobs_deadline_missed": "deadline_misses_per_h"}))],
                       field_config(thr=miss_thr, style="line"),
                       description="Jobs that completed past their deadline or latency bound, or failed at their "
                                   "deadline, per hour (alert threshold drawn)"), w=8)
    lay.add(timeseries("Rejected and failed per hour",
                       [target(rate_query({"jobs_rejected": "jobs_rejected_per_h", "jobs_failed": "jobs_failed_per_h"}))],
                       field_config(),
                       description="Jobs rejected (malformed, or no satellite could take them) and failed (deadline "
                                   "passed before completion) per hour"), w=8)
    lay.add(timeseries("Jobs running and queued",
                       [target(series_query("fleet", ["jobs_running", "jobs_queued"], agg="last"))], field_config(),
                       description="Jobs holding a device and jobs waiting for one"), w=8)
    lay.add(timeseries("Interactive latency p50 and p99",
                       [target(series_query("fleet", ["interactive_latency_p50_ms", "interactive_latency_p99_ms"],
                                            agg="max"))],
                       field_config("ms"),
                       description="Median and 99th percentile of the interactive jobs' latency (submit to answer at "
                                   "the user) over the last hour of sim time (fleet summary)"), w=8)
    lay.add(timeseries("Interactive latency p50 by region",
                       [target(series_query("fleet", [k for k in latency_region_keys() if "_p50_" in k], agg="max"))],
                       field_config("ms"),
                       description="Median interactive job latency by the continent of the source city, over the "
                                   "last hour of sim time (no line: no job from there)"), w=8)
    lay.add(timeseries("Interactive latency p99 by region",
                       [target(series_query("fleet", [k for k in latency_region_keys() if "_p99_" in k], agg="max"))],
                       field_config("ms"),
                       description="99th percentile of the interactive jobs' latency by the continent of their "
                                   "source city, over the last hour of sim time (no line: no job from there)"), w=8)
    lay.add(timeseries("Throttled device-hours", [target(series_query("fleet", ["throttled_device_h"], agg="last"))],
                       field_config("h"),
                       description="Device-hours since start of busy accelerators delivering less than the scheduler "
                                   "planned (throttling, power cap, a payload switched off)"), w=8)

    lay.row("Energy for compute")
    lay.add(timeseries("Compute energy: battery vs arrays",
                       [target(series_query("fleet", ["compute_battery_wh", "compute_array_wh"], agg="last"))],
                       field_config("watth"),
                       description="The jobs' accelerator energy since start drawn from the batteries and from the "
                                   "solar arrays (Wh)"), w=8)
    lay.add(timeseries("Compute power: battery vs arrays",
                       [target(rate_query({"compute_battery_wh": "battery_w", "compute_array_wh": "array_w"}))],
                       field_config(watt),
                       description="The same as a rate: Wh per hour of sim time, i.e. the fleet's mean compute power "
                                   "from the batteries and from the arrays (W)"), w=8)
    lay.add(timeseries("Battery power for compute per live satellite", [target(batt_q)],
                       field_config(watt, batt_thr, style="line"),
                       description="compute_battery_wh / (sats - lost) per hour: what the battery alert watches "
                                   f"(threshold {COMPUTE_BATTERY_ALERT_W_PER_SAT:g} W drawn)"), w=8)

    lay.row("Results and moves")
    lay.add(timeseries("Corrupted jobs", [target(series_query("fleet", ["jobs_corrupted"], agg="last"))],
                       field_config(thr=_steps(1), style="line"),
                       description="Completed jobs whose result an uncorrectable upset corrupted, since start (the "
                                   "aware policy re-runs hit jobs from their checkpoint instead)"), w=8)
    lay.add(timeseries("Migrations", [target(series_query("fleet", ["job_migrations"], agg="last"))], field_config(),
                       description="Checkpointing jobs moved between satellites since start (aware policy: before "
                                   "eclipse or the SAA, when the battery energy saved beats the transfer)"), w=8)
    lay.add(timeseries("Bytes moved", [target(series_query("fleet", ["job_bytes_moved"], agg="last"))],
                       field_config("decbytes"),
                       description="Job state moved over the links by migrations since start"), w=8)

    lay.row("Satellites")
    top_batt = table(f"Top {TOP} satellites by battery power for compute (latest)",
                     [target(_top_query("compute_battery_w", ["compute_power_w", "jobs_running"]), fmt="table")],
                     field_config(watt, overrides=[override("jobs_running", unit="none")]),
                     description=f"{field('compute_battery_w').description}; the latest compute packet of each "
                                 "satellite at the end of the time range",
                     transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}])
    lay.add(top_batt, w=12, h=9)
    top_jobs = table(f"Top {TOP} satellites by jobs running (latest)",
                     [target(_top_query("jobs_running", ["compute_power_w", "compute_battery_w"]), fmt="table")],
                     field_config(overrides=[override(n, unit=watt) for n in ("compute_power_w", "compute_battery_w")]),
                     description=f"{field('jobs_running').description}; the latest compute packet of each satellite "
                                 "at the end of the time range",
                     transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}])
    lay.add(top_jobs, w=12, h=9)
    alias = "$tag_sat $col"
    where = sat_where()
    lay.add(timeseries("Compute power and its battery part ($sat)",
                       [target(series_query(COMPUTE, ["compute_power_w", "compute_battery_w"], where,
                                            group=', "sat"'), alias=alias)],
                       field_config(watt),
                       description="; ".join(f"{n}: {field(n).description}" for n in ("compute_power_w",
                                                                                        "compute_battery_w"))), w=12)
    lay.add(timeseries("Jobs running ($sat)",
                       [target(series_query(COMPUTE, ["jobs_running"], where, group=', "sat"'), alias=alias)],
                       field_config(), description=field("jobs_running").description), w=12)
    counters = ["jobs_completed_total", "jobs_corrupted_total", "job_upsets_total"]
    assert set(counters) <= set(COMPUTE_FIELDS)
    lay.add(timeseries("Completed, corrupt and upsets ($sat)",
                       [target(series_query(COMPUTE, counters, where, group=', "sat"'), alias=alias)],
                       field_config(), description="; ".join(f"{n}: {field(n).description}" for n in counters)), w=24)
    return dashboard("orbitwin-compute", "Orbitwin / Compute", lay, tags=["compute"], annotations=event_annotations(),
                     variables=[sat_variable()],
                     description="Compute jobs placed by the scheduler: policy, completions, deadline misses, "
                                 "rejections, latency, battery vs array energy, throttling, corrupt results, "
                                 "migrations, top satellites")

"""JSON Schemas of what the twin publishes about the fleet, for the AsyncAPI document.

Telemetry packets and fleet frames (read from the real encoders), the birth/death state, the
catalogue, the fleet summary (with its grid and compute keys), the twin's status and the
network's topology and city-latency frames. Units in ``x-unit`` (SI, or as the field states:
ms, MW, EOPS, Wh, h, deg, d). Re-exported by :mod:`twin.contract.asyncapi_payloads`.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from twin.contract.fleet_aggregates import AGG_FIELDS, COUNTS
from twin.contract.telemetry_policy import FRAMES_CHOICES
from twin.contract.asyncapi_common import EXAMPLE_SAT, JSON, _ENVELOPE_DOC, _header_props, _json_type, _sample_property
from twin.contract.topics import Topics
from twin.core.catalogue import TLE_EPOCH_POLICIES
from twin.core.compute.coupling import LATENCY_WINDOW_S
from twin.schema.compute_summary import latency_region_keys
from twin.core.compute.placement import POLICIES as COMPUTE_POLICIES
from twin.schema import dose_regions, fleet_grid
from twin.schema.codec import CODECS, codec
from twin.schema.telemetry import FIELD_BY_NAME, PACKET_FIELDS, SCHEMA_VERSION, Field


# --- telemetry -------------------------------------------------------------------------
def field_schema(f: Field) -> JSON:
    """JSON Schema of one telemetry field (non-finite floats are sent as null)."""
    s: JSON = codec(f).json_schema() | {"description": f.description, "x-unit": f.unit}
    if f.enum:
        s["enum"] = sorted(f.enum)
        s["x-enum-names"] = {str(k): v for k, v in sorted(f.enum.items())}
    if f.limits is not None:
        s["x-limits"] = {k: v for k, v in asdict(f.limits).items() if v is not None}
    return s


def _zeros(packet: str) -> dict[str, np.ndarray]:
    """One satellite's packet of zeros, each field typed as the encoders receive it."""
    return {f: np.zeros(1, dtype=codec(f).numpy) for f in PACKET_FIELDS[packet]}


def _telemetry_sample(packet: str) -> JSON:
    """One payload rendered by the real encoder (zeros), to read the envelope it writes."""
    from twin.contract.telemetry_encoder import PacketEncoder

    enc = PacketEncoder(packet, [EXAMPLE_SAT], [44714], Topics())
    ((_, payload),) = enc.encode(_zeros(packet), np.array([0]), np.array([0]), 1, "2026-01-01T00:00:00.000Z", 0.0)
    return json.loads(payload)


def telemetry_schema(packet: str) -> JSON:
    sample = _telemetry_sample(packet)
    props: JSON = {}
    for key, value in sample.items():
        if key == "fields":
            fields = PACKET_FIELDS[packet]
            props[key] = {"type": "object", "description": "Field values (units in x-unit)",
                          "properties": {f: field_schema(FIELD_BY_NAME[f]) for f in fields},
                          "required": list(fields), "additionalProperties": False}
        else:
            props[key] = _sample_property(key, value)
    props["v"] = props["v"] | {"const": SCHEMA_VERSION}
    props["packet"] = props["packet"] | {"const": packet}
    return {"type": "object", "title": f"Telemetry packet {packet}", "properties": props,
            "required": list(sample), "additionalProperties": False}


def _frame_sample(packet: str) -> JSON:
    from twin.contract.telemetry_encoder import FrameEncoder  # type: ignore[attr-defined]

    enc = FrameEncoder(packet, [EXAMPLE_SAT], [44714], Topics())
    _, payload = enc.encode(_zeros(packet), np.array([0]), np.array([0]), 1, "2026-01-01T00:00:00.000Z", 0.0)
    return json.loads(payload)


def frame_schema(packet: str) -> JSON:
    """A fleet frame: the packet of every satellite due this tick, as columns (row k = one satellite)."""
    sample = _frame_sample(packet)
    props: JSON = {}
    for key, value in sample.items():
        if key == "fields":
            fields = PACKET_FIELDS[packet]
            props[key] = {"type": "object", "description": "One column per field, rows as in sats",
                          "properties": {f: {"type": "array", "items": {k: v for k, v in field_schema(
                              FIELD_BY_NAME[f]).items() if k != "description"}, "description": FIELD_BY_NAME[f]
                              .description, "x-unit": FIELD_BY_NAME[f].unit} for f in fields},
                          "required": list(fields), "additionalProperties": False}
        elif isinstance(value, list):
            props[key] = {"type": "array", "items": {"type": _json_type(value[0])},
                          "description": _ENVELOPE_DOC.get(key, key)}
        else:
            props[key] = _sample_property(key, value)
    props["v"] = props["v"] | {"const": SCHEMA_VERSION}
    props["packet"] = props["packet"] | {"const": packet}
    return {"type": "object", "title": f"Fleet frame {packet}", "properties": props,
            "required": list(sample), "additionalProperties": False}


# --- state, catalogue, summary, status, network frames ----------------------------------
def state_schema() -> JSON:
    return {"title": "Twin state (birth/death)", "type": "object", "additionalProperties": True,
            "description": "Retained. online is the birth, offline the death (last will, or graceful stop). A death "
                           "whose bseq differs from the current birth's is stale and must be ignored.",
            "properties": {
                "v": {"const": 1}, "state": {"type": "string", "enum": ["online", "offline"]},
                "bseq": {"type": "integer", "minimum": 0, "description": "Birth sequence of the connection"},
                "wall_time": {"type": "number", "x-unit": "s", "description": "Unix time of publication"},
                "run": {"type": "integer", "description": "Run id (online only)"},
                "sats": {"type": "integer", "description": "Satellites in the twin (online only)"},
                "dt_s": {"type": "number", "x-unit": "s", "description": "Tick length (online only)"},
                "seed": {"type": "integer", "description": "Random seed (online only)"},
                "prefix": {"type": "string", "description": "Topic prefix (online only)"},
                "packets": {"type": "object", "additionalProperties": {"type": "number"},
                            "description": "Default packet rates in Hz (online only)"},
                "rates": {"type": "object", "additionalProperties": {"type": ["number", "null"]},
                          "description": "Rates of the summary and status topics in Hz, null = every tick "
                                         "(online only)"},
                "overload": {"type": "string", "enum": ["wait", "shed"],
                             "description": "What the twin does when the broker link cannot keep up (online only)"},
                "tle_epoch": tle_epoch_schema() | {"description": "The stale-catalogue policy applied (online only)"},
                "telemetry": policy_schema(),
            }, "required": ["v", "state", "bseq"]}


def policy_schema() -> JSON:
    """The birth's ``telemetry``: the policy (:meth:`twin.contract.telemetry_policy.TelemetryPolicy.describe`)."""
    return {"type": "object", "description": "The telemetry policy (online only; docs/mqtt.md#telemetry-policy-and-"
                                             "budget): orbitwin run --watch, --frames, --aggregates",
            "properties": {
                "watch": {"type": "string", "description": "The watched selection at start: all, none or a selector"},
                "watched": {"type": "integer", "minimum": 0, "description": "Satellites watched now (set_watch "
                                                                            "changes it; a rebirth says so)"},
                "frames": {"type": "string", "enum": list(FRAMES_CHOICES)},
                "aggregates_hz": {"type": "number", "minimum": 0, "x-unit": "Hz", "description": "0: off"},
                "events": {"const": "always"}}}


def aggregate_schema() -> JSON:
    """``{prefix}/fleet/agg/shell/{shell}`` and ``.../plane/{shell}/{plane}`` (:mod:`twin.contract.fleet_aggregates`)."""
    props, required = _header_props(False)
    stat = {"type": ["number", "null"], "description": "Over live satellites and finite values; null when none"}
    props |= {"run": {"type": "integer"}, "level": {"type": "string", "enum": ["shell", "plane"]},
              "shell": {"type": "string"}, "plane": {"type": "string", "description": "Plane only"},
              "sats": {"type": "integer", "minimum": 0},
              "counts": {"type": "object", "required": list(COUNTS), "additionalProperties": False,
                         "properties": {c: {"type": "integer", "minimum": 0} for c in COUNTS}},
              "fields": {"type": "object", "additionalProperties": False, "properties": {
                  f: {"type": "object", "x-unit": FIELD_BY_NAME[f].unit, "required": ["mean", "min", "max"],
                      "properties": {k: stat for k in ("mean", "min", "max")}} for f in AGG_FIELDS}}}
    return {"title": "Shell or plane aggregate", "type": "object", "properties": props,
            "required": required + ["run", "level", "shell", "sats", "counts", "fields"]}


def tle_epoch_schema() -> JSON:
    """The ``tle_epoch`` of the birth and the catalogue: what the twin did with the catalogue's epochs."""
    return {"type": "object", "additionalProperties": False, "properties": {
        "policy": {"type": "string", "enum": list(TLE_EPOCH_POLICIES), "description": "--tle-epoch as asked"},
        "applied": {"type": "string", "enum": ["keep", "shift"],
                    "description": "keep: the TLEs propagated as given; shift: every epoch moved by shift_days "
                                   "(same mean elements: the catalogue's constellation, not the real satellites' "
                                   "positions at the start)"},
        "catalogue_epoch": {"type": ["string", "null"], "format": "date-time",
                            "description": "Median epoch of the TLE file as read"},
        "start_minus_epoch_days": {"type": "number", "x-unit": "d",
                                   "description": "The run's start minus the catalogue epoch"},
        "shift_days": {"type": "number", "x-unit": "d", "description": "How far every epoch was moved (0 if kept)"},
        "threshold_days": {"type": "number", "x-unit": "d",
                           "description": "auto shifts when |start_minus_epoch_days| exceeds this"},
    }, "required": ["policy", "applied", "catalogue_epoch", "start_minus_epoch_days", "shift_days",
                    "threshold_days"]}


def catalogue_schema() -> JSON:
    sat = {"type": "object", "properties": {"sat": {"type": "string"}, "norad": {"type": "integer"},
                                            "shell": {"type": "string", "description": "e.g. 550km-53deg"}},
           "required": ["sat", "norad", "shell"]}
    return {"title": "Fleet catalogue", "type": "object", "properties": {"v": {"const": 1}, "sats": {
        "type": "array", "items": sat}, "tle_epoch": tle_epoch_schema()}, "required": ["v", "sats"]}


def summary_schema() -> JSON:
    props, required = _header_props(False)
    num = {"type": ["number", "null"]}
    count = {"type": "integer", "minimum": 0}
    props |= {"tick": count, "sats": count, "nominal": count, "yellow": count, "red": count, "safe": count,
              "lost": count, "sunlit": count, "in_saa": count, "latched": count,
              "boards": count | {"description": "Live satellites whose payload is a hardware board (payload_source > 0)"},
              "array_power_mw": num | {"x-unit": "MW"}, "payload_power_mw": num | {"x-unit": "MW"},
              "throughput_eops": num | {"x-unit": "EOPS"}, "mean_soc": num | {"x-unit": "1"},
              **{r.summary_field: {"type": "number", "minimum": 0, "x-unit": dose_regions.SUMMARY_UNIT,
                                   "description": f"Dose rate summed over the live satellites in region {r.label}: "
                                                  f"{r.description} (twin.schema.dose_regions)"}
                 for r in dose_regions.DOSE_REGIONS},
              "grid": grid_schema(),
              "net_partitioned": count | {"description": "Network: live satellites with no route to any gateway"},
              "net_links_up": count | {"description": "Network: laser links up in the fleet"},
              "net_overloaded_links": count | {"description": "Network: links (laser and ground) loaded above "
                                                              "their capacity"},
              "net_gw_delay_p50_ms": num | {"x-unit": "ms", "description": "Network: median one-way delay of the "
                                                                          "live routed satellites to their nearest "
                                                                          "gateway (null when none is routed)"},
              "net_gw_delay_p99_ms": num | {"x-unit": "ms", "description": "Network: 99th percentile of the same"},
              **compute_summary_props()}
    return {"title": "Fleet summary (every tick by default)", "type": "object", "properties": props,
            "required": required + ["tick", "sats"],
            "description": "The net_* aggregates only from a twin with the network model (docs/network.md); "
                           "the compute keys (compute_policy, jobs_*, job_*, compute_*_wh, throttled_device_h, "
                           "interactive_latency_*) only from a twin with compute placement on "
                           "(docs/physics.md#compute-jobs)"}


def compute_summary_props() -> JSON:
    """The fleet summary's compute keys (:meth:`twin.core.compute.coupling.ComputeCoupling.summary`)."""
    count = {"type": "integer", "minimum": 0}
    since = "since start"
    wh = {"type": "number", "minimum": 0, "x-unit": "Wh"}
    window = f"over the last {LATENCY_WINDOW_S / 3600:g} h of sim time (null when none completed)"
    return {
        "compute_policy": {"type": "string", "enum": list(COMPUTE_POLICIES),
                           "description": "Compute: the scheduler's placement policy"},
        "jobs_submitted": count | {"description": f"Compute: jobs submitted {since}"},
        "jobs_queued": count | {"description": "Compute: jobs waiting for a device now"},
        "jobs_running": count | {"description": "Compute: jobs holding a device now (running or migrating)"},
        "jobs_completed": count | {"description": f"Compute: jobs completed {since} (corrupt results included)"},
        "jobs_failed": count | {"description": f"Compute: jobs failed {since} (their deadline passed before they "
                                              "completed)"},
        "jobs_rejected": count | {"description": f"Compute: jobs rejected {since} (malformed, or no satellite could "
                                                "take them)"},
        "jobs_interactive_completed": count | {"description": f"Compute: interactive jobs completed {since}"},
        "jobs_deadline_missed": count | {"description": f"Compute: jobs that completed late (past their deadline or "
                                                       f"latency bound) or failed at their deadline {since}"},
        "jobs_corrupted": count | {"description": f"Compute: completed jobs whose result an upset corrupted {since}"},
        "job_migrations": count | {"description": f"Compute: job moves between satellites {since}"},
        "job_bytes_moved": {"type": "number", "minimum": 0, "x-unit": "B",
                            "description": f"Compute: job state moved over the links by migrations {since}"},
        "compute_battery_wh": wh | {"description": f"Compute: accelerator energy of the jobs drawn from the "
                                                   f"batteries {since}"},
        "compute_array_wh": wh | {"description": f"Compute: accelerator energy of the jobs from the solar arrays "
                                                 f"{since}"},
        "throttled_device_h": {"type": "number", "minimum": 0, "x-unit": "h",
                               "description": f"Compute: device-hours of busy accelerators delivering less than "
                                              f"the scheduler planned {since} (throttling, power cap, payload off)"},
        "interactive_latency_p50_ms": {"type": ["number", "null"], "minimum": 0, "x-unit": "ms",
                                       "description": f"Compute: median interactive job latency (submit to answer "
                                                      f"at the user) {window}"},
        "interactive_latency_p99_ms": {"type": ["number", "null"], "minimum": 0, "x-unit": "ms",
                                       "description": f"Compute: 99th percentile of the same {window}"},
    } | {key: {"type": ["number", "null"], "minimum": 0, "x-unit": "ms",
               "description": f"Compute: the {key.split('_')[2]} of the interactive latency of jobs from cities in "
                              f"{key.split('_ms_')[1].replace('_', ' ')} {window}"}
         for key in latency_region_keys()}


def _columns(item: JSON, what: str, unit: str | None = None) -> JSON:
    return {"type": "array", "items": item, "description": what} | ({"x-unit": unit} if unit else {})


def topology_schema() -> JSON:
    """``{prefix}/fleet/topology`` (:class:`twin.contract.network_frames.TopologyEncoder`)."""
    props, required = _header_props(False)
    count = {"type": "integer", "minimum": 0}
    index = {"type": "integer", "minimum": 0}
    props |= {
        "run": {"type": "integer", "description": "Run id of the twin process"},
        "tick": count | {"description": "Twin tick number"},
        "links_up": count | {"description": "Laser links up (the number of edges)"},
        "overloaded": count | {"description": "Links (laser and ground) above their capacity"},
        "sats": {"type": "array", "items": {"type": "string"},
                 "description": "The fleet in catalogue order: edges index this list"},
        "edges": {"type": "object", "additionalProperties": False, "required": ["a", "b", "delay_ms", "util"],
                  "description": "One laser link up per row k: sats[a[k]] - sats[b[k]] with a[k] < b[k]",
                  "properties": {
                      "a": _columns(index, "Lower satellite index of each link"),
                      "b": _columns(index, "Higher satellite index of each link"),
                      "delay_ms": _columns({"type": "number", "minimum": 0}, "One-way propagation delay", "ms"),
                      "util": _columns({"type": "number", "minimum": 0},
                                       "Utilisation: offered load / capacity (> 1 overloaded)", "1")}},
    }
    return {"title": "Fleet topology (laser links)", "type": "object", "properties": props,
            "additionalProperties": False, "required": required + ["run", "tick", "links_up", "overloaded", "sats",
                                                                   "edges"]}


def latency_schema() -> JSON:
    """``{prefix}/fleet/latency`` (:class:`twin.contract.network_frames.LatencyEncoder`)."""
    props, required = _header_props(False)
    count = {"type": "integer", "minimum": 0}
    index = {"type": "integer", "minimum": 0}
    num = {"type": ["number", "null"], "minimum": 0}
    props |= {
        "run": {"type": "integer", "description": "Run id of the twin process"},
        "tick": count | {"description": "Twin tick number the frame was published at"},
        "cities": {"type": "array", "items": {"type": "string"}, "description": "The user endpoints (cities)"},
        "reachable_pairs": count | {"description": "City pairs with a route over the mesh"},
        "pairs": {"type": "object", "additionalProperties": False,
                  "required": ["src", "dst", "rtt_ms", "fibre_rtt_ms", "stretch"],
                  "description": "Every unordered pair of distinct cities once, row k: cities[src[k]] - "
                                 "cities[dst[k]] with src[k] < dst[k]",
                  "properties": {
                      "src": _columns(index, "First city of each pair"),
                      "dst": _columns(index, "Second city of each pair"),
                      "rtt_ms": _columns(num, "Round trip over the mesh (null when no route)", "ms"),
                      "fibre_rtt_ms": _columns({"type": "number", "minimum": 0},
                                               "Round trip of a great-circle fibre between the two cities", "ms"),
                      "stretch": _columns(num, "rtt_ms / fibre_rtt_ms (null when no route)", "1")}},
    }
    return {"title": "City-pair latency matrix", "type": "object", "properties": props,
            "additionalProperties": False,
            "description": "t and t_s are the sim time the matrix was computed at",
            "required": required + ["run", "tick", "cities", "reachable_pairs", "pairs"]}


def grid_schema() -> JSON:
    """The summary's ``grid``: one array of every cell per field (twin.schema.fleet_grid)."""
    props: JSON = {"cell_deg": {"const": fleet_grid.CELL_DEG, "x-unit": "deg",
                                "description": "Cell size in latitude and longitude"}}
    for f in fleet_grid.GRID_FIELDS:
        item = CODECS[f.dtype].json_schema() | ({"minimum": 0} if f.dtype == "int" else {})
        props[f.name] = {"type": "array", "items": item, "minItems": fleet_grid.N_CELLS,
                         "maxItems": fleet_grid.N_CELLS, "description": f.description} | (
                             {"x-unit": f.unit} if f.unit else {})
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False,
            "description": f"The fleet binned on {fleet_grid.ROWS} x {fleet_grid.COLS} cells of "
                           f"{fleet_grid.CELL_DEG} deg, row-major from latitude -90, longitude -180 deg "
                           f"(cell k: latitude -90 + {fleet_grid.CELL_DEG} * (k // {fleet_grid.COLS}), longitude "
                           f"-180 + {fleet_grid.CELL_DEG} * (k % {fleet_grid.COLS}), south-west corner); live "
                           "satellites with a position only; empty cells included. Only in the first summary at or "
                           f"after every {fleet_grid.PERIOD_S:g} s of sim time"}


def status_schema() -> JSON:
    props, required = _header_props(False)
    ms = {"type": ["number", "null"]}
    props |= {"tick": {"type": "integer"}, "step_ms": ms | {"x-unit": "ms"}, "lag_s": ms | {"x-unit": "s"},
              "max_lag_s": ms | {"x-unit": "s", "description": "Largest lag_s: how late a tick started, slow "
                                                              "ticks and backpressure waits included"},
              "publish_lag_s": ms | {"x-unit": "s", "description": "Last tick's messages at the broker minus the "
                                                                  "wall time the tick was due"},
              "max_publish_lag_s": ms | {"x-unit": "s"},
              "overload": {"type": "string", "enum": ["wait", "shed"]},
              "max_backlog": {"type": "integer", "description": "Messages the broker has not taken that the twin "
                                                                "allows before it waits or sheds"},
              "backpressure_waits": {"type": "integer"}, "backpressure_wait_s": ms | {"x-unit": "s"},
              "shed": {"type": "object", "additionalProperties": {"type": "integer"},
                       "description": "Per-satellite telemetry messages shed per packet (overload shed); each "
                                      "one is a gap in its satellite's seq"},
              "shed_ticks": {"type": "integer"},
              "watched": {"type": "integer", "description": "Satellites publishing per-satellite topics now"},
              "link_rate_msgs_s": ms | {"description": "Delivery rate measured while the link was saturated"},
              "mqtt": {"type": "object", "description": "connected, bseq, connects, published, acked, outstanding, "
                                                        "refused_queue_full, rebirths, lost_qos0_disconnected, "
                                                        "queue_full_waits"},
              "counters": {"type": "object", "additionalProperties": {"type": "integer"},
                           "description": "requests, malformed, unknown_topic, accepted, rejected, rejected_<reason>, "
                                          "replies_<status>, telemetry, events, replayed, audited (audit records "
                                          "published), request_budget_ticks (ticks whose request time ran out)"},
              "replay_buffer_bytes": {"type": "integer"},
              "auth": {"type": "object", "description": "Signed requests: required (bool), keys (count), window_s, "
                                                        "nonces (remembered now)"}}
    return {"title": "Twin status (every few seconds)", "type": "object", "properties": props,
            "required": required + ["tick", "mqtt", "counters"]}

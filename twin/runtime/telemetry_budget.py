"""The telemetry policy of a built twin: its watched satellites, its budget measured on real messages, the check.

:func:`plan_policy` runs before the twin connects: it resolves the policy's watched selection,
encodes a sample of the twin's present telemetry with the real encoders (per-satellite messages,
frames, aggregates, the fleet summary) to measure message sizes, computes the budget
(:func:`twin.contract.telemetry_policy.budget`) and compares it with the sinks' ceilings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.contract.fleet_aggregates import AggregateEncoder, Groups, twin_groups
from twin.contract.telemetry_encoder import FrameEncoder, PacketEncoder, PacketSchedule
from twin.contract.telemetry_policy import (
    Budget, Ceilings, MessageSizes, PolicyError, TelemetryPolicy, budget, check_budget, human_bytes,
)
from twin.contract.topics import Topics, dumps, header, iso_utc
from twin.core.engine import FleetTwin
from twin.core.ephemeris import jd_to_datetime
from twin.runtime.fleet_selection import watch_mask
from twin.runtime.status_table import fleet_summary
from twin.schema.commands import CommandError

SAMPLE_SATS = 256  # satellites encoded to measure message sizes (spread over the fleet)
SAMPLE_SEQ = 3600  # the sequence number written in the sample (an hour into a 1 Hz run: typical widths)


class BudgetError(ValueError):
    """The policy's budget exceeds a ceiling of the configured sinks (``orbitwin run`` exits 2)."""


@dataclass(frozen=True)
class PolicyPlan:
    """A policy resolved on a twin: watched satellites, aggregate groups, budget and what exceeds a ceiling."""

    policy: TelemetryPolicy
    watched: np.ndarray
    groups: Groups | None
    budget: Budget
    ceilings: Ceilings
    over: list[str]

    def lines(self) -> list[str]:
        """What ``orbitwin run`` prints before it starts: the policy and its budget against the ceilings."""
        p, c = self.policy, self.ceilings
        agg = "off" if p.aggregates_hz <= 0 else (
            f"{p.aggregates_hz:g} Hz over {self.groups.count if self.groups else 0} shells and planes")
        return [f"telemetry policy: watch {p.watch_text} ({int(self.watched.sum()):,} of {self.watched.size:,} "
                f"satellites on sat/+/tm), frames {p.frames}, aggregates {agg}, events always",
                f"budget: {self.budget.line()} (ceilings {c.mqtt_msgs_per_s:,.0f} messages/s, "
                f"{human_bytes(c.mqtt_bytes_per_s)}/s, {c.influx_values_per_s:,.0f} field values/s: {c.source})"]


def _probe_telemetry(twin: FleetTwin, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The present telemetry of the sample ``rows`` from a twin of just them, for a twin that has not
    evaluated its present yet (a shard waiting for its mesh exchange); without the mesh, so the ``net``
    packet's values are the no-network ones (sizes within a few bytes)."""
    from twin.core.engine import FleetTwin as Twin

    probe = Twin(twin.catalogue.subset(rows), twin.design, start_jd=twin.now_jd, dt_s=twin.dt_s, seed=twin.seed,
                 network=False, orbit_worker=False)
    tm = {}
    for f, values in probe.tm.items():  # the probe's rows at the sample's places
        tm[f] = np.zeros((twin.n, *values.shape[1:]), dtype=values.dtype)
        tm[f][rows] = values
    return tm


def measure_sizes(twin: FleetTwin, schedule: PacketSchedule, topics: Topics,
                  aggregates: AggregateEncoder | None = None, sample: int = SAMPLE_SATS) -> MessageSizes:
    """Message sizes (topic + payload bytes) from encoding the twin's present telemetry for a sample of satellites."""
    rows = np.unique(np.linspace(0, twin.n - 1, min(sample, twin.n)).astype(np.int64))
    probing = not twin.tm
    if probing:  # a shard waiting for its mesh exchange: a probe's telemetry stands in, then is removed
        twin.tm = _probe_telemetry(twin, rows)
    try:
        return _measure(twin, rows, schedule, topics, aggregates)
    finally:
        if probing:
            twin.tm = {}


def _measure(twin: FleetTwin, rows: np.ndarray, schedule: PacketSchedule, topics: Topics,
             aggregates: AggregateEncoder | None) -> MessageSizes:
    tm = twin.tm
    seq = np.full(rows.size, SAMPLE_SEQ, dtype=np.int64)
    t_iso, t_s, ids = iso_utc(jd_to_datetime(twin.now_jd)), float(SAMPLE_SEQ), twin.catalogue.norad_ids
    sat_msg, head, per_row = {}, {}, {}
    for packet in schedule.period:
        sub_names = [twin.names[i] for i in rows]
        enc = PacketEncoder(packet, sub_names, ids[rows], topics)
        local = np.arange(rows.size)
        sub_tm = {f: np.asarray(tm[f])[rows] for f in enc.fields}
        msgs = enc.encode(sub_tm, local, seq, 1, t_iso, t_s, run=1)
        sat_msg[packet] = float(np.mean([len(t.encode()) + len(p) for t, p in msgs]))
        frame = FrameEncoder(packet, sub_names, ids[rows], topics)
        topic, whole = frame.encode(sub_tm, local, seq, 1, t_iso, t_s, run=1)
        _, one = frame.encode(sub_tm, local[:1], seq[:1], 1, t_iso, t_s, run=1)
        if rows.size > 1:
            per_row[packet] = (len(whole) - len(one)) / (rows.size - 1)
            head[packet] = len(one) - per_row[packet] + len(topic.encode())
        else:
            per_row[packet], head[packet] = float(len(one)), float(len(topic.encode()))
    agg = 0.0
    if aggregates is not None:
        encoded = aggregates.encode(twin.tm, twin.mode, t_iso, t_s, 1, 1)
        agg = float(np.mean([len(t.encode()) + len(p) for t, p in encoded])) if encoded else 0.0
    summary = fleet_summary(twin, with_grid=False)
    body = dumps(header(None, t_iso, t_s, 1, tick=twin.tick, **summary))
    values = sum(1 for v in summary.values() if isinstance(v, (int, float)))
    return MessageSizes(sat_msg, head, per_row, agg, float(len(body) + len(topics.summary)), values)


def plan_policy(twin: FleetTwin, schedule: PacketSchedule, policy: TelemetryPolicy, ceilings: Ceilings,
                topics: Topics) -> PolicyPlan:
    """Resolve ``policy`` on ``twin`` and budget it (raises :class:`PolicyError` for a selection matching none)."""
    try:
        watched = watch_mask(twin, policy)
    except CommandError as exc:
        raise PolicyError(f"--watch {policy.watch_text!r}: {exc.message} of this fleet") from None
    groups = twin_groups(twin) if policy.aggregates_hz > 0 else None
    encoder = AggregateEncoder(groups, topics) if groups is not None else None
    sizes = measure_sizes(twin, schedule, topics, encoder)
    b = budget(schedule, watched, policy.frames, sizes, aggregate_groups=groups.count if groups else 0,
               aggregates_hz=policy.aggregates_hz)
    return PolicyPlan(policy, watched, groups, b, ceilings, check_budget(b, ceilings))

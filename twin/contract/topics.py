"""The MQTT contract: topic tree, payload headers and reply formats (pure: no network).

Everything under one prefix (default ``orbitwin/v1``)::

    {prefix}/state                          twin birth/death (retained; Sparkplug-like bseq)
    {prefix}/fleet/catalogue                satellites, NORAD ids and shells (retained)
    {prefix}/fleet/status                   twin runtime status and counters (every few s)
    {prefix}/fleet/summary                  fleet aggregates per tick (counts, power, compute)
    {prefix}/fleet/cmd | fleet/fault        fleet-wide requests with a satellite selector
    {prefix}/fleet/reply                    replies to fleet requests (MQTT 3.1.1 clients)
    {prefix}/fleet/event                    events of fleet requests
    {prefix}/fleet/replay                   replay requests (sat + sequence ranges)
    {prefix}/fleet/route                    route requests (two network endpoints), answered at once
    {prefix}/fleet/tm/{packet}              fleet frame: one packet of every satellite due this tick
    {prefix}/fleet/agg/shell/{shell}       per-shell aggregates: counts, mean/min/max of key fields
    {prefix}/fleet/agg/plane/{shell}/{plane}    per-plane aggregates (same; policy: --aggregates)
    {prefix}/fleet/topology                 the laser links up, with delays and utilisation (every 10 s)
    {prefix}/fleet/latency                  the city-pair round-trip matrix (each new one)
    {prefix}/replay/{sat}/tm/{packet}       telemetry sent again on request (same payload, same seq)
    {prefix}/errors                         replies to requests that cannot be routed
    {prefix}/audit                          one record per request (cmd, fault, replay, route), accepted or not
    {prefix}/sat/{sat}/tm/{packet}          telemetry packets (schema fields)
    {prefix}/sat/{sat}/event                events: limits, FDIR, SEU/SEL, faults, commands
    {prefix}/sat/{sat}/cmd | sat/{sat}/fault    requests for one satellite
    {prefix}/sat/{sat}/reply                replies (MQTT 3.1.1 clients; MQTT 5 uses response topic)
    {prefix}/board/{board}/state            a serial bridge's board: bound satellite, link state (retained)
    {prefix}/board/{board}/tm               the board's measurements (utilisation, jobs, SEU counts, ...)
    {prefix}/board/{board}/job              the end of a job the board ran (measured time, upsets, status)
    {prefix}/board/{board}/event            link up/down, board resets, detected upsets
    {prefix}/board/{board}/cmd | /fault     requests to the board (same request/reply rules)
    {prefix}/board/{board}/reply            replies of the serial bridge
    {prefix}/bridge/{id}/status | /event    a bridge's own status and events

A shard of a sharded twin (``orbitwin run --shard K/N``) publishes its satellites' topics as above
and its own fleet-level topics (state, fleet/..., errors, audit) under ``{prefix}/shard/{K}``, so
shards never share a birth sequence, a frame or a summary; it takes requests on both
``{prefix}/fleet/...`` (every shard) and ``{prefix}/shard/{K}/fleet/...`` (this shard only). With
the network model each shard publishes its satellites' mesh inputs on ``{prefix}/shard/{K}/mesh``
every tick and reads the others'.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from twin.schema.codec import json_safe
from twin.schema.telemetry import SCHEMA_VERSION

DEFAULT_PREFIX = "orbitwin/v1"
CONTRACT_VERSION = 1


@dataclass(frozen=True)
class Topics:
    """Topic names for one prefix."""

    prefix: str = DEFAULT_PREFIX
    shard: str | None = None  # a shard's number ("+" in topic filters that match every shard); None: not sharded

    @property
    def root(self) -> str:
        """Where the fleet-level topics live: the prefix, or ``{prefix}/shard/{shard}`` for a shard."""
        return self.prefix if self.shard is None else f"{self.prefix}/shard/{self.shard}"

    @property
    def base(self) -> Topics:
        """The unsharded topics of the same prefix (the fleet requests every shard takes)."""
        return self if self.shard is None else Topics(self.prefix)

    @property
    def state(self) -> str:
        return f"{self.root}/state"

    @property
    def catalogue(self) -> str:
        return f"{self.root}/fleet/catalogue"

    @property
    def status(self) -> str:
        return f"{self.root}/fleet/status"

    @property
    def summary(self) -> str:
        return f"{self.root}/fleet/summary"

    @property
    def errors(self) -> str:
        return f"{self.root}/errors"

    @property
    def audit(self) -> str:
        """``{prefix}/audit``: the twin's audit trail, one record per request, accepted or rejected."""
        return f"{self.root}/audit"

    @property
    def replay(self) -> str:
        return f"{self.root}/fleet/replay"

    @property
    def route(self) -> str:
        """``{prefix}/fleet/route``: on-demand routes between two network endpoints (a read-only query)."""
        return f"{self.root}/fleet/route"

    def fleet_tm(self, packet: str) -> str:
        return f"{self.root}/fleet/tm/{packet}"

    @property
    def mesh(self) -> str:
        """``{prefix}/shard/{K}/mesh``: a shard's mesh inputs of each tick, for the other shards
        (:mod:`twin.runtime.mesh_exchange`; binary)."""
        return f"{self.root}/mesh"

    def fleet_agg_shell(self, shell: str) -> str:
        """``{prefix}/fleet/agg/shell/{shell}``: one shell's aggregate (:mod:`twin.contract.fleet_aggregates`)."""
        return f"{self.root}/fleet/agg/shell/{shell}"

    def fleet_agg_plane(self, shell: str, plane: str) -> str:
        """``{prefix}/fleet/agg/plane/{shell}/{plane}``: one orbital plane's aggregate."""
        return f"{self.root}/fleet/agg/plane/{shell}/{plane}"

    def replayed(self, sat: str, packet: str) -> str:
        return f"{self.prefix}/replay/{sat}/tm/{packet}"

    def fleet(self, leaf: str) -> str:
        return f"{self.root}/fleet/{leaf}"

    def sat(self, sat: str, leaf: str) -> str:
        return f"{self.prefix}/sat/{sat}/{leaf}"

    def tm(self, sat: str, packet: str) -> str:
        return f"{self.prefix}/sat/{sat}/tm/{packet}"

    def board(self, board: str, leaf: str) -> str:
        return f"{self.prefix}/board/{board}/{leaf}"

    def bridge(self, bridge_id: str, leaf: str) -> str:
        """``{prefix}/bridge/{id}/{leaf}``: a bridge's ``status`` and ``event`` topics (a shard's bridge's
        under the shard: ``{prefix}/shard/{K}/bridge/{id}/{leaf}``)."""
        return f"{self.root}/bridge/{bridge_id}/{leaf}"

    def request(self, sat: str | None, leaf: str) -> str:
        """Where a request goes: ``sat/{sat}/{leaf}``, or ``fleet/{leaf}`` when ``sat`` is None."""
        return self.fleet(leaf) if sat is None else self.sat(sat, leaf)

    def private_reply(self, *owner: str) -> str:
        """A client's own reply topic, ``{prefix}/{owner...}/reply`` (the twin replies under its prefix only
        to topics ending in ``/reply``)."""
        return "/".join((self.prefix, *owner, "reply"))

    @property
    def archive_subscriptions(self) -> tuple[str, ...]:
        """Everything an archive of the twin keeps (the InfluxDB bridge): telemetry frames and replays,
        events of satellites, fleet and bridges, replies, errors, the audit trail, fleet summary, twin status
        and the city-pair latency frames."""
        return (self.fleet_tm("+"), self.replayed("+", "+"), self.sat("+", "event"), self.fleet("event"),
                self.bridge("+", "event"), self.sat("+", "reply"), self.fleet("reply"), self.errors, self.audit,
                self.summary, self.status, self.fleet("latency"))

    @property
    def request_subscriptions(self) -> tuple[str, ...]:
        """What the twin subscribes to (with no-local, so its own publications do not echo); a shard
        also takes its own ``{prefix}/shard/{K}/fleet/+``."""
        every = Topics(self.prefix, "+")
        own = () if self.shard is None else (f"{self.root}/fleet/+", every.mesh, every.state)
        return (f"{self.prefix}/sat/+/+", f"{self.prefix}/fleet/+", *own, f"{self.prefix}/board/+/state",
                f"{self.prefix}/board/+/tm", f"{self.prefix}/board/+/job")

    def parse_board_topic(self, topic: str) -> tuple[str, str] | None:
        """``(board, leaf)`` for ``{prefix}/board/{board}/{leaf}``; else None."""
        head = f"{self.prefix}/board/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        return (parts[0], parts[1]) if len(parts) == 2 and parts[0] else None

    def parse_request_topic(self, topic: str) -> tuple[str, str | None, str] | None:
        """``(scope, sat, leaf)`` for a topic under the prefix: scope ``sat`` or ``fleet``; else None."""
        if not topic.startswith(self.prefix + "/"):
            return None
        parts = topic[len(self.prefix) + 1:].split("/")
        if len(parts) == 3 and parts[0] == "sat" and parts[1]:
            return "sat", parts[1], parts[2]
        if len(parts) == 2 and parts[0] == "fleet":
            return "fleet", None, parts[1]
        if self.shard is not None and topic.startswith(self.root + "/fleet/") and topic.count("/") == self.root.count("/") + 2:
            return "fleet", None, topic.rsplit("/", 1)[1]
        return None


def iso_utc(t: dt.datetime) -> str:
    """``2026-02-23T07:12:00.000Z``."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def dumps(obj: Any) -> bytes:
    """Compact JSON with NaN/inf turned into null (JSON has no NaN; :func:`twin.schema.codec.json_safe`)."""
    return json.dumps(json_safe(obj), separators=(",", ":"), allow_nan=False).encode()


def header(sat: str | None, t_iso: str, t_s: float, bseq: int, **extra: Any) -> dict[str, Any]:
    """The common header of every message the twin publishes."""
    h: dict[str, Any] = {"v": SCHEMA_VERSION, "t": t_iso, "t_s": round(t_s, 6), "bseq": bseq}
    if sat is not None:
        h["sat"] = sat
    h.update(extra)
    return h


def reply(status: str, request_id: str, request: str | None, **extra: Any) -> dict[str, Any]:
    """A request reply: ``status`` is accepted, completed or rejected."""
    out: dict[str, Any] = {"v": CONTRACT_VERSION, "status": status, "id": request_id}
    if request is not None:
        out["request"] = request
    out.update(extra)
    return out

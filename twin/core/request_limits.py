"""Bounds on what requests can make the twin hold or do: the one place they are set.

Every bound is a plain setting: :class:`RequestLimits` is given to the engine
(:class:`twin.core.engine.FleetTwin`), and the MQTT runtime reads the same object from the
engine. A request beyond a bound is rejected with a reason (``queue_full``,
``too_many_faults``) or, for replays, truncated with a reply that says what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestLimits:
    """How much the twin holds for requesters.

    ``queued_per_client``: requests waiting for their execution time per client (the reply route
    a request names: its response topic, ``reply_to`` or the default reply topic).
    ``queued_total``: requests waiting, all clients together (scenario steps included).
    ``faults_per_sat``: persistent faults (everything but ``seu_burst`` and ``latchup``) active or
    waiting on one satellite.
    ``replay_messages_per_request``: telemetry messages one replay request publishes again at most
    (the earliest held; the reply says how many were held and sent).
    ``replay_messages_per_s``: replayed messages published per second of wall time (token bucket;
    a tick spends at most what accrued since the previous tick, a second's worth at most), only with
    what live telemetry leaves of the outgoing queue.
    ``replay_queued_requests``: replay requests waiting to be served, all clients together.
    ``replay_scans_per_tick``: replay requests that may start (one pass over the replay buffer each)
    per tick.
    ``routes_per_tick``: distinct routes computed for route requests per tick (one Dijkstra over the
    mesh each, ~15 ms for the whole fleet); beyond it a route request is rejected ``queue_full``.
    """

    queued_per_client: int = 1_000
    queued_total: int = 10_000
    faults_per_sat: int = 64
    replay_messages_per_request: int = 50_000
    replay_messages_per_s: float = 5_000.0
    replay_queued_requests: int = 100
    replay_scans_per_tick: int = 4
    routes_per_tick: int = 10

    def __post_init__(self) -> None:
        for name in ("queued_per_client", "queued_total", "faults_per_sat", "replay_messages_per_request",
                     "replay_queued_requests", "replay_scans_per_tick", "routes_per_tick"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not self.replay_messages_per_s > 0:
            raise ValueError("replay_messages_per_s must be > 0")

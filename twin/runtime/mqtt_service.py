"""The twin on MQTT: each tick take requests in, step the fleet, publish what happened.

Single-threaded over the engine: requests that paho receives in its network thread wait in the
link's inbox and are handled at the start of the next tick (at most ``max_requests_per_tick``,
so a flood cannot stall stepping). Every request gets a reply: ``accepted`` then ``completed``
(with the result), or ``rejected`` with a machine-readable reason.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from twin.core.catalogue import shell_label
from twin.core.deployment import PHASE_NAMES
from twin.runtime.clock import Pacer
from twin.schema.commands import CommandError, Reason
from twin.contract.topics import Topics, dumps, header, iso_utc, reply
from twin.core.engine import FleetTwin
from twin.core.events import Event
from twin.runtime.mqtt_link import MqttLink
from twin.runtime.replay_buffer import ReplayBuffer
from twin.runtime.replay_queue import ReplayJob, ReplayQueue
from twin.contract.request_auth import RequestVerifier, Verdict, claimed_object
from twin.contract.request_parser import (
    ParsedRequest, Selector, decode_json, parse_replay, parse_request, parse_route, valid_reply_topic,
)
from twin.runtime.job_replies import JobReplies
from twin.runtime.route_query import RouteQuery
from twin.runtime.run_loop import RunStats, run_loop, tle_epoch_info
from twin.core.ephemeris import jd_to_datetime
from twin.runtime.status_table import GridPacer, fleet_summary
from twin.runtime.fleet_selection import select_sats, sim_seconds, watch_mask
from twin.runtime.telemetry_out import AggregatesOut, NetworkFramesOut, TelemetryOut, aggregate_encoder, prune_schedule
from twin.contract.telemetry_encoder import FrameEncoder, PacketEncoder, PacketSchedule
from twin.contract.telemetry_policy import TelemetryPolicy


@dataclass
class Route:
    """Where a request's replies go."""

    topic: str
    correlation: bytes | None
    request_id: str
    request: str | None
    sat: str | None
    authenticated: bool | None = None  # cmd/fault/replay/route requests: verified signature (every reply says so)
    kid: str | None = None  # the verified key id
    client: str | None = None  # the client id the signed request claimed


class TwinService:
    """Runs a :class:`FleetTwin` behind an :class:`MqttLink` (the contract is in :mod:`twin.contract.topics`)."""

    def __init__(
        self,
        twin: FleetTwin,
        link: MqttLink,
        schedule: PacketSchedule | None = None,
        *,
        replay_bytes: int = 256 * 2**20,
        status_every_s: float | None = None,
        max_requests_per_tick: int = 5000,
        frames: bool = True,
        auth: RequestVerifier | None = None,
        wall_clock: Callable[[], float] = time.time,
        request_budget: float = 0.25,
        policy: TelemetryPolicy | None = None,
        watched: np.ndarray | None = None,
        groups: Any = None,
    ) -> None:
        self.twin = twin
        # what is published (twin.contract.telemetry_policy; without one, ``frames`` False means frames off);
        # watched: bool per satellite (default: the policy's); groups: the aggregates' shells and planes
        # (twin.contract.fleet_aggregates.Groups; default: grouped here when the policy has aggregates)
        self.policy = policy or TelemetryPolicy(frames="all" if frames else "off")
        watched = watch_mask(twin, self.policy) if watched is None else watched
        # signed requests (twin.contract.request_auth): None takes unsigned ones, marked authenticated: false
        self.auth = auth if auth is not None else RequestVerifier({}, require=False)
        self.wall_clock = wall_clock  # issue times of signed requests are checked against this (Unix s)
        self.audit_seq = 0
        # requests take at most this fraction of a tick's wall period in a paced run, else 0.25 s, per
        # tick (a flood of them, forged or not, delays requests, never telemetry); the rest wait
        self.request_budget = request_budget
        self.request_budget_s: float | None = 0.25
        self.link = link
        self.topics: Topics = link.topics
        self.schedule = prune_schedule(schedule or PacketSchedule(twin.n, twin.dt_s), twin)
        ids = twin.catalogue.norad_ids
        self.encoders = {p: PacketEncoder(p, twin.names, ids, self.topics) for p in self.schedule.period}
        self.frames = {p: FrameEncoder(p, twin.names, ids, self.topics)
                       for p in self.schedule.period} if self.policy.frames != "off" else {}
        self.event_seq = np.zeros(twin.n + 1, dtype=np.int64)  # per satellite; last slot: fleet events
        self.reply_seq = 0
        self.boards: dict[str, Any] = {}
        self.realtime = True
        self.seq = np.zeros(twin.n, dtype=np.int64)
        self.run_id = link.bseq  # the first birth sequence of this process
        self.replay = ReplayBuffer(twin.n, replay_bytes)
        self.limits = twin.limits  # the one place every request bound is set (twin.core.request_limits)
        self.replays = ReplayQueue(self.replay, self.limits)
        self.waiting: Counter[str] = Counter()  # requests waiting per client (reply topic)
        self.counters: Counter[str] = Counter()
        self.on_event: Callable[[Event], None] | None = None  # sees every published event (the status view)
        self.routes: dict[str, Route] = {}
        self.route_query = RouteQuery(twin)  # route requests, answered from the last tick's mesh
        self.job_replies: JobReplies[Route] = JobReplies()  # run_job requests, answered through the job's life
        self._next_key = 0
        status_hz = self.schedule.topic_rates["status"]
        # sim seconds between status messages: the argument, else the schedule's status rate (0 Hz: never)
        self.status_every_s = status_every_s if status_every_s is not None else (
            float("inf") if not status_hz else 1.0 / status_hz)
        self.max_requests_per_tick = max_requests_per_tick
        self.out = TelemetryOut(link, self.schedule, self.encoders, self.frames, self.seq, self.replay, self.counters,
                                overload=link.settings.overload, max_backlog=link.settings.max_backlog,
                                watched=watched, frame_rows=self.policy.frames)
        self.agg_out = AggregatesOut(link, aggregate_encoder(twin, self.topics, self.policy, groups),
                                     self.policy.aggregates_hz,
                                     twin.dt_s, self.counters)
        self.watch_pending: dict[str, tuple[str, np.ndarray]] = {}  # set_watch requests queued: key -> (action, sats)
        # a shard's mesh is the whole fleet's: its topology names every satellite, and shard 1 alone publishes it
        self.net_out = NetworkFramesOut(link, self.schedule, twin.names if twin.shard is None else twin.shard.names,
                                        self.topics, self.counters,
                                        enabled=twin.shard is None or twin.shard.spec.index == 1)
        self.last_stats: RunStats | None = None
        self._last_status_t = -1e18
        self.grid_pacer = GridPacer()  # which summaries carry the fleet grid (the fleet maps' data)
        shells = shell_label(twin.catalogue.mean_altitude_m, twin.catalogue.inclination_deg)
        self.shells = shells
        link.birth_extra = {"run": self.run_id, "sats": twin.n, "dt_s": twin.dt_s, "seed": twin.seed, "prefix": self.topics.prefix,
                            "packets": {p: hz for p, hz in self.schedule.rates.items()},
                            "rates": dict(self.schedule.topic_rates), "overload": self.out.overload,
                            "telemetry": self.policy.describe(int(self.out.watched.sum())),
                            "tle_epoch": tle_epoch_info(twin.catalogue)}
        if twin.shard is not None:
            link.birth_extra |= {"shard": twin.shard.spec.label, "fleet_sats": len(twin.shard.names)}
        self._catalogue_version = twin.deployment.version
        link.retained_on_connect = [(self.topics.catalogue, dumps(self.catalogue_message()))]
        dep = twin.deployment
        self.out.in_orbit = lambda: (dep.version, None if dep.all_on_station else dep.in_orbit)

    def catalogue_message(self) -> dict[str, Any]:
        """The retained catalogue: every satellite (slot) with its NORAD number, shell and, while the
        constellation changes, its deployment phase (twin.core.deployment)."""
        twin = self.twin
        ids = twin.catalogue.norad_ids
        sats = [{"sat": name, "norad": int(i), "shell": sh} for name, i, sh in zip(twin.names, ids, self.shells)]
        dep = twin.deployment
        if dep.version or not dep.all_on_station:
            for row, phase in zip(sats, dep.phase.tolist()):
                row["phase"] = PHASE_NAMES[phase]
        return {"v": 1, "tle_epoch": tle_epoch_info(twin.catalogue), "sats": sats}

    # --- time ------------------------------------------------------------------------
    def now_iso(self) -> str:
        return iso_utc(jd_to_datetime(self.twin.now_jd))

    def _sim_seconds(self, at: float | str | None) -> float | None:
        return sim_seconds(self.twin, at)

    # --- requests --------------------------------------------------------------------
    def _route(self, msg: Any, default_topic: str, obj: dict[str, Any] | None, sat: str | None,
               verdict: Verdict | None = None, request: str | None = None) -> Route:
        props = getattr(msg, "properties", None)
        topic = getattr(props, "ResponseTopic", None) or (obj or {}).get("reply_to") or default_topic
        if not isinstance(topic, str) or not valid_reply_topic(topic, self.topics.prefix):
            topic = default_topic
        corr = getattr(props, "CorrelationData", None)
        rid = (obj or {}).get("id")
        if not isinstance(rid, str) or not rid or "\x00" in rid or not rid.isprintable():
            rid = corr.decode("utf-8", "replace") if corr else f"r{self.counters['requests']}"
        name = request
        if obj is not None and name is None:
            name = obj.get("command", obj.get("fault"))
            name = name if isinstance(name, str) else None
        if verdict is None:
            return Route(topic, corr, rid[:256], name, sat)
        return Route(topic, corr, rid[:256], name, sat, verdict.authenticated, verdict.kid if verdict.ok else None,
                     verdict.client if verdict.ok else None)

    def _send_reply(self, route: Route, status: str, **extra: Any) -> None:
        props = None
        if route.correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = route.correlation
        body = reply(status, route.request_id, route.request, t=self.now_iso(), t_s=self.twin.t_s, run=self.run_id,
                     seq=self.reply_seq, **extra)
        self.reply_seq += 1
        if route.sat is not None:
            body["sat"] = route.sat
        if self.twin.shard is not None:
            body["shard"] = self.twin.shard.spec.label
        if route.authenticated is not None:
            body["authenticated"] = route.authenticated
            if route.kid is not None:
                body["kid"] = route.kid
        self.link.publish(route.topic, dumps(body), qos=1, properties=props)
        self.counters[f"replies_{status}"] += 1

    def _reject(self, route: Route, exc: CommandError) -> None:
        self.counters["rejected"] += 1
        self.counters[f"rejected_{exc.reason.value}"] += 1
        if route.request == "route":
            self.counters["routes_rejected"] += 1
        self._send_reply(route, "rejected", **exc.as_dict())

    def process_requests(self) -> int:
        """Handle waiting requests (bounded per tick in number and, in a paced run, in wall time:
        ``request_budget_s``); returns how many were handled."""
        handled = 0
        deadline = None if self.request_budget_s is None else time.perf_counter() + self.request_budget_s
        while handled < self.max_requests_per_tick:
            if deadline is not None and handled and time.perf_counter() >= deadline:
                self.counters["request_budget_ticks"] += 1  # the rest wait for the next tick
                break
            try:
                msg = self.link.inbox.get_nowait()
            except Exception:
                break
            handled += 1
            self.counters["requests"] += 1
            try:
                self._handle(msg)
            except Exception as exc:  # noqa: BLE001 - one bad request must never stop the twin
                self.counters["internal_errors"] += 1
                try:
                    route = Route(self.topics.errors, None, f"r{self.counters['requests']}", None, None)
                    self._reject(route, CommandError(Reason.MALFORMED, f"request could not be handled: {type(exc).__name__}",
                                                     "payload"))
                except Exception:  # noqa: BLE001
                    pass
        return handled

    def _handle(self, msg: Any) -> None:
        board = self.topics.parse_board_topic(msg.topic)
        if board is not None:
            self._board_message(board[0], board[1], msg.payload)
            return
        parsed = self.topics.parse_request_topic(msg.topic)
        if parsed is not None and parsed[2] in ("reply", "event", "status", "summary", "catalogue", "topology", "latency"):
            self.counters["output_topic_echo"] += 1  # an output topic (our own over MQTT 3.1.1): ignored
            return
        if parsed is None or parsed[2] not in ("cmd", "fault", "replay", "route"):
            self.counters["unknown_topic"] += 1
            route = self._route(msg, self.topics.errors, None, None)
            self._reject(route, CommandError(Reason.UNKNOWN_COMMAND, f"no requests are taken on {msg.topic!r}", "topic"))
            return
        scope, sat, leaf = parsed
        if self._not_ours(scope, sat, leaf):
            return
        # a fleet request on {prefix}/fleet/... is answered there, by every shard; one on a shard's own
        # {prefix}/shard/{K}/fleet/... under that shard
        default = self.topics.sat(sat, "reply") if scope == "sat" and sat else (
            self.topics.fleet("reply") if msg.topic.startswith(self.topics.root + "/fleet/")
            else self.topics.base.fleet("reply"))
        kind = "route" if leaf == "route" else None  # route replies say so even when the payload is garbage
        if kind:
            self.counters["route_requests"] += 1
        verdict = Verdict(True, False)  # replay and route requests are not signed: the broker's ACL says who
        if leaf in ("cmd", "fault"):  # verified before anything else (twin.contract.request_auth)
            verdict = self.auth.verify(msg.topic, leaf, scope == "fleet", msg.payload, self.wall_clock())
            if not verdict.ok:
                assert verdict.reason is not None
                route = self._route(msg, default, claimed_object(msg.payload), sat, verdict)
                self._reject(route, CommandError(verdict.reason, verdict.message, verdict.field))
                self._audit(msg, route, verdict, verdict.reason.value)
                return
        obj = verdict.body
        if obj is None:
            try:
                obj = decode_json(msg.payload)
            except CommandError as exc:
                self.counters["malformed"] += 1
                route = self._route(msg, default, None, sat, verdict, kind)
                self._reject(route, exc)
                self._audit(msg, route, verdict, exc.reason.value)
                return
        route = self._route(msg, default, obj, sat, verdict, kind)
        try:
            self._request(route, obj, scope, sat, leaf)
        except CommandError as exc:
            self._reject(route, exc)
            self._audit(msg, route, verdict, exc.reason.value)
            return
        self._audit(msg, route, verdict, None)

    def _not_ours(self, scope: str, sat: str | None, leaf: str) -> bool:
        """A shard leaves a request to the shard that owns its satellite (shard 1 answers for a satellite
        no shard has) and route requests to shard 1 (counted as ``other_shard``)."""
        m = self.twin.shard
        if m is None:
            return False
        first = m.spec.index == 1
        if scope == "sat" and sat is not None and sat not in self.twin.index:
            mine = first and not m.owned_elsewhere(sat)
        elif leaf == "route":
            mine = first
        else:
            return False
        if not mine:
            self.counters["other_shard"] += 1
        return not mine

    def _audit(self, msg: Any, route: Route, verdict: Verdict, reason: str | None) -> None:
        """One record on ``{prefix}/audit`` per request: topic, key id, claimed client, result (and reason).

        The client id is the one a signed request states in ``auth.client`` (MQTT 5 does not show a
        subscriber who published), else the MQTT 5 user property ``client_id`` if the sender set one
        (unverified), else null."""
        client = verdict.client
        if client is None:
            for k, v in getattr(getattr(msg, "properties", None), "UserProperty", None) or ():
                if k == "client_id" and isinstance(v, str):
                    client = "".join(c if c.isprintable() else "?" for c in v[:128])
                    break
        body = header(None, self.now_iso(), self.twin.t_s, self.link.bseq, run=self.run_id, seq=self.audit_seq,
                      wall_time=round(self.wall_clock(), 3), topic=msg.topic[:512], id=route.request_id,
                      request=route.request, kid=verdict.kid, client=client, authenticated=verdict.authenticated,
                      result="rejected" if reason else "accepted", reason=reason)
        self.audit_seq += 1
        self.link.publish(self.topics.audit, dumps(body), qos=1)
        self.counters["audited"] += 1

    def _request(self, route: Route, obj: dict[str, Any], scope: str, sat: str | None, leaf: str) -> None:
        """Check, parse and queue one request (raises CommandError)."""
        rt = obj.get("reply_to")
        if rt is not None and (not isinstance(rt, str) or not valid_reply_topic(rt, self.topics.prefix)):
            raise CommandError(Reason.BAD_ARGUMENT, "reply_to must be a topic without wildcards, outside the "
                               "twin's output topics", "reply_to")
        if leaf == "replay":
            if scope != "fleet":
                raise CommandError(Reason.UNKNOWN_COMMAND, "replay requests go to the fleet/replay topic", "topic")
            self._replay(route, obj)
            return
        if leaf == "route":
            if scope != "fleet":
                raise CommandError(Reason.UNKNOWN_COMMAND, "route requests go to the fleet/route topic", "topic")
            self._answer_route(route, obj)
            return
        req = parse_request(obj, leaf, fleet=scope == "fleet")
        target = self._resolve(req, sat)
        if isinstance(target, np.ndarray) and target.size == 0:  # a shard none of whose satellites is selected
            self.counters["other_shard"] += 1
            self._send_reply(route, "accepted", execute_t_s=self.twin.t_s, sats=0)
            self._send_reply(route, "completed", result={"applied": 0})
            return
        self._submit(route, req, target)

    def _board_message(self, board: str, leaf: str, payload: bytes) -> None:
        """A board's state (bind/unbind) or measurement from ``orbitwin bridge serial``, checked at the
        boundary: a bad one is counted (``board_rejected_<reason>``) and answered on the board's event topic."""
        from twin.contract.board_messages import parse_board_job, parse_board_measurement, parse_board_state

        self.counters["board_messages"] += 1
        try:
            if leaf == "state":
                self._board_state(board, parse_board_state(payload))
            elif leaf == "tm":
                if board not in self.boards:
                    self.counters["board_tm_unbound"] += 1  # a board bound elsewhere, or not yet
                    return
                self.boards[board].update(parse_board_measurement(payload))
                self.counters["board_tm"] += 1
            elif leaf == "job":  # a job the board ran ended: the engine ends it in the scheduler next tick
                if board not in self.boards:
                    self.counters["board_job_unbound"] += 1
                    return
                result = parse_board_job(payload)
                self.counters["board_jobs" if self.boards[board].job_done(result) else "board_job_unknown"] += 1
        except CommandError as exc:
            self.counters["board_rejected"] += 1
            self.counters[f"board_rejected_{exc.reason.value}"] += 1
            body = {"v": 1, "board": board, "source": "twin", "name": f"{leaf}_rejected", "severity": "warning",
                    "t": self.now_iso(), "t_s": self.twin.t_s, "run": self.run_id, "detail": exc.as_dict()}
            self.link.publish(self.topics.board(board, "event"), dumps(body), qos=1)

    def _board_state(self, board: str, st: Any) -> None:
        """Bind, rebind, relink or unbind a board (``st``: a checked :class:`~twin.contract.board_messages.BoardState`)."""
        from twin.runtime.hil_binding import BoardBackend

        current = self.boards.get(board)
        if current is not None and st.state == "online" and st.sat == current.sat:
            current.linked = st.linked  # link up/down of a bound board
            current.jobs_per_s_max = st.jobs_per_s_max or current.jobs_per_s_max  # measured again at each boot
            return
        old = self.boards.pop(board, None)
        if old is not None:
            self.twin.detach_backend(self.twin.index[old.sat])
        if st.state == "offline":
            return
        if self.twin.shard is not None and self.twin.shard.owned_elsewhere(st.sat):
            self.counters["other_shard"] += 1  # that shard binds it
            return
        if st.sat not in self.twin.index:
            self.counters["board_unknown_sat"] += 1
            raise CommandError(Reason.UNKNOWN_SATELLITE, f"this twin has no satellite {st.sat!r}", "sat")
        backend = BoardBackend(board, st.sat, self.twin.design.payload,
                               lambda t, p: self.link.publish(t, p, qos=1), self.topics.prefix,
                               realtime=self.realtime, jobs_per_s_max=st.jobs_per_s_max)
        backend.linked = st.linked
        self.boards[board] = backend
        i = self.twin.index[st.sat]
        self.twin.attach_backend(i, backend)
        # the board starts from what the twin has commanded so far
        backend.command("set_payload_load", {"load": float(self.twin.payload.load_setpoint[i])})
        backend.command("throttle", {"factor": float(min(self.twin.payload.cmd_throttle[i],
                                                         self.twin.payload.fdir_throttle[i]))})
        self.counters["boards_bound"] += 1

    def _resolve(self, req: ParsedRequest, sat: str | None) -> Any:
        if req.selector is None:
            if sat not in self.twin.index:
                raise CommandError(Reason.UNKNOWN_SATELLITE, f"unknown satellite {sat!r}", "sat")
            return sat
        return self._select(req.selector)

    def _select(self, s: Selector) -> np.ndarray:
        return select_sats(self.twin, s)

    def _admit(self, route: Route) -> None:
        """Raise ``queue_full`` when this client (its reply topic) or all clients together have the most
        requests waiting that :class:`~twin.core.request_limits.RequestLimits` allows."""
        lim = self.limits
        if self.waiting[route.topic] >= lim.queued_per_client:
            raise CommandError(Reason.QUEUE_FULL, f"{self.waiting[route.topic]} of your requests already wait (at most "
                               f"{lim.queued_per_client} per client); try again after some have run", None)
        if len(self.routes) + len(self.replays) >= lim.queued_total:
            raise CommandError(Reason.QUEUE_FULL, f"{lim.queued_total} requests already wait (the most allowed); "
                               "try again after some have run", None)

    def _submit(self, route: Route, req: ParsedRequest, target: Any) -> None:
        self._admit(route)
        key = f"k{self._next_key}"
        self._next_key += 1
        at_s = self._sim_seconds(req.at)
        queued = self.twin.submit(req.kind, req.name, req.args, target, at_s=at_s, duration_s=req.duration_s,
                                  request_id=key)
        self.routes[key] = route
        if req.name == "set_watch":  # the runtime's telemetry policy: applied when the engine runs it
            self.watch_pending[key] = (queued.args["action"], queued.sats)
        self.waiting[route.topic] += 1
        self.counters["accepted"] += 1
        late = {} if at_s is None or at_s >= queued.at_s else {"late_s": round(queued.at_s - at_s, 6)}
        # a job is "accepted" when it is placed (twin.runtime.job_replies); on receipt it is "queued"
        status = "queued" if req.name == "run_job" else "accepted"
        self._send_reply(route, status, execute_t_s=queued.at_s, sats=int(queued.sats.size), **late)

    def _replay(self, route: Route, obj: dict[str, Any]) -> None:
        """Queue a replay request; it is served after live telemetry, on the replay budget."""
        rq = parse_replay(obj)
        m = self.twin.shard
        for sat, lo, hi in rq.ranges:
            if sat not in self.twin.index and (m is None or sat not in m.index):
                raise CommandError(Reason.UNKNOWN_SATELLITE, f"unknown satellite {sat!r}", "sat")
        if m is not None:  # a shard replays its own satellites' ranges; the others are another shard's
            rq = dataclasses.replace(rq, ranges=tuple(r for r in rq.ranges if r[0] in self.twin.index))
            if not rq.ranges:
                self.counters["other_shard"] += 1
                return
        self._admit(route)
        if len(self.replays) >= self.limits.replay_queued_requests:
            raise CommandError(Reason.QUEUE_FULL, f"{len(self.replays)} replay requests already wait (the most "
                               "allowed); try again later", None)
        sats = np.array([self.twin.index[sat] for sat, _, _ in rq.ranges], dtype=np.int64)
        first = np.array([r[1] for r in rq.ranges], dtype=np.int64)
        last = np.array([r[2] for r in rq.ranges], dtype=np.int64)
        self.replays.add(ReplayJob(route, sats, first, last, extra={"ranges": len(rq.ranges)}))
        self.waiting[route.topic] += 1

    def _answer_route(self, route: Route, obj: dict[str, Any]) -> None:
        """Answer a route request at once from the last tick's mesh: a single ``completed`` (or ``rejected``).

        At most ``limits.routes_per_tick`` distinct routes are computed per tick (one Dijkstra over the
        mesh each); the same pair asked again in the tick is answered from the first answer."""
        rq = parse_route(obj)
        q = self.route_query
        a, label_a = q.endpoint(rq.a, "from", rq.jurisdiction)
        b, label_b = q.endpoint(rq.b, "to", rq.jurisdiction)
        if not q.cached(a, b) and q.computed_this_tick() >= self.limits.routes_per_tick:
            raise CommandError(Reason.QUEUE_FULL, f"{self.limits.routes_per_tick} routes were already computed this "
                               "tick (the most allowed); ask again after the next tick", None)
        result = {"from": label_a, "to": label_b, **q.route(a, b)}
        if rq.jurisdiction is not None:
            result["jurisdiction"] = rq.jurisdiction
        self.counters["routes_completed"] += 1
        if not result["reachable"]:
            self.counters["routes_unreachable"] += 1
        self._send_reply(route, "completed", result=result)

    def _serve_replays(self) -> None:
        """Replayed messages with what live telemetry left this tick; replies of the replays that finished."""
        topics = self.topics

        def publish(topic: str, payload: bytes) -> bool:
            head, sat, _, packet = topic.rsplit("/", 3)  # {prefix}/sat/{sat}/tm/{packet}
            return self.link.publish(topics.replayed(sat, packet), payload, qos=1)

        room = self.link.settings.max_queued // 2 - self.link.outstanding
        for job in self.replays.serve(publish, room):
            self._release(job.route)
            found = job.found
            assert found is not None
            self.counters["replayed"] += job.sent
            extra: dict[str, Any] = {"found": job.sent, "held": found.held, "evicted": found.evicted, **job.extra}
            if found.held > job.sent:
                self.counters["replays_truncated"] += 1
                extra |= {"truncated": True, "limit": self.limits.replay_messages_per_request}
            self._send_reply(job.route, "completed", **extra)

    def _release(self, route: Route) -> None:
        """A waiting request of this client ran (or finished)."""
        self.waiting[route.topic] -= 1
        if self.waiting[route.topic] <= 0:
            del self.waiting[route.topic]

    # --- output ------------------------------------------------------------------------
    def publish_tick(self) -> None:
        """Telemetry due this tick, events (and the replies they complete), fleet summary, status."""
        twin, link = self.twin, self.link
        t_iso, t_s = self.now_iso(), twin.t_s
        bseq = link.bseq
        if twin.deployment.version != self._catalogue_version:  # launches, arrivals, re-entries: a new catalogue
            self._catalogue_version = twin.deployment.version
            payload = dumps(self.catalogue_message())
            link.retained_on_connect = [(self.topics.catalogue, payload)]
            link.publish(self.topics.catalogue, payload, qos=1, retain=True)
        self.out.publish(twin, t_iso, t_s, bseq, self.run_id)  # waits or sheds under backpressure
        self.agg_out.publish(twin, t_iso, t_s, bseq, self.run_id)  # per-shell and per-plane aggregates, if on
        for ev in twin.drain_events():
            self._publish_event(ev, t_iso, bseq)
        if twin.compute is not None:
            gateways = twin.compute.gateways.names if twin.compute.gateways is not None else ()
            for route, status, fields, last in self.job_replies.replies(twin.compute.scheduler.drain_events(),
                                                                        twin.names, gateways):
                self._send_reply(route, status, **fields)
                if last:
                    self._release(route)
        if self.schedule.topic_due("summary", twin.tick):
            summary = fleet_summary(twin, with_grid=self.grid_pacer.due(t_s))
            link.publish(self.topics.summary, dumps(header(None, t_iso, t_s, bseq, tick=twin.tick, **summary)), qos=1)
        self.net_out.publish(twin, t_iso, t_s, bseq, self.run_id)  # topology and city-latency frames
        self._serve_replays()  # after this tick's live messages, with what they left
        if t_s - self._last_status_t >= self.status_every_s:
            self.publish_status()

    def publish_status(self) -> None:
        """The twin's status on ``{prefix}/fleet/status`` now (also at the end of a run)."""
        self._last_status_t = self.twin.t_s
        body = header(None, self.now_iso(), self.twin.t_s, self.link.bseq, **self.status())
        self.link.publish(self.topics.status, dumps(body), qos=1)

    def _publish_event(self, ev: Event, t_iso: str, bseq: int) -> None:
        detail = dict(ev.detail)
        route = None
        key = detail.get("request_id")
        if isinstance(key, str) and key in self.routes:
            route = self.routes.pop(key)
            detail["request_id"] = route.request_id
            result = detail.get("result")
            watch = self.watch_pending.pop(key, None)
            if watch is not None and ev.name == "command_completed" and isinstance(result, dict):
                result["watched"] = self._set_watch(*watch)
            if route.request == "run_job" and ev.name == "command_completed" and isinstance(result, dict):
                self.job_replies.bind(int(result["job_id"]), route)  # its replies follow the job's life
                route = None
            else:
                self._release(route)
        sat = self.twin.names[ev.sat] if ev.sat >= 0 else None
        slot = ev.sat if ev.sat >= 0 else self.twin.n
        seq = int(self.event_seq[slot])
        self.event_seq[slot] += 1
        body = header(sat, t_iso, self.twin.t_s, bseq, run=self.run_id, seq=seq, kind=ev.kind, name=ev.name,
                      severity=ev.severity, detail=detail)
        topic = self.topics.sat(sat, "event") if sat is not None else self.topics.fleet("event")
        self.link.publish(topic, dumps(body), qos=1)
        self.counters["events"] += 1
        if self.on_event is not None:
            self.on_event(ev)
        if route is not None:
            if ev.name in ("command_completed", "fault_applied"):
                self._send_reply(route, "completed", result=detail.get("result"))
            else:
                result = detail.get("result") or {}
                self.counters["rejected"] += 1
                self._send_reply(route, "rejected", **{k: v for k, v in result.items()})

    def _set_watch(self, action: str, sats: np.ndarray) -> int:
        """Change the watched selection (from the next tick's telemetry); the birth says so from then on."""
        watched = self.out.set_watch(action, sats)
        self.link.birth_extra["telemetry"] = self.policy.describe(watched)
        return watched

    def status(self) -> dict[str, Any]:
        """Runtime counters for the status topic and the status table."""
        st = self.last_stats
        return {
            "tick": self.twin.tick,
            "step_ms": None if st is None else round(st.last_step_s * 1e3, 3),
            "lag_s": None if st is None else round(st.lag_s, 3),
            "max_lag_s": None if st is None else round(st.max_lag_s, 3),
            # when each tick's messages reached the broker, against when the tick was due (s)
            "publish_lag_s": round(max(self.link.delivery.last_s, self.link.delivery.pending_s()), 3),
            "max_publish_lag_s": round(max(self.link.delivery.max_s, self.link.delivery.pending_s()), 3),
            **self.out.status(),
            "mqtt": {"connected": self.link.connected.is_set(), "bseq": self.link.bseq,
                     "connects": self.link.stats.connects, "published": self.link.stats.published,
                     "acked": self.link.stats.acked, "outstanding": self.link.outstanding,
                     "refused_queue_full": self.link.stats.refused_queue_full, "rebirths": self.link.stats.rebirths,
                     "lost_qos0_disconnected": self.link.stats.lost_qos0_disconnected,
                     "queue_full_waits": self.link.stats.queue_full_waits},
            "counters": dict(self.counters),
            "replay_buffer_bytes": self.replay.nbytes,
            "queued_requests": self.twin.queued,
            "replays_waiting": len(self.replays),
            "board_samples_rejected": self.twin.board_samples_rejected,
            "auth": {"required": self.auth.require, "keys": len(self.auth.keys), "window_s": self.auth.window_s,
                     "nonces": len(self.auth.nonces)},
        }

    # --- loop ----------------------------------------------------------------------------
    def run(
        self,
        pacer: Pacer,
        *,
        duration_s: float | None = None,
        on_tick: Callable[[FleetTwin, RunStats], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RunStats:
        """Step and publish until ``duration_s`` of sim time has passed (forever when None)."""
        stats = RunStats()
        self.last_stats = stats
        self.realtime = pacer.speed == 1.0
        if pacer.speed:
            self.request_budget_s = self.request_budget * self.twin.dt_s / pacer.speed
        for b in self.boards.values():
            b.realtime = self.realtime

        self.link.delivery.clock = pacer.wall

        def gate() -> float:
            return self.out.gate(self.twin.tick + 1, should_stop)

        def tick() -> None:
            due = pacer.due_wall(self.twin.t_s + self.twin.dt_s)
            self.process_requests()
            self.twin.step()
            self.publish_tick()
            self.link.delivery.mark(self.link.stats.published, due)

        stats = run_loop(self.twin, pacer, duration_s=duration_s, on_tick=on_tick, should_stop=should_stop,
                         tick=tick, stats=stats, gate=gate)
        if self.link.connected.is_set() and self.status_every_s != float("inf"):
            self.publish_status()  # the final counters (shed, lag) of the run
        return stats

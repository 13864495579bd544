"""A Python client of the twin over the one MQTT door: requests with their replies, telemetry and events.

::

    with OrbitwinClient.connect("mqtt://localhost:1883") as c:
        hk = c.telemetry("STARLINK-1008", fields=["payload_temp_k"])
        reply = c.fault("STARLINK-1008", "heatpipe_degradation", efficiency=0.2)   # the completed reply
        c.command("STARLINK-1008", "clear_fault", fault_id=reply["result"]["fault_id"])
        for sample in hk:
            print(sample.t_s, sample.fields["payload_temp_k"])

Every request gets its replies on the client's own reply topic (the MQTT 5 response topic with the
request id as correlation data; ``reply_to`` over MQTT 3.1.1), matched by id. Twin requests are sent
once the twin's birth has been seen on its retained state topic (a twin still starting would miss
them). Commands and faults are signed when the client has a key (docs/mqtt.md, "Signed requests").
Timeouts are wall seconds; every time in a reply or sample is sim time.
"""

from __future__ import annotations

import fnmatch
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from twin.contract.request_auth import Signer
from twin.contract.topics import DEFAULT_PREFIX, Topics
from twin.mqtt import MqttConnection, MqttSettings, reply_properties
from twin.schema.telemetry import FIELDS, PACKETS

from orbitwin.client.bodies import replay_body, request_body, route_body
from orbitwin.client.errors import ReplyTimeout
from orbitwin.client.pending import PendingRequest
from orbitwin.client.streams import EventStream, Stream, TelemetryStream, topic_matches

Sats = str | Sequence[str] | None  # a name, a glob (``STARLINK-10*``), several names, or None: every satellite
_PACKET_OF = {f.name: f.packet for f in FIELDS}
_PACKETS = tuple(p.name for p in PACKETS)


class OrbitwinClient:
    """One connection to the broker the twin is on (a context manager: closes on exit).

    ``broker``: :class:`~twin.mqtt.MqttSettings` (credentials, TLS, protocol) or a URL. ``signer``
    signs commands and faults; or give ``key_id`` and ``key_secret_file`` (the secret is read from the
    file). ``timeout_s``: the default wall-clock wait for replies and stream items.
    """

    def __init__(self, broker: MqttSettings | str = "mqtt://127.0.0.1:1883", *, prefix: str = DEFAULT_PREFIX,
                 client_id: str | None = None, signer: Signer | None = None, key_id: str | None = None,
                 key_secret_file: str | None = None, timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0) -> None:
        self.settings = MqttSettings.coerce(broker)
        self.topics = Topics(prefix)
        self.client_id = client_id or f"orbitwin-client-{uuid.uuid4().hex[:8]}"
        if (key_id is None) != (key_secret_file is None):
            raise ValueError("signing needs both key_id and key_secret_file")
        if key_id is not None and key_secret_file is not None:
            from twin.runtime.request_keys import make_signer

            signer = make_signer(key_id, key_secret_file, self.client_id)
        self.signer = signer
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.reply_topic = self.topics.private_reply("client", self.client_id)
        self.birth: dict[str, Any] | None = None  # the twin's current birth (None: not online)
        self._births: dict[Any, dict[str, Any]] = {}  # by shard label (None: an unsharded twin)
        self._online = threading.Event()
        self._pending: dict[str, PendingRequest] = {}
        self._streams: list[Stream[Any]] = []
        self._filters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._subacks = threading.Condition()
        self._suback_count = 0
        self._next_id = 0
        self._conn = MqttConnection(self.settings, client_id=self.client_id, on_message=self._on_message,
                                    on_connect=self._on_connect)
        self._conn.client.on_subscribe = self._on_suback
        self.started = False

    @classmethod
    def connect(cls, broker: MqttSettings | str = "mqtt://127.0.0.1:1883", **options: Any) -> OrbitwinClient:
        """A started client (see the class for ``options``)."""
        return cls(broker, **options).start()

    def start(self) -> OrbitwinClient:
        """Connect (up to ``connect_timeout_s``); raises :class:`~twin.mqtt.MqttConnectError` with the reason."""
        with self._subacks:
            before = self._suback_count
        self._conn.start(self.connect_timeout_s)
        self.started = True
        self._wait_suback(before, "the reply and state subscriptions")
        return self

    def close(self) -> None:
        """Disconnect; open streams end."""
        for s in list(self._streams):
            s.closed = True
        if self.started:
            self._conn.stop()
            self.started = False

    def __enter__(self) -> OrbitwinClient:
        return self if self.started else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the network thread ----------------------------------------------------------------
    def _on_connect(self, conn: MqttConnection) -> None:
        with self._lock:  # the twin's birth, or its shards' ({prefix}/shard/+/state)
            filters = [self.reply_topic, self.topics.state, Topics(self.topics.prefix, "+").state, *self._filters]
        conn.subscribe(filters, qos=1)

    def _on_suback(self, *args: Any) -> None:
        with self._subacks:
            self._suback_count += 1
            self._subacks.notify_all()

    def _wait_suback(self, before: int, what: str) -> None:
        with self._subacks:
            if not self._subacks.wait_for(lambda: self._suback_count > before, self.timeout_s):
                raise ReplyTimeout(f"the broker did not acknowledge {what} within {self.timeout_s:g} s")

    def _on_message(self, msg: Any) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        topic = msg.topic
        if topic == self.topics.state or (topic.endswith("/state") and topic.startswith(self.topics.prefix + "/shard/")):
            self._state(body)
            return
        rid = body.get("id")
        if "status" in body and isinstance(rid, str):
            pending = self._pending.get(rid)
            if pending is not None:
                pending.add(body)
                if pending.done:
                    self._pending.pop(rid, None)
        for stream in list(self._streams):
            if stream.wants(topic):
                stream.feed(topic, body)

    def _state(self, body: dict[str, Any]) -> None:
        """A birth or death of the twin or of one of its shards (``shard``: ``K/N``): online once every
        shard is, offline when none is."""
        key = body.get("shard")
        if body.get("state") == "online":
            self._births[key] = body
            self.birth = body
            if self._all_shards_born():  # a sharded twin takes requests once every shard listens
                self._online.set()
        elif key in self._births and body.get("bseq") == self._births[key].get("bseq"):
            del self._births[key]  # a death of that birth; a stale one (another bseq) is ignored
            self.birth = next(iter(self._births.values()), None)
            if self.birth is None:
                self._online.clear()

    def _all_shards_born(self) -> bool:
        """The births seen cover the twin: an unsharded birth, or one from each of the N shards (``K/N``)."""
        labels = [k for k in self._births if k is not None]
        if None in self._births or not labels:
            return True
        try:
            count = int(str(labels[0]).split("/")[1])
        except (IndexError, ValueError):
            return True
        return len(labels) >= count

    # --- requests ------------------------------------------------------------------------
    def wait_online(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The twin's birth (``run``, ``sats``, ``dt_s``, ``seed``, ...) once it is online."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        if not self._online.wait(wait):
            raise ReplyTimeout(f"the twin is not online: no birth on {self.topics.state} within {wait:g} s")
        assert self.birth is not None
        return self.birth

    def request(self, topic: str, body: dict[str, Any], what: str, *, sign: bool = False,
                to_twin: bool = True, timeout_s: float | None = None) -> PendingRequest:
        """Publish one request (``body`` gets an ``id`` if it has none) and return its :class:`PendingRequest`.

        ``sign``: sign it with the client's key, if it has one; ``to_twin``: wait for the twin's birth first.
        """
        wait = self.timeout_s if timeout_s is None else timeout_s
        if not self.started:
            raise RuntimeError("the client is not connected: use OrbitwinClient.connect(...) or start()")
        if to_twin:
            self.wait_online(wait)
        with self._lock:
            self._next_id += 1
            rid = str(body.get("id") or f"{self.client_id}-{self._next_id}")
        body = {**body, "id": rid} | ({} if self._conn.v5 else {"reply_to": self.reply_topic})
        payload = self.signer(topic, body) if sign and self.signer is not None else json.dumps(body).encode()
        # a fleet command or fault is answered by every shard of a sharded twin (routes and replays by one)
        pending = PendingRequest(rid, what, fleet=topic in (self.topics.fleet("cmd"), self.topics.fleet("fault")))
        self._pending[rid] = pending
        info = self._conn.publish(topic, payload, qos=1, properties=reply_properties(self.reply_topic, rid.encode()))
        info.wait_for_publish(wait)
        return pending

    def send(self, sat: str | None, kind: str, name: str, args: dict[str, Any] | None = None, *,
             select: Any = None, at: float | str | None = None, duration_s: float | None = None,
             request_id: str | None = None, timeout_s: float | None = None) -> PendingRequest:
        """Send a command or fault (``kind``) without waiting for its end: to satellite ``sat``, or with
        ``sat`` None to the fleet with ``select`` (``"*"``, ``{"sats": [...]}``, ``{"names": "GLOB"}``, ...).

        Use it for a time-tagged request (``at`` in sim seconds since start, or ISO 8601 UTC): its
        ``completed`` reply comes when the sim clock reaches it.
        """
        fleet = sat is None
        if fleet and select is None:
            raise ValueError("a fleet request (sat None) needs select")
        body = request_body(kind, name, args, fleet=fleet, select=select, at=at, duration_s=duration_s,
                            request_id=request_id)
        leaf = "cmd" if kind == "command" else "fault"
        what = f"{kind} {name!r} " + (f"on {sat}" if sat else f"on the fleet ({select})")
        return self.request(self.topics.request(sat, leaf), body, what, sign=True, timeout_s=timeout_s)

    def command(self, sat: str | None, name: str, *, args: dict[str, Any] | None = None, select: Any = None,
                at: float | str | None = None, timeout_s: float | None = None, **kwargs: Any) -> dict[str, Any]:
        """Run a command (arguments as keywords, or ``args``) and return its ``completed`` reply.

        Raises :class:`~orbitwin.client.errors.RequestRejected` on ``rejected`` and
        :class:`~orbitwin.client.errors.ReplyTimeout` (a TimeoutError) when no final reply comes.
        """
        wait = self.timeout_s if timeout_s is None else timeout_s
        pending = self.send(sat, "command", name, {**(args or {}), **kwargs}, select=select, at=at, timeout_s=wait)
        return pending.result(wait)

    def fault(self, sat: str | None, name: str, *, args: dict[str, Any] | None = None, select: Any = None,
              at: float | str | None = None, duration_s: float | None = None, timeout_s: float | None = None,
              **kwargs: Any) -> dict[str, Any]:
        """Inject a fault and return its ``completed`` reply (``result.fault_id`` ends it with ``clear_fault``);
        ``duration_s``: sim seconds until it ends by itself. Raises as :meth:`command`."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        pending = self.send(sat, "fault", name, {**(args or {}), **kwargs}, select=select, at=at,
                            duration_s=duration_s, timeout_s=wait)
        return pending.result(wait)

    def run_job(self, sat: str | None, *, select: Any = None, timeout_s: float | None = None,
                **args: Any) -> dict[str, Any]:
        """Submit a compute job (``run_job``: ``kind``, ``work_dev_s``, ``source``, ...) and return its
        ``completed`` reply; ``failed`` (deadline missed) raises like ``rejected``."""
        return self.command(sat, "run_job", args=args, select=select, timeout_s=timeout_s)

    def route(self, a: str | dict[str, Any], b: str | dict[str, Any], *, jurisdiction: str | None = None,
              timeout_s: float | None = None) -> dict[str, Any]:
        """The route between two ends (``city:London``, ``gateway:NAME``, ``sat:NAME``, ``point:LAT,LON`` or a
        dict) over the twin's last tick: its ``completed`` reply (``result``: path, rtt_ms, ...)."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        pending = self.request(self.topics.route, route_body(a, b, jurisdiction), f"route {a} -> {b}",
                               timeout_s=wait)
        return pending.result(wait)

    def replay(self, sat: str | None = None, from_seq: int | None = None, to_seq: int | None = None, *,
               ranges: list[tuple[str, int, int]] | None = None, timeout_s: float | None = None) -> dict[str, Any]:
        """Ask for telemetry again (``seq`` ranges, inclusive); the ``completed`` reply says ``found``,
        ``held``, ``evicted``. The messages come on ``{prefix}/replay/...``: :meth:`telemetry` with
        ``replayed=True`` opened before."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        body = replay_body(sat, from_seq, to_seq, ranges)
        pending = self.request(self.topics.replay, body, f"replay {body}", timeout_s=wait)
        return pending.result(wait)

    def board_request(self, board: str, kind: str, name: str, args: dict[str, Any] | None = None, *,
                      timeout_s: float | None = None) -> dict[str, Any]:
        """A command (``kind`` ``command``: set_load, reset, ...) or fault (``fault``: seu, latchup, hang)
        to a serial bridge's board, directly; returns its ``completed`` reply (the board's ACK)."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        if kind not in ("command", "fault"):
            raise ValueError(f"kind must be 'command' or 'fault', not {kind!r}")
        if not self._conn.v5:  # the serial bridge answers MQTT 3.1.1 requests on its default reply topic
            self._subscribe((self.topics.board(board, "reply"),))
        body = {kind: name, "args": dict(args or {})}
        leaf = "cmd" if kind == "command" else "fault"
        pending = self.request(self.topics.board(board, leaf), body, f"board {kind} {name!r} on {board}",
                               to_twin=False, timeout_s=wait)
        return pending.result(wait)

    # --- streams -------------------------------------------------------------------------
    def telemetry(self, sats: Sats = None, packets: str | Sequence[str] | None = None,
                  fields: Sequence[str] | None = None, *, replayed: bool = False,
                  timeout_s: float | None = None) -> TelemetryStream:
        """A stream of telemetry :class:`~orbitwin.client.streams.Sample` s of the selected satellites,
        from now on. ``packets`` default: those carrying ``fields`` (all packets without ``fields``);
        ``replayed``: the messages a replay request sends again instead of live ones."""
        if fields is not None:
            unknown = [f for f in fields if f not in _PACKET_OF]
            if unknown:
                raise ValueError(f"unknown telemetry field {unknown[0]!r} (see orbitwin schema)")
        wanted = _packets(packets, fields)
        names, accept = _selection(sats)
        tm = self.topics.replayed if replayed else self.topics.tm
        filters = tuple(tm(s, p) for s in names for p in wanted)
        what = f"{'replayed ' if replayed else ''}telemetry {'/'.join(wanted)} of {_describe(sats)}"
        stream = TelemetryStream(filters, self.topics.summary, accept, tuple(fields) if fields else None, what,
                                 self.timeout_s if timeout_s is None else timeout_s, self._close_stream)
        return self._open(stream)

    def events(self, sats: Sats = None, *, boards: bool = False, timeout_s: float | None = None) -> EventStream:
        """A stream of events of the selected satellites and of fleet requests (with ``boards``, the
        boards' events too), from now on."""
        names, accept = _selection(sats)
        filters = tuple(self.topics.sat(s, "event") for s in names) + (self.topics.fleet("event"),)
        if boards:
            filters += (self.topics.board("+", "event"),)
        stream = EventStream(filters, self.topics.summary, accept, f"event of {_describe(sats)}",
                             self.timeout_s if timeout_s is None else timeout_s, self._close_stream)
        return self._open(stream)

    def _open(self, stream: Any) -> Any:
        with self._lock:
            self._streams.append(stream)
        self._subscribe(stream.filters)
        return stream

    def _subscribe(self, filters: Sequence[str]) -> None:
        """Subscribe to the filters not yet subscribed, and wait for the broker's acknowledgement."""
        with self._lock:
            new = [f for f in dict.fromkeys(filters) if not self._filters[f]]
            self._filters.update(dict.fromkeys(filters, 1))
        if new and self.started:
            with self._subacks:
                before = self._suback_count
            self._conn.subscribe(new, qos=1)
            self._wait_suback(before, f"the subscription to {', '.join(new)}")

    def _close_stream(self, stream: Stream[Any]) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)
            self._filters.subtract(dict.fromkeys(stream.filters, 1))
            gone = [f for f in dict.fromkeys(stream.filters) if self._filters[f] <= 0]
            for f in gone:
                del self._filters[f]
        if gone and self.started:
            self._conn.client.unsubscribe(gone)


def _packets(packets: str | Sequence[str] | None, fields: Sequence[str] | None) -> tuple[str, ...]:
    if packets is None:
        return tuple(dict.fromkeys(_PACKET_OF[f] for f in fields)) if fields else _PACKETS
    wanted = (packets,) if isinstance(packets, str) else tuple(packets)
    bad = [p for p in wanted if p not in _PACKETS]
    if bad:
        raise ValueError(f"unknown packet {bad[0]!r} (packets: {', '.join(_PACKETS)})")
    return wanted


def _selection(sats: Sats) -> tuple[tuple[str, ...], Callable[[str], bool] | None]:
    """The topic levels to subscribe to and the client-side filter of a satellite selection."""
    if sats is None:
        return ("+",), None
    if isinstance(sats, str):
        if any(c in sats for c in "*?["):
            return ("+",), lambda name: fnmatch.fnmatchcase(name, sats)
        sats = (sats,)
    names = tuple(dict.fromkeys(sats))
    if not names or any(not s or "/" in s or "+" in s or "#" in s for s in names):
        raise ValueError(f"bad satellite selection {sats!r}: names without '/', '+' or '#'")
    return names, frozenset(names).__contains__


def _describe(sats: Sats) -> str:
    if sats is None:
        return "every satellite"
    return sats if isinstance(sats, str) else ", ".join(sats)


__all__ = ["OrbitwinClient", "topic_matches"]

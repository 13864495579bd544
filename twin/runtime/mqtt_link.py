"""The twin's MQTT connection: persistent session, Sparkplug-like birth/death, counters.

Built on the MQTT door (:mod:`twin.mqtt`), which owns URL, credentials, TLS, protocol and
reconnect; this module adds what only the twin has:

* Each (re)connection gets a new birth sequence ``bseq``; the last will (retained, QoS 1) is a
  death message carrying the bseq of the connection it belongs to, so a consumer can ignore a
  stale death. If a stale death overwrites the retained state, the twin publishes its birth again.
* MQTT 5 with ``clean_start=False`` and a session expiry: the broker keeps our subscriptions and
  queues requests while we are away; paho resends our unacknowledged QoS 1 messages after a
  reconnect. Outgoing messages are queued in memory up to ``max_queued``.
* Backpressure, not loss: :meth:`MqttLink.publish` blocks (in bounded waits, giving up only when
  the twin stops) while paho's queue is full instead of refusing; :attr:`MqttLink.backlog` is
  what the broker has not taken yet and :meth:`MqttLink.wait_for_room` lets the tick loop wait
  for it to fall (:mod:`twin.runtime.backpressure`). While the broker is away, QoS 1 messages
  wait in paho's queue (sent again on reconnect) until the backlog limit, then the tick loop
  waits; paho cannot queue QoS 0 messages without a connection, so at QoS 0 the tick loop waits
  for the connection before publishing, and QoS 0 messages paho had not yet written when the
  connection dropped are lost (at most once) and counted as ``lost_qos0_disconnected``.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from twin.contract.topics import DEFAULT_PREFIX, Topics, dumps
from twin.runtime.backpressure import DeliveryLag
from twin.runtime.clock import new_run_id
from twin.mqtt import Message, MqttConfigError, MqttConnection, MqttSettings


@dataclass(frozen=True)
class LinkSettings:
    """What the twin's link adds to the broker settings: identity, topics, telemetry QoS, queues, bseq.

    ``client_id``: None gives a random one (fix it to resume the persistent session after a restart).
    ``session_expiry_s``: how long the broker keeps the twin's session (and queues its requests)
    while it is away, unless the broker settings say otherwise.
    """

    prefix: str = DEFAULT_PREFIX
    shard: str | None = None  # this twin's shard number: its fleet-level topics under {prefix}/shard/{shard}
    client_id: str | None = None
    qos: int = 1
    session_expiry_s: int = 3600
    # paho numbers in-flight and queued QoS 1 messages with 16-bit message ids, so at most
    # ~65,000 can wait. A window wider than the backlog the tick loop allows (two ticks of the
    # full fleet, ~29,000) puts a tick's messages on the socket as they are published: the
    # network thread then only reads acknowledgements and writes, with no refill per read
    # (bench mqtt, full fleet: 2.0 us of network-thread CPU per message instead of 4.3-4.9 us
    # with a window of 1,000). The broker's MQTT 5 Receive Maximum caps it (Mosquitto's
    # max_inflight_messages: 20 by default, 100 in the embedded broker; set it that high on a
    # broker the full fleet uses).
    max_queued: int = 60_000
    max_inflight: int = 30_000
    state_dir: str | None = None
    # messages the broker has not taken yet that the tick loop allows (None: the twin derives it
    # from its packet schedule); the overload mode says what happens beyond: wait or shed
    max_backlog: int | None = None
    overload: str = "wait"

    def __post_init__(self) -> None:
        if self.qos not in (0, 1):
            raise MqttConfigError("qos must be 0 or 1")
        if self.overload not in ("wait", "shed"):
            raise MqttConfigError("overload must be wait or shed")
        if self.max_backlog is not None and not 0 < self.max_backlog < self.max_queued:
            raise MqttConfigError(f"max_backlog must be within 1..{self.max_queued - 1} (below max_queued)")


def _next_bseq(state_dir: str | None) -> int:
    """A birth sequence larger than any this machine used before (persisted counter) and than the
    wall-clock run id (:func:`~twin.runtime.clock.new_run_id`), so that a run (its first birth
    sequence) is unique across restarts, fresh state directories and machines."""
    state_home = os.environ.get("XDG_STATE_HOME")
    base = (Path(state_dir) if state_dir else Path(state_home) if state_home else Path.home() / ".local" / "state") \
        / "orbitwin"
    path = base / "bseq"
    try:
        base.mkdir(parents=True, exist_ok=True)
        last = int(path.read_text().strip()) if path.exists() else 0
        value = max(last + 1, new_run_id())
        path.write_text(str(value))
        return value
    except (OSError, ValueError):
        return new_run_id()  # unwritable state dir: the wall-clock run id still increases


@dataclass
class LinkStats:
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    refused_queue_full: int = 0  # non-blocking publishes refused because the outgoing queue was full
    lost_qos0_disconnected: int = 0  # QoS 0 messages paho dropped because the connection was down
    queue_full_waits: int = 0  # blocking publishes that had to wait for paho's queue
    received: int = 0
    rebirths: int = 0
    last_error: str = ""
    extra: dict[str, int] = field(default_factory=dict)


class MqttLink:
    """The twin's connection (through :class:`~twin.mqtt.MqttConnection`); requests land in :attr:`inbox`."""

    def __init__(self, broker: MqttSettings, settings: LinkSettings | None = None,
                 birth_extra: dict[str, Any] | None = None) -> None:
        self.broker = broker
        self.settings = settings or LinkSettings()
        self.topics = Topics(self.settings.prefix, self.settings.shard)
        self.stats = LinkStats()
        self.inbox: queue.SimpleQueue[mqtt.MQTTMessage] = queue.SimpleQueue()
        # a shard's mesh exchange (twin.runtime.mesh_exchange): the other shards' frames go there, not to the inbox
        self.mesh_sink: Callable[[str, bytes], None] | None = None
        self.birth_extra = dict(birth_extra or {})
        self.retained_on_connect: list[tuple[str, bytes]] = []
        self._stopping = False
        self.bseq = _next_bseq(self.settings.state_dir) - 1
        self.delivery = DeliveryLag()
        self._room = threading.Event()  # set by the network thread when the backlog fell to _wake_at
        self._wake_at = -1  # backlog a waiter waits for (-1: nobody waits)
        self._network_thread: int | None = None
        self.conn = MqttConnection(
            broker, client_id=self.settings.client_id or f"orbitwin-twin-{uuid.uuid4().hex[:8]}", persistent=True,
            session_expiry_s=self.settings.session_expiry_s, max_inflight=self.settings.max_inflight,
            max_queued=self.settings.max_queued, on_connect=self._on_connect,
            on_message=self._on_message, on_disconnect=self._on_disconnect)
        self.client = self.conn.client
        self.client.on_publish = self._on_publish
        if hasattr(self.client, "on_publish_count"):  # the door's lean client counts plain PUBACKs in bulk
            self.client.on_publish_count = self._on_acked
        self.connected = self.conn.connected
        self.v5 = self.conn.v5
        self._arm_will()

    # --- birth / death ----------------------------------------------------------------
    def _state(self, state: str) -> Message:
        body = {"v": 1, "state": state, "bseq": self.bseq, "wall_time": time.time(),
                **(self.birth_extra if state == "online" else {})}
        return Message(self.topics.state, dumps(body), qos=1, retain=True)

    def _arm_will(self) -> None:
        self.bseq += 1
        self.conn.set_will(self._state("offline"))

    def _on_connect(self, conn: MqttConnection) -> None:
        """Subscribe, then the birth and the retained catalogue (counted like every publish)."""
        self._network_thread = threading.get_ident()
        self.stats.connects += 1
        # QoS 0 packets paho had not written when the connection dropped are gone: whatever is not
        # in its queue now was either delivered or lost, so acked + lost = published - queued
        gone = self.stats.published - len(self.client._out_messages) - self.stats.acked  # noqa: SLF001
        if gone > 0:
            self.stats.lost_qos0_disconnected += gone
            self.stats.acked += gone
            self.delivery.delivered(self.stats.acked)
        # MQTT 3.1.1 has no no-local: there the twin's own events come back and are ignored
        conn.subscribe(self.topics.request_subscriptions, qos=1, no_local=True)
        conn.subscribe([self.topics.state], qos=1)
        birth = self._state("online")
        self.publish(birth.topic, birth.payload, qos=1, retain=True, block=False)
        for topic, payload in self.retained_on_connect:
            self.publish(topic, payload, qos=1, retain=True, block=False)
        self._room.set()  # a QoS 0 waiter waits for the connection

    def _on_disconnect(self, reason: str) -> None:
        self.stats.disconnects += 1
        self.stats.last_error = self.conn.last_error
        self._arm_will()  # the next connection is a new birth

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topics.state:
            self._check_state(msg.payload)
            return
        if self.mesh_sink is not None and (msg.topic.endswith("/mesh") or msg.topic.endswith("/state")):
            self.mesh_sink(msg.topic, bytes(msg.payload))  # another shard's mesh inputs, or its birth or death
            return
        self.stats.received += 1
        self.inbox.put(msg)

    def _check_state(self, payload: bytes | bytearray) -> None:
        try:
            dead = json.loads(payload).get("state") != "online"
        except (ValueError, AttributeError):
            dead = True
        # a death (stale, forged, even one carrying our own bseq) or garbage replaced our birth while
        # we are alive and not stopping: publish the birth again
        if dead and self.connected.is_set() and not self._stopping:
            self.stats.rebirths += 1
            m = self._state("online")
            self.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, block=False)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self._on_acked(1)

    def _on_acked(self, count: int) -> None:
        """``count`` more messages reached the broker (QoS 1: acknowledged; QoS 0: written)."""
        self.stats.acked += count
        self.delivery.delivered(self.stats.acked)
        if self._wake_at >= 0 and self.stats.published - self.stats.acked <= self._wake_at:
            self._room.set()

    # --- use ------------------------------------------------------------------------
    def start(self, wait_s: float | None = 10.0) -> None:
        """Connect in the background; wait up to ``wait_s`` for the first connection.

        Raises :class:`~twin.mqtt.MqttConnectError` (a ConnectionError) with a one-line reason.
        """
        self.conn.start(wait_s)

    def publish(self, topic: str, payload: bytes | str, qos: int | None = None, retain: bool = False,
                properties: Properties | None = None, *, block: bool = True) -> bool:
        """Queue a message; while paho's queue is full wait for room (``block``) or refuse it (counted).

        Returns False when the message was refused (``block=False`` and the queue full) or, at
        QoS 0, dropped because the connection is down (counted as ``lost_qos0_disconnected``).
        Publishing from paho's own network thread never blocks (acknowledgements arrive there).
        """
        qos = self.settings.qos if qos is None else qos
        while True:
            info = self.conn.publish(topic, payload, qos=qos, retain=retain, properties=properties)
            if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                break
            if not block or threading.get_ident() == self._network_thread:
                self.stats.refused_queue_full += 1
                return False
            self.stats.queue_full_waits += 1
            self.wait_for_room(self.settings.max_queued - 1, timeout_s=0.5)
        if qos == 0 and info.rc == mqtt.MQTT_ERR_NO_CONN:
            self.stats.lost_qos0_disconnected += 1
            return False
        self.stats.published += 1
        return True

    def publish_many(self, messages: list[tuple[str, bytes]], qos: int | None = None) -> int:
        """Queue a tick's telemetry in one call, right after :meth:`wait_for_room`; returns how many were published.

        It skips the per-call checks of :meth:`publish` (the door queues them under one lock);
        the caller must have made room for them. Refusals (queue full) and QoS 0 messages dropped
        without a connection are counted as in :meth:`publish`.
        """
        q = self.settings.qos if qos is None else qos
        rcs = self.conn.publish_many(messages, q)
        bad = [rc for rc in rcs if rc != mqtt.MQTT_ERR_SUCCESS]
        refused = bad.count(mqtt.MQTT_ERR_QUEUE_SIZE)
        lost = bad.count(mqtt.MQTT_ERR_NO_CONN) if q == 0 else 0
        self.stats.refused_queue_full += refused
        self.stats.lost_qos0_disconnected += lost
        published = len(rcs) - refused - lost
        self.stats.published += published
        return published

    @property
    def outstanding(self) -> int:
        """Messages published but not yet acknowledged by the broker (QoS 1) or written (QoS 0)."""
        return self.stats.published - self.stats.acked

    @property
    def backlog(self) -> int:
        """Messages the broker has not taken yet: paho's queue (in flight and waiting) plus unwritten packets."""
        c = self.client
        return len(c._out_messages) + len(c._out_packet)  # noqa: SLF001 - paho keeps no public count

    @property
    def waiting(self) -> bool:
        """Whether a caller is blocked in :meth:`wait_for_room` right now."""
        return self._wake_at >= 0

    def can_send(self) -> bool:
        """Whether a publish now reaches paho's queue: always at QoS 1 (it queues while away), QoS 0 only when connected."""
        return self.settings.qos != 0 or self.connected.is_set()

    def wait_for_room(self, backlog: int, *, timeout_s: float | None = None,
                      should_stop: Callable[[], bool] = lambda: False) -> float:
        """Block until at most ``backlog`` messages are outstanding (and a QoS 0 link is connected).

        Waits in steps of at most 0.1 s, so ``should_stop`` is checked while the broker is away;
        returns after ``timeout_s`` (None: no limit) or when ``should_stop()`` is true. Returns
        the seconds waited.
        """
        if self.outstanding <= backlog and self.can_send():
            return 0.0
        t0 = time.monotonic()
        while not should_stop():
            self._room.clear()
            self._wake_at = max(backlog, 0)
            if self.outstanding <= backlog and self.can_send():
                break
            waited = time.monotonic() - t0
            if timeout_s is not None and waited >= timeout_s:
                break
            self._room.wait(0.1 if timeout_s is None else min(0.1, timeout_s - waited))
        self._wake_at = -1
        return time.monotonic() - t0

    def stop(self, graceful: bool = True, timeout_s: float = 5.0) -> None:
        """Publish death (graceful) and disconnect; with ``graceful=False`` just drop the socket."""
        self._stopping = True  # our own death, heard back, is not answered with a birth
        if graceful and self.connected.is_set():
            deadline = time.monotonic() + timeout_s
            while self.outstanding > 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        self.conn.stop(self._state("offline") if graceful else None, graceful=graceful, timeout_s=min(2.0, timeout_s))

"""The one door to MQTT: a configured paho-mqtt 2.x client with its network thread and lifecycle.

Every component that talks to a broker (the twin, the bridges, ``scenario publish``, the
benchmarks, the container health check) opens its connection here, so TLS (CA file, client
certificate and key, insecure mode), credentials, MQTT 5 or 3.1.1, keepalive,
session expiry, reconnect backoff and a last will behave the same everywhere.

:meth:`MqttConnection.start` connects, waits for the broker's CONNACK and fails fast with a
one-line :class:`MqttConnectError` when waiting cannot help: refused credentials or
authorisation, a TLS failure (unknown CA, wrong host name, not a TLS port). A broker that is
not up yet is retried with backoff until ``wait_s``. After the first connection paho reconnects
by itself (the reconnect delay doubles from ``reconnect_min_s`` to ``reconnect_max_s``), the
component's ``on_connect`` runs again (subscriptions) and the birth messages are published again.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from twin.mqtt.settings import MqttConfigError, MqttSettings

# CONNACK reason codes that may heal by waiting: server unavailable, server busy, quota exceeded,
# connection rate exceeded. Every other refusal (bad credentials, not authorised, bad client id,
# unsupported protocol, banned, ...) ends start() at once.
_TRANSIENT_REFUSALS = frozenset({0x88, 0x89, 0x97, 0x9F})


class MqttConnectError(ConnectionError):
    """The broker cannot be reached or refused us; the message is one line and names no password."""


@dataclass(frozen=True)
class Message:
    """One MQTT message to publish (a will, a birth or a death)."""

    topic: str
    payload: bytes | str
    qos: int = 1
    retain: bool = False


def reply_properties(response_topic: str | None = None, correlation: bytes | None = None) -> Properties | None:
    """MQTT 5 PUBLISH properties carrying a response topic and/or correlation data (None if neither)."""
    if response_topic is None and correlation is None:
        return None
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    return props



# --- the lean client -------------------------------------------------------------------------
# paho-mqtt 2.x spends most of a busy publisher's time on per-packet bookkeeping: up to three
# recv() calls per incoming packet (the fixed header one byte at a time), one send() per
# outgoing packet, one write to its wake-up socket pair for every packet queued (its own
# network thread included), a scan of the in-flight window on every PUBACK, and a Condition,
# a ReasonCode and a Properties object per message. _LeanClient keeps paho's protocol, state
# (_out_messages, _out_packet, the in-flight count), reconnect and resend logic and callbacks,
# and changes only those hot spots. Everything it does not special-case goes through paho.

_READ_CHUNK = 1 << 16  # bytes asked of the socket per recv()
_WRITE_CHUNK = 1 << 16  # queued packets gathered into one send() up to about this many bytes
_PUBLISH, _PUBACK, _DISCONNECT = 0x30, 0x40, 0xE0
_SUCCESS = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
_LAZY_LOCK = threading.Lock()


def _fresh_in_packet() -> Any:
    return {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
            "remaining_length": 0, "packet": bytearray(), "to_process": 0, "pos": 0}


def _remaining_length(n: int) -> bytes:
    """MQTT variable byte integer (the fixed header's remaining length)."""
    if n > 268_435_455:
        raise ValueError("Packet too large")
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


_N_LENGTHS = 1 << 14  # remaining lengths up to two bytes, encoded once
_LENGTHS = tuple(_remaining_length(n) for n in range(_N_LENGTHS))


class _LazyInfo(mqtt.MQTTMessageInfo):
    """paho's message info, with its Condition made only when somebody waits for the message."""

    __slots__ = ()

    def __init__(self, mid: int) -> None:  # noqa: D107 - no super().__init__: that builds the Condition
        self.mid = mid
        self._published = False
        self._condition = None  # type: ignore[assignment]
        self.rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        self._iterpos = 0

    def _ensure_condition(self) -> None:
        if self._condition is None:
            with _LAZY_LOCK:
                if self._condition is None:
                    self._condition = threading.Condition()

    def _set_as_published(self) -> None:
        self._published = True  # before reading _condition: a waiter that made it after sees True
        cond = self._condition
        if cond is not None:
            with cond:
                cond.notify()

    def wait_for_publish(self, timeout: float | None = None) -> None:
        self._ensure_condition()
        super().wait_for_publish(timeout)

    def is_published(self) -> bool:
        self._ensure_condition()
        return super().is_published()


class _LeanClient(mqtt.Client):
    """A paho client with a leaner per-message path (the same protocol, state and callbacks).

    * Reads: one ``recv()`` of up to 64 KiB, then every complete packet in the buffer is handled
      (a plain PUBACK without paho's decoder objects); a partial packet waits in the buffer for
      the next read. The buffer is always drained in the same call, since ``select()`` does not
      wake for bytes already read.
    * Writes: the packets queued are joined into one ``send()`` (up to ~64 KiB), partial writes
      resumed where they stopped; packets queued by the network thread itself do not wake it
      through the socket pair (it writes before it next waits), and a read ends with a write.
    * In flight: messages waiting for a free in-flight slot are kept in arrival order in a deque,
      so a PUBACK sends the next one in O(1) instead of scanning the whole queue (a large
      ``max_inflight`` costs nothing per acknowledgement).
    * QoS > 0 messages get a message info whose Condition is made only if somebody waits.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._queued: deque[mqtt.MQTTMessage] = deque()  # QoS > 0 messages in state queued, oldest first
        self._puback_reasons: dict[int, ReasonCode] = {}
        self._puback_props = Properties(PacketTypes.PUBACK)
        self._topics: dict[str, bytes] = {}  # topics checked by publish_many, encoded
        self._prefixes: dict[bytes, bytes] = {}  # topic -> its length and bytes as a PUBLISH carries them
        self._batch_info = _LazyInfo(0)
        # set it to have acknowledgements counted in bulk: called once per read with the number of
        # QoS > 0 messages a plain PUBACK completed, instead of on_publish for each of them
        self.on_publish_count: Callable[[int], None] | None = None
        self._acked_now = 0
        self._sink: list[bytes] | None = None  # PUBLISH packets being gathered into one outgoing entry
        self._sink_owner = 0
        self.recv_calls = 0  # recv() calls that returned data
        self.send_calls = 0  # send() calls that wrote data
        self.packets_sent = 0  # outgoing entries written (one may hold many gathered PUBLISH packets)
        self.publish_packets = 0  # PUBLISH packets built by the lean path

    # --- reading ---------------------------------------------------------------------
    def reconnect(self) -> mqtt.MQTTErrorCode:
        self._rbuf.clear()  # a partial packet of the old connection means nothing on the new one
        return super().reconnect()

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Read what the socket holds (bulk ``recv``), handle every complete packet, then write."""
        while True:
            if self._sock is None:
                return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
            try:
                data = self._sock_recv(_READ_CHUNK)
            except BlockingIOError:
                break
            except OSError as err:  # timeouts and resets included
                self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                return self._loop_rc_handle(mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST)
            self.recv_calls += 1
            if not data:
                return self._loop_rc_handle(mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST)
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()
            self._rbuf += data
            rc = self._handle_buffered()
            if self._acked_now:
                if self._max_inflight_messages > 0:
                    with self._out_message_mutex:  # every slot the read freed, in one go
                        refill = self._update_inflight()
                    rc = rc or refill
                self._report_acked()
            if rc:
                return self._loop_rc_handle(rc)
            if self._sock is None:  # the broker's DISCONNECT (MQTT 5) closed the connection
                return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
            if len(data) < _READ_CHUNK:
                break  # the kernel buffer is drained; select() wakes for what arrives next
        if self._out_packet:  # acknowledgements freed in-flight slots: send at once
            return self.loop_write()
        return _SUCCESS

    def _handle_buffered(self) -> mqtt.MQTTErrorCode:
        """Handle every complete packet in the read buffer; keep the tail of an incomplete one."""
        buf = self._rbuf
        n = len(buf)
        pos = 0
        rc = _SUCCESS
        fast = self.on_log is None and self._logger is None  # debug logging goes through paho
        bulk = fast and self.on_publish_count is not None
        v5 = self._protocol == mqtt.MQTTv5
        try:
            while n - pos >= 2:
                cmd = buf[pos]
                if bulk and cmd == _PUBACK and buf[pos + 1] == 2 and n - pos >= 8:
                    pos = self._puback_run(buf, pos, n)
                    continue
                i = pos + 1
                length = shift = 0
                complete = False
                while i < n:
                    byte = buf[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        complete = True
                        break
                    shift += 7
                    if shift >= 28:
                        return mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL  # more than 4 length bytes
                end = i + length
                if not complete or end > n:
                    break
                if (cmd == _PUBACK and fast
                        and (length == 2 or (v5 and (length == 3 or (length == 4 and buf[i + 3] == 0))))):
                    rc = self._fast_puback((buf[i] << 8) | buf[i + 1], buf[i + 2] if length > 2 else 0)
                else:
                    rc = self._handle_packet(cmd, buf[i:end])
                pos = end
                if rc or self._sock is None:
                    break
        finally:
            del buf[:pos]
        return rc

    def _puback_run(self, buf: bytearray, pos: int, n: int) -> int:
        """Complete a run of plain 4-byte PUBACKs (``40 02 mid``) at ``pos`` in one go; the position after it.

        One ``struct`` unpack for the run, one lock for the messages it completes, counted for
        ``on_publish_count``; ends at the first other packet (at least one PUBACK is taken: the
        caller checked the first).
        """
        k = (n - pos) // 4
        words = struct.unpack_from(f">{k}I", buf, pos)
        head = buf[pos:pos + 4 * k:4]
        if head.count(_PUBACK) != k or buf[pos + 1:pos + 4 * k:4].count(2) != k:
            k = next(j for j, w in enumerate(words) if w >> 16 != 0x4002)
        pop = self._out_messages.pop
        done = slots = 0
        with self._out_message_mutex:
            for w in words[:k] if k < len(words) else words:
                m = pop(w & 0xFFFF, None)
                if m is None:
                    continue
                m.info._set_as_published()  # noqa: SLF001
                done += 1
                slots += m.qos > 0
            self._inflight_messages -= slots  # the freed slots are refilled once the read is handled
        self._acked_now += done
        return pos + 4 * k

    def _handle_packet(self, command: int, body: bytearray) -> mqtt.MQTTErrorCode:
        """One complete packet through paho's own handlers."""
        self._in_packet = {"command": command, "have_remaining": 1, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": len(body), "packet": body, "to_process": 0, "pos": 0}
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _fresh_in_packet()
        return rc

    def _report_acked(self) -> None:
        count, self._acked_now = self._acked_now, 0
        callback = self.on_publish_count
        if callback is not None:
            with self._in_callback_mutex:
                try:
                    callback(count)
                except Exception as err:  # noqa: BLE001 - as paho treats on_publish
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_publish_count: %s", err)
                    if not self.suppress_exceptions:
                        raise

    def _fast_puback(self, mid: int, code: int) -> mqtt.MQTTErrorCode:
        """A PUBACK with no properties: counted for ``on_publish_count`` if set, else ``on_publish`` with a
        shared ReasonCode per code and shared empty Properties."""
        if self.on_publish_count is not None:
            with self._out_message_mutex:
                m = self._out_messages.pop(mid, None)
                if m is None:
                    return _SUCCESS
                m.info._set_as_published()  # noqa: SLF001
                self._acked_now += 1
                if m.qos > 0:
                    self._inflight_messages -= 1  # the freed slots are refilled once the read is handled
            return _SUCCESS
        reason = self._puback_reasons.get(code)
        if reason is None:
            try:
                reason = ReasonCode(PacketTypes.PUBACK, identifier=code)
            except (KeyError, ValueError, TypeError):
                return mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL  # not a PUBACK reason code
            self._puback_reasons[code] = reason
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, reason, self._puback_props)
        return _SUCCESS

    # --- in flight -------------------------------------------------------------------
    def publish(self, topic: str, payload: mqtt.PayloadType = None, qos: int = 0, retain: bool = False,
                properties: Properties | None = None) -> mqtt.MQTTMessageInfo:
        """paho's ``publish``; QoS > 0 messages waiting for an in-flight slot join the send deque."""
        if qos == 0:
            return super().publish(topic, payload, qos, retain, properties)
        if self._protocol != mqtt.MQTTv5 and not topic:
            raise ValueError("Invalid topic.")
        topic_bytes = topic.encode("utf-8")
        self._raise_for_invalid_topic(topic_bytes)
        if qos not in (1, 2):
            raise ValueError("Invalid QoS level.")
        local_payload = mqtt._encode_payload(payload)  # noqa: SLF001
        if len(local_payload) > 268435455:
            raise ValueError("Payload too large.")
        with self._out_message_mutex:
            return self._enqueue(topic_bytes, local_payload, qos, retain, properties)

    def publish_many(self, messages: Iterable[tuple[str, bytes]], qos: int) -> list[mqtt.MQTTErrorCode]:
        """Queue many QoS 1/2 ``(topic, payload)`` messages under one lock; paho's return code of each."""
        if qos not in (1, 2):
            raise ValueError("publish_many is for QoS 1 and 2")
        topics = self._topics
        if len(topics) > 200_000:
            topics.clear()
        enqueue = self._enqueue
        if not isinstance(messages, Sequence):
            messages = list(messages)
        with self._mid_generate_mutex:  # the batch's message ids at once (1..65535, wrapping)
            first = self._last_mid
            self._last_mid = (first + len(messages) - 1) % 65535 + 1 if messages else first
        rcs: list[mqtt.MQTTErrorCode] = []
        shared = self._batch_info  # nobody holds these messages' infos: one serves them all
        with self._out_message_mutex:
            self._open_sink()
            try:
                if self._plain():
                    return self._enqueue_plain(messages, qos, first, shared)
                for k, (topic, payload) in enumerate(messages):
                    topic_bytes = topics.get(topic)
                    if topic_bytes is None:
                        topic_bytes = topic.encode("utf-8")
                        self._raise_for_invalid_topic(topic_bytes)
                        topics[topic] = topic_bytes
                    rcs.append(enqueue(topic_bytes, payload, qos, False, None, (first + k) % 65535 + 1, shared).rc)
            finally:
                self._close_sink()
        return rcs

    def _plain(self) -> bool:
        """Whether PUBLISH packets can be built inline: connected, no logging (paho's builder logs)."""
        return self._sock is not None and self.on_log is None and self._logger is None

    def _prefix(self, topic: bytes) -> bytes:
        """The topic as a PUBLISH packet carries it (2-byte length, then the bytes), cached."""
        prefix = self._prefixes.get(topic)
        if prefix is None:
            if len(self._prefixes) > 200_000:
                self._prefixes.clear()
            prefix = self._prefixes[topic] = len(topic).to_bytes(2, "big") + topic
        return prefix

    def _enqueue_plain(self, messages: Sequence[tuple[str, bytes]], qos: int, first: int,
                       info: mqtt.MQTTMessageInfo) -> list[mqtt.MQTTErrorCode]:
        """:meth:`publish_many`'s loop with the packets built inline (caller holds the lock, the sink is open).

        The same state as :meth:`_enqueue` per message (an ``MQTTMessage`` in ``_out_messages``,
        in flight or queued behind older queued messages), without its per-message calls and checks.
        """
        topics, out, queued, sink = self._topics, self._out_messages, self._queued, self._sink
        assert sink is not None
        window, max_queued = self._max_inflight_messages, self._max_queued_messages
        if queued and self._inflight_messages < window:
            self._refill_plain()  # slots freed and not yet refilled: the older queued messages go first
        inflight = self._inflight_messages
        in_flight_state = mqtt.mqtt_ms_wait_for_puback if qos == 1 else mqtt.mqtt_ms_wait_for_pubrec
        queued_state = mqtt.mqtt_ms_queued
        head = bytes((_PUBLISH | (qos << 1),))
        props = b"\x00" if self._protocol == mqtt.MQTTv5 else b""
        extra = 2 + len(props)  # message id and the properties' length
        new, cls = mqtt.MQTTMessage.__new__, mqtt.MQTTMessage
        now = mqtt.time_func()
        ok, full = _SUCCESS, mqtt.MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
        rcs: list[mqtt.MQTTErrorCode] = []
        built = 0
        for k, (topic, payload) in enumerate(messages):
            topic_bytes = topics.get(topic)
            if topic_bytes is None:
                topic_bytes = topic.encode("utf-8")
                self._raise_for_invalid_topic(topic_bytes)
                topics[topic] = topic_bytes
            mid = (first + k) % 65535 + 1
            if (max_queued > 0 and len(out) >= max_queued) or mid in out:
                rcs.append(full)
                continue
            if not isinstance(payload, (bytes, bytearray)):
                payload = mqtt._encode_payload(payload)  # noqa: SLF001
            m = new(cls)
            m.timestamp = now
            m.mid = mid
            m._topic = topic_bytes  # noqa: SLF001
            m.payload = payload
            m.qos = qos
            m.retain = False
            m.dup = False
            m.properties = None
            m.info = info
            out[mid] = m
            if window == 0 or (inflight < window and not queued):
                inflight += 1
                m.state = in_flight_state
                prefix = self._prefix(topic_bytes)
                length = len(prefix) + extra + len(payload)
                sink.append(b"".join((head, _LENGTHS[length] if length < _N_LENGTHS else _remaining_length(length),
                                      prefix, mid.to_bytes(2, "big"), props, payload)))
                built += 1
            else:
                m.state = queued_state
                queued.append(m)
            rcs.append(ok)
        self._inflight_messages = inflight
        self.publish_packets += built
        return rcs

    def _enqueue(self, topic: bytes, payload: bytes | bytearray, qos: int, retain: bool,
                 properties: Properties | None, mid: int = 0,
                 info: mqtt.MQTTMessageInfo | None = None) -> mqtt.MQTTMessageInfo:
        """paho's QoS > 0 branch of ``publish`` (caller holds ``_out_message_mutex``); ``mid`` 0: a new one."""
        mid = mid or self._mid_generate()
        if info is None:
            info = _LazyInfo(mid)
        message = mqtt.MQTTMessage.__new__(mqtt.MQTTMessage)
        message.timestamp = mqtt.time_func()
        message.mid = mid
        message._topic = topic  # noqa: SLF001
        message.payload = payload
        message.qos = qos
        message.retain = retain
        message.dup = False
        message.properties = properties
        message.info = info
        out = self._out_messages
        if (self._max_queued_messages > 0 and len(out) >= self._max_queued_messages) or mid in out:
            info.rc = mqtt.MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
            return info
        out[mid] = message
        if self._queued and self._inflight_messages < self._max_inflight_messages:
            # slots freed by acknowledgements not yet refilled: the older messages waiting for them go
            # first, or this one would overtake them (QoS 1 order on a topic is the publisher's order)
            rc = self._fill_from_queue()
            if rc != _SUCCESS:
                info.rc = rc
        if self._max_inflight_messages == 0 or (not self._queued
                                                and self._inflight_messages < self._max_inflight_messages):
            self._inflight_messages += 1
            message.state = mqtt.mqtt_ms_wait_for_puback if qos == 1 else mqtt.mqtt_ms_wait_for_pubrec
            rc = self._send_publish(mid, topic, payload, qos, retain, False, info, properties)
            if rc == mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN:  # sent after the next CONNACK
                self._inflight_messages -= 1
                message.state = mqtt.mqtt_ms_publish
            info.rc = rc
        else:
            message.state = mqtt.mqtt_ms_queued
            self._queued.append(message)
        return info

    def _update_inflight(self) -> mqtt.MQTTErrorCode:
        """Fill free in-flight slots from the deque (oldest first); stale entries are skipped."""
        queued = self._queued
        if not queued or self._inflight_messages >= self._max_inflight_messages:
            return _SUCCESS
        self._open_sink()
        try:
            return self._fill_from_queue()
        finally:
            self._close_sink()

    def _fill_from_queue(self) -> mqtt.MQTTErrorCode:
        """Send waiting messages, oldest first, while in-flight slots are free (caller holds ``_out_message_mutex``)."""
        if self._sink is not None and self._sink_owner == threading.get_ident() and self._plain():
            self._refill_plain()
            return _SUCCESS
        queued, out = self._queued, self._out_messages
        while queued and self._inflight_messages < self._max_inflight_messages:
            m = queued.popleft()
            if m.state != mqtt.mqtt_ms_queued or out.get(m.mid) is not m:
                continue
            self._inflight_messages += 1
            m.state = mqtt.mqtt_ms_wait_for_puback if m.qos == 1 else mqtt.mqtt_ms_wait_for_pubrec
            rc = self._send_publish(m.mid, m._topic, m.payload, m.qos, m.retain, m.dup,  # noqa: SLF001
                                    properties=m.properties)
            if rc != _SUCCESS:
                return rc
        return _SUCCESS

    def _refill_plain(self) -> None:
        """:meth:`_fill_from_queue` with the packets built inline (caller holds the lock, this thread's sink is open)."""
        queued, out = self._queued, self._out_messages
        inflight, window = self._inflight_messages, self._max_inflight_messages
        props = b"\x00" if self._protocol == mqtt.MQTTv5 else b""
        queued_state = mqtt.mqtt_ms_queued
        built = 0
        while queued and inflight < window:
            m = queued.popleft()
            mid = m.mid
            if m.state != queued_state or out.get(mid) is not m:
                continue
            inflight += 1
            qos = m.qos
            m.state = mqtt.mqtt_ms_wait_for_puback if qos == 1 else mqtt.mqtt_ms_wait_for_pubrec
            if m.properties is not None:  # MQTT 5 properties: paho's builder (it keeps the gathered order)
                self._inflight_messages = inflight
                self._send_publish(mid, m._topic, m.payload, qos, m.retain, m.dup,  # noqa: SLF001
                                   properties=m.properties)
                continue
            sink = self._sink
            assert sink is not None
            prefix = self._prefix(m._topic)  # noqa: SLF001
            payload = m.payload
            length = len(prefix) + 2 + len(props) + len(payload)
            sink.append(b"".join((bytes((_PUBLISH | ((m.dup & 1) << 3) | (qos << 1) | int(m.retain),)),
                                  _LENGTHS[length] if length < _N_LENGTHS else _remaining_length(length),
                                  prefix, mid.to_bytes(2, "big"), props, payload)))
            built += 1
        self._inflight_messages = inflight
        self.publish_packets += built

    def _open_sink(self) -> None:
        """From now on this thread's plain QoS > 0 PUBLISH packets gather in one buffer (see :meth:`_close_sink`)."""
        self._sink = []
        self._sink_owner = threading.get_ident()

    def _close_sink(self) -> None:
        """Queue the gathered packets as one outgoing entry (one dict and one write, whatever their number)."""
        sink, self._sink = self._sink, None
        if sink:
            self._packet_queue(_PUBLISH, b"".join(sink), 0, 1, None)  # QoS > 0: nothing to do once written

    def _messages_reconnect_reset_out(self) -> None:
        with self._out_message_mutex:
            super()._messages_reconnect_reset_out()
            self._queued = deque(m for m in self._out_messages.values() if m.state == mqtt.mqtt_ms_queued)

    # --- writing ---------------------------------------------------------------------
    def _send_publish(self, mid: int, topic: bytes, payload: bytes | bytearray = b"", qos: int = 0,
                      retain: bool = False, dup: bool = False, info: mqtt.MQTTMessageInfo | None = None,
                      properties: Properties | None = None) -> mqtt.MQTTErrorCode:
        """The PUBLISH packet in one join (paho's builder when logging, or with MQTT 5 properties)."""
        sink = self._sink if self._sink is not None and self._sink_owner == threading.get_ident() else None
        if (properties is not None or self.on_log is not None or self._logger is not None
                or not isinstance(topic, bytes) or not isinstance(payload, (bytes, bytearray))):
            if sink:  # keep the order: what was gathered goes first
                self._close_sink()
                self._open_sink()
            return super()._send_publish(mid, topic, payload, qos, retain, dup, info, properties)
        if self._sock is None:
            return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
        v5 = self._protocol == mqtt.MQTTv5
        length = 2 + len(topic) + len(payload) + (2 if qos else 0) + (1 if v5 else 0)
        if length > 268_435_455:
            raise ValueError("Packet too large")
        packet = b"".join((bytes((_PUBLISH | ((dup & 1) << 3) | (qos << 1) | int(retain),)), _remaining_length(length),
                           len(topic).to_bytes(2, "big"), topic, mid.to_bytes(2, "big") if qos else b"",
                           b"\x00" if v5 else b"", payload))
        self.publish_packets += 1
        if sink is not None and qos > 0:
            sink.append(packet)
            return _SUCCESS
        return self._packet_queue(_PUBLISH, packet, mid, qos, info)

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: mqtt.MQTTMessageInfo | None = None) -> mqtt.MQTTErrorCode:
        thread = self._thread
        if thread is not None and thread.ident == threading.get_ident():
            # the network thread itself: it writes before it next waits (want_write), no wake-up needed
            self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                     "to_process": len(packet), "packet": packet, "info": info})
            self._call_socket_register_write()
            return _SUCCESS
        return super()._packet_queue(command, packet, mid, qos, info)

    def _packet_write(self) -> mqtt.MQTTErrorCode:
        """Send the queued packets, many per ``send()``; a partial write resumes at its byte."""
        out = self._out_packet
        while out:
            batch = []
            size = 0
            while out and size < _WRITE_CHUNK:
                pkt = out.popleft()
                batch.append(pkt)
                size += pkt["to_process"]
                if pkt["command"] & 0xF0 == _DISCONNECT:
                    break  # nothing goes after a DISCONNECT
            data: Any  # a memoryview or bytes: socket.send() takes either (paho's annotation says bytes)
            if len(batch) == 1:
                data = memoryview(batch[0]["packet"])[batch[0]["pos"]:]
            else:
                data = b"".join(memoryview(p["packet"])[p["pos"]:] if p["pos"] else p["packet"] for p in batch)
            try:
                sent = self._sock_send(data)
            except (AttributeError, ValueError):
                out.extendleft(reversed(batch))
                return _SUCCESS
            except BlockingIOError:
                out.extendleft(reversed(batch))
                return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                out.extendleft(reversed(batch))
                self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
            self.send_calls += 1
            if sent <= 0:
                out.extendleft(reversed(batch))
                break
            for k, pkt in enumerate(batch):
                if sent < pkt["to_process"]:  # this one partly, the rest not at all: back in order
                    pkt["pos"] += sent
                    pkt["to_process"] -= sent
                    out.extendleft(reversed(batch[k:]))
                    break
                sent -= pkt["to_process"]
                pkt["pos"] += pkt["to_process"]
                pkt["to_process"] = 0
                self.packets_sent += 1
                if self._packet_sent(pkt):
                    return _SUCCESS  # a DISCONNECT went out: the socket is closed
        with self._msgtime_mutex:
            self._last_msg_out = mqtt.time_func()
        return _SUCCESS

    def _packet_sent(self, packet: Any) -> bool:
        """paho's completion of a written packet: QoS 0 ``on_publish``; a DISCONNECT closes (returns True)."""
        command = packet["command"] & 0xF0
        if command == _PUBLISH and packet["qos"] == 0:
            with self._callback_mutex:
                on_publish = self.on_publish
            if on_publish:
                with self._in_callback_mutex:
                    try:
                        if self._callback_api_version == mqtt.CallbackAPIVersion.VERSION1:
                            on_publish(self, self._userdata, packet["mid"])  # type: ignore[call-arg]
                        else:
                            on_publish(self, self._userdata, packet["mid"],  # type: ignore[call-arg]
                                       ReasonCode(PacketTypes.PUBACK), Properties(PacketTypes.PUBACK))
                    except Exception as err:  # noqa: BLE001 - paho's contract: log, re-raise unless suppressed
                        self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_publish: %s", err)
                        if not self.suppress_exceptions:
                            raise
            if packet["info"] is not None:
                packet["info"]._set_as_published()  # noqa: SLF001
        elif command == _DISCONNECT:
            with self._msgtime_mutex:
                self._last_msg_out = mqtt.time_func()
            self._do_on_disconnect(packet_from_broker=False, v1_rc=mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS)
            self._sock_close()
            if self._state == mqtt._ConnectionState.MQTT_CS_DISCONNECTING:  # noqa: SLF001
                self._state = mqtt._ConnectionState.MQTT_CS_DISCONNECTED  # noqa: SLF001
            return True
        return False


class MqttConnection:
    """A paho client configured from :class:`MqttSettings`, in its own network thread.

    ``client_id``: the component's identity at the broker. ``persistent``: keep the session
    (MQTT 5 ``clean_start=False`` with ``session_expiry_s``, MQTT 3.1.1 ``clean_session=False``),
    so the broker keeps subscriptions and queues QoS 1 messages while the component is away.
    ``on_connect`` runs on every successful (re)connection, before the ``birth`` messages are
    published; ``on_disconnect`` gets the reason; ``on_message`` every received message.
    ``max_queued``: outgoing messages paho holds while waiting (0 = unlimited);
    ``max_inflight``: QoS 1 messages sent but not yet acknowledged, at most the broker's MQTT 5
    Receive Maximum (its CONNACK says it; Mosquitto's ``max_inflight_messages``, default 20).
    ``lean`` (default): the client with the lean per-message path (:class:`_LeanClient`); False
    gives paho's stock client (the benchmarks' baseline).
    """

    def __init__(self, settings: MqttSettings, *, client_id: str, persistent: bool = False,
                 session_expiry_s: int = 0, receive_maximum: int | None = None, manual_ack: bool = False,
                 max_inflight: int = 20, max_queued: int = 0, will: Message | None = None, lean: bool = True,
                 birth: Callable[[], Iterable[Message]] | None = None,
                 on_connect: Callable[[MqttConnection], None] | None = None,
                 on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
                 on_disconnect: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.client_id = client_id
        self.persistent = persistent
        self.session_expiry_s = settings.session_expiry_s if settings.session_expiry_s is not None \
            else session_expiry_s
        self.receive_maximum = receive_maximum
        self.v5 = settings.v5
        self.connected = threading.Event()
        self.connects = 0
        self.disconnects = 0
        self.refusals = 0
        self.last_error = ""
        self._birth = birth
        self._on_connect_hook = on_connect
        self._on_disconnect_hook = on_disconnect
        self._fatal: str | None = None
        self._refused_just_now = False  # paho reports a refused CONNACK again as a disconnection
        self._settled = threading.Event()
        self.max_inflight = max_inflight
        self.client = self._new_client(manual_ack, lean)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        if on_message is not None:
            self.client.on_message = lambda client, userdata, msg: on_message(msg)
        if will is not None:
            self.set_will(will)

    def _new_client(self, manual_ack: bool, lean: bool) -> mqtt.Client:
        s = self.settings
        kind = _LeanClient if lean else mqtt.Client
        if self.v5:
            client = kind(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                                 manual_ack=manual_ack)
        else:
            client = kind(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 protocol=mqtt.MQTTv311, clean_session=not self.persistent, manual_ack=manual_ack)
        user, password = s.credentials
        if user is not None:
            client.username_pw_set(user, password)
        if s.tls:
            try:
                client.tls_set(ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file,
                               cert_reqs=ssl.CERT_NONE if s.insecure else ssl.CERT_REQUIRED)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                files = ", ".join(f for f in (s.ca_file, s.cert_file, s.key_file) if f) or "the system CA store"
                raise MqttConfigError(f"cannot load TLS files ({files}): {_describe(exc)}") from None
            client.tls_insecure_set(s.insecure)
        return client

    # --- will and birth ------------------------------------------------------------------
    def set_will(self, will: Message) -> None:
        """The message the broker publishes if we vanish; takes effect at the next (re)connection."""
        self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)

    # --- callbacks -----------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.refusals += 1
            self._refused_just_now = True
            self.last_error = f"refused: {reason_code}"
            if reason_code.value not in _TRANSIENT_REFUSALS:
                self._fatal = f"{self.settings.redacted_url} refused the connection: {reason_code}"
                self._settled.set()
            return
        self.connects += 1
        self.last_error = ""
        # MQTT 5: never more unacknowledged QoS 1 messages than the broker's Receive Maximum (paho ignores it)
        receive_maximum = getattr(properties, "ReceiveMaximum", None) if self.v5 else None
        window = self.max_inflight if receive_maximum is None else \
            int(receive_maximum) if self.max_inflight == 0 else min(self.max_inflight, int(receive_maximum))
        self.client._max_inflight_messages = window  # noqa: SLF001 - paho's setter refuses once connected
        if self._on_connect_hook is not None:
            self._on_connect_hook(self)
        for m in self._birth() if self._birth is not None else ():
            self.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
        self.connected.set()
        self._settled.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self.connected.clear()
        if self._refused_just_now:
            self._refused_just_now = False
            return  # the refused CONNACK already told the story
        self.disconnects += 1
        self.last_error = f"disconnected: {reason_code}"
        if self._on_disconnect_hook is not None:
            self._on_disconnect_hook(str(reason_code))

    # --- lifecycle -----------------------------------------------------------------------
    def _connect_kwargs(self) -> dict[str, Any]:
        if not self.v5:
            return {}
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        if self.receive_maximum is not None:
            props.ReceiveMaximum = self.receive_maximum
        return {"clean_start": not self.persistent, "properties": props}

    def start(self, wait_s: float | None = 10.0) -> None:
        """Connect and start the network thread; wait up to ``wait_s`` s for the broker to accept us.

        ``wait_s`` None or 0: connect in the background and return at once (paho keeps trying).
        Raises :class:`MqttConnectError` on a refusal, a TLS failure or the timeout.
        """
        s = self.settings
        if not wait_s:
            self.client.connect_async(s.host, s.port, keepalive=s.keepalive_s, **self._connect_kwargs())
            self.client.loop_start()
            return
        deadline = time.monotonic() + wait_s
        delay = float(s.reconnect_min_s)
        connect_timeout = self.client.connect_timeout
        while True:
            try:  # a TCP connect or TLS handshake to a silent host gives up at the deadline, not paho's 5 s later
                self.client._connect_timeout = min(connect_timeout, max(deadline - time.monotonic(), 0.1))  # noqa: SLF001
                self.client.connect(s.host, s.port, keepalive=s.keepalive_s, **self._connect_kwargs())
                break
            except ssl.SSLError as exc:
                hint = "; check --mqtt-ca" if isinstance(exc, ssl.SSLCertVerificationError) else ""
                raise MqttConnectError(f"TLS with {s.redacted_url} failed: {_describe(exc)}{hint}") from None
            except OSError as exc:
                self.last_error = _connect_failure(exc, s.host)
                if time.monotonic() + delay >= deadline:
                    raise MqttConnectError(f"could not connect to {s.redacted_url} within {wait_s:g} s: "
                                           f"{self.last_error}") from None
                time.sleep(delay)
                delay = min(delay * 2, float(s.reconnect_max_s))
        self.client._connect_timeout = connect_timeout  # noqa: SLF001 - paho's setter refuses while a socket is open
        self.client.loop_start()
        self._settled.wait(max(deadline - time.monotonic(), 0.0))
        if self._fatal is not None or not self.connected.is_set():
            reason = self._fatal or self._no_connack_reason(wait_s)  # before disconnect() reports a disconnection
            self.client.disconnect()
            self.client.loop_stop()
            raise MqttConnectError(reason)

    def _no_connack_reason(self, wait_s: float) -> str:
        s = self.settings
        if self.refusals:
            return f"{s.redacted_url} kept refusing the connection for {wait_s:g} s ({self.last_error or 'refused'})"
        if self.disconnects == 0:
            return (f"no CONNACK from {s.redacted_url} within {wait_s:g} s: the connection opened but the broker "
                    "never answered (is it an MQTT port?)" + (f"; {self.last_error}" if self.last_error else ""))
        hint = ("is it a TLS port? then use mqtts://" if not s.tls else
                "does the broker require a client certificate (--mqtt-cert, --mqtt-key)?")
        return (f"{s.redacted_url} closed the connection without accepting it "
                f"({self.last_error or 'before its CONNACK'}); {hint}")

    def stop(self, final: Message | None = None, *, graceful: bool = True, timeout_s: float = 2.0) -> None:
        """Publish ``final`` (a death) if connected, disconnect and stop the network thread.

        ``graceful=False`` drops the connection without DISCONNECT, so the broker publishes the will.
        """
        if graceful:
            if final is not None and self.connected.is_set():
                info = self.client.publish(final.topic, final.payload, qos=final.qos, retain=final.retain)
                try:
                    info.wait_for_publish(timeout=timeout_s)
                except (RuntimeError, ValueError):
                    pass  # not sent (queue full or disconnected meanwhile): the will covers it
            self.client.disconnect()
        self.client.loop_stop()

    # --- use -----------------------------------------------------------------------------
    def subscribe(self, topics: Sequence[str], qos: int = 1, *, no_local: bool = False) -> None:
        """Subscribe to ``topics``; ``no_local`` (MQTT 5 only) keeps our own publications from echoing."""
        if not topics:
            return
        if self.v5:
            opts = SubscribeOptions(qos=qos, noLocal=no_local)
            self.client.subscribe([(t, opts) for t in topics])
        else:
            self.client.subscribe([(t, qos) for t in topics])

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> mqtt.MQTTMessageInfo:
        """Queue one message (MQTT 5 properties are dropped on MQTT 3.1.1)."""
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties if self.v5 else None)

    def publish_many(self, messages: Sequence[tuple[str, bytes]], qos: int = 1) -> list[mqtt.MQTTErrorCode]:
        """Queue many ``(topic, payload)`` messages (no retain, no properties); paho's return code of each.

        On the lean client QoS 1 messages are queued under one lock, with no per-message checks
        beyond the topic's.
        """
        client = self.client
        if qos > 0 and isinstance(client, _LeanClient):
            return client.publish_many(messages, qos)
        return [client.publish(topic, payload, qos=qos).rc for topic, payload in messages]

    def status(self) -> dict[str, Any]:
        """Connection counters for a component's status report."""
        return {"connected": self.connected.is_set(), "connects": self.connects, "disconnects": self.disconnects,
                "refusals": self.refusals, "last_error": self.last_error}


def _connect_failure(exc: OSError, host: str) -> str:
    """Why a TCP connect or TLS handshake failed, in a few words (never empty)."""
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup of {host} failed ({exc.strerror or _describe(exc)})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listening on that port?)"
    if isinstance(exc, TimeoutError):
        return "TLS handshake timed out" if "handshake" in str(exc) else "TCP connect timed out"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the peer"
    return _describe(exc)


def _describe(exc: BaseException) -> str:
    """One line for an OS or TLS error (``[Errno 111] Connection refused``, ``certificate verify failed: ...``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).replace("_", " ").lower() if exc.reason else str(exc)
    return " ".join(str(exc).split()) or type(exc).__name__

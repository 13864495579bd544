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

import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
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


class MqttConnection:
    """A paho client configured from :class:`MqttSettings`, in its own network thread.

    ``client_id``: the component's identity at the broker. ``persistent``: keep the session
    (MQTT 5 ``clean_start=False`` with ``session_expiry_s``, MQTT 3.1.1 ``clean_session=False``),
    so the broker keeps subscriptions and queues QoS 1 messages while the component is away.
    ``on_connect`` runs on every successful (re)connection, before the ``birth`` messages are
    published; ``on_disconnect`` gets the reason; ``on_message`` every received message.
    ``max_queued``: outgoing messages paho holds while waiting (0 = unlimited);
    ``max_inflight``: QoS 1 messages sent but not yet acknowledged.
    """

    def __init__(self, settings: MqttSettings, *, client_id: str, persistent: bool = False,
                 session_expiry_s: int = 0, receive_maximum: int | None = None, manual_ack: bool = False,
                 max_inflight: int = 20, max_queued: int = 0, will: Message | None = None,
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
        self.client = self._new_client(manual_ack)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        if on_message is not None:
            self.client.on_message = lambda client, userdata, msg: on_message(msg)
        if will is not None:
            self.set_will(will)

    def _new_client(self, manual_ack: bool) -> mqtt.Client:
        s = self.settings
        if self.v5:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                                 manual_ack=manual_ack)
        else:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
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
        while True:
            try:
                self.client.connect(s.host, s.port, keepalive=s.keepalive_s, **self._connect_kwargs())
                break
            except ssl.SSLError as exc:
                hint = "; check --mqtt-ca" if isinstance(exc, ssl.SSLCertVerificationError) else ""
                raise MqttConnectError(f"TLS with {s.redacted_url} failed: {_describe(exc)}{hint}") from None
            except OSError as exc:
                self.last_error = _describe(exc)
                if time.monotonic() + delay >= deadline:
                    raise MqttConnectError(f"could not connect to {s.redacted_url} within {wait_s:g} s: "
                                           f"{self.last_error}") from None
                time.sleep(delay)
                delay = min(delay * 2, float(s.reconnect_max_s))
        self.client.loop_start()
        self._settled.wait(max(deadline - time.monotonic(), 0.0))
        if self._fatal is not None or not self.connected.is_set():
            self.client.disconnect()
            self.client.loop_stop()
            raise MqttConnectError(self._fatal or self._no_connack_reason(wait_s))

    def _no_connack_reason(self, wait_s: float) -> str:
        s = self.settings
        if self.disconnects == 0:
            return f"no answer from {s.redacted_url} within {wait_s:g} s" + (
                f" ({self.last_error})" if self.last_error else "")
        hint = ("is it a TLS port? then use mqtts://" if not s.tls else
                "does the broker require a client certificate (--mqtt-cert, --mqtt-key)?")
        return f"{s.redacted_url} closed the connection without accepting it ({self.last_error}); {hint}"

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

    def status(self) -> dict[str, Any]:
        """Connection counters for a component's status report."""
        return {"connected": self.connected.is_set(), "connects": self.connects, "disconnects": self.disconnects,
                "refusals": self.refusals, "last_error": self.last_error}


def _describe(exc: BaseException) -> str:
    """One line for an OS or TLS error (``[Errno 111] Connection refused``, ``certificate verify failed: ...``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).replace("_", " ").lower() if exc.reason else str(exc)
    return " ".join(str(exc).split()) or type(exc).__name__

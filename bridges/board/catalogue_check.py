"""Is ``--sat`` a satellite of the running twin? Read the twin's retained catalogue and say.

The twin publishes ``{prefix}/fleet/catalogue`` (retained) on every connection, so a subscriber
gets it at once while a twin runs or has run on the broker; a sharded twin's shards each publish
theirs under ``{prefix}/shard/{K}``, and the names are those of every shard. No catalogue within
the wait (no twin has run there yet, or the broker's ACL hides it) is not an error: the caller
warns and goes on.
"""

from __future__ import annotations

import difflib
import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from twin.contract.topics import Topics
from twin.mqtt import MqttConnection, MqttSettings


class UnknownSatellite(ValueError):
    """``--sat`` names no satellite of the twin's catalogue; the message suggests close names."""


def catalogue_names(settings: MqttSettings, prefix: str, wait_s: float, connect_timeout_s: float = 10.0) -> list[str] | None:
    """The satellite names of the retained catalogue on ``{prefix}/fleet/catalogue``; None if none came within ``wait_s`` s.

    Raises :class:`~twin.mqtt.MqttConnectError` when the broker cannot be reached.
    """
    topics = [Topics(prefix).catalogue, Topics(prefix, "+").catalogue]
    got = threading.Event()
    by_topic: dict[str, list[str]] = {}
    lock = threading.Lock()

    def on_message(msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
            found = [s["sat"] for s in doc["sats"] if isinstance(s.get("sat"), str)]
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # not a catalogue: keep waiting
        with lock:
            by_topic[msg.topic] = found
        got.set()

    conn = MqttConnection(settings, client_id=f"orbitwin-sat-check-{uuid.uuid4().hex[:8]}",
                          on_connect=lambda c: c.subscribe(topics, qos=1), on_message=on_message)
    conn.start(connect_timeout_s)
    try:
        if got.wait(wait_s):
            time.sleep(min(0.3, wait_s))  # the other shards' retained catalogues come with the first
    finally:
        conn.stop()
    with lock:
        return [n for names in by_topic.values() for n in names] if by_topic else None


def check_satellite(sat: str, names: list[str]) -> None:
    """Raise :class:`UnknownSatellite` unless ``sat`` is one of ``names``, suggesting the closest ones."""
    if sat in names:
        return
    by_upper = {n.upper(): n for n in names}
    close = ([by_upper[sat.upper()]] if sat.upper() in by_upper else
             difflib.get_close_matches(sat, names, n=3, cutoff=0.6))
    hint = f"did you mean {', '.join(close)}?" if close else "`orbitwin catalogue` lists the names"
    raise UnknownSatellite(f"unknown satellite {sat!r}: the running twin's catalogue ({len(names)} satellites) "
                           f"has no such name; {hint}")

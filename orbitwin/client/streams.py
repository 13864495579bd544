"""Subscriptions of a client: telemetry samples and events, buffered from the moment they are opened.

A stream is an iterator fed by the client's network thread. Iterating blocks until the next item
or the stream's ``timeout_s`` (wall seconds; :class:`TimeoutError` naming what was awaited);
:meth:`Stream.poll` takes what is there without waiting. Streams also follow the twin's
fleet summary, published after each tick's telemetry, to know how far in sim time everything has
arrived (:attr:`Stream.sim_time`), even for a packet slower than the tick.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT filter ``pattern`` (``+`` one level, ``#`` the rest)."""
    return _levels_match(pattern.split("/"), topic.split("/"))


def _levels_match(p: list[str], t: list[str]) -> bool:
    """:func:`topic_matches` on topic levels already split."""
    for k, part in enumerate(p):
        if part == "#":
            return True
        if k >= len(t) or (part != "+" and part != t[k]):
            return False
    return len(p) == len(t)


@dataclass(frozen=True)
class Sample:
    """One telemetry packet of one satellite: ``t_s`` sim seconds since the twin's start, ``t`` its ISO
    8601 UTC sim time, ``seq`` the satellite's message counter within ``run``, ``fields`` by schema name
    (a non-finite value is None)."""

    sat: str
    packet: str
    t_s: float
    t: str
    seq: int
    run: int
    fields: dict[str, Any]


class Stream(Generic[T]):
    """Items from the client's subscriptions to ``filters`` (MQTT topic filters), in arrival order.

    Every item is also kept in :attr:`history` (what the sim-time assertions of :mod:`orbitwin.testing`
    read). ``clock_topic`` (the fleet summary) only moves :attr:`sim_time`: the sim second up to which
    the twin's messages have all arrived.
    """

    def __init__(self, filters: tuple[str, ...], what: str, timeout_s: float,
                 on_close: Callable[[Stream[Any]], None], clock_topic: str | None = None) -> None:
        self.filters = filters + ((clock_topic,) if clock_topic else ())
        self.clock_topic = clock_topic
        self.what = what
        self.timeout_s = timeout_s
        self.closed = False
        self.history: list[T] = []
        self.sim_time = float("-inf")
        self._items: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._clock = threading.Condition()
        self._keys: set[tuple[str, Any, Any]] = set()
        self._on_close = on_close
        # matched on the network thread for every message: exact topics in a set, wildcard filters split once
        self._exact = {f for f in self.filters if "+" not in f and "#" not in f}
        self._wild = [f.split("/") for f in self.filters if f not in self._exact]

    def wants(self, topic: str) -> bool:
        if topic in self._exact:
            return True
        levels = topic.split("/")
        return any(_levels_match(p, levels) for p in self._wild)

    def feed(self, topic: str, body: dict[str, Any]) -> None:
        """One message on a matching topic (called from the network thread)."""
        t_s = body.get("t_s")
        item = None if topic == self.clock_topic else self.convert(topic, body)
        with self._clock:
            if item is not None:
                key = (topic, body.get("run"), body.get("seq"))
                if key[2] is not None and key in self._keys:
                    return  # a copy: overlapping subscriptions of one client, or a QoS 1 redelivery
                self._keys.add(key)
                self.history.append(item)
                self._items.put(item)
            if isinstance(t_s, (int, float)) and (item is not None or topic == self.clock_topic) \
                    and t_s > self.sim_time:
                self.sim_time = float(t_s)
            self._clock.notify_all()

    def wait_sim_time(self, t_s: float, timeout_s: float) -> bool:
        """Wait until everything the twin published up to sim second ``t_s`` has arrived (or, without a
        clock topic, an item that late); False after ``timeout_s`` wall seconds."""
        with self._clock:
            return self._clock.wait_for(lambda: self.sim_time >= t_s - 1e-9, timeout_s)

    def wait_more(self, count: int, timeout_s: float) -> bool:
        """Wait until :attr:`history` holds more than ``count`` items or sim time moves; False after ``timeout_s``."""
        with self._clock:
            now = self.sim_time
            return self._clock.wait_for(lambda: len(self.history) > count or self.sim_time > now, timeout_s)

    def convert(self, topic: str, body: dict[str, Any]) -> T | None:
        raise NotImplementedError

    def poll(self) -> list[T]:
        """Every item that has arrived and was not taken yet (no waiting)."""
        out: list[T] = []
        while True:
            try:
                out.append(self._items.get_nowait())
            except queue.Empty:
                return out

    def next(self, timeout_s: float | None = None) -> T:
        """The next item; :class:`TimeoutError` after ``timeout_s`` (default the stream's) wall seconds."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        try:
            return self._items.get(timeout=wait)
        except queue.Empty:
            raise TimeoutError(f"no {self.what} within {wait:g} s") from None

    def __iter__(self) -> Iterator[T]:
        while not self.closed:
            yield self.next()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close(self)

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TelemetryStream(Stream[Sample]):
    """Telemetry :class:`Sample` s of the selected satellites and packets (``fields``: only those kept;
    a packet carrying none of them is skipped)."""

    def __init__(self, filters: tuple[str, ...], clock_topic: str, sats: Callable[[str], bool] | None,
                 fields: tuple[str, ...] | None, what: str, timeout_s: float,
                 on_close: Callable[[Stream[Any]], None]) -> None:
        super().__init__(filters, what, timeout_s, on_close, clock_topic)
        self.sats = sats  # which satellites to keep (None: every one the filters bring)
        self.fields = fields

    def convert(self, topic: str, body: dict[str, Any]) -> Sample | None:
        t_s = body.get("t_s")
        if not isinstance(t_s, (int, float)):
            return None
        sat, fields = body.get("sat"), body.get("fields")
        if not isinstance(sat, str) or not isinstance(fields, dict) or (self.sats is not None and not self.sats(sat)):
            return None
        if self.fields is not None:
            fields = {k: fields[k] for k in self.fields if k in fields}
            if not fields:
                return None
        return Sample(sat, str(body.get("packet")), float(t_s), str(body.get("t")), int(body.get("seq", -1)),
                      int(body.get("run", 0)), fields)


class EventStream(Stream[dict[str, Any]]):
    """Events (docs/mqtt.md, "Events") as the twin sends them: ``kind``, ``name``, ``severity``, ``sat``,
    ``t_s``, ``detail`` (board events too, when the stream follows boards). ``sats`` keeps the events of
    those satellites (None: all); events without a satellite (fleet requests) are always kept."""

    def __init__(self, filters: tuple[str, ...], clock_topic: str, sats: Callable[[str], bool] | None, what: str,
                 timeout_s: float, on_close: Callable[[Stream[Any]], None]) -> None:
        super().__init__(filters, what, timeout_s, on_close, clock_topic)
        self.sats = sats

    def convert(self, topic: str, body: dict[str, Any]) -> dict[str, Any] | None:
        sat = body.get("sat")
        if "name" not in body or (self.sats is not None and isinstance(sat, str) and not self.sats(sat)):
            return None
        return body

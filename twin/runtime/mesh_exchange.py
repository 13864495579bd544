"""A shard's mesh inputs to the other shards, and theirs to it, over the broker, each tick.

Every shard of a fleet with the network model steps the whole fleet's laser mesh, which needs
every satellite's Earth-fixed position and working terminals. Each tick a shard publishes its own
satellites' (``{prefix}/shard/{K}/mesh``, QoS 1, binary, not retained) and waits for the other
shards' of the same tick before it steps the mesh: the shards move in lockstep, tick by tick,
through the broker (the MQTT broker is the engine that carries the state; nothing here opens its own
connection). Before its first frame a shard waits for every peer's birth (``{prefix}/shard/{K}/state``
online): a peer subscribes before it announces itself, so no frame is sent before its reader
listens. A frame that cannot be read is counted and dropped, never trusted; a peer that goes
offline, or sends nothing for ``wait_s``, stops the shard with an error naming it.

Frame: ``OWM2``, tick (int64), shard index (int32, 1-based), rows (int32), terminals (int32), link
outages (int32), gateways (int32), then the rows' positions (float64, rows x 3, metres, NaN: not in
the mesh), terminals (uint8, rows x terminals), the shard's link outages (int64 pairs of satellites
numbered over the whole fleet) and its gateways in service (uint8 per gateway; none: all in service),
little-endian. Every shard steps the mesh with every shard's outages: a link or gateway outage
injected on one shard's satellite changes the whole mesh the same way in all of them.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.core.shards import ShardMap

MAGIC = b"OWM2"
_HEAD = struct.Struct("<4sqiiiii")


@dataclass(frozen=True)
class Frame:
    """One shard's mesh inputs of one tick."""

    tick: int
    shard: int
    pos_m: np.ndarray  # (rows, 3) Earth-fixed [m], NaN: not in the mesh
    terminals_ok: np.ndarray  # (rows, terminals) bool
    link_outages: np.ndarray  # (j, 2) int64 satellite pairs over the whole fleet
    gateway_ok: np.ndarray | None  # (gateways,) bool; None: all in service


def encode_frame(f: Frame) -> bytes:
    """A frame's bytes (see the module docstring)."""
    rows, terms = f.terminals_ok.shape
    pairs = np.ascontiguousarray(f.link_outages, dtype="<i8").reshape(-1, 2)
    gw = b"" if f.gateway_ok is None else np.asarray(f.gateway_ok, dtype=np.uint8).tobytes()
    return (_HEAD.pack(MAGIC, f.tick, f.shard, rows, terms, pairs.shape[0], len(gw))
            + np.ascontiguousarray(f.pos_m, dtype="<f8").tobytes()
            + np.ascontiguousarray(f.terminals_ok, dtype=np.uint8).tobytes() + pairs.tobytes() + gw)


def decode_frame(payload: bytes) -> Frame:
    """The frame of ``payload``; ValueError for anything else."""
    if len(payload) < _HEAD.size:
        raise ValueError(f"mesh frame of {len(payload)} bytes is shorter than its header")
    magic, tick, shard, rows, terms, n_pairs, n_gw = _HEAD.unpack_from(payload)
    if magic != MAGIC or min(rows, terms, n_pairs, n_gw) < 0:
        raise ValueError("not a mesh frame")
    size = _HEAD.size + rows * 3 * 8 + rows * terms + n_pairs * 16 + n_gw
    if len(payload) != size:
        raise ValueError(f"mesh frame of {len(payload)} bytes, expected {size} for {rows} rows")
    at = _HEAD.size
    pos = np.frombuffer(payload, dtype="<f8", count=rows * 3, offset=at).reshape(rows, 3)
    at += rows * 24
    ok = np.frombuffer(payload, dtype=np.uint8, count=rows * terms, offset=at).reshape(rows, terms).astype(bool)
    at += rows * terms
    pairs = np.frombuffer(payload, dtype="<i8", count=n_pairs * 2, offset=at).reshape(n_pairs, 2).astype(np.int64)
    at += n_pairs * 16
    gw = np.frombuffer(payload, dtype=np.uint8, count=n_gw, offset=at).astype(bool) if n_gw else None
    return Frame(tick, shard, pos, ok, pairs, gw)


class MqttMeshExchange:
    """The :class:`~twin.core.shards.MeshExchange` of one shard over its MQTT link.

    ``publish(topic, payload)``: the shard's link; ``topic``: its ``{prefix}/shard/{K}/mesh``;
    :meth:`on_message` is fed the other shards' frames (the link routes them here).
    """

    def __init__(self, shard: ShardMap, publish: Callable[[str, bytes], Any], topic: str, terminals: int,
                 wait_s: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.shard = shard
        self.me = shard.spec.index
        self.rows_of = {k + 1: np.flatnonzero(shard.owner == k) for k in range(shard.spec.count)}
        self.n = shard.owner.size
        self.terminals = terminals
        self.publish = publish
        self.topic = topic
        self.wait_s = wait_s
        self.clock = clock
        self._frames: dict[tuple[int, int], Frame] = {}
        self._online: dict[int, bool] = {}  # peer shard -> its last birth/death said online
        self._cond = threading.Condition()
        self.counters: Counter[str] = Counter()
        self.waited_s = 0.0  # wall seconds spent waiting for the other shards
        self._started = False
        self.last_error = ""

    def on_message(self, topic: str, payload: bytes) -> None:
        """Another shard's frame or birth/death (from the link's network thread); a bad frame is counted
        and dropped."""
        if topic.endswith("/state"):
            self._on_state(topic, payload)
            return
        try:
            f = decode_frame(bytes(payload))
            rows = self.rows_of.get(f.shard)
            if rows is None or f.shard == self.me:
                raise ValueError(f"frame from shard {f.shard}, not a peer of {self.me}/{self.shard.spec.count}")
            if f.pos_m.shape[0] != rows.size or f.terminals_ok.shape[1] != self.terminals:
                raise ValueError(f"shard {f.shard}'s frame has {f.pos_m.shape[0]} rows and "
                                 f"{f.terminals_ok.shape[1]} terminals, expected {rows.size} and {self.terminals}")
            if f.link_outages.size and (f.link_outages.min() < 0 or f.link_outages.max() >= self.n):
                raise ValueError(f"shard {f.shard}'s frame names a satellite outside the fleet in a link outage")
        except (ValueError, struct.error) as exc:
            self.counters["mesh_frames_rejected"] += 1
            self.last_error = str(exc)
            return
        with self._cond:
            self._frames[(f.shard, f.tick)] = f
            self.counters["mesh_frames"] += 1
            self._cond.notify_all()

    def _on_state(self, topic: str, payload: bytes) -> None:
        try:
            shard = int(topic.rsplit("/", 2)[-2])
            online = json.loads(payload).get("state") == "online"
        except (ValueError, AttributeError, IndexError):
            return
        if shard in self.rows_of and shard != self.me:
            with self._cond:
                self._online[shard] = online
                self._cond.notify_all()

    def _wait(self, ready: Callable[[], list[int]], what: str) -> None:
        """Wait (holding the lock) until ``ready()`` names no missing peer; RuntimeError after ``wait_s``
        or when a peer goes offline."""
        t0 = self.clock()
        while True:
            missing = ready()
            if not missing:
                break
            gone = [k for k in missing if self._online.get(k) is False]
            left = self.wait_s - (self.clock() - t0)
            if gone or left <= 0:
                why = f"shard(s) {', '.join(map(str, gone))} went offline" if gone else \
                    f"nothing from shard(s) {', '.join(map(str, missing))} within {self.wait_s:g} s"
                raise RuntimeError(f"shard {self.me}/{self.shard.spec.count}: {what}: {why} (is every shard "
                                   "running on this broker with the same fleet options?)")
            self._cond.wait(min(left, 1.0))
        self.waited_s += self.clock() - t0

    def __call__(self, tick: int, pos_m: np.ndarray, terminals_ok: np.ndarray, link_outages: np.ndarray | None = None,
                 gateway_ok: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                                np.ndarray | None]:
        peers = [k for k in self.rows_of if k != self.me]
        if not self._started:  # every peer listens before the first frame goes out
            with self._cond:
                self._wait(lambda: [k for k in peers if not self._online.get(k)], "waiting for the other shards")
            self._started = True
        own = Frame(tick, self.me, pos_m, terminals_ok,
                    np.zeros((0, 2), np.int64) if link_outages is None else np.asarray(link_outages, np.int64),
                    gateway_ok)
        self.publish(self.topic, encode_frame(own))
        full_pos = np.empty((self.n, 3))
        full_ok = np.zeros((self.n, self.terminals), dtype=bool)
        mine = self.rows_of[self.me]
        full_pos[mine] = pos_m
        full_ok[mine] = terminals_ok
        frames = [own]
        with self._cond:
            self._wait(lambda: [k for k in peers if (k, tick) not in self._frames], f"mesh state of tick {tick}")
            for k in peers:
                f = self._frames.pop((k, tick))
                full_pos[self.rows_of[k]] = f.pos_m
                full_ok[self.rows_of[k]] = f.terminals_ok
                frames.append(f)
            for key in [key for key in self._frames if key[1] < tick]:  # stale (a peer's earlier run)
                del self._frames[key]
        outages = np.concatenate([f.link_outages for f in frames])
        masks = [f.gateway_ok for f in frames if f.gateway_ok is not None]
        gw_ok = np.logical_and.reduce(masks) if masks else None
        return full_pos, full_ok, (outages if outages.size else None), gw_ok

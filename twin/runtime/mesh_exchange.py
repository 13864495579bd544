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

Frame: ``OWM1``, tick (int64), shard index (int32, 1-based), rows (int32), terminals (int32), then
the rows' positions (float64, rows x 3, metres, NaN: not in the mesh) and terminals (uint8, rows x
terminals), little-endian.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from twin.core.shards import ShardMap

MAGIC = b"OWM1"
_HEAD = struct.Struct("<4sqiii")


def encode_frame(tick: int, shard: int, pos_m: np.ndarray, terminals_ok: np.ndarray) -> bytes:
    """One shard's mesh inputs of one tick (see the module docstring)."""
    rows, terms = terminals_ok.shape
    return (_HEAD.pack(MAGIC, tick, shard, rows, terms) + np.ascontiguousarray(pos_m, dtype="<f8").tobytes()
            + np.ascontiguousarray(terminals_ok, dtype=np.uint8).tobytes())


def decode_frame(payload: bytes) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(tick, shard, positions (rows, 3), terminals (rows, terminals) bool); ValueError for anything else."""
    if len(payload) < _HEAD.size:
        raise ValueError(f"mesh frame of {len(payload)} bytes is shorter than its header")
    magic, tick, shard, rows, terms = _HEAD.unpack_from(payload)
    if magic != MAGIC or rows < 0 or terms < 0:
        raise ValueError("not a mesh frame")
    size = _HEAD.size + rows * 3 * 8 + rows * terms
    if len(payload) != size:
        raise ValueError(f"mesh frame of {len(payload)} bytes, expected {size} for {rows} rows")
    pos = np.frombuffer(payload, dtype="<f8", count=rows * 3, offset=_HEAD.size).reshape(rows, 3)
    ok = np.frombuffer(payload, dtype=np.uint8, count=rows * terms, offset=_HEAD.size + rows * 24).reshape(rows, terms)
    return tick, shard, pos, ok.astype(bool)


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
        self._frames: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
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
            tick, shard, pos, ok = decode_frame(bytes(payload))
            rows = self.rows_of.get(shard)
            if rows is None or shard == self.me:
                raise ValueError(f"frame from shard {shard}, not a peer of {self.me}/{self.shard.spec.count}")
            if pos.shape[0] != rows.size or ok.shape[1] != self.terminals:
                raise ValueError(f"shard {shard}'s frame has {pos.shape[0]} rows and {ok.shape[1]} terminals, "
                                 f"expected {rows.size} and {self.terminals}")
        except (ValueError, struct.error) as exc:
            self.counters["mesh_frames_rejected"] += 1
            self.last_error = str(exc)
            return
        with self._cond:
            self._frames[(shard, tick)] = (pos, ok)
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

    def __call__(self, tick: int, pos_m: np.ndarray, terminals_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        peers = [k for k in self.rows_of if k != self.me]
        if not self._started:  # every peer listens before the first frame goes out
            with self._cond:
                self._wait(lambda: [k for k in peers if not self._online.get(k)], "waiting for the other shards")
            self._started = True
        self.publish(self.topic, encode_frame(tick, self.me, pos_m, terminals_ok))
        full_pos = np.empty((self.n, 3))
        full_ok = np.zeros((self.n, self.terminals), dtype=bool)
        mine = self.rows_of[self.me]
        full_pos[mine] = pos_m
        full_ok[mine] = terminals_ok
        with self._cond:
            self._wait(lambda: [k for k in peers if (k, tick) not in self._frames], f"mesh state of tick {tick}")
            for k in peers:
                pos, ok = self._frames.pop((k, tick))
                full_pos[self.rows_of[k]] = pos
                full_ok[self.rows_of[k]] = ok
            for key in [key for key in self._frames if key[1] < tick]:  # stale (a peer's earlier run)
                del self._frames[key]
        return full_pos, full_ok

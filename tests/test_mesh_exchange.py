"""The shards' mesh exchange: frames, hostile input, lockstep and a peer that is gone."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.core.shards import ShardMap, ShardSpec
from twin.runtime.mesh_exchange import MqttMeshExchange, decode_frame, encode_frame

OWNER = np.array([0, 1, 0, 1, 1, 0])  # six satellites, three per shard


def _map(k: int) -> ShardMap:
    names = tuple(f"S{i}" for i in range(OWNER.size))
    return ShardMap(ShardSpec(k, 2), names, OWNER, np.full(6, 550e3), np.full(6, 53.0))


def _pair(wait_s: float = 5.0) -> tuple[MqttMeshExchange, MqttMeshExchange]:
    """Two exchanges wired to each other as the broker would (each gets the other's publications)."""
    ex: list[MqttMeshExchange] = []
    for k in (1, 2):
        ex.append(MqttMeshExchange(_map(k), lambda topic, payload, k=k: ex[2 - k].on_message(topic, payload),
                                   f"p/shard/{k}/mesh", 4, wait_s=wait_s))
    for k, e in enumerate(ex, start=1):
        ex[2 - k].on_message(f"p/shard/{k}/state", b'{"state": "online"}')
    return ex[0], ex[1]


def test_frames_round_trip_bit_for_bit() -> None:
    pos = np.array([[7e6, -1.5e6, 3.25e5], [np.nan, np.nan, np.nan]])
    ok = np.array([[True, False, True, True], [False] * 4])
    tick, shard, p, o = decode_frame(encode_frame(123456789, 2, pos, ok))
    assert (tick, shard) == (123456789, 2)
    np.testing.assert_array_equal(p, pos)
    np.testing.assert_array_equal(o, ok)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=200))
def test_property_garbage_is_refused_counted_and_never_raises(payload: bytes) -> None:
    a, _ = _pair()
    a.on_message("p/shard/2/mesh", payload)
    assert a.counters["mesh_frames_rejected"] + a.counters["mesh_frames"] == 1
    a.on_message("p/shard/2/state", payload)  # a garbled birth is ignored


def test_a_frame_of_the_wrong_shape_or_from_itself_is_refused() -> None:
    a, _ = _pair()
    a.on_message("p/shard/2/mesh", encode_frame(0, 2, np.zeros((2, 3)), np.ones((2, 4), bool)))  # 2 rows, not 3
    a.on_message("p/shard/1/mesh", encode_frame(0, 1, np.zeros((3, 3)), np.ones((3, 4), bool)))  # its own
    a.on_message("p/shard/9/mesh", encode_frame(0, 9, np.zeros((3, 3)), np.ones((3, 4), bool)))  # no such shard
    assert a.counters["mesh_frames_rejected"] == 3 and a.counters["mesh_frames"] == 0


def test_two_shards_assemble_the_whole_fleet_in_lockstep() -> None:
    a, b = _pair()
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def run(ex: MqttMeshExchange, k: int) -> None:
        rows = np.flatnonzero(OWNER == k - 1)
        for tick in range(5):
            pos = np.stack([rows * 1e6 + tick, rows, -rows], axis=1).astype(float)
            out[k * 100 + tick] = ex(tick, pos, np.ones((rows.size, 4), bool))

    threads = [threading.Thread(target=run, args=(ex, k)) for k, ex in ((1, a), (2, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for tick in range(5):
        for k in (1, 2):
            pos, ok = out[k * 100 + tick]
            np.testing.assert_array_equal(pos[:, 0], np.arange(6) * 1e6 + tick)  # catalogue order, every shard's
            assert ok.all()


def test_a_silent_or_departed_peer_stops_the_shard_with_its_name() -> None:
    a, _ = _pair(wait_s=0.3)
    with pytest.raises(RuntimeError, match=r"shard 1/2: mesh state of tick 0: nothing from shard\(s\) 2 within 0.3 s"):
        a(0, np.zeros((3, 3)), np.ones((3, 4), bool))
    a, _ = _pair(wait_s=5.0)
    a.on_message("p/shard/2/state", b'{"state": "offline"}')
    with pytest.raises(RuntimeError, match=r"shard\(s\) 2 went offline"):
        a(0, np.zeros((3, 3)), np.ones((3, 4), bool))
    lone = MqttMeshExchange(_map(1), lambda *_: None, "p/shard/1/mesh", 4, wait_s=0.2)
    with pytest.raises(RuntimeError, match="waiting for the other shards"):
        lone(0, np.zeros((3, 3)), np.ones((3, 4), bool))

"""The shards' mesh exchange: frames, hostile input, lockstep and a peer that is gone."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.core.shards import ShardMap, ShardSpec
from twin.runtime.mesh_exchange import Frame, MqttMeshExchange, decode_frame, encode_frame

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


def _frame(tick: int, shard: int, rows: int, outages: list[tuple[int, int]] | None = None,
           gw: list[bool] | None = None) -> bytes:
    return encode_frame(Frame(tick, shard, np.zeros((rows, 3)), np.ones((rows, 4), bool),
                              np.array(outages or [], np.int64).reshape(-1, 2), None if gw is None else np.array(gw)))


def test_frames_round_trip_bit_for_bit() -> None:
    pos = np.array([[7e6, -1.5e6, 3.25e5], [np.nan, np.nan, np.nan]])
    ok = np.array([[True, False, True, True], [False] * 4])
    for outages, gw in ((np.zeros((0, 2), np.int64), None), (np.array([[0, 5], [3, 1]]), np.array([True, False]))):
        f = decode_frame(encode_frame(Frame(123456789, 2, pos, ok, outages, gw)))
        assert (f.tick, f.shard) == (123456789, 2)
        np.testing.assert_array_equal(f.pos_m, pos)
        np.testing.assert_array_equal(f.terminals_ok, ok)
        np.testing.assert_array_equal(f.link_outages, outages)
        assert (f.gateway_ok is None) == (gw is None) and (gw is None or np.array_equal(f.gateway_ok, gw))


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=200))
def test_property_garbage_is_refused_counted_and_never_raises(payload: bytes) -> None:
    a, _ = _pair()
    a.on_message("p/shard/2/mesh", payload)
    assert a.counters["mesh_frames_rejected"] + a.counters["mesh_frames"] == 1
    a.on_message("p/shard/2/state", payload)  # a garbled birth is ignored


def test_a_frame_of_the_wrong_shape_or_from_itself_is_refused() -> None:
    a, _ = _pair()
    a.on_message("p/shard/2/mesh", _frame(0, 2, 2))  # 2 rows, not 3
    a.on_message("p/shard/1/mesh", _frame(0, 1, 3))  # its own
    a.on_message("p/shard/9/mesh", _frame(0, 9, 3))  # no such shard
    a.on_message("p/shard/2/mesh", _frame(0, 2, 3, [(0, 6)]))  # an outage with a satellite beyond the fleet
    assert a.counters["mesh_frames_rejected"] == 4 and a.counters["mesh_frames"] == 0


def test_two_shards_assemble_the_whole_fleet_in_lockstep() -> None:
    a, b = _pair()
    out: dict[int, tuple] = {}

    def run(ex: MqttMeshExchange, k: int) -> None:
        rows = np.flatnonzero(OWNER == k - 1)
        for tick in range(5):
            pos = np.stack([rows * 1e6 + tick, rows, -rows], axis=1).astype(float)
            outages = np.array([[rows[0], rows[1]]]) if k == 2 and tick == 3 else None
            gw = np.array([True, k == 1, True]) if tick == 4 else None
            out[k * 100 + tick] = ex(tick, pos, np.ones((rows.size, 4), bool), outages, gw)

    threads = [threading.Thread(target=run, args=(ex, k)) for k, ex in ((1, a), (2, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for tick in range(5):
        for k in (1, 2):
            pos, ok, outages, gw = out[k * 100 + tick]
            np.testing.assert_array_equal(pos[:, 0], np.arange(6) * 1e6 + tick)  # catalogue order, every shard's
            assert ok.all()
            # every shard sees every shard's network faults: shard 2's link outage, shard 2's gateway down
            assert (outages.tolist() if outages is not None else None) == ([[1, 3]] if tick == 3 else None)
            assert (gw.tolist() if gw is not None else None) == ([True, False, True] if tick == 4 else None)


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

"""The twin's publish path: fleet frames joined from the per-satellite JSON texts equal ``json.dumps``.

TelemetryOut renders each value's JSON text once per tick and builds both the satellites'
messages and the fleet frame from it; the frame must stay byte for byte what the plain
``json.dumps`` encoder writes (non-finite values as null included), or the archive would differ.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from twin.contract.telemetry_encoder import FrameEncoder, PacketEncoder
from twin.contract.topics import Topics
from twin.schema.telemetry import PACKET_FIELDS


def _fleet(n: int, seed: int) -> tuple[dict[str, np.ndarray], list[str], np.ndarray]:
    from twin.schema.telemetry import FIELDS

    rng = np.random.default_rng(seed)
    tm: dict[str, np.ndarray] = {}
    for f in FIELDS:
        if f.dtype == "float":
            col = rng.normal(0.0, 10.0 ** rng.integers(-8, 9), n)
            col[rng.random(n) < 0.05] = np.nan
            col[rng.random(n) < 0.02] = np.inf
            tm[f.name] = col
        elif f.dtype == "int":
            tm[f.name] = rng.integers(-(2**40), 2**40, n)
        else:
            tm[f.name] = rng.random(n) < 0.5
    names = [f'SAT-{k} "Ω\\{k}"' if k % 5 == 0 else f"STARLINK-{1000 + k}" for k in range(n)]
    return tm, names, np.arange(40000, 40000 + n)


@pytest.mark.parametrize("packet", sorted(PACKET_FIELDS))
def test_frame_from_shared_texts_is_what_json_dumps_writes(packet: str) -> None:
    tm, names, norad = _fleet(300, hash(packet) % 1000)
    pe, fe = PacketEncoder(packet, names, norad, Topics()), FrameEncoder(packet, names, norad, Topics())
    rows = np.flatnonzero(np.arange(300) % 3 != 1)
    seq = np.arange(rows.size, dtype=np.int64) * 11
    for t_s in (0.0, 12.5, 1 / 3):
        plain = fe.encode(tm, rows, seq, 7, "2026-01-01T00:00:00.000Z", t_s, 42)
        joined = fe.encode(tm, rows, seq, 7, "2026-01-01T00:00:00.000Z", t_s, 42, cols=pe.columns(tm, rows))
        assert joined == plain
        body = json.loads(joined[1])
        assert body["sats"] == [names[i] for i in rows] and len(body["fields"]) == len(PACKET_FIELDS[packet])
    # the satellites' messages made from the same texts are those made without them
    assert pe.encode(tm, rows, seq, 7, "t", 1.0, 3, cols=pe.columns(tm, rows)) == pe.encode(tm, rows, seq, 7, "t", 1.0, 3)


def test_frame_refuses_columns_of_another_packet() -> None:
    tm, names, norad = _fleet(10, 1)
    rows = np.arange(10)
    other = PacketEncoder("orbit", names, norad, Topics()).columns(tm, rows)
    with pytest.raises(ValueError, match="columns"):
        FrameEncoder("hk", names, norad, Topics()).encode(tm, rows, rows, 1, "t", 0.0, cols=other[:1])

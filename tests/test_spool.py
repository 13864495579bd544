"""Spool: FIFO order, overflow accounting, durability across reopen and SIGKILL, corruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridges.influx.spool import Spool, encode_segment


def _batch(i: int, n: int = 3) -> list[bytes]:
    return [f"tm,sat=S{i} k={j}i {i * 1000 + j}".encode() for j in range(n)]


def _drain(spool: Spool) -> list[list[bytes]]:
    out = []
    while (seg := spool.oldest()) is not None:
        out.append(seg.lines)
        assert spool.remove(seg.id)
    return out


def test_fifo_order_meta_and_counters(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20)
    for i in range(5):
        assert s.append(_batch(i), {"batch": i}) == 0
    assert s.append([]) == 0
    assert (s.segments, s.depth_lines, s.appended_lines_total) == (5, 15, 15)
    assert s.depth_bytes == sum(p.stat().st_size for p in tmp_path.glob("*.seg"))
    seg = s.oldest()
    assert seg is not None and seg.meta == {"batch": 0} and seg.lines == _batch(0)
    assert s.oldest().id == seg.id  # oldest() does not consume
    assert s.remove(seg.id) and not s.remove(seg.id)
    assert _drain(s) == [_batch(i) for i in range(1, 5)]
    assert (s.segments, s.depth_bytes, s.depth_lines) == (0, 0, 0)
    with pytest.raises(ValueError):
        s.append([b"a\nb"])


def test_overflow_drops_exactly_the_oldest_segments(tmp_path: Path) -> None:
    size = len(encode_segment(_batch(0)))
    s = Spool(tmp_path, 3 * size + size // 2)  # room for 3 segments of this size
    assert [s.append(_batch(i)) for i in range(3)] == [0, 0, 0]
    assert s.append(_batch(3)) == 3  # batch 0 dropped
    assert s.append(_batch(4)) == 3  # batch 1 dropped
    assert s.dropped_lines_total == 6 and s.depth_bytes <= s.max_bytes
    assert _drain(s) == [_batch(2), _batch(3), _batch(4)]


def test_single_batch_larger_than_max_keeps_its_newest_part(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1000)
    s.append(_batch(0))
    big = _batch(1, 200)
    dropped = s.append(big)
    seg = s.oldest()
    assert seg is not None and seg.lines == big[-len(seg.lines):]
    assert dropped == 3 + 200 - len(seg.lines) and s.depth_bytes <= 1000
    assert len(encode_segment(big[-len(seg.lines) - 1:])) > 1000  # one more line would not fit
    assert Spool(tmp_path / "tiny", 10).append(big) == 200  # nothing fits at all


def test_on_drop_sees_each_dropped_segment_while_it_can_still_be_read(tmp_path: Path) -> None:
    size = len(encode_segment(_batch(0), {"i": 0}))
    s = Spool(tmp_path, 2 * size + size // 2)  # room for 2 segments
    seen: list[tuple[int, list[bytes], dict]] = []

    def on_drop(seg_id: int) -> None:
        seg = s.read(seg_id)
        seen.append((seg_id, seg.lines, seg.meta))

    ids = []
    for i in range(4):
        assert s.append(_batch(i), {"i": i}, on_drop=on_drop) == (3 if i >= 2 else 0)
        ids.append(s.last_append[0])
        assert s.last_append == (s.segment_ids()[-1], 3)
    assert seen == [(ids[0], _batch(0), {"i": 0}), (ids[1], _batch(1), {"i": 1})]
    with pytest.raises(FileNotFoundError):
        s.read(ids[0])
    assert s.read(ids[3]).lines == _batch(3)
    assert Spool(tmp_path / "tiny", 10).append(_batch(0)) == 3
    tiny = Spool(tmp_path / "tiny2", 10)
    tiny.append(_batch(0))
    assert tiny.last_append == (0, 0)  # nothing of the batch was kept


def test_reopen_resumes_same_content_and_order(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20)
    for i in range(4):
        s.append(_batch(i), {"i": i})
    s.remove(s.oldest().id)  # type: ignore[union-attr]
    (tmp_path / "0000000000000099.seg.tmp").write_bytes(b"half a segm")  # crash leftover
    r = Spool(tmp_path, 1 << 20)
    assert r.temp_files_removed == 1 and not list(tmp_path.glob("*.tmp"))
    assert (r.segments, r.depth_lines, r.depth_bytes) == (3, 9, s.depth_bytes)
    r.append(_batch(9))
    assert _drain(r) == [_batch(1), _batch(2), _batch(3), _batch(9)]


@pytest.mark.parametrize("damage", ["flip_payload", "truncate", "garbage_header", "empty"])
def test_corrupt_segment_is_moved_aside(tmp_path: Path, damage: str) -> None:
    s = Spool(tmp_path, 1 << 20)
    for i in range(3):
        s.append(_batch(i))
    victim = sorted(tmp_path.glob("*.seg"))[1]
    data = victim.read_bytes()
    victim.write_bytes({"flip_payload": data[:-3] + b"X" + data[-2:], "truncate": data[:-5],
                        "garbage_header": b"\x00\xffnot json\n" + data, "empty": b""}[damage])
    r = Spool(tmp_path, 1 << 20)
    assert _drain(r) == [_batch(0), _batch(2)]
    assert r.corrupt_segments_total == 1 and r.last_corruption
    assert [p.name for p in tmp_path.glob("*.corrupt")] == [victim.name + ".corrupt"]
    # the same damage found by a spool that was already open: moved aside on read
    s2 = Spool(tmp_path / "b", 1 << 20)
    for i in range(2):
        s2.append(_batch(i))
    first = sorted((tmp_path / "b").glob("*.seg"))[0]
    first.write_bytes(first.read_bytes()[:-1] + b"#")
    assert _drain(s2) == [_batch(1)] and s2.corrupt_segments_total == 1


_WRITER = """
import sys
from bridges.influx.spool import Spool
s = Spool(sys.argv[1], 1 << 30)
i = 0
while True:
    s.append([b"tm,i=%d k=%di %d" % (i, j, j) + b"x" * 200 for j in range(500)], {"i": i})
    i += 1
"""


def test_sigkilled_writer_leaves_only_whole_segments(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(d)], cwd=Path(__file__).parents[1])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(list(d.glob("*.seg"))) < 8:
            assert proc.poll() is None, "writer died"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    s = Spool(d, 1 << 30)
    assert s.corrupt_segments_total == 0 and not list(d.glob("*.tmp")) and s.segments >= 8
    for i, batch in enumerate(_drain(s)):  # contiguous batches 0..k-1, each whole
        assert batch == [b"tm,i=%d k=%di %d" % (i, j, j) + b"x" * 200 for j in range(500)]


_line = st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\n", b"_"))
_ops = st.lists(st.one_of(
    st.tuples(st.just("append"), st.lists(_line, min_size=0, max_size=12)),
    st.tuples(st.just("remove_oldest"), st.none()),
    st.tuples(st.just("remove_any"), st.integers(0, 20)),
    st.tuples(st.just("reopen"), st.none()),
), max_size=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops, max_bytes=st.integers(40, 700))
def test_matches_in_memory_model(ops: list, max_bytes: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        s = Spool(d, max_bytes, fsync=False)
        model: list[tuple[int, list[bytes]]] = []  # (id, lines), oldest first
        for op, arg in ops:
            if op == "append":
                keep = arg
                while keep and len(encode_segment(keep)) > max_bytes:
                    keep = keep[1:]
                dropped = len(arg) - len(keep)
                gone: list[tuple[int, list[bytes]]] = []
                if keep:
                    size = len(encode_segment(keep))
                    while model and sum(len(encode_segment(b)) for _, b in model) + size > max_bytes:
                        gone.append(model.pop(0))
                        dropped += len(gone[-1][1])
                heard: list[tuple[int, list[bytes]]] = []
                assert s.append(arg, on_drop=lambda i: heard.append((i, s.read(i).lines))) == dropped
                assert heard == gone
                assert s.last_append == ((s.segment_ids()[-1], len(keep)) if keep else (0, 0))
                if keep:
                    model.append((s.segment_ids()[-1], keep))
            elif op == "remove_oldest":
                seg = s.oldest()
                assert (seg.id, seg.lines) == model.pop(0) if seg else not model
                if seg:
                    s.remove(seg.id)
            elif op == "remove_any":
                ids = [i for i, _ in model]
                target = ids[arg % len(ids)] if ids and arg < 15 else 10**9
                assert s.remove(target) == (target in ids)
                model = [(i, b) for i, b in model if i != target]
            else:
                s = Spool(d, max_bytes, fsync=False)
            assert s.segment_ids() == [i for i, _ in model]
            assert s.depth_lines == sum(len(b) for _, b in model)
            assert s.depth_bytes == sum(len(encode_segment(b)) for _, b in model) <= max_bytes
        assert _drain(s) == [b for _, b in model]

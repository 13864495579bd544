"""Dead-letter JSONL file: encoding, truncation, counts, fsync batching, reopen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridges.influx import dead_letter
from bridges.influx.dead_letter import DeadLetters, decode_field, read_dead_letters


def test_records_encoding_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "dl" / "dead.jsonl"
    with DeadLetters(path, max_bytes=16, clock=lambda: 1234.5) as dl:
        dl.add("bad_json", topic="orbitwin/tm/S1", payload=b'{"v": 1')
        dl.add("bad_line", line=b"tm v= 1", detail={"status": 400, "message": "unable to parse"})
        dl.add("bad_json", payload=b"\xff\xfe\x00binary")
        dl.add("too_big", payload="é".encode() * 20)  # cut inside a 2-byte character
        assert (dl.count, dl.counts_by_reason) == (4, {"bad_json": 2, "bad_line": 1, "too_big": 1})
    recs = read_dead_letters(path)
    assert recs[0] == {"ts": 1234.5, "reason": "bad_json", "topic": "orbitwin/tm/S1", "payload": '{"v": 1',
                       "payload_encoding": "utf-8", "payload_size": 7}
    assert recs[1]["line"] == "tm v= 1" and recs[1]["detail"]["status"] == 400 and "payload" not in recs[1]
    assert recs[2]["payload_encoding"] == "base64" and decode_field(recs[2], "payload") == b"\xff\xfe\x00binary"
    assert recs[3]["payload"] == "é" * 8 and recs[3]["payload_size"] == 40 and recs[3]["payload_truncated"]


def test_fsync_is_batched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(dead_letter.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    dl = DeadLetters(tmp_path / "d.jsonl", fsync_every=10)
    for i in range(25):
        dl.add("x", detail=i)
    assert len(calls) == 2  # after records 10 and 20
    assert len(read_dead_letters(tmp_path / "d.jsonl")) == 25  # flushed to the OS at once
    dl.flush()
    dl.close()
    dl.close()
    assert len(calls) == 4


def test_reopen_keeps_appending_and_repairs_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DeadLetters(path) as dl:
        dl.add("a")
        dl.add("b", detail=object())  # not JSON: stored as str()
    with open(path, "ab") as f:
        f.write(b'{"ts": 1, "reason": "torn')  # a crash in the middle of a record
    with DeadLetters(path) as dl:
        assert (dl.count, dl.unreadable) == (2, 1)
        dl.add("a")
        assert dl.counts_by_reason == {"a": 2, "b": 1}
    assert [r["reason"] for r in read_dead_letters(path)] == ["a", "b", "a"]
    assert len(path.read_bytes().splitlines()) == 4


def test_killed_process_loses_no_added_record(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    code = ("import os, sys; from bridges.influx.dead_letter import DeadLetters\n"
            "dl = DeadLetters(sys.argv[1], fsync_every=1000)\n"
            "[dl.add('r', payload=b'p%d' % i) for i in range(50)]\n"
            "os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=Path(__file__).parents[1])
    assert proc.returncode == -9
    assert [json.loads(x)["payload"] for x in path.read_bytes().splitlines()] == [f"p{i}" for i in range(50)]

"""The drop ledger: dropped telemetry is counted as points missing, not lines deleted.

The audit is checked against a real influxd; the writer's "maybe stored" verdicts against a real
influxd that refuses, stalls or answers.
"""

from __future__ import annotations

import random
import signal
import uuid

import pytest

from bridges.influx.drop_ledger import DropLedger, SeqIntervals
from bridges.influx.line_protocol import message_lines, telemetry_lines, telemetry_point
from bridges.influx.writer import InfluxV1Writer, classify, write_isolating
from orbitwin.bench.influxd import InfluxdProcess
from twin.runtime.embedded_broker import free_port
from twin.schema.telemetry import PACKET_FIELDS

T0 = 1_771_804_800_000_000_000  # 2026-02-23T00:00:00Z in ns


def _line(sat: str, seq: int, packet: str = "hk") -> bytes:
    fields = {f: [None] for f in PACKET_FIELDS[packet]}  # null fields are left out: the line carries seq
    return telemetry_lines(packet, [sat], [seq], 1, 1, T0 + seq * 1_000_000_000, fields)[0][2]


def test_seq_intervals_match_a_set() -> None:
    rnd = random.Random(7)
    for _ in range(50):
        ivs, ref = SeqIntervals(), set()
        for _ in range(300):
            x = rnd.randrange(80)
            if rnd.random() < 0.6:
                assert ivs.add(x) == (x not in ref)
                ref.add(x)
            else:
                assert ivs.discard(x) == (x in ref)
                ref.discard(x)
            assert ivs.count == len(ref)
        assert [y for y in range(-2, 82) if y in ivs] == sorted(ref)
        pairs = ivs.intervals
        assert all(lo <= hi for lo, hi in pairs) and all(a[1] + 1 < b[0] for a, b in zip(pairs, pairs[1:]))


def test_telemetry_point_reads_back_what_telemetry_lines_wrote() -> None:
    line = telemetry_lines("power", ["SAT 1,=x"], [42], 3, 1, T0, {f: [None] for f in PACKET_FIELDS["power"]})[0][2]
    assert telemetry_point(line) == ("power", "SAT 1,=x", 42, T0)
    hk = {"mode": 0, "limit_state": 1, "fault_flags": 4, "battery_soc": 0.9, "payload_util": 0.5,
          "payload_temp_k": 300.0, "illumination": 1.0}
    line = message_lines({"sat": "S-2", "seq": 7, "run": 1, "bseq": 1, "packet": "hk", "t": "2026-02-23T00:00:01Z",
                          "fields": hk})[0][2]
    assert b"battery_soc=0.9" in line and telemetry_point(line) == ("hk", "S-2", 7, T0 + 1_000_000_000)
    with pytest.raises(ValueError):
        telemetry_point(b"fleet active=3i 123")


def test_drops_copies_and_restores_count_each_missing_point_once() -> None:
    led = DropLedger()
    for seq in range(10):
        led.drop(_line("A", seq), run=1)
    assert led.dropped == 10
    led.drop(_line("A", 3), run=1, copy=True)  # a second dropped copy of a counted point
    led.drop(_line("A", 4), run=1)  # the same point again, even unflagged
    assert led.dropped == 10 and led.unverified == 0
    led.stored(_line("A", 5), run=1)  # a copy of a counted point is stored: it is not missing
    led.stored(_line("A", 5), run=1)
    led.stored(_line("A", 5), run=2)  # another run's seq 5 is another point
    assert (led.dropped, led.restored, led.dropped_then_stored) == (9, 1, 1)
    led.drop(_line("B", 0), run=None)  # run unknown (a segment of an older bridge): counted, unmatched
    assert led.dropped == 10


def test_audit_counts_what_the_database_does_not_hold(influxd) -> None:  # type: ignore[no-untyped-def]
    db = f"t{uuid.uuid4().hex[:10]}"
    influxd.create_database(db)
    writer = InfluxV1Writer(influxd.url, db)
    stored = [_line("SAT-A", s) for s in range(0, 6)] + [_line("SAT B", s, "orbit") for s in range(0, 3)]
    assert writer.write(stored).ok
    led = DropLedger()
    for seq in range(0, 10):  # seqs 0-5 of SAT-A are in the database, 6-9 are not
        led.drop(_line("SAT-A", seq), run=1, maybe_stored=True)
    led.drop(_line("SAT B", 2, "orbit"), run=1, copy=True)  # a copy of a stored point
    led.drop(_line("SAT B", 3, "orbit"), run=1, copy=True)  # a "copy" whose point is not stored
    led.drop(_line("SAT-A", 6), run=1, maybe_stored=True)  # the same point twice: audited once
    assert led.unverified == 12 and led.dropped == 0
    led.verify(lambda q: writer.query(q, epoch="ns"))
    assert (led.unverified, led.dropped, led.found_stored) == (0, 5, 7)
    led.stored(_line("SAT-A", 9), run=1)  # a copy of a point the audit found missing lands later
    assert led.dropped == 4
    writer.close()


def test_audit_is_bounded() -> None:
    led = DropLedger(audit_max_points=3)
    for seq in range(5):
        led.drop(_line("A", seq), run=1, maybe_stored=True)
    assert (led.unverified, led.dropped, led.audit_overflow) == (3, 2, 2)


def test_writer_says_when_a_failed_write_may_be_stored() -> None:
    """Refused: not stored. Timed out on a stalled influxd: maybe (it stores it when it resumes). 5xx: maybe."""
    assert not InfluxV1Writer(f"http://127.0.0.1:{free_port('127.0.0.1')}", "x").write([_line("A", 0)]).maybe_stored
    assert classify(500, b'{"error":"write failed"}').maybe_stored
    assert not classify(401, b"").maybe_stored and not classify(429, b"").maybe_stored
    with InfluxdProcess() as server:
        server.create_database("t")
        writer = InfluxV1Writer(server.url, "t", timeout_s=0.5)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        try:
            res = write_isolating(writer, [_line("A", s) for s in range(3)])
        finally:
            server.proc.send_signal(signal.SIGCONT)
        assert res.outcome.status == "retry" and res.outcome.maybe_stored and res.pending_maybe_stored
        assert len(res.pending) == 3
        # influxd read the request before it stalled or reads it on resuming: it stores what timed out
        from mqtt_helpers import wait_for

        wait_for(lambda: server.points('SELECT "seq" FROM hk', db="t"), 10, 0.1)
        writer.close()

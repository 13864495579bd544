"""InfluxDB writers: real influxd 1.6.7 for v1, the protocol-level 2.x fake for v2 (and a real
InfluxDB 2.x/3.x when ORBITWIN_INFLUXDB2_URL/_TOKEN/_ORG/_BUCKET are set)."""

from __future__ import annotations

import email.utils
import itertools
import os
import time
from collections.abc import Iterator

import pytest

from bridges.influx.writer import (InfluxQueryError, InfluxTargetError, InfluxV1Writer, InfluxV2Writer,
                                   WriteOutcome, classify, parse_retry_after, write_isolating)
from influx2_fake import FakeInfluxDB2
from servers import InfluxdProcess

_db_counter = itertools.count()


@pytest.fixture
def v1(influxd: InfluxdProcess) -> Iterator[InfluxV1Writer]:
    w = InfluxV1Writer(influxd.url, f"writer_{os.getpid()}_{next(_db_counter)}", timeout_s=5)
    w.create_database()
    yield w
    w.close()


def _line(i: int, value: str = "1.5") -> bytes:
    return f"tm,sat=S{i % 7} v={value},n={i}i {1_700_000_000_000_000_000 + i}".encode()


# ---- classification --------------------------------------------------------------------------
@pytest.mark.parametrize("status,body,expected", [
    (204, b"", "ok"), (400, b'{"error":"unable to parse \'x\': invalid field format"}', "bad_request"),
    (400, b'{"error":"partial write: points beyond retention policy dropped=3"}', "partial"),
    (413, b"", "bad_request"), (422, b'{"code":"unprocessable entity","message":"x"}', "partial"),
    (401, b"", "fatal"), (403, b"", "fatal"), (404, b'{"error":"database not found: \\"x\\""}', "fatal"),
    (429, b"", "retry"), (500, b"", "retry"), (503, b"", "retry"),
    (500, b'{"error":"retention policy not found: nope"}', "fatal"),
])
def test_classify(status: int, body: bytes, expected: str) -> None:
    assert classify(status, body, {}).status == expected


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    now = time.time()
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1.01)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# ---- InfluxDB 1.6.7 --------------------------------------------------------------------------
def test_v1_write_then_query_back(v1: InfluxV1Writer) -> None:
    assert v1.ping()
    lines = [_line(i) for i in range(20)]
    out = v1.write(lines)
    assert out == WriteOutcome("ok", 204, None, "", None)
    rows = v1.query("SELECT * FROM tm")
    assert len(rows) == 20
    assert rows[3] == {"time": 1_700_000_000_000_000_003, "sat": "S3", "v": 1.5, "n": 3, "_measurement": "tm"}
    assert v1.write(lines).ok and len(v1.query("SELECT * FROM tm")) == 20  # idempotent rewrite


def test_v1_malformed_line_is_bad_request_naming_the_line(v1: InfluxV1Writer) -> None:
    out = v1.write([b"tm,sat=S1 v= 1"])
    assert (out.status, out.http_status) == ("bad_request", 400)
    assert "unable to parse 'tm,sat=S1 v= 1'" in out.message


def test_v1_malformed_among_good_is_partial(v1: InfluxV1Writer) -> None:
    # 1.x stores the lines it can parse and says "partial write: unable to parse ..."
    out = v1.write([_line(1), b"garbage", _line(2)])
    assert out.status == "partial" and "unable to parse 'garbage'" in out.message
    assert len(v1.query("SELECT * FROM tm")) == 2


def test_v1_field_type_conflict_is_partial_with_dropped(v1: InfluxV1Writer) -> None:
    assert v1.write([_line(0, "1.5")]).ok
    out = v1.write([_line(1, "2i"), _line(2, "2.5"), _line(3, '"text"')])
    assert (out.status, out.http_status, out.dropped) == ("partial", 400, 2)
    assert "field type conflict" in out.message
    assert len(v1.query("SELECT * FROM tm")) == 2


def test_v1_unknown_database_is_created_and_unknown_rp_is_fatal(influxd: InfluxdProcess) -> None:
    db = f"created_{time.monotonic_ns()}"
    with InfluxV1Writer(influxd.url, db) as w:
        assert not any(r["name"] == db for r in w.query("SHOW DATABASES"))
        assert w.write([_line(0)]).ok and w.databases_created == 1
        assert [r["v"] for r in w.query("SELECT v FROM tm")] == [1.5]
        assert w.write([_line(1)]).ok and w.databases_created == 1
    with InfluxV1Writer(influxd.url, "_internal", retention_policy="nope") as w:
        assert w.write([_line(0)]).status == "fatal"


def test_v1_database_a_user_may_not_create_is_fatal_naming_the_fix() -> None:
    with InfluxdProcess(auth=True) as server:
        with InfluxV1Writer(server.url, "_internal") as admin:  # the first user of an auth-enabled server
            admin.query("CREATE USER boss WITH PASSWORD 'boss-pw' WITH ALL PRIVILEGES")
        with InfluxV1Writer(server.url, "_internal", username="boss", password="boss-pw") as admin:
            admin.query("CREATE USER writer WITH PASSWORD 'writer-pw'")
        with InfluxV1Writer(server.url, "missing", username="writer", password="writer-pw") as w:
            out = w.write([_line(0)])
            assert out.status == "fatal" and not out.maybe_stored and w.databases_created == 0
            assert "'missing' does not exist and could not be created" in out.message
            assert 'CREATE DATABASE "missing"' in out.message and "--db" in out.message
            with pytest.raises(InfluxTargetError, match="as an admin"):
                w.ensure_database()


def test_v1_query_statement_error_raises(v1: InfluxV1Writer) -> None:
    with pytest.raises(InfluxQueryError, match="error parsing query"):
        v1.query("SELEKT 1")
    with InfluxV1Writer(v1.url, "no_such_db") as w, pytest.raises(InfluxQueryError, match="database not found"):
        w.query("SELECT * FROM tm")


def test_v1_server_killed_is_retry_then_ok_after_restart() -> None:
    with InfluxdProcess() as server, InfluxV1Writer(server.url, "k", timeout_s=2) as w:
        w.create_database()
        assert w.write([_line(0)]).ok  # the pool now holds a keep-alive connection
        server.kill()
        out = w.write([_line(1)])
        assert out.status == "retry" and out.http_status is None and out.message
        assert not w.ping()
        server.start()
        assert w.write([_line(1)]).ok
        assert len(w.query("SELECT * FROM tm")) == 2  # acknowledged write survived SIGKILL (WAL)


def test_write_isolating_two_bad_among_1000(v1: InfluxV1Writer) -> None:
    v1.write([_line(0, "1.5")])  # v is float
    lines = [_line(i) for i in range(1000)]
    lines[137] = b"tm,sat=S1 v=oops 5"  # malformed
    lines[802] = _line(802, "7i")  # field type conflict
    res = write_isolating(v1, lines)
    assert res.written == 998 and res.pending == []
    assert [b for b, _ in res.bad] == [lines[137], lines[802]]
    assert "unable to parse" in res.bad[0][1] and "field type conflict" in res.bad[1][1]
    assert res.requests <= 2 * 2 * 10 + 1  # ~2 x bad x log2(n)
    assert len(v1.query("SELECT * FROM tm")) == 998


def test_write_isolating_stops_on_retry_and_returns_pending_in_order() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def write(self, lines: list[bytes]) -> WriteOutcome:
            self.calls += 1
            if self.calls == 1:
                return WriteOutcome("bad_request", 400, None, "bad")
            if self.calls == 2:  # first half [0:4] has no bad line
                return WriteOutcome("ok", 204)
            return WriteOutcome("retry", 503, 1.0, "down")

    lines = [bytes([65 + i]) for i in range(8)]
    res = write_isolating(Flaky(), lines)
    assert (res.written, res.bad, res.pending, res.outcome.status) == (4, [], lines[4:], "retry")


# ---- InfluxDB 2.x: protocol-level fake -------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[FakeInfluxDB2]:
    with FakeInfluxDB2(token="tok", org="orbit", buckets=("tm",)) as f:
        yield f


def test_v2_write_sends_token_org_bucket_precision(fake: FakeInfluxDB2) -> None:
    with InfluxV2Writer(fake.url, "orbit", "tm", "tok") as w:
        assert w.ping()
        assert w.write([_line(i) for i in range(5)]) == WriteOutcome("ok", 204)
        assert w.write([_line(i) for i in range(5)]).ok  # duplicates overwrite
        req = fake.writes()[0]
        assert req.headers["Authorization"] == "Token tok"
        assert (req.query["org"], req.query["bucket"], req.query["precision"]) == ("orbit", "tm", "ns")
        assert req.body == b"\n".join(_line(i) for i in range(5))
        assert fake.point_count("tm") == 5
        rows = w.query("SELECT * FROM tm")
        assert rows[0] == {"time": 1_700_000_000_000_000_000, "sat": "S0", "v": 1.5, "n": 0, "_measurement": "tm"}


def test_v2_outcomes(fake: FakeInfluxDB2) -> None:
    with InfluxV2Writer(fake.url, "orbit", "tm", "tok", timeout_s=2) as w:
        fake.script_write(503, {"code": "unavailable", "message": "busy"}, headers={"Retry-After": "1"})
        out = w.write([_line(0)])
        assert (out.status, out.http_status, out.retry_after_s, out.message) == ("retry", 503, 1.0, "busy")
        fake.script_write(429, b"", headers={"Retry-After": "2"})
        assert (w.write([_line(0)]).status, w.write([_line(0)]).status) == ("retry", "ok")
        assert w.write([_line(1, "1i")]).status == "partial"  # real type conflict in the fake: 422
        out = w.write([b"tm v=1 1", b"tm v= 2"])
        assert out.status == "bad_request" and "unable to parse 'tm v= 2'" in out.message
    with InfluxV2Writer(fake.url, "orbit", "tm", "wrong") as w:
        assert (w.write([_line(0)]).status, w.write([_line(0)]).http_status) == ("fatal", 401)
    with InfluxV2Writer(fake.url, "orbit", "nope", "tok") as w:
        out = w.write([_line(0)])
        assert (out.status, out.http_status) == ("fatal", 404) and "bucket" in out.message


def test_v2_check_bucket_names_the_fix(fake: FakeInfluxDB2) -> None:
    with InfluxV2Writer(fake.url, "orbit", "tm", "tok") as w:
        w.check_bucket()
    with InfluxV2Writer(fake.url, "orbit", "nope", "tok") as w, \
            pytest.raises(InfluxTargetError, match="bucket 'nope' not found in org 'orbit'.*influx bucket create"):
        w.check_bucket()
    with InfluxV2Writer(fake.url, "other-org", "tm", "tok") as w, \
            pytest.raises(InfluxTargetError, match="not found in org 'other-org'"):
        w.check_bucket()
    with InfluxV2Writer(fake.url, "orbit", "tm", "wrong") as w, \
            pytest.raises(InfluxTargetError, match="refused the token"):
        w.check_bucket()


def test_v2_connection_refused_is_retry(fake: FakeInfluxDB2) -> None:
    with InfluxV2Writer(fake.url, "orbit", "tm", "tok", timeout_s=2) as w:
        assert w.write([_line(0)]).ok  # a pooled keep-alive connection exists
        fake.stop()  # also cuts open connections
        out = w.write([_line(1)])
        assert (out.status, out.http_status) == ("retry", None) and "refused" in out.message
        assert not w.ping()


def test_v2_write_isolating_through_fake(fake: FakeInfluxDB2) -> None:
    with InfluxV2Writer(fake.url, "orbit", "tm", "tok") as w:
        w.write([_line(0)])
        lines = [_line(i) for i in range(200)]
        lines[50], lines[150] = b"tm,sat=S1 v=", _line(150, '"s"')
        res = write_isolating(w, lines)
        assert res.written == 198 and [b for b, _ in res.bad] == [lines[50], lines[150]]
        assert fake.point_count("tm") == 198


_REAL = {k: os.environ.get(f"ORBITWIN_INFLUXDB2_{k}") for k in ("URL", "TOKEN", "ORG", "BUCKET")}


@pytest.mark.skipif(not all(_REAL.values()), reason="real InfluxDB 2.x/3.x not configured: set ORBITWIN_INFLUXDB2_URL, "
                    "ORBITWIN_INFLUXDB2_TOKEN, ORBITWIN_INFLUXDB2_ORG and ORBITWIN_INFLUXDB2_BUCKET")
def test_v2_real_server() -> None:
    run = time.time_ns()
    with InfluxV2Writer(_REAL["URL"], _REAL["ORG"], _REAL["BUCKET"], _REAL["TOKEN"]) as w:  # type: ignore[arg-type]
        assert w.ping()
        lines = [f"orbitwin_writer_test,run={run} v={i}.5,n={i}i {run + i}".encode() for i in range(100)]
        lines[40] = f"orbitwin_writer_test,run={run} v=".encode()
        res = write_isolating(w, lines)
        assert res.written == 99 and [b for b, _ in res.bad] == [lines[40]] and res.pending == []
        rows = w.query(f"SELECT * FROM orbitwin_writer_test WHERE run = '{run}'")
        assert len(rows) == 99

"""Line-protocol writers for InfluxDB 1.x (``/write``) and 2.x/3.x (``/api/v2/write``).

Every write is one HTTP request whose result is classified into a :class:`WriteOutcome`:

- ``ok``: 204, everything stored (1.x and 2.x answer 204 only after the WAL is fsync'ed);
- ``bad_request``: 400 (malformed line protocol; 2.x rejects the whole batch) or 413 (too large);
- ``partial``: 422, or a 1.x 400 ``partial write: ... dropped=N`` (1.x stores the lines it could
  parse and the points without conflicts: some lines were accepted);
- ``retry``: 408, 429, 5xx, connection refused/reset, timeout (transient: send the same again);
- ``fatal``: 401/403/404 and other 4xx, and the 1.x 500 ``retention policy not found``
  (configuration errors: retrying cannot help).

A failed request is not proof that nothing was stored. ``WriteOutcome.maybe_stored`` says whether
the server may hold some of the lines anyway: false only when the connection was never made
(refused, unresolvable, connect timeout) or the server refused before writing (401/403/404, 413,
429); true for a timeout or a connection lost after the request was sent, for a partial write,
and for retried 5xx answers (influxd 1.x answers ``500 write failed`` while it shuts down and
still has the batch in its WAL).

A missing database is created: the 1.x writer answers ``database not found`` with ``CREATE
DATABASE`` and sends the batch again (:meth:`InfluxV1Writer.ensure_database`); if this user may
not create it, the outcome stays ``fatal`` with a message naming the fix. 2.x buckets are not
created (that needs an all-access token): :meth:`InfluxV2Writer.check_bucket` says what is wrong.

InfluxDB overwrites a point with the same measurement, tag set and timestamp, so sending a
line again is harmless; :func:`write_isolating` relies on that when it bisects a batch.
"""

from __future__ import annotations

import dataclasses
import email.utils
import errno
import http.client
import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Self

import urllib3

__all__ = ["WriteOutcome", "IsolationResult", "InfluxQueryError", "InfluxTargetError", "InfluxV1Writer", "InfluxV2Writer",
           "Writer", "classify", "parse_retry_after", "write_isolating"]

MESSAGE_LIMIT = 4000  # characters of server body kept in WriteOutcome.message
_DROPPED = re.compile(r"dropped=(\d+)")
_FATAL_5XX = ("retention policy not found", "database not found")


@dataclass(frozen=True)
class WriteOutcome:
    """Result of one write request. ``retry_after_s`` in seconds (None: no Retry-After header)."""

    status: str  # ok | bad_request | partial | retry | fatal
    http_status: int | None = None
    retry_after_s: float | None = None
    message: str = ""
    dropped: int | None = None  # points the server says it dropped (1.x/2.x "dropped=N")
    maybe_stored: bool = False  # not ok, yet the server may have stored some of the lines

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class IsolationResult:
    """What :func:`write_isolating` did. ``pending``: lines not known to be written; ``outcome``:
    the stopping retry/fatal outcome, else the first request's (ok, partial or bad_request);
    ``pending_maybe_stored``: some pending lines may be in the database already (a request that
    carried them failed ambiguously, or an earlier partial write of the batch stored some)."""

    written: int
    bad: list[tuple[bytes, str]]
    pending: list[bytes]
    outcome: WriteOutcome
    requests: int = 0
    pending_maybe_stored: bool = False


class InfluxQueryError(RuntimeError):
    """An InfluxQL query failed (HTTP error or statement error)."""


class InfluxTargetError(ValueError):
    """The database (1.x) or bucket (2.x) is missing or unusable: a configuration error; the message names the fix."""


class Writer(Protocol):
    def write(self, lines: list[bytes]) -> WriteOutcome: ...


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _message(body: bytes | str | None, headers: Mapping[str, str] | None) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    text = text.strip()
    try:
        doc = json.loads(text) if text.startswith("{") else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        msg = doc.get("error") or doc.get("message")
        if isinstance(msg, str):
            extra = doc.get("data")  # InfluxDB 3: per-line details
            text = msg + (" " + json.dumps(extra) if extra else "")
    if not text and headers is not None:
        text = headers.get("X-Influxdb-Error") or ""
    return text[:MESSAGE_LIMIT]


def _status_text(http_status: int) -> str:
    """``HTTP 401 Unauthorized``: what to say of an error answer that came without a body."""
    return f"HTTP {http_status} {http.client.responses.get(http_status, '')}".rstrip()


def classify(http_status: int, body: bytes | str | None = None,
             headers: Mapping[str, str] | None = None) -> WriteOutcome:
    """Map an HTTP answer to a write to a :class:`WriteOutcome`."""
    msg = _message(body, headers)
    if not msg and not 200 <= http_status < 300:
        msg = _status_text(http_status)
    retry_after = parse_retry_after(headers.get("Retry-After") if headers is not None else None)
    dropped = int(m.group(1)) if (m := _DROPPED.search(msg)) else None
    if 200 <= http_status < 300:
        status = "ok"
    elif http_status == 400:
        status = "partial" if "partial write" in msg else "bad_request"
    elif http_status == 413:
        status = "bad_request"  # too large: splitting the batch helps
    elif http_status == 422:
        status = "partial"
    elif http_status in (408, 429) or (http_status >= 500 and not any(s in msg for s in _FATAL_5XX)):
        status = "retry"
    else:
        status = "fatal"
    # a 5xx (and a 408: the server had started reading) may come after the points reached the WAL
    maybe_stored = status == "partial" or http_status == 408 or (status == "retry" and http_status >= 500)
    return WriteOutcome(status, http_status, retry_after, msg, dropped, maybe_stored)


_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-f]+>: ")


def no_answer(exc: BaseException, url: str) -> str:
    """Why a request to ``url`` got no HTTP answer, never empty: ``no answer from URL: NewConnectionError,
    Connection refused (ECONNREFUSED)`` (the OS error of the chain with its errno name, else the exception's text)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        code = getattr(cause, "errno", None)
        if isinstance(cause, OSError) and isinstance(code, int) and code != 0:
            name = errno.errorcode.get(code, f"errno {code}")
            return f"no answer from {url}: {type(exc).__name__}, {cause.strerror or name} ({name})"
        cause = cause.__cause__ or cause.__context__
    text = _OBJECT_REPR.sub("", str(exc)).strip()
    return f"no answer from {url}: {type(exc).__name__}" + (f", {text}" if text else "")


def _connection_error(exc: BaseException, url: str) -> WriteOutcome:
    """A request that got no HTTP answer: it may have been stored unless no connection was made."""
    never_sent = isinstance(exc, (urllib3.exceptions.ConnectTimeoutError, ConnectionRefusedError))
    return WriteOutcome("retry", None, None, no_answer(exc, url)[:MESSAGE_LIMIT], maybe_stored=not never_sent)


def _rows(doc: dict[str, Any], q: str) -> list[dict[str, Any]]:
    """Rows of every series of every statement; series tags merged in, name as ``_measurement``."""
    if "error" in doc:
        raise InfluxQueryError(f"query {q!r} failed: {doc['error']}")
    rows: list[dict[str, Any]] = []
    for result in doc.get("results", []):
        if "error" in result:
            raise InfluxQueryError(f"query {q!r} failed: {result['error']}")
        for series in result.get("series", []):
            extra = {"_measurement": series.get("name"), **series.get("tags", {})}
            rows += [{**dict(zip(series["columns"], v)), **extra} for v in series.get("values", [])]
    return rows


class _HttpQuery:
    """InfluxQL over ``/query`` with a urllib3 keep-alive pool (shared by both writers)."""

    url: str
    _http: urllib3.PoolManager
    _query_db: str
    _query_params: dict[str, str]

    def query(self, q: str, *, epoch: str = "ns") -> list[dict[str, Any]]:
        """Run InfluxQL; SELECT/SHOW as GET, others as POST. Times as integers in ``epoch`` units."""
        fields = {"q": q, "db": self._query_db, "epoch": epoch, **self._query_params}
        try:
            if q.lstrip().upper().startswith(("SELECT", "SHOW")):
                r = self._http.request("GET", f"{self.url}/query", fields=fields)
            else:
                r = self._http.request_encode_body("POST", f"{self.url}/query", fields=fields, encode_multipart=False)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise InfluxQueryError(f"query {q!r}: {no_answer(e, self.url)}") from e
        try:
            doc = json.loads(r.data or b"{}")
        except ValueError:
            doc = {"error": r.data.decode("utf-8", "replace")[:MESSAGE_LIMIT]}
        if r.status != 200 and not doc.get("error"):
            doc["error"] = _status_text(r.status)
        return _rows(doc, q)

    def close(self) -> None:
        self._http.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InfluxV1Writer(_HttpQuery):
    """InfluxDB 1.x: POST ``/write?db=&rp=&precision=ns`` over a urllib3 keep-alive pool."""

    def __init__(self, url: str, database: str, retention_policy: str | None = None,
                 username: str | None = None, password: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        headers: dict[str, str] = {}
        if username is not None:
            headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))
        self._write_headers = {**headers, "Content-Type": "text/plain; charset=utf-8"}
        self._http = urllib3.PoolManager(num_pools=2, maxsize=4, headers=headers, retries=False,
                                         timeout=urllib3.Timeout(total=timeout_s))
        self._query_db = database
        self._query_params = {"rp": retention_policy} if retention_policy else {}
        params = {"db": database, "precision": "ns", **self._query_params}
        self._write_url = f"{self.url}/write?{urllib.parse.urlencode(params)}"
        self.databases_created = 0

    def write(self, lines: list[bytes]) -> WriteOutcome:
        """Send ``lines`` (no trailing newlines) in one request; a missing database is created first."""
        if not lines:
            return WriteOutcome("ok", None)
        outcome = self._post(b"\n".join(lines))
        if outcome.status == "fatal" and "database not found" in outcome.message:
            try:
                self.ensure_database()
            except (InfluxTargetError, InfluxQueryError) as e:
                return dataclasses.replace(outcome, message=str(e)[:MESSAGE_LIMIT])
            outcome = self._post(b"\n".join(lines))
        return outcome

    def _post(self, body: bytes) -> WriteOutcome:
        try:
            r = self._http.request("POST", self._write_url, body=body, headers=self._write_headers)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            return _connection_error(e, self.url)
        return classify(r.status, r.data, r.headers)

    def ensure_database(self) -> bool:
        """Create the database if it is missing; True if this call created it.

        Raises :class:`InfluxTargetError` when it is missing and cannot be created (e.g. the user
        is not an admin), :class:`InfluxQueryError` when InfluxDB cannot be reached.
        """
        if any(r.get("name") == self.database for r in self.query("SHOW DATABASES")):
            return False
        try:
            self.create_database()
        except InfluxQueryError as e:
            raise InfluxTargetError(
                f"InfluxDB database {self.database!r} does not exist and could not be created ({e}): create it "
                f"as an admin (CREATE DATABASE \"{self.database}\") or pass --db with an existing database") from e
        self.databases_created += 1
        return True

    def ping(self) -> bool:
        """True if ``/ping`` answers 204."""
        try:
            return self._http.request("GET", f"{self.url}/ping").status == 204
        except (urllib3.exceptions.HTTPError, OSError):
            return False

    def create_database(self) -> None:
        """CREATE DATABASE (idempotent)."""
        self.query(f'CREATE DATABASE "{self.database}"')


class InfluxV2Writer(_HttpQuery):
    """InfluxDB 2.x/3.x through ``influxdb-client`` (synchronous WriteApi, precision ns, no retries).

    ``query`` uses the v1-compatible ``/query?db=BUCKET`` (2.x: a DBRP mapping, virtual since 2.2; 3.x).
    """

    def __init__(self, url: str, org: str, bucket: str, token: str, timeout_s: float = 10.0) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url.rstrip("/")
        self.org, self.bucket = org, bucket
        self._client = InfluxDBClient(url=self.url, token=token, org=org, timeout=int(timeout_s * 1000),
                                      retries=False)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._http = urllib3.PoolManager(num_pools=2, maxsize=2, retries=False,
                                         headers={"Authorization": f"Token {token}"},
                                         timeout=urllib3.Timeout(total=timeout_s))
        self._query_db, self._query_params = bucket, {}

    def write(self, lines: list[bytes]) -> WriteOutcome:
        """Send ``lines`` (no trailing newlines) in one request."""
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        if not lines:
            return WriteOutcome("ok", None)
        try:
            # the client's stubs want a WritePrecision, its constants are plain str
            self._write_api.write(bucket=self.bucket, org=self.org, record=b"\n".join(lines),
                                  write_precision=WritePrecision.NS)  # type: ignore[arg-type]
        except ApiException as e:
            if not e.status:
                return _connection_error(e, self.url)
            return classify(e.status, e.body, e.headers)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            return _connection_error(e, self.url)
        return WriteOutcome("ok", 204)

    def ping(self) -> bool:
        """True if ``/ping`` answers 2xx."""
        return bool(self._client.ping())

    def check_bucket(self) -> None:
        """Raise :class:`InfluxTargetError` naming the fix unless the org has the bucket and the token may use it.

        Raises :class:`InfluxQueryError` when InfluxDB cannot be reached.
        """
        try:
            r = self._http.request("GET", f"{self.url}/api/v2/buckets", fields={"org": self.org, "name": self.bucket})
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise InfluxQueryError(f"bucket check: {no_answer(e, self.url)}") from e
        if r.status in (401, 403):
            raise InfluxTargetError(f"InfluxDB refused the token ({r.status} {_message(r.data, r.headers)}): "
                                    "pass a token with write access to the bucket (ORBITWIN_INFLUX_TOKEN)")
        if r.status == 404 or (r.status == 200 and not json.loads(r.data or b"{}").get("buckets")):
            raise InfluxTargetError(f"InfluxDB bucket {self.bucket!r} not found in org {self.org!r}: create it "
                                    f"(influx bucket create --name {self.bucket} --org {self.org}) or pass --bucket")
        if r.status != 200:
            raise InfluxQueryError(f"bucket check: HTTP {r.status} {_message(r.data, r.headers)}")

    def close(self) -> None:
        self._write_api.close()
        self._client.close()
        super().close()


def write_isolating(writer: Writer, lines: list[bytes]) -> IsolationResult:
    """Write ``lines``; bisect rejected (bad_request/partial) chunks down to single bad lines.

    Every good line gets written, every bad line comes back with the server's message. A
    ``retry``/``fatal`` outcome stops at once: ``pending`` is the rest of the batch, in order,
    from the first line not known to be stored (some of it may be stored: rewriting is harmless).
    Requests: 1 for a clean batch, about 2 x bad x log2(n) otherwise.
    """
    res = IsolationResult(0, [], [], WriteOutcome("ok", None))

    def go(lo: int, hi: int) -> WriteOutcome | None:  # returns the stopping outcome, if any
        out = writer.write(lines[lo:hi])
        res.requests += 1
        if res.requests == 1:
            res.outcome = out
        if out.status == "ok":
            res.written += hi - lo
            return None
        if out.status in ("retry", "fatal"):
            res.pending = lines[lo:]
            # after a first partial/bad answer the whole batch may be partly stored (1.x partial writes)
            res.pending_maybe_stored = out.maybe_stored or res.requests > 1
            return out
        if hi - lo == 1:
            res.bad.append((lines[lo], out.message))
            return None
        mid = (lo + hi) // 2
        return go(lo, mid) or go(mid, hi)

    stop = go(0, len(lines)) if lines else None
    if stop is not None:
        res.outcome = stop
    return res

"""PROTOCOL-LEVEL FAKE of the InfluxDB 2.x HTTP API (InfluxDB 2.x cannot run on this machine).

This is not InfluxDB. It speaks enough of the 2.x wire protocol to test clients:

- ``POST /api/v2/write?org=&bucket=&precision=``: ``Authorization: Token <token>`` (401
  otherwise), 404 for an unknown org or bucket, gzip bodies, minimal line-protocol parsing.
  As in 2.x, a malformed line rejects the whole batch (400, body names the first bad line);
  a field type conflict drops those points and stores the rest (422 ``partial write ...
  dropped=N``). Points are keyed by (measurement, tag set, timestamp in ns): a duplicate
  merges its fields into the stored point (same field: new value wins), like InfluxDB.
- ``GET /ping`` (204) and ``GET /health`` (200 JSON).
- ``GET /api/v2/buckets?org=&name=``: 404 for an unknown org, else ``{"buckets": [...]}`` (empty
  when the name is unknown), as 2.x answers.
- ``GET|POST /query?db=BUCKET`` (v1 compatibility): only ``SELECT * FROM <measurement>``.
- A script of canned write responses (``script_write``), e.g. the next 2 writes answer 503 with
  ``Retry-After: 1``; scripted writes store nothing.

Every request is recorded (method, path, query, headers, body) in ``requests``.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PRECISION_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def _split(s: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes and not escaped by a backslash."""
    out, cur, quoted, i = [], [], False, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur += s[i : i + 2]
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if quoted:
        raise ValueError("unbalanced quotes")
    return out + ["".join(cur)]


def _unescape(s: str) -> str:
    return re.sub(r"\\([ ,=\"\\])", r"\1", s)


def _field(v: str) -> tuple[str, Any]:
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return "string", re.sub(r'\\(["\\])', r"\1", v[1:-1])
    if re.fullmatch(r"[+-]?\d+i", v):
        return "integer", int(v[:-1])
    if re.fullmatch(r"\d+u", v):
        return "unsigned", int(v[:-1])
    if v in ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"):
        return "boolean", v[0] in "tT"
    if not v or not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", v):
        raise ValueError("invalid number" if v else "missing field value")
    return "float", float(v)


def parse_line(line: str, default_ts: int, precision_ns: int = 1) -> tuple[str, tuple, dict, int]:
    """(measurement, sorted tags, {field: (type, value)}, timestamp ns) of one line; ValueError if bad."""
    parts = [p for p in _split(line, " ") if p != ""]
    if len(parts) not in (2, 3):
        raise ValueError("missing fields" if len(parts) < 2 else "bad timestamp")
    key = _split(parts[0], ",")
    if not key[0]:
        raise ValueError("missing measurement")
    tags = []
    for kv in key[1:]:
        k, eq, v = kv.partition("=")
        if not eq or not k or not v:
            raise ValueError("missing tag key or value")
        tags.append((_unescape(k), _unescape(v)))
    fields = {}
    for kv in _split(parts[1], ","):
        k, eq, v = kv.partition("=")
        if not eq or not k:
            raise ValueError("invalid field format")
        fields[_unescape(k)] = _field(v)
    if len(parts) == 3:
        if not re.fullmatch(r"-?\d+", parts[2]):
            raise ValueError("bad timestamp")
        ts = int(parts[2]) * precision_ns
    else:
        ts = default_ts
    return _unescape(key[0]), tuple(sorted(tags)), fields, ts


class FakeInfluxDB2:
    """The fake server: ``start()``, ``url``, ``stop()``; see the module docstring."""

    def __init__(self, token: str = "test-token", org: str = "orbitwin", buckets: tuple[str, ...] = ("telemetry",),
                 host: str = "127.0.0.1") -> None:
        self.token, self.org, self.host = token, org, host
        self.points: dict[str, dict[tuple[str, tuple, int], dict[str, Any]]] = {b: {} for b in buckets}
        self.field_types: dict[tuple[str, str, str], str] = {}  # (bucket, measurement, field) -> type
        self.requests: list[Recorded] = []
        self._script: deque[tuple[int, bytes, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None

    # ---- control ---------------------------------------------------------------------------
    def start(self) -> FakeInfluxDB2:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True, name="influx2-fake").start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop listening and cut every open (keep-alive) connection, like a server going down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            conns, self._connections = list(self._connections), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def script_write(self, status: int, body: str | bytes | dict = b"", *, headers: dict[str, str] | None = None,
                     times: int = 1) -> None:
        """The next ``times`` writes answer ``status`` with ``body``/``headers`` and store nothing."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
        with self._lock:
            self._script.extend([(status, data, dict(headers or {}))] * times)

    def writes(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/api/v2/write"]

    def point_count(self, bucket: str = "telemetry") -> int:
        with self._lock:
            return len(self.points[bucket])

    # ---- protocol --------------------------------------------------------------------------
    def handle_buckets(self, q: dict[str, str]) -> tuple[int, dict | None, dict[str, str]]:
        if q.get("org") != self.org:
            return 404, {"code": "not found", "message": f'organization name "{q.get("org")}" not found'}, {}
        names = [b for b in self.points if q.get("name") in (None, b)]
        return 200, {"buckets": [{"name": b, "orgID": "fake-org-id", "type": "user"} for b in names]}, {}

    def handle_write(self, q: dict[str, str], body: bytes) -> tuple[int, dict | None, dict[str, str]]:
        with self._lock:
            if self._script:
                status, data, headers = self._script.popleft()
                return status, (json.loads(data) if data.startswith(b"{") else data or None), headers  # type: ignore
        if q.get("org") != self.org:
            return 404, {"code": "not found", "message": f'organization name "{q.get("org")}" not found'}, {}
        bucket = q.get("bucket", "")
        if bucket not in self.points:
            return 404, {"code": "not found", "message": f'bucket "{bucket}" not found'}, {}
        precision = q.get("precision", "ns")
        if precision not in _PRECISION_NS:
            return 400, {"code": "invalid", "message": f"invalid precision {precision!r}"}, {}
        now = time.time_ns() // _PRECISION_NS[precision] * _PRECISION_NS[precision]
        parsed = []
        for raw in body.decode("utf-8", "replace").split("\n"):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                parsed.append(parse_line(line, now, _PRECISION_NS[precision]))
            except ValueError as e:
                return 400, {"code": "invalid", "message": f"unable to parse '{line}': {e}"}, {}
        dropped, first_conflict = 0, ""
        with self._lock:
            for m, tags, fields, ts in parsed:
                conflict = next(((f, t, self.field_types[(bucket, m, f)]) for f, (t, _) in fields.items()
                                 if self.field_types.get((bucket, m, f), t) != t), None)
                if conflict:
                    dropped += 1
                    first_conflict = first_conflict or (f'field type conflict: input field "{conflict[0]}" on '
                                                        f'measurement "{m}" is type {conflict[1]}, already exists '
                                                        f"as type {conflict[2]}")
                    continue
                for f, (t, _) in fields.items():
                    self.field_types[(bucket, m, f)] = t
                stored = self.points[bucket].setdefault((m, tags, ts), {})
                stored.update({f: v for f, (_, v) in fields.items()})
        if dropped:
            msg = f"failure writing points to database: partial write: {first_conflict} dropped={dropped}"
            return 422, {"code": "unprocessable entity", "message": msg}, {}
        return 204, None, {}

    def handle_query(self, q: dict[str, str]) -> tuple[int, dict, dict[str, str]]:
        bucket = q.get("db", "")
        if bucket not in self.points:
            return 404, {"code": "not found", "message": f'bucket "{bucket}" not found'}, {}
        m = re.fullmatch(r'\s*SELECT \* FROM "?([^"\s]+)"?\s*', q.get("q", ""), re.I)
        if not m:
            return 200, {"results": [{"statement_id": 0, "error": "fake supports only SELECT * FROM m"}]}, {}
        with self._lock:
            rows = sorted((k, v) for k, v in self.points[bucket].items() if k[0] == m.group(1))
        if not rows:
            return 200, {"results": [{"statement_id": 0}]}, {}
        tag_keys = sorted({t for (_, tags, _), _ in rows for t, _ in tags})
        field_keys = sorted({f for _, fields in rows for f in fields})
        values = [[ts] + [dict(tags).get(t) for t in tag_keys] + [fields.get(f) for f in field_keys]
                  for (_, tags, ts), fields in sorted(rows, key=lambda r: r[0][2])]
        series = {"name": m.group(1), "columns": ["time"] + tag_keys + field_keys, "values": values}
        return 200, {"results": [{"statement_id": 0, "series": [series]}]}, {}

    def __enter__(self) -> FakeInfluxDB2:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_fake: FakeInfluxDB2

    def setup(self) -> None:
        super().setup()
        with self.server_fake._lock:
            self.server_fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.server_fake._lock:
            self.server_fake._connections.discard(self.connection)
        super().finish()

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        fake = self.server_fake
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.command == "POST" and self.headers.get("Content-Type", "").startswith("application/x-www-form"):
            q.update(urllib.parse.parse_qsl(body.decode()))
        with fake._lock:
            fake.requests.append(Recorded(self.command, url.path, q, dict(self.headers), body))
        if url.path == "/ping":
            return self._reply(204, None, {"X-Influxdb-Version": "v2-fake", "X-Influxdb-Build": "OSS"})
        if url.path == "/health":
            return self._reply(200, {"name": "influxdb", "status": "pass", "version": "v2-fake"}, {})
        if self.headers.get("Authorization") != f"Token {fake.token}":
            return self._reply(401, {"code": "unauthorized", "message": "unauthorized access"}, {})
        if url.path == "/api/v2/buckets" and self.command == "GET":
            return self._reply(*fake.handle_buckets(q))
        if url.path == "/api/v2/write" and self.command == "POST":
            return self._reply(*fake.handle_write(q, body))
        if url.path == "/query":
            return self._reply(*fake.handle_query(q))
        self._reply(404, {"code": "not found", "message": "path not found"}, {})

    do_GET = do_POST = _serve

    def _reply(self, status: int, doc: dict | bytes | None, headers: dict[str, str]) -> None:
        data = json.dumps(doc).encode() if isinstance(doc, dict) else doc or b""
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

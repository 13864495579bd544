"""A private InfluxDB 1.x server (``influxd``) as a child process, for benchmarks and tests.

The server runs on free loopback ports with a generated ``influxdb.conf`` and its meta, data and
WAL directories in a temp dir of its own; no system service is assumed or touched. Its small
HTTP client (``query``, ``write``, ``points``) speaks the 1.x ``/query`` and ``/write`` API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from twin.runtime.embedded_broker import ChildServer, free_port

__all__ = ["InfluxdProcess", "find_influxd"]


def find_influxd() -> str | None:
    """Path of influxd: $INFLUXD_BIN, then $PATH, then /usr/bin."""
    env = os.environ.get("INFLUXD_BIN")
    if env and os.access(env, os.X_OK):
        return env
    return shutil.which("influxd") or ("/usr/bin/influxd" if os.access("/usr/bin/influxd", os.X_OK) else None)


class InfluxdProcess(ChildServer):
    """An influxd 1.x child process on free loopback ports, with meta/data/wal dirs in its own temp dir."""

    stop_timeout_s = 15.0

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        log_level: str = "warn",
        start_timeout: float = 20.0,
        auth: bool = False,
    ) -> None:
        """``auth``: HTTP authentication on (create the first user, an admin, before anything else)."""
        self.host = host
        self.auth = auth
        self.binary = binary or find_influxd()
        self.log_level = log_level
        self.start_timeout = start_timeout
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="orbitwin-influxd-"))
        self.config_path = self.dir / "influxdb.conf"
        self.log_path = self.dir / "influxd.log"
        self.http_port = 0
        self.rpc_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def render_config(self) -> str:
        """influxdb.conf text: everything local, unlimited series/tag values, no UDP/graphite."""
        d = self.dir
        return f"""\
reporting-disabled = true
reporting-enabled = false
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{d / 'meta'}"
  logging-enabled = false

[data]
  dir = "{d / 'data'}"
  wal-dir = "{d / 'wal'}"
  wal-fsync-delay = "0s"
  query-log-enabled = false
  max-series-per-database = 0
  max-values-per-tag = 0

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.http_port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "{self.log_level}"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
"""

    def start(self) -> InfluxdProcess:
        """Spawn influxd on free ports (kept across restarts) and wait for ``/ping`` -> 204."""
        if self.running:
            return self
        if not self.binary:
            raise RuntimeError("influxd binary not found; install InfluxDB 1.x (Debian: apt-get install influxdb)")
        fixed = bool(self.http_port)
        for _ in range(1 if fixed else 3):
            if not fixed:
                self.http_port, self.rpc_port = free_port(self.host), free_port(self.host)
            if self._spawn():
                return self
        raise RuntimeError(f"influxd did not answer /ping on {self.url}:\n{self.log_tail()}")

    def _spawn(self) -> bool:
        assert self.binary is not None
        self.config_path.write_text(self.render_config())
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=env,
                start_new_session=True,
            )
        deadline = t0 + self.start_timeout
        while time.monotonic() < deadline and self.running:
            if self.ping():
                self.startup_seconds = time.monotonic() - t0
                return True
            time.sleep(0.05)
        self.kill()
        return False

    def ping(self) -> bool:
        """True if ``/ping`` answers 204."""
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as r:
                return bool(r.status == 204)
        except (OSError, urllib.error.URLError):
            return False

    def restart(self, sig: int = signal.SIGTERM) -> InfluxdProcess:
        """Stop and start again on the same ports with the same meta/data/wal dirs."""
        self.stop(sig)
        return self.start()

    def _request(self, path: str, params: dict[str, str], data: bytes | None = None) -> tuple[int, bytes]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def query(self, q: str, db: str | None = None, *, method: str = "auto") -> dict[str, Any]:
        """Run InfluxQL via ``/query`` and return the decoded JSON; raises on HTTP or statement errors.

        SELECT/SHOW go as GET, everything else as POST (``method="auto"``).
        """
        params = {"q": q, **({"db": db} if db else {})}
        post = method == "POST" or (method == "auto" and not q.lstrip().upper().startswith(("SELECT", "SHOW")))
        status, body = self._request("/query", params, b"" if post else None)
        result: dict[str, Any] = json.loads(body or b"{}")
        errors = [r["error"] for r in result.get("results", []) if "error" in r]
        if status != 200 or "error" in result or errors:
            raise RuntimeError(f"influx query {q!r} failed ({status}): {result.get('error') or errors}")
        return result

    def write(self, lines: str | list[str], db: str, precision: str = "ns") -> None:
        """Write line protocol via ``/write``; raises unless the server answers 204."""
        text = lines if isinstance(lines, str) else "\n".join(lines)
        status, body = self._request("/write", {"db": db, "precision": precision}, text.encode())
        if status != 204:
            raise RuntimeError(f"influx write failed ({status}): {body.decode(errors='replace')}")

    def create_database(self, name: str) -> None:
        """CREATE DATABASE (idempotent)."""
        self.query(f'CREATE DATABASE "{name}"')

    def points(self, q: str, db: str) -> list[dict[str, Any]]:
        """Rows of the first series of a SELECT as dicts (empty list if none)."""
        series = self.query(q, db)["results"][0].get("series", [])
        if not series:
            return []
        cols = series[0]["columns"]
        return [dict(zip(cols, v)) for v in series[0]["values"]]

    def __repr__(self) -> str:
        return f"InfluxdProcess(url={self.url!r}, running={self.running})"

"""The InfluxDB bridge's target at start: a missing 1.x database is created, a missing 2.x bucket is a clear error."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

from bridges.influx.writer import InfluxV1Writer
from influx2_fake import FakeInfluxDB2


def _bridge(mqtt_url: str, tmp: Any, *influx_args: str, timeout: float = 60.0) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orbitwin.cli", "bridge", "influx", "--mqtt", mqtt_url,
                             "--spool-dir", str(tmp / "spool"), "--dead-letter", str(tmp / "dead.jsonl"),
                             "--report-every", "0.5", *influx_args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_v1_missing_database_is_created_at_start(mosquitto: Any, influxd: Any, tmp_path: Any) -> None:
    db = f"fresh_{uuid.uuid4().hex[:8]}"
    proc = _bridge(mosquitto.url, tmp_path, "--influx", influxd.url, "--db", db)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.strip() == f"orbitwin bridge influx: created database {db!r}", first
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    with InfluxV1Writer(influxd.url, db) as w:
        assert any(r["name"] == db for r in w.query("SHOW DATABASES"))


def test_v2_missing_bucket_fails_at_start_naming_the_fix(mosquitto: Any, tmp_path: Any) -> None:
    with FakeInfluxDB2(token="tok", org="orbit", buckets=("tm",)) as fake:
        proc = _bridge(mosquitto.url, tmp_path, "--influx", fake.url, "--api", "v2", "--org", "orbit",
                       "--bucket", "nope", "--token", "tok")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert "bucket 'nope' not found in org 'orbit'" in err and "influx bucket create" in err
    assert "Traceback" not in err and "tok" not in err.replace("token", "")

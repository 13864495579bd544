"""The deployment files: docker-compose.yml, the Mosquitto config and entrypoint, scripts/gen-env.sh.

There is no Docker engine here, so: the compose file is validated against the Compose
Specification schema (vendored by check-jsonschema) before and after interpolation with a
generated .env; the broker config runs in the real ``mosquitto`` binary, started through the
container's own entrypoint (which builds the password file from the environment), and
authentication is checked with real clients.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
import yaml

from servers import find_mosquitto, free_port

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
GEN_ENV = REPO / "scripts" / "gen-env.sh"
SECRET_KEYS = ("PASSWORD", "TOKEN", "SECRET")
VAR = re.compile(r"(?<!\$)\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def compose_text() -> str:
    return COMPOSE.read_text()


def gen_env(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(GEN_ENV), "--out", str(path), *args], capture_output=True, text=True,
                          timeout=30)


def parse_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}; $$ stays a literal $."""
    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            raise KeyError(f"{name}: {arg}")
        return value or (arg if op == ":-" else "")
    return VAR.sub(sub, text).replace("$$", "$")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    assert gen_env(tmp_path / ".env").returncode == 0
    return parse_env(tmp_path / ".env")


def compose_schema() -> dict[str, Any]:
    ref = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(ref.read_text())


def test_compose_file_matches_the_compose_specification(env: dict[str, str]) -> None:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    raw = yaml.safe_load(compose_text())
    cls(schema).validate(raw)
    done = yaml.safe_load(interpolate(compose_text(), env))
    cls(schema).validate(done)
    assert set(done["services"]) == {"mosquitto", "influxdb", "grafana", "twin", "influx-bridge", "grafana-bridge"}


def test_every_service_is_health_checked_and_waits_for_healthy_dependencies() -> None:
    services = yaml.safe_load(compose_text())["services"]
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond == {"condition": "service_healthy"}, (name, dep)
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["influxdb"]["image"] == "influxdb:2.7"
    assert services["grafana"]["image"].startswith("grafana/grafana:11.")
    assert {s for s, v in services.items() if v.get("image") == "orbitwin:local"} == {"twin", "influx-bridge",
                                                                                       "grafana-bridge"}
    graf = services["grafana"]["volumes"]
    assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in graf
    assert "./dashboards/json:/var/lib/grafana/dashboards:ro" in graf
    assert "--api" in services["influx-bridge"]["command"] and "v2" in services["influx-bridge"]["command"]
    gb = services["grafana-bridge"]["command"]
    for flag in ("--mqtt", "--listen", "--user", "--password", "--rules"):
        assert flag in gb
    assert gb[gb.index("--listen") + 1] == "0.0.0.0:8090"


def test_no_secret_literal_and_no_default_for_credentials(env: dict[str, str]) -> None:
    text = compose_text()
    for m in VAR.finditer(text):
        name, op = m.group(1), m.group(2)
        if any(k in name for k in SECRET_KEYS) or name.endswith("_USER"):
            assert op == ":?", f"${{{name}}} must be required (:?), not defaulted"
    services = yaml.safe_load(text)["services"]
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if any(k in key for k in SECRET_KEYS) and not key.endswith("_ENV"):  # *_ENV name a variable
                assert VAR.fullmatch(str(value)), f"{name}.{key} is a literal"
    for key, value in env.items():
        if any(k in key for k in SECRET_KEYS):
            assert value not in text
    assert not re.search(r"(?i)(password|token)[\"']?\s*[:=]\s*[\"']?(?!\$)[A-Za-z0-9]{6,}", text)


def test_gen_env_covers_every_compose_variable_with_distinct_secrets(tmp_path: Path) -> None:
    out = tmp_path / ".env"
    assert gen_env(out).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o600
    first = parse_env(out)
    referenced = {m.group(1) for m in VAR.finditer(compose_text())}
    assert referenced <= set(first), referenced - set(first)
    required = {m.group(1) for m in VAR.finditer(compose_text()) if m.group(2) == ":?"}
    assert all(first[k] for k in required)
    secrets = [v for k, v in first.items() if any(s in k for s in SECRET_KEYS)]
    assert len(secrets) >= 6 and len(set(secrets)) == len(secrets) and all(len(s) >= 32 for s in secrets)
    # refuses to overwrite, then --force makes all-new secrets
    again = gen_env(out)
    assert again.returncode != 0 and "--force" in again.stderr and parse_env(out) == first
    assert gen_env(out, "--force").returncode == 0
    second = parse_env(out)
    assert not {v for k, v in second.items() if any(s in k for s in SECRET_KEYS)} & set(secrets)
    example = parse_env(REPO / ".env.example")
    assert set(example) == set(first) and not any(example.values())


def test_dockerfile_builds_one_orbitwin_image() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert 'ENTRYPOINT ["orbitwin"]' in text
    assert "COPY docker/healthcheck.py" in text and "COPY dashboards" in text


# --- the broker config in the real mosquitto -----------------------------------------------------------
def _connect(port: int, user: str | None, password: str | None) -> int | None:
    """CONNACK reason code (0 accepted), None when nothing answered."""
    rc: list[int] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv311)
    if user is not None:
        c.username_pw_set(user, password)
    c.on_connect = lambda cl, ud, flags, reason, props: rc.append(reason.value)
    c.connect("127.0.0.1", port, keepalive=5)
    deadline = time.monotonic() + 5
    while not rc and time.monotonic() < deadline:
        c.loop(0.1)
    c.disconnect()
    return rc[0] if rc else None


def test_mosquitto_config_runs_in_the_real_broker_and_enforces_auth(tmp_path: Path, env: dict[str, str]) -> None:
    if not find_mosquitto() or not shutil.which("mosquitto_passwd"):
        if os.environ.get("ORBITWIN_REQUIRE_SERVERS") == "1":
            pytest.fail("mosquitto / mosquitto_passwd not found")
        pytest.skip("mosquitto / mosquitto_passwd not found (apt-get install mosquitto)")
    conf = (REPO / "docker" / "mosquitto" / "mosquitto.conf").read_text()
    port = free_port("127.0.0.1")
    passwd = tmp_path / "auth" / "passwd"
    data = tmp_path / "data"
    data.mkdir()
    rewritten, n = re.subn(r"^listener 1883$", f"listener {port} 127.0.0.1", conf, flags=re.M)
    rewritten, m = re.subn(r"^password_file .*$", f"password_file {passwd}", rewritten, flags=re.M)
    rewritten, k = re.subn(r"^persistence_location .*$", f"persistence_location {data}/", rewritten, flags=re.M)
    assert (n, m, k) == (1, 1, 1), "mosquitto.conf lost its listener, password_file or persistence_location"
    for line in ("allow_anonymous false", "persistence true"):
        assert re.search(rf"^{line}$", conf, re.M)
    rewritten += f"\nuser {os.environ.get('USER') or 'root'}\n"  # no privilege drop: the temp dir stays readable
    (tmp_path / "mosquitto.conf").write_text(rewritten)
    run_env = {**os.environ, **env, "MOSQUITTO_PASSWD_FILE": str(passwd), "MOSQUITTO_CONF": str(tmp_path / "mosquitto.conf"),
               "PATH": f"{Path(find_mosquitto() or '').parent}:{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "mosquitto.log", "w")
    proc = subprocess.Popen(["sh", str(REPO / "docker" / "mosquitto" / "entrypoint.sh")], env=run_env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        assert proc.poll() is None, f"mosquitto exited ({proc.returncode}):\n{(tmp_path / 'mosquitto.log').read_text()}"
        assert passwd.stat().st_mode & 0o077 == 0
        assert _connect(port, None, None) not in (0, None), "anonymous client accepted"
        assert _connect(port, env["MQTT_TWIN_USER"], "wrong-password") not in (0, None)
        for who in ("TWIN", "BRIDGE", "GRAFANA_BRIDGE"):
            assert _connect(port, env[f"MQTT_{who}_USER"], env[f"MQTT_{who}_PASSWORD"]) == 0, who
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    # persistence on: the broker saved its database where the config says
    assert (data / "mosquitto.db").exists()


def test_entrypoint_refuses_missing_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTT_")}
    env["MOSQUITTO_PASSWD_FILE"] = str(tmp_path / "passwd")
    r = subprocess.run(["sh", str(REPO / "docker" / "mosquitto" / "entrypoint.sh")], env=env, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0 and "MQTT_TWIN_USER" in r.stderr

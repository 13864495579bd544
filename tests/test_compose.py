"""The deployment files: docker-compose.yml, the Dockerfile, docker/ (Mosquitto config, entrypoint, ACL, health
checks) and scripts/gen-env.sh.

There is no Docker engine here, so the stack is checked without one:

- the compose file against the Compose Specification schema (vendored by check-jsonschema), before and
  after interpolation with a generated ``.env``;
- every orbitwin service's command through the real CLI parser (a shell command runs in the real ``sh``
  with a stand-in ``orbitwin`` that records its arguments), its credentials resolved from its
  environment as the CLI resolves them;
- every file a service names (command, health check, Mosquitto config) resolved to where the image puts
  it (Dockerfile ``COPY``, ``RUN mkdir``) or a mount, and found in the repository or in what gen-env writes;
- no secret of ``.env`` on any command line, entrypoint or health check;
- the broker: the real mosquitto through the container's entrypoint with the generated files, and its
  health check command run against it;
- the twin and the grafana bridge run from their compose command and environment (container paths and
  host names mapped to the test's) against that broker, and the alert loop closes: a webhook with the
  basic auth Grafana's contact point sends becomes a command the twin completes.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mqtt_helpers import stop_process, wait_for
from servers import free_port
from stack_broker import ACL, REPO, Client, StackBroker, gen_env, parse_env, start_stack_broker
from twin.contract.roles import roles

COMPOSE = REPO / "docker-compose.yml"
SECRET_KEYS = ("PASSWORD", "TOKEN", "SECRET")
VAR = re.compile(r"(?<!\$)\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
SHARD_SERVICES = ("twin-shard-1", "twin-shard-2", "influx-bridge-shard-1", "influx-bridge-shard-2")
ORBITWIN_IMAGE = "orbitwin:local"
GENERATED = ("./tls/", "./keys/")  # mount sources scripts/gen-env.sh writes (beside .env)
# Executables of the third-party images the health checks call (no Docker here to look inside them):
# eclipse-mosquitto:2 ships the mosquitto clients, influxdb:2.7 the influx CLI, grafana/grafana 11 (Alpine
# based) busybox wget. The orbitwin image's are checked against its Dockerfile instead.
IMAGE_EXECUTABLES = {"eclipse-mosquitto:2": {"mosquitto_sub", "mosquitto_pub", "mosquitto_passwd", "sh"},
                     "influxdb:2.7": {"influx"}, "grafana/grafana:11.6.0": {"wget"}}


def compose_text() -> str:
    return COMPOSE.read_text()


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}; $$ stays a literal $."""
    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            raise KeyError(f"{name}: {arg}")
        return value or (arg if op == ":-" else "")
    return VAR.sub(sub, text).replace("$$", "$")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding what gen-env writes: .env and tls/."""
    d = tmp_path_factory.mktemp("gen-env")
    r = gen_env(d / ".env")
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def env(generated: Path) -> dict[str, str]:
    return parse_env(generated / ".env")


@pytest.fixture(scope="module")
def services(env: dict[str, str]) -> dict[str, Any]:
    """The interpolated services."""
    return yaml.safe_load(interpolate(compose_text(), env))["services"]


def secrets_of(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if any(s in k for s in SECRET_KEYS)}


# --- the image: where the Dockerfile puts things ------------------------------------------------------
def dockerfile_layout() -> tuple[dict[str, Path], set[str], list[str]]:
    """(image path -> repository path for every COPY, directories RUN mkdir makes, the ENTRYPOINT)."""
    workdir, copies, dirs, entrypoint = "/", {}, set(), []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "WORKDIR":
            workdir = words[1]
        elif words[0] == "COPY":
            *sources, dest = words[1:]
            dest = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest.removeprefix('./')}"
            for src in sources:
                target = dest.rstrip("/") + "/" + Path(src).name if dest.endswith("/") else dest
                copies[target.rstrip("/")] = REPO / src
        elif words[0] == "ENTRYPOINT":
            entrypoint = json.loads(line.partition(" ")[2])
        for m in re.finditer(r"mkdir -p ((?:/[\w./-]+\s*)+)", line):
            dirs.update(m.group(1).split())
    return copies, dirs, entrypoint


def resolve(path: str, svc: dict[str, Any], generated: Path) -> Path | None:
    """Where a container path of ``svc`` comes from on this machine: a bind mount's source (``./tls``, ``./keys``
    being what gen-env wrote), a file the Dockerfile copies, or None (named volume, directory the image makes)."""
    for vol in svc.get("volumes") or []:
        src, _, rest = vol.partition(":")
        target = rest.split(":")[0]
        if path == target or path.startswith(target.rstrip("/") + "/"):
            if not src.startswith("."):
                return None  # a named volume
            base = generated / src[2:] if src.startswith(GENERATED) else REPO / src[2:]
            return base / path[len(target):].lstrip("/") if path != target else base
    if (path.rstrip("/") + "/").startswith(entrypoint_dirs(svc, generated)):
        return None  # the service's entrypoint writes it at start
    if svc.get("image") == ORBITWIN_IMAGE:
        copies, dirs, _ = dockerfile_layout()
        for target, src in copies.items():
            if path == target or path.startswith(target + "/"):
                return src / path[len(target):].lstrip("/") if path != target else src
        if any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs):
            return None
    raise AssertionError(f"{path}: neither mounted nor in the image")


def entrypoint_dirs(svc: dict[str, Any], generated: Path) -> tuple[str, ...]:
    """The directories a mounted entrypoint script makes (``mkdir -p "$x"`` of ``x="${VAR:-/default}"``)."""
    entry = (svc.get("entrypoint") or [None, None])[1:2]
    if not entry or not str(entry[0]).endswith(".sh"):
        return ()
    script = resolve(str(entry[0]), {"volumes": svc.get("volumes")}, generated)
    text = script.read_text() if script else ""
    made = set(re.findall(r'mkdir -p ((?:"\$\w+"\s*)+)', text)[0].replace('"', "").replace("$", "").split()) \
        if "mkdir -p" in text else set()
    return tuple(d + "/" for var, d in re.findall(r'^(\w+)="\$\{\w+:-(/[^}]+)\}"', text, re.M) if var in made)


def container_paths(words: list[str]) -> list[str]:
    return [w for word in words for w in re.findall(r"(?<![\w$/:])(/(?:app|orbitwin|var|etc|mosquitto)[\w./-]*)", word)]


# --- running a service's command: argv through sh, parsed by the real CLI ---------------------------------
def service_argv(svc: dict[str, Any], tmp: Path, extra_env: dict[str, str] | None = None) -> list[str]:
    """The argv the orbitwin executable gets: the image's entrypoint + command, or (``sh -c``) what the
    real shell runs, recorded by a stand-in ``orbitwin``."""
    _, _, image_entry = dockerfile_layout()
    entry = svc.get("entrypoint") or image_entry
    command = svc.get("command") or []
    if entry[:2] != ["/bin/sh", "-c"]:
        argv = [*entry, *command]
        assert argv[0] == "orbitwin", argv
        return argv[1:]
    fake = tmp / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "orbitwin").write_text(f'#!{sys.executable}\nimport json, sys\n'
                                   f'open({str(tmp / "argv.json")!r}, "w").write(json.dumps(sys.argv[1:]))\n')
    (fake / "orbitwin").chmod(0o755)
    env = {**container_env(svc), **(extra_env or {}),
           "PATH": f"{fake}:/usr/bin:/bin"}
    r = subprocess.run(["/bin/sh", "-c", *command], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads((tmp / "argv.json").read_text())


def container_env(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment as its container sees it (a null value, e.g. an empty ${X:-}, is unset)."""
    return {k: str(v) for k, v in (svc.get("environment") or {}).items() if v is not None}


@contextmanager
def environment(env: dict[str, Any]) -> Iterator[None]:
    """os.environ replaced by ``env`` (a container's environment) for the block."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update({k: str(v) for k, v in env.items() if v is not None})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def healthcheck_module() -> Any:
    """docker/healthcheck.py, loaded from its file (the image runs it as /app/docker/healthcheck.py)."""
    spec = importlib.util.spec_from_file_location("orbitwin_healthcheck", REPO / "docker" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def orbitwin_services(services: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in services.items() if s.get("image") == ORBITWIN_IMAGE}


# --- the compose file ---------------------------------------------------------------------------------
def compose_schema() -> dict[str, Any]:
    ref = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(ref.read_text())


def test_compose_file_matches_the_compose_specification(env: dict[str, str]) -> None:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls(schema).validate(yaml.safe_load(compose_text()))
    done = yaml.safe_load(interpolate(compose_text(), env))
    cls(schema).validate(done)
    assert set(done["services"]) == {"mosquitto", "influxdb", "grafana", "twin", "influx-bridge", "grafana-bridge",
                                     *SHARD_SERVICES}
    # the default stack has no profile; the "shards" profile adds two twin shards and a bridge per shard
    assert {n for n, svc in done["services"].items() if not svc.get("profiles")} == {
        "mosquitto", "influxdb", "grafana", "twin", "influx-bridge", "grafana-bridge"}
    assert {n for n, svc in done["services"].items() if svc.get("profiles") == ["shards"]} == set(SHARD_SERVICES)


def test_every_service_is_health_checked_and_waits_for_healthy_dependencies() -> None:
    services = yaml.safe_load(compose_text())["services"]
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond == {"condition": "service_healthy"}, (name, dep)
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["influxdb"]["image"] == "influxdb:2.7"
    assert services["grafana"]["image"].startswith("grafana/grafana:11.")
    assert set(orbitwin_services(services)) == {"twin", "influx-bridge", "grafana-bridge", *SHARD_SERVICES}
    # only loopback ports are published: the broker's TLS port, InfluxDB and Grafana
    ports = {n: s.get("ports") for n, s in services.items() if s.get("ports")}
    assert ports == {"mosquitto": ["127.0.0.1:8883:8883"], "influxdb": ["127.0.0.1:8086:8086"],
                     "grafana": ["127.0.0.1:3000:3000"]}


def test_every_orbitwin_command_parses_with_the_real_cli(services: dict[str, Any], env: dict[str, str],
                                                          generated: Path, tmp_path: Path) -> None:
    from orbitwin.cli.bridge_grafana import _webhook_auth
    from orbitwin.cli.main import build_parser
    from orbitwin.cli.mqtt_options import mqtt_settings_from_args

    users = {"twin": "twin", "influx-bridge": "influx-bridge", "grafana-bridge": "grafana-bridge",
             **{n: n.rsplit("-shard-", 1)[0] for n in SHARD_SERVICES}}
    spools = set()
    for name, svc in orbitwin_services(services).items():
        argv = service_argv(svc, tmp_path)
        with environment(container_env(svc)):
            args = build_parser().parse_args(argv)  # SystemExit (exit 2) on any option the CLI rejects
            settings = mqtt_settings_from_args(args)
            assert settings.tls and settings.host == "mosquitto" and settings.port == 8883, (name, settings)
            assert settings.credentials == (users[name], env[roles_env(users[name])]), name
            assert resolve(settings.ca_file or "", svc, generated) == generated / "tls" / "ca.pem", name
            if name == "grafana-bridge":
                from orbitwin.cli.key_options import client_id_and_signer

                assert args.func.__name__ == "cmd_bridge_grafana"
                secret = resolve(os.environ["ORBITWIN_KEY_SECRET_FILE"], svc, generated)  # mounted from keys/
                assert secret == generated / "keys" / "grafana-bridge.secret"
                os.environ["ORBITWIN_KEY_SECRET_FILE"] = str(secret)
                client_id, signer = client_id_and_signer(args, name)
                assert signer is not None and signer.kid == "grafana-bridge" and client_id == "orbitwin-grafana-bridge"
                assert signer.secret == secret.read_text().strip().encode()
                assert _webhook_auth(args) == (env["GRAFANA_WEBHOOK_USER"], env["GRAFANA_WEBHOOK_PASSWORD"], None)
                assert resolve(args.rules, svc, generated) == REPO / "dashboards" / "alert-actions.toml"
            if name.startswith("influx-bridge"):
                assert (args.api, args.token, args.org, args.bucket) == ("v2", env["INFLUXDB_TOKEN"],
                                                                         env["INFLUXDB_ORG"], env["INFLUXDB_BUCKET"])
                spools.add(args.spool_dir)
            if name in SHARD_SERVICES:  # shard K of 2: the twin's --shard and its health check's MQTT_SHARD agree
                k = name.rsplit("-", 1)[1]
                assert os.environ["MQTT_SHARD"] == k
                assert args.shard == (f"{k}/2" if name.startswith("twin") else int(k)), name
                assert name.startswith("influx") or args.constellation == "kuiper-shell1"
            if name.startswith("twin"):
                from twin.runtime.request_keys import load_keyring

                assert args.command == "run" and args.speed == "real" and args.start
                keyring = load_keyring(resolve(args.keys, svc, generated) or "")
                assert set(keyring) == {"operator", "grafana-bridge"}
                # every secret the key file names is mounted beside it
                for kid in keyring:
                    assert resolve(f"/orbitwin/keys/{kid}.secret", svc, generated) == generated / "keys" / f"{kid}.secret"
    assert len(spools) == 3  # every bridge its own spool and sequence state
    # the webhook Grafana's provisioned contact point calls is the one the grafana bridge listens on
    contact = yaml.safe_load((REPO / "dashboards/provisioning/alerting/contact-points.yaml").read_text())
    url = contact["contactPoints"][0]["receivers"][0]["settings"]["url"]
    gb = services["grafana-bridge"]["command"]
    assert url.startswith(f"http://grafana-bridge:{gb[gb.index('--listen') + 1].rpartition(':')[2]}/")
    assert gb[gb.index("--listen") + 1].startswith("0.0.0.0:")


def roles_env(role: str) -> str:
    return f"MQTT_{role.upper().replace('-', '_')}_PASSWORD"


def test_no_secret_on_any_command_line(services: dict[str, Any], env: dict[str, str], tmp_path: Path) -> None:
    secrets = secrets_of(env)
    assert len(secrets) >= 10
    for name, svc in services.items():
        lines = [json.dumps(svc.get("command")), json.dumps(svc.get("entrypoint")),
                 json.dumps(svc.get("healthcheck", {}).get("test"))]
        if svc.get("image") == ORBITWIN_IMAGE:
            lines.append(json.dumps(service_argv(svc, tmp_path)))  # after the shell expanded it
        text = "\n".join(lines)
        for key, value in secrets.items():
            assert value not in text, f"{name}: ${key} is on a command line"
        assert not re.search(r"(^|[\s\"'])(-P|--password|--token|--mqtt-password|--basic-auth|--influx-password)"
                             r"([\s\"'=]|$)", text), f"{name}: a secret option on a command line"
        assert not re.search(r"\w+://[^/\s\"'@]+:[^/\s\"'@]+@", text), f"{name}: credentials in a URL"
    # and no secret written into the compose file itself, nor a default for one
    raw = compose_text()
    for m in VAR.finditer(raw):
        name, op = m.group(1), m.group(2)
        if any(k in name for k in SECRET_KEYS) or name.endswith("_USER"):
            assert op == ":?", f"${{{name}}} must be required (:?), not defaulted"
    for name, svc in yaml.safe_load(raw)["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if any(k in key for k in SECRET_KEYS) and not key.endswith(("_ENV", "_FILE")):  # name a variable, a file
                assert VAR.fullmatch(str(value)), f"{name}.{key} is a literal"
    assert not re.search(r"(?i)(password|token)[\"']?\s*[:=]\s*[\"']?(?!\$)[A-Za-z0-9]{6,}", raw)


def test_every_file_a_service_names_is_where_its_image_or_a_mount_puts_it(services: dict[str, Any],
                                                                           generated: Path,
                                                                           tmp_path: Path) -> None:
    checked = 0
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            src = vol.partition(":")[0]
            if src.startswith("."):
                path = generated / src[2:] if src.startswith(GENERATED) else REPO / src[2:]
                assert path.exists(), f"{name}: mount source {src} missing"
                checked += 1
        words: list[str] = list(svc.get("healthcheck", {}).get("test") or [])
        if svc.get("image") == ORBITWIN_IMAGE:
            words += service_argv(svc, tmp_path)
        words += [str(v) for k, v in (svc.get("environment") or {}).items() if k.endswith(("_PATH", "_CA"))]
        for path in container_paths(words):
            where = resolve(path, svc, generated)
            if where is not None and not path.startswith("/var/lib/"):
                assert where.exists(), f"{name}: {path} -> {where} missing"
                checked += 1
    # the broker's config names files the entrypoint writes (/mosquitto/auth) or mounts provide
    mosq = services["mosquitto"]
    conf = (REPO / "docker/mosquitto/mosquitto.conf").read_text()
    for key in ("cafile", "certfile", "keyfile", "password_file", "acl_file"):
        path = re.search(rf"^{key} (\S+)$", conf, re.M)
        assert path, f"mosquitto.conf has no {key}"
        if path.group(1).startswith("/mosquitto/auth/"):
            assert path.group(1).rpartition("/")[2] in ("server.pem", "server.key", "passwd")  # the entrypoint's
        else:
            where = resolve(path.group(1), mosq, generated)
            assert where is not None and where.exists(), (key, path.group(1))
            checked += 1
    assert resolve("/mosquitto/config/acl", mosq, generated) == ACL
    assert checked >= 20


def test_health_check_commands_exist_in_their_images(services: dict[str, Any], generated: Path) -> None:
    assert healthcheck_module().main(["no-such-mode"]) == 2  # the script runs; unknown modes are refused

    for name, svc in services.items():
        test = svc["healthcheck"]["test"]
        kind, *rest = test
        if kind == "CMD-SHELL":
            words = shlex.split(rest[0])
            exe = next(w for w in words if "=" not in w)
        else:
            assert kind == "CMD", name
            exe, words = rest[0], rest
        if svc.get("image") == ORBITWIN_IMAGE:
            assert exe == "python", name  # the python:3.11-slim base image's
            script = resolve(words[1], svc, generated)
            assert script == REPO / "docker" / "healthcheck.py", name
            mode = words[2]
            assert mode in ("mqtt-state", "mqtt-bridge-status", "mqtt-message", "tcp", "http"), name
            assert f"healthcheck.py {mode}" in (REPO / "docker" / "healthcheck.py").read_text(), name
        else:
            assert exe in IMAGE_EXECUTABLES[svc["image"]], (name, exe)
    from_line = re.search(r"^FROM (\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert from_line and from_line.group(1).startswith("python:3.")


def test_gen_env_covers_every_compose_variable_with_distinct_secrets(tmp_path: Path) -> None:
    out = tmp_path / ".env"
    assert gen_env(out).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o600
    tls = tmp_path / "tls"
    assert tls.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in tls.iterdir()} == {
        "ca.pem": 0o644, "server.pem": 0o644, "ca.key": 0o600, "server.key": 0o600}
    keys = tmp_path / "keys"
    assert keys.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in keys.iterdir()} == {
        "keys.toml": 0o644, "operator.secret": 0o644, "grafana-bridge.secret": 0o644}
    first = parse_env(out)
    referenced = {m.group(1) for m in VAR.finditer(compose_text())}
    assert referenced <= set(first), referenced - set(first)
    required = {m.group(1) for m in VAR.finditer(compose_text()) if m.group(2) == ":?"}
    assert all(first[k] for k in required)
    # one MQTT password per role of the ACL, every one given to the broker
    assert {roles_env(r.name) for r in roles()} == {k for k in first if k.startswith("MQTT_")}
    broker_env = yaml.safe_load(compose_text())["services"]["mosquitto"]["environment"]
    assert set(broker_env) == {roles_env(r.name) for r in roles()}
    secrets = list(secrets_of(first).values())
    assert len(secrets) >= 10 and len(set(secrets)) == len(secrets) and all(len(s) >= 32 for s in secrets)
    # the certificate: signed by the CA, for the broker's service name and loopback
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(tls / "ca.pem"), str(tls / "server.pem")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(tls / "server.pem"), "-noout", "-text"],
                          capture_output=True, text=True).stdout
    assert "DNS:mosquitto" in text and "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    # refuses to overwrite, then --force makes all-new secrets and a new CA
    ca = (tls / "ca.pem").read_text()
    again = gen_env(out)
    assert again.returncode != 0 and "--force" in again.stderr and parse_env(out) == first
    assert gen_env(out, "--force", "--tls-name", "bench.example").returncode == 0
    second = parse_env(out)
    assert not set(secrets_of(second).values()) & set(secrets)
    assert (tls / "ca.pem").read_text() != ca
    assert "DNS:bench.example" in subprocess.run(["openssl", "x509", "-in", str(tls / "server.pem"), "-noout",
                                                  "-ext", "subjectAltName"], capture_output=True, text=True).stdout
    # --tls-only: a new CA and certificate, the secrets kept
    ca = (tls / "ca.pem").read_text()
    assert gen_env(out, "--tls-only").returncode != 0 and (tls / "ca.pem").read_text() == ca
    key_secret = (keys / "operator.secret").read_text()
    assert gen_env(out, "--tls-only", "--force").returncode == 0
    assert parse_env(out) == second and (tls / "ca.pem").read_text() != ca
    assert (keys / "operator.secret").read_text() == key_secret
    example = parse_env(REPO / ".env.example")
    assert set(example) == set(first) and not any(example.values())
    for ignore in (".gitignore", ".dockerignore"):
        for d in ("tls", "keys"):
            assert re.search(rf"^/?{d}/?$", (REPO / ignore).read_text(), re.M), f"{ignore} must list {d}/"


def test_dockerfile_builds_one_orbitwin_image() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    copies, dirs, entrypoint = dockerfile_layout()
    assert entrypoint == ["orbitwin"]
    assert copies["/app/docker/healthcheck.py"] == REPO / "docker" / "healthcheck.py"
    assert copies["/app/dashboards"] == REPO / "dashboards" and "/var/lib/orbitwin" in dirs
    assert re.search(r"^USER orbitwin$", text, re.M)


# --- the broker, for real -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broker(generated: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackBroker]:
    d = tmp_path_factory.mktemp("broker")
    (d / "tls").symlink_to(generated / "tls")
    b = start_stack_broker(d, env)
    yield b
    b.stop()


def test_the_broker_starts_from_the_generated_files_and_its_health_check_passes(broker: StackBroker,
                                                                                services: dict[str, Any]) -> None:
    passwd = broker.dir / "auth" / "passwd"
    assert passwd.stat().st_mode & 0o077 == 0 and (broker.dir / "auth" / "server.key").stat().st_mode & 0o077 == 0
    hashed = dict(line.split(":", 1) for line in passwd.read_text().splitlines())
    assert set(hashed) == {r.name for r in roles()}
    assert all(h.startswith("$7$") for h in hashed.values())  # PBKDF2-SHA512, no password in clear
    assert not any(broker.password(r) in passwd.read_text() for r in hashed)
    health_opts = broker.health_dir / "mosquitto_sub"
    assert health_opts.stat().st_mode & 0o077 == 0
    [cmd] = services["mosquitto"]["healthcheck"]["test"][1:]
    cmd = cmd.replace("/mosquitto/health", str(broker.health_dir))
    r = subprocess.run(["sh", "-c", cmd], env=broker.run_env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    # the same check fails when the broker refuses its credentials
    opts = health_opts.read_text()
    try:
        health_opts.write_text(opts.replace(broker.password("observer"), "wrong"))
        r = subprocess.run(["sh", "-c", cmd], env=broker.run_env, capture_output=True, text=True, timeout=20)
        assert r.returncode != 0
    finally:
        health_opts.write_text(opts)


def test_entrypoint_refuses_a_missing_password(tmp_path: Path, broker: StackBroker) -> None:
    env = {k: v for k, v in broker.run_env.items() if k != "MQTT_SERIAL_BRIDGE_PASSWORD"}
    env |= {"MOSQUITTO_AUTH_DIR": str(tmp_path / "auth"), "MOSQUITTO_HEALTH_DIR": str(tmp_path / "health")}
    r = subprocess.run(["sh", str(REPO / "docker/mosquitto/entrypoint.sh")], env=env, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0 and "MQTT_SERIAL_BRIDGE_PASSWORD must be set" in r.stderr
    assert not (tmp_path / "auth" / "passwd").exists()
    env = {**broker.run_env, "ORBITWIN_TLS_DIR": str(tmp_path / "no-tls"), "MOSQUITTO_AUTH_DIR": str(tmp_path / "a")}
    r = subprocess.run(["sh", str(REPO / "docker/mosquitto/entrypoint.sh")], env=env, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0 and "gen-env.sh" in r.stderr


# --- the twin and the grafana bridge from their compose commands ----------------------------------------
def _local(svc: dict[str, Any], argv: list[str], broker: StackBroker, generated: Path, state: Path,
           listen_port: int) -> list[str]:
    """A compose argv with container paths and host names mapped to this machine."""
    out = []
    for word in argv:
        word = word.replace("mqtts://mosquitto:8883", f"mqtts://localhost:{broker.port}")
        word = word.replace("0.0.0.0:8090", f"127.0.0.1:{listen_port}")
        if word.startswith("/var/lib/orbitwin"):
            word = str(state) + word[len("/var/lib/orbitwin"):]
        elif word.startswith("/"):
            word = str(resolve(word, svc, generated))
        out.append(word)
    return out


def _spawn(argv: list[str], env: dict[str, Any], log: Path) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ORBITWIN_", "GRAFANA_", "MQTT_"))}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "orbitwin.cli", *argv], stdout=out, stderr=subprocess.STDOUT,
                                text=True, env=base | {k: str(v) for k, v in env.items() if v is not None})




def run_security_guide_operator_block(broker: StackBroker, env: dict[str, str], generated: Path, tmp: Path) -> str:
    """The operator's shell block of docs/security.md, run by the real shell with the stack's paths and port
    mapped to the test's; its output (the replies as JSON lines)."""
    doc = (REPO / "docs" / "security.md").read_text()
    block = re.search(r"```sh\n(# the operator's MQTT password.*?)```", doc, re.S)
    assert block, "docs/security.md lost the operator's example"
    pw = tmp / "operator.pw"
    pw.write_text(env["MQTT_OPERATOR_PASSWORD"] + "\n")
    pw.chmod(0o600)
    script = (block.group(1).replace("~/.orbitwin/operator.pw", str(pw))
              .replace("keys/operator.secret", str(generated / "keys" / "operator.secret"))
              .replace("tls/ca.pem", str(broker.ca)).replace("localhost:8883", f"localhost:{broker.port}")
              .replace("examples/scenario.toml", str(REPO / "examples" / "scenario.toml")))
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "orbitwin").write_text(f'#!/bin/sh\nexec {sys.executable} -m orbitwin.cli "$@"\n')
    (bindir / "orbitwin").chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ORBITWIN_", "MQTT_", "GRAFANA_"))}
    r = subprocess.run(["sh", "-e", "-c", script], capture_output=True, text=True, timeout=120,
                       env=base | {"PATH": f"{bindir}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert env["MQTT_OPERATOR_PASSWORD"] not in r.stdout + r.stderr
    return r.stdout


def test_the_twin_and_grafana_bridge_services_close_the_alert_loop(broker: StackBroker, services: dict[str, Any],
                                                                   env: dict[str, str], generated: Path,
                                                                   tmp_path: Path) -> None:
    twin_svc, gb_svc = services["twin"], services["grafana-bridge"]
    twin_env = {**container_env(twin_svc), "ORBITWIN_TWIN_ARGS": "--count 3 --dt 0.5"}
    twin_argv = _local(twin_svc, service_argv(twin_svc, tmp_path, twin_env), broker, generated, tmp_path, 0)
    port = free_port()
    gb_argv = _local(gb_svc, service_argv(gb_svc, tmp_path), broker, generated, tmp_path, port)
    gb_argv += ["--report-every", "1"]
    observer = Client(broker, "observer", ("orbitwin/v1/state", "orbitwin/v1/bridge/grafana/event",
                                           "orbitwin/v1/sat/+/reply"))
    twin = _spawn(twin_argv, twin_env, tmp_path / "twin.log")
    bridge = None
    try:
        wait_for(lambda: any(t == "orbitwin/v1/state" and b'"online"' in p for t, p in observer.received)
                 or twin.poll() is not None, 90, 0.1, what="twin birth")
        assert twin.poll() is None, (tmp_path / "twin.log").read_text()
        # the twin's own health check, as the container runs it
        hc_env = {**container_env(twin_svc), "MQTT_URL": f"mqtts://localhost:{broker.port}",
                  "MQTT_CA": str(broker.ca)}
        with environment({**os.environ, **hc_env}):
            assert healthcheck_module().main(twin_svc["healthcheck"]["test"][3:]) == 0
        gb_env = {k: str(resolve(v, gb_svc, generated)) if v.startswith("/orbitwin/") else v
                  for k, v in container_env(gb_svc).items()}
        bridge = _spawn(gb_argv, gb_env, tmp_path / "grafana.log")

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return bool(json.loads(r.read())["ok"])
            except OSError:
                return bridge is None or bridge.poll() is not None

        wait_for(healthy, 60, 0.1, what="grafana bridge up")
        assert bridge.poll() is None, (tmp_path / "grafana.log").read_text()
        sat = "STARLINK-1008"
        uid = "orbitwin-payload_temp_k-red-high"
        alert = {"status": "firing", "fingerprint": uuid.uuid4().hex, "startsAt": "2026-02-22T19:00:00Z",
                 "endsAt": "0001-01-01T00:00:00Z", "values": {"A": 365.2},
                 "labels": {"alertname": "payload_temp_k red high", "sat": sat, "severity": "critical"},
                 "annotations": {}, "generatorURL": f"http://grafana:3000/alerting/grafana/{uid}/view?orgId=1"}
        body = json.dumps({"receiver": "orbitwin", "status": "firing", "alerts": [alert]}).encode()
        basic = base64.b64encode(f"{env['GRAFANA_WEBHOOK_USER']}:{env['GRAFANA_WEBHOOK_PASSWORD']}".encode())
        wrong = base64.b64encode(f"{env['GRAFANA_WEBHOOK_USER']}:nope".encode())
        url = f"http://127.0.0.1:{port}/grafana/webhook"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json",
                                                                      "Authorization": f"Basic {wrong.decode()}"}),
                                   timeout=10)
        assert denied.value.code == 401
        req = urllib.request.Request(url, body, {"Content-Type": "application/json",
                                                 "Authorization": f"Basic {basic.decode()}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            [action] = json.loads(r.read())["actions"]
        assert action["command"] == "throttle"

        def completed() -> dict[str, Any] | None:
            for t, p in list(observer.received):
                if t.endswith("/bridge/grafana/event"):
                    ev = json.loads(p)
                    if ev["name"] == "command_completed" and ev["detail"]["request_id"] == action["request_id"]:
                        return dict(ev["detail"]["reply"])
            return None

        reply = wait_for(completed, 30, 0.1, what="the twin completing the alert's signed command")
        assert (reply.get("authenticated"), reply.get("kid")) == (True, "grafana-bridge"), reply
        # the twin runs with the stack's key file: an unsigned command, even from the operator, is refused
        op = Client(broker, "operator", ("orbitwin/v1/scenario/compose-test/reply",))
        try:
            op.publish(f"orbitwin/v1/sat/{sat}/cmd", json.dumps(
                {"command": "throttle", "args": {"factor": 0.9}, "id": "unsigned-1",
                 "reply_to": "orbitwin/v1/scenario/compose-test/reply"}).encode())
            got = wait_for(lambda: [json.loads(p) for t, p in list(op.received)], 20, 0.1, what="a reply")
            assert (got[0]["status"], got[0]["reason"]) == ("rejected", "unauthenticated"), got
        finally:
            op.close()
        # the operator's commands as docs/security.md shows them, signed with the generated operator key
        out = run_security_guide_operator_block(broker, env, generated, tmp_path)
        replies = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert len(replies) == 5 and all(r["status"] in ("accepted", "completed") for r in replies), out  # send + 4
        assert all(r.get("authenticated") is True and r.get("kid") == "operator" for r in replies), out
        for log in ("twin.log", "grafana.log"):
            text = (tmp_path / log).read_text()
            assert not any(v in text for v in secrets_of(env).values()), f"a secret in {log}"
    finally:
        if bridge is not None:
            stop_process(bridge)
        stop_process(twin)
        observer.close()


# --- secrets in the CLI and the webhook ------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["bridge", "grafana", "--mqtt", "mqtt://h:1883", "--user", "grafana", "--password", "hunter2-secret"],
    ["bridge", "grafana", "--mqtt", "mqtt://h:1883", "--token=hunter2-secret"],
    ["bridge", "grafana", "--mqtt", "mqtt://h:1883", "--basic-auth", "grafana:hunter2-secret"],
    ["bridge", "grafana", "--poll-influx", "http://h:8086", "--influx-password", "hunter2-secret"],
])
def test_a_secret_option_is_refused_without_echoing_the_secret(argv: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "orbitwin.cli", *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "visible to every user" in r.stderr, r.stderr
    assert "hunter2" not in r.stdout + r.stderr


def test_webhook_credentials_come_from_the_environment_or_files(tmp_path: Path) -> None:
    from orbitwin.cli.bridge_grafana import _webhook_auth
    from orbitwin.cli.main import build_parser
    from orbitwin.cli.mqtt_options import secret_from_sources

    base = ["bridge", "grafana", "--mqtt", "mqtts://h:8883"]
    pw, token = tmp_path / "pw", tmp_path / "token"
    pw.write_text("file-password\n")
    token.write_text("file-token")
    with environment({"GRAFANA_WEBHOOK_USER": "g", "GRAFANA_WEBHOOK_PASSWORD": "env-password"}):
        assert _webhook_auth(build_parser().parse_args(base)) == ("g", "env-password", None)
    with environment({"ORBITWIN_GRAFANA_TOKEN_FILE": str(token)}):
        assert _webhook_auth(build_parser().parse_args(
            [*base, "--user", "u", "--password-file", str(pw)])) == ("u", "file-password", "file-token")
    with environment({"GRAFANA_WEBHOOK_USER": "g"}), pytest.raises(ValueError, match="has no password"):
        _webhook_auth(build_parser().parse_args(base))
    with environment({"GRAFANA_WEBHOOK_PASSWORD": "x"}), pytest.raises(ValueError, match="needs a user"):
        _webhook_auth(build_parser().parse_args(base))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty") as e:
        secret_from_sources(str(empty), "X_SECRET", "webhook password", environ={})
    with pytest.raises(ValueError, match="only one of"):
        secret_from_sources(None, "X_SECRET", "x", environ={"X_SECRET": "a", "X_SECRET_FILE": str(pw)})
    assert "file-password" not in str(e.value)
    assert secret_from_sources(None, "X_SECRET", "x", environ={}) is None


def test_the_webhook_compares_credentials_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import bridges.alerts.webhook as webhook
    from bridges.alerts.rules import load_table

    calls: list[tuple[bytes, bytes]] = []
    real = webhook.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhook.hmac, "compare_digest", spy)

    def basic(cred: bytes) -> str:
        return "Basic " + base64.b64encode(cred).decode()

    b = webhook.GrafanaBridge(webhook.GrafanaBridgeSettings("mqtt://127.0.0.1:1", listen_port=0, basic_user="grafana",
                                                            basic_password="pw:with-colon"), load_table())
    assert b.authorised(basic(b"grafana:pw:with-colon"))
    assert calls == [(b"grafana", b"grafana"), (b"pw:with-colon", b"pw:with-colon")]
    calls.clear()
    assert not b.authorised(basic(b"wrong:pw:with-colon"))
    assert len(calls) == 2, "the password is compared even when the user is wrong (no early exit)"
    for bad in (basic(b"grafana:pw"), basic(b"grafana"), "Basic %%%", "Basic " + "A" * 5000, basic(b"\xff:\xfe"),
                "Bearer pw:with-colon", None, ""):
        assert not b.authorised(bad), bad
    with pytest.raises(ValueError, match="has no password"):
        webhook.GrafanaBridge(webhook.GrafanaBridgeSettings("mqtt://127.0.0.1:1", basic_user="grafana"), load_table())
    t = webhook.GrafanaBridge(webhook.GrafanaBridgeSettings("mqtt://127.0.0.1:1", token="tok"), load_table())
    calls.clear()
    assert t.authorised("Bearer tok") and not t.authorised("Bearer tok2") and not t.authorised("Basic tok")
    assert calls == [(b"tok", b"tok"), (b"tok2", b"tok")]


def test_the_grafana_bridge_key_may_issue_every_command_of_the_rule_table_and_no_more(generated: Path) -> None:
    import tomllib

    from bridges.alerts.rules import load_table
    from twin.runtime.request_keys import load_keyring

    keyring = load_keyring(generated / "keys" / "keys.toml")
    table = tomllib.loads((REPO / "dashboards" / "alert-actions.toml").read_text())
    actions = [r[k] for r in table["rule"] for k in ("firing", "resolved") if k in r]
    used = {a["command"] for a in actions}
    assert used and keyring["grafana-bridge"].rights.commands == used
    assert not keyring["grafana-bridge"].rights.faults  # alerts never inject faults
    # a fleet rule that acts would need fleet = true on the key
    assert not any(r.get("target") == "fleet" and ("firing" in r or "resolved" in r) for r in table["rule"]) \
        or keyring["grafana-bridge"].rights.fleet
    assert [r.name for r in load_table().rules] == [r["name"] for r in table["rule"]]
    ops = keyring["operator"].rights
    assert ops.fleet and "*" in ops.commands and "*" in ops.faults
    assert {k.secret for k in keyring.values()} == {(generated / "keys" / f"{kid}.secret").read_text().strip().encode()
                                                   for kid in keyring}


def test_the_influx_bridge_takes_its_token_from_a_file_or_the_environment(tmp_path: Path) -> None:
    base = ["bridge", "influx", "--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--influx", "http://127.0.0.1:1",
            "--api", "v2", "--org", "o", "--bucket", "b", "--connect-timeout", "1",
            "--spool-dir", str(tmp_path / "spool"), "--dead-letter", str(tmp_path / "dead.jsonl")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBITWIN_")}

    def run(*extra: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orbitwin.cli", *base, *extra], capture_output=True, text=True,
                              timeout=60, env=env | more)

    r = run()
    assert r.returncode == 2 and "$ORBITWIN_INFLUX_TOKEN or --token-file" in r.stderr, r.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    r = run("--token-file", str(empty))
    assert r.returncode == 2 and f"the InfluxDB token file {empty} is empty" in r.stderr, r.stderr
    token = tmp_path / "token"
    token.write_text("tok-from-a-file-123\n")
    for r in (run("--token-file", str(token)), run(ORBITWIN_INFLUX_TOKEN_FILE=str(token)),
              run(ORBITWIN_INFLUX_TOKEN="tok-from-the-env-456")):
        # past the token: it fails on the (absent) InfluxDB or broker, never naming the token
        assert r.returncode == 2 and "token" not in r.stderr.lower(), r.stderr
        assert "tok-from" not in r.stdout + r.stderr


def test_unrecognised_arguments_are_named_without_their_values() -> None:
    r = subprocess.run([sys.executable, "-m", "orbitwin.cli", "bridge", "grafana", "--mqtt", "mqtt://h:1",
                        "--pasword", "hunter2-secret", "--tokn=hunter3-secret"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "--pasword" in r.stderr and "--tokn" in r.stderr, r.stderr
    assert "hunter" not in r.stdout + r.stderr and "2 value(s), not shown" in r.stderr

"""Orbitwin as users install it: the wheel, in a fresh virtual environment outside the checkout.

The wheel is built from a copy of the checkout's sources, installed into a new venv under the test's
temp dir, and every subcommand runs from that venv's ``orbitwin`` with the current directory outside
the checkout: ``--help`` for every (sub)command the parser has, and short real runs of ``run``,
``validate --quick``, ``bench fleet``, ``bench dashboards``, ``bridge influx`` (a twin's telemetry
into a real influxd), ``bridge grafana --check`` and ``dashboards build``.

To stay fast and offline, the wheel is built without build isolation, installed ``--no-deps``, and
the venv finds the dependencies (numpy, skyfield, paho, ...) in the site-packages of the interpreter
running the tests, listed in a ``.pth`` file (as plain paths: that interpreter's own ``.pth`` hooks,
such as the checkout's editable install, do not run in the venv). The tests assert that the project's
packages are imported from the venv, and that every import in them resolves to the venv or to a
runtime dependency the wheel declares (not a test-only one).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import site
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from mqtt_helpers import wait_for
from pipeline import check_exactly_once, expected_counts

from bridges.alerts.rules import load_table
from dashboards import build as dashboards_build

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("twin", "bridges", "dashboards", "orbitwin", "orbitwin_fw", "orbitwin_fw_host")
NOT_SHIPPED = re.compile(r"(^|/)(__pycache__/|README\.md$)|\.pyc$")  # what a package folder may hold beside the wheel
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Installed:
    """The venv with the wheel installed, and a working directory outside the checkout."""

    wheel: Path
    venv: Path
    work: Path
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def orbitwin(self, *args: str, cwd: Path | None = None, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run the venv's ``orbitwin`` console script (stdout and stderr captured)."""
        return subprocess.run([str(self.venv / "bin" / "orbitwin"), *args], cwd=cwd or self.work, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str, log: Path) -> subprocess.Popen[str]:
        """Start the venv's ``orbitwin`` in the background, its output appended to ``log``."""
        with open(log, "a") as f:
            return subprocess.Popen([str(self.venv / "bin" / "orbitwin"), *args], cwd=self.work, env=self.env,
                                    stdout=f, stderr=subprocess.STDOUT, text=True)

    def script(self, code: str, *args: str) -> str:
        """Run ``code`` in the venv's Python (outside the checkout); returns its stdout."""
        r = subprocess.run([str(self.python), "-c", code, *args], cwd=self.work, env=self.env, capture_output=True,
                           text=True, timeout=TIMEOUT_S)
        assert r.returncode == 0, r.stderr
        return r.stdout


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{what} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def _source_dirs() -> dict[str, Path]:
    """Package -> its folder in the checkout (where the editable install finds it)."""
    out = {}
    for name in PACKAGES:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        out[name] = Path(module.__file__).parent
    return out


def _see_dependencies(venv: Path) -> None:
    """Put this interpreter's site-packages (the wheel's dependencies, pip) on the venv's path, after its own."""
    [site_dir] = (venv / "lib").glob("python*/site-packages")
    dirs = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    dirs = [d for d in dirs if Path(d).is_dir() and not Path(d).resolve().is_relative_to(REPO)]
    (site_dir / "_test_dependencies.pth").write_text("".join(f"{d}\n" for d in dirs))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel-install")
    # a copy of the sources: building in the checkout would leave build/ and a rewritten egg-info there
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", ".benchmarks", ".venv",
        "tests"))
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(root / "dist"), str(src)],
         src, "python -m build --wheel")
    [wheel] = (root / "dist").glob("orbitwin-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, "python -m venv")
    _see_dependencies(venv)
    # this interpreter's pip, running in the venv's interpreter, installs into the venv
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check",
          "-q", str(wheel)], root, "pip install the wheel")
    work = root / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONSAFEPATH="1")
    return Installed(wheel, venv, work, env)


# --- what is in the wheel and where it imports from -------------------------------------------------------------
def test_the_wheel_holds_every_module_and_data_file_of_the_packages(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    missing = []
    for name, folder in _source_dirs().items():
        for f in folder.rglob("*"):
            rel = f"{name}/{f.relative_to(folder).as_posix()}"
            if f.is_file() and not NOT_SHIPPED.search(rel) and rel not in names:
                missing.append(rel)
    assert not missing, f"not in the wheel (pyproject.toml [tool.setuptools*]): {missing}"
    for data in ("twin/data/v3_compute_sat.toml", "twin/data/radiation_grid_default.npz", "dashboards/alert-actions.toml",
                 "dashboards/provisioning/alerting/rules.yaml", "dashboards/json/fleet-overview.json"):
        assert data in names
    assert not [n for n in names if n.startswith(("tests/", "servers", "pipeline"))]


def test_the_packages_import_from_the_venv_not_from_the_checkout(installed: Installed) -> None:
    files = json.loads(installed.script(
        "import importlib, json, sys; print(json.dumps({m: importlib.import_module(m).__file__ for m in sys.argv[1:]}))",
        *PACKAGES))
    site = installed.venv / "lib"
    for name, file in files.items():
        path = Path(file).resolve()
        assert path.is_relative_to(site.resolve()), (name, file)
        assert not path.is_relative_to(REPO), (name, file)


# Every absolute import in the installed packages (lazy ones in functions too) resolves: the project's own
# packages to the venv, anything else to the standard library or to a runtime dependency of the wheel (its
# Requires-Dist without extras, and theirs). Imports guarded by `except ImportError` (the firmware's
# MicroPython modules) are optional. No module may change sys.path.
_IMPORTS_RESOLVE = r'''
import ast, importlib.util, json, re, sys
from importlib import metadata
from pathlib import Path

own = sys.argv[1:]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()

def runtime_closure(name, seen):
    if norm(name) in seen:
        return seen
    seen.add(norm(name))
    try:
        requires = metadata.distribution(name).requires or []
    except metadata.PackageNotFoundError:
        return seen
    for req in requires:
        if "extra ==" in req.replace('"', "'").replace("extra==", "extra =="):
            continue
        runtime_closure(re.split(r"[\s;<>=!~\[(]", req.strip(), maxsplit=1)[0], seen)
    return seen

allowed = runtime_closure("orbitwin", set())
dists_of = metadata.packages_distributions()
# the packages of orbitwin's pytest plugins: pytest loads them, so they may import pytest
plugin_dirs = [Path(importlib.util.find_spec(ep.value.split(":")[0]).origin).parent
               for ep in metadata.distribution("orbitwin").entry_points if ep.group == "pytest11"]

def optional(tree):
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            caught = set()
            for h in node.handlers:
                types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
                caught |= {getattr(t, "id", None) for t in types}
            if caught & {None, "ImportError", "ModuleNotFoundError", "Exception"}:
                ids |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return ids

problems = []
for pkg in own:
    root = Path(importlib.util.find_spec(pkg).origin).parent
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if re.search(r"sys\.path\.(insert|append|extend)|sys\.path\s*\+?=", text):
            problems.append(f"{path}: changes sys.path")
        tree = ast.parse(text, str(path))
        skip = optional(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                where = f"{path}:{node.lineno}: import {name}"
                if top in sys.stdlib_module_names:
                    continue
                spec = importlib.util.find_spec(top)
                if spec is None:
                    problems.append(f"{where}: not installed")
                elif top in own:
                    if not str(spec.origin).startswith(sys.prefix):
                        problems.append(f"{where}: imported from {spec.origin}, outside the venv")
                elif top == "pytest" and any(path.is_relative_to(d) for d in plugin_dirs):
                    continue
                elif not {norm(d) for d in dists_of.get(top, [])} & allowed:
                    problems.append(f"{where}: {dists_of.get(top)} is not a runtime dependency of orbitwin")
print(json.dumps(problems, indent=1))
'''


def test_every_import_in_the_installed_packages_resolves_to_the_venv_or_a_declared_dependency(
        installed: Installed) -> None:
    problems = json.loads(installed.script(_IMPORTS_RESOLVE, *PACKAGES))
    assert problems == [], "\n".join(problems)


# --- every subcommand's --help, listed from the installed parser ------------------------------------------------
# The console script's entry point is called with argparse's parse_known_args replaced by a hook that keeps
# the parser and stops, so the walk sees whatever parser the CLI builds, wherever it is built.
_LIST_COMMANDS = r'''
import argparse, json
from importlib.metadata import distribution

[ep] = [e for e in distribution("orbitwin").entry_points if e.group == "console_scripts" and e.name == "orbitwin"]
parsers = []

def keep(self, args=None, namespace=None):
    parsers.append(self)
    raise SystemExit(0)

argparse.ArgumentParser.parse_known_args = keep
try:
    ep.load()(["--help"])
except SystemExit:
    pass

def walk(parser, path):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases share one parser
                    seen.add(id(sub))
                    yield from walk(sub, path + [name])

print(json.dumps(list(walk(parsers[0], []))))
'''


def test_every_subcommand_answers_help(installed: Installed) -> None:
    commands = [tuple(c) for c in json.loads(installed.script(_LIST_COMMANDS))]
    for expected in [("run",), ("schema",), ("validate",), ("bench",), ("bridge", "influx"), ("bridge", "serial"),
                     ("bridge", "grafana"), ("dashboards",), ("scenario", "publish"), ("catalogue",)]:
        assert expected in commands, (expected, commands)
    for cmd in commands:
        r = installed.orbitwin(*cmd, "--help", timeout=60)
        assert r.returncode == 0, (cmd, r.stderr)
        assert r.stdout.startswith(f"usage: {' '.join(('orbitwin', *cmd))}"), (cmd, r.stdout[:200])


# --- short real runs ------------------------------------------------------------------------------------------
def test_run_schema_and_catalogue(installed: Installed) -> None:
    r = installed.orbitwin("run", "--count", "3", "--speed", "max", "--duration", "10", "--no-mqtt", "--plain",
                           "--refresh", "0")
    assert r.returncode == 0, r.stderr
    assert "orbitwin: 3 satellites" in r.stdout and "done: 10 ticks" in r.stdout
    r = installed.orbitwin("schema")
    assert r.returncode == 0 and json.loads(r.stdout) and "battery_soc" in r.stdout
    r = installed.orbitwin("catalogue", "--count", "3")
    assert r.returncode == 0 and r.stdout.rstrip().endswith("3 satellites")


def test_validate_quick(installed: Installed) -> None:
    r = installed.orbitwin("validate", "--quick", timeout=480)  # a hang guard: ~70 s CPU, more wall on a loaded machine
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    # the nominal day's table and the dose split come first; every check line after it passes
    checks = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert len(checks) >= 20 and all(line.startswith("PASS") for line in checks), r.stdout
    assert "onboard FDIR actions over the day: none" in lines, r.stdout


def test_bench_fleet(installed: Installed) -> None:
    r = installed.orbitwin("bench", "fleet", "--count", "20", "--steps", "3", "--naive-sample", "5")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert (result["benchmark"], result["sats"], result["steps"]) == ("fleet", 20, 3)
    assert result["ratio_vs_sgp4"] > 0 and result["lost_sats"] == 0


def test_bench_dashboards_runs_its_own_influxd(installed: Installed, influxd) -> None:  # type: ignore[no-untyped-def]
    # the benchmark starts its own server (the `influxd` fixture only skips/fails the test without the binary)
    r = installed.orbitwin("bench", "dashboards", "--window", "5", "--count", "3")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["sats"] == 3 and result["queries"] > 0 and result["points"] > 0


def test_bridge_influx_stores_a_twins_telemetry(installed: Installed, mosquitto, influxd,  # type: ignore[no-untyped-def]
                                               tmp_path: Path) -> None:
    db = f"wheel{uuid.uuid4().hex[:8]}"
    influxd.create_database(db)
    log = tmp_path / "bridge.log"
    bridge = installed.popen("bridge", "influx", "--mqtt", mosquitto.url, "--influx", influxd.url, "--db", db,
                             "--client-id", f"wheel-bridge-{uuid.uuid4().hex[:6]}", "--spool-dir", str(tmp_path / "spool"),
                             "--dead-letter", str(tmp_path / "dead.jsonl"), "--report-every", "0.5", log=log)
    try:
        wait_for(lambda: "orbitwin bridge influx:" in log.read_text() or bridge.poll() is not None, 60,
                 what="bridge connected")
        assert bridge.poll() is None, log.read_text()
        twin = installed.orbitwin("run", "--mqtt", mosquitto.url, "--count", "2", "--speed", "max", "--duration", "5",
                                  "--plain", "--refresh", "0", "--state-dir", str(tmp_path))
        assert twin.returncode == 0, twin.stdout + twin.stderr
        done = re.search(r"done: (\d+) ticks", twin.stdout)
        assert done, twin.stdout
        names = [line.split()[0] for line in installed.orbitwin("catalogue", "--count", "2").stdout.splitlines()[:2]]
        counts = expected_counts(len(names), int(done.group(1)))
        assert counts.sum() > 0

        def all_stored() -> dict[str, int] | None:
            check = check_exactly_once(influxd, db, names, counts)
            return check if check["lost"] == 0 else None

        result = wait_for(all_stored, 60, 0.25, what="every telemetry message stored")
        assert result["duplicates"] == 0 and result["stored"] == counts.sum()
    finally:
        bridge.terminate()
        rc = bridge.wait(30)
    assert rc == 0, log.read_text()


def test_bridge_grafana_check(installed: Installed, tmp_path: Path) -> None:
    r = installed.orbitwin("bridge", "grafana", "--check")
    assert r.returncode == 0, r.stderr
    shipped = load_table()
    assert json.loads(r.stdout)["rules"] == [rule.name for rule in shipped.rules]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\nfiring = { command = "no-such-command" }\n')
    r = installed.orbitwin("bridge", "grafana", "--check", "--rules", str(bad))
    assert r.returncode == 2 and r.stderr.startswith("orbitwin: error:") and str(bad) in r.stderr, r.stderr
    r = installed.orbitwin("bridge", "grafana", "--check", "--rules", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "cannot read" in r.stderr, r.stderr


def test_dashboards_build(installed: Installed, tmp_path: Path) -> None:
    expected = set(dashboards_build.build())
    out = tmp_path / "out"
    r = installed.orbitwin("dashboards", "build", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == expected
    assert installed.orbitwin("dashboards", "build", "--check", "--out", str(out)).returncode == 0
    # --check without --out: the copy shipped in the installed package is current
    r = installed.orbitwin("dashboards", "build", "--check")
    assert r.returncode == 0, r.stderr
    # without --out: ./dashboards under the current directory
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = installed.orbitwin("dashboards", "build", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert {p.relative_to(cwd / "dashboards").as_posix() for p in (cwd / "dashboards").rglob("*") if p.is_file()} == expected


def test_the_docker_image_copies_every_package_folder() -> None:
    text = (REPO / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", text, re.M))
    for name, folder in _source_dirs().items():
        top = folder.relative_to(REPO).parts[0]
        assert top in copied, f"the Dockerfile does not COPY {top}/ (package {name})"

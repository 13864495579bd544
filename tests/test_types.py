"""Type checking is part of the test run: mypy with the ``[tool.mypy]`` configuration of pyproject.toml.

Strict on the numerical core and the schema (``twin.core``, ``twin.schema``), normal checking on the
rest of ``twin``, ``bridges``, ``dashboards`` and ``orbitwin``. A failure shows mypy's own report.
"""

from __future__ import annotations

import getpass
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
STRICT_FLAGS = {
    "disallow_any_generics", "disallow_subclassing_any", "disallow_untyped_calls", "disallow_untyped_defs",
    "disallow_incomplete_defs", "check_untyped_defs", "disallow_untyped_decorators", "warn_unused_ignores",
    "warn_return_any", "strict_equality", "extra_checks",
}


def test_core_and_schema_are_configured_strict() -> None:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["mypy"]
    assert set(config["files"]) == {"twin", "bridges", "dashboards", "orbitwin"}
    strict = [o for o in config["overrides"] if {"twin.core.*", "twin.schema.*"} <= set(o["module"])]
    assert len(strict) == 1
    assert all(strict[0].get(flag) is True for flag in STRICT_FLAGS), sorted(STRICT_FLAGS - set(strict[0]))
    assert strict[0].get("implicit_reexport") is False
    assert "strict" not in config  # mypy would apply it to every module


def test_mypy_passes() -> None:
    cache = Path(tempfile.gettempdir()) / f"orbitwin-mypy-cache-{getpass.getuser()}"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(PYPROJECT), "--cache-dir", str(cache)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"mypy found problems:\n{proc.stdout}{proc.stderr}"
    assert time.monotonic() - t0 < 120.0, "mypy took too long for the test run"

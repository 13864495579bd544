"""scripts/test.sh stops the Debian packages' services only in CI or when asked, never a user's otherwise
(issue 17: the first run as written). Run with shims for systemctl and python3 that record their calls."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, **env: str) -> tuple[list[str], list[str]]:
    shims = tmp_path / "bin"
    shims.mkdir(exist_ok=True)
    for name in ("systemctl", "python3"):
        log = tmp_path / f"{name}.log"
        (shims / name).write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
        (shims / name).chmod(0o755)
    for name in ("mosquitto", "mosquitto_pub", "influxd"):  # present: nothing to install
        (shims / name).write_text("#!/bin/sh\n")
        (shims / name).chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "ORBITWIN_STOP_SERVICES")}
    run_env = base | {"PATH": f"{shims}:{base['PATH']}"} | env
    subprocess.run(["bash", str(ROOT / "scripts" / "test.sh"), "tests/test_nothing.py"], env=run_env, check=True,
                   timeout=60)

    def calls(name: str) -> list[str]:
        log = tmp_path / f"{name}.log"
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return lines

    return calls("systemctl"), calls("python3")


def test_a_users_services_are_left_alone(tmp_path: Path) -> None:
    systemctl, python = _run(tmp_path)
    assert systemctl == []
    assert python[-1] == "-m pytest -q tests/test_nothing.py"  # arguments go straight to pytest


@pytest.mark.parametrize("env", [{"CI": "true"}, {"ORBITWIN_STOP_SERVICES": "1"}])
def test_services_are_stopped_in_ci_or_when_asked(tmp_path: Path, env: dict[str, str]) -> None:
    systemctl, _ = _run(tmp_path, **env)
    assert systemctl == ["stop mosquitto influxdb"]

"""The example fault campaigns (examples/campaigns) run in the suite, through the orbitwin pytest plugin.

They run in a pytest of their own, as a bench tester runs them (``pytest examples/campaigns``), so
what is tested is the plugin as installed (its entry point), its fixtures and the verdict: every
campaign passes, none is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGNS = ROOT / "examples" / "campaigns"


def test_example_campaigns_pass(mosquitto: object) -> None:  # the fixture: skipped like the rest without mosquitto
    files = sorted(p.name for p in CAMPAIGNS.glob("test_*.py"))
    assert "test_board_campaign.py" in files and "test_thermal_campaign.py" in files
    proc = subprocess.run([sys.executable, "-m", "pytest", str(CAMPAIGNS), "-q", "-p", "no:cacheprovider", "-rfEs"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ORBITWIN_REQUIRE_SERVERS": "1"})
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, f"the campaigns failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 3 and "skipped" not in summary, summary


def test_the_plugin_is_registered_and_cheap_to_load() -> None:
    code = ("import sys, orbitwin.testing.plugin as p; "
            "heavy = [m for m in ('numpy', 'paho', 'twin', 'bridges', 'orbitwin.client') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from importlib.metadata import entry_points

    assert any(ep.value == "orbitwin.testing.plugin" for ep in entry_points(group="pytest11")), \
        "reinstall the package (pip install -e .): the pytest11 entry point is missing"


@pytest.mark.parametrize("bad", [{"speed": "warp"}, {"dt_s": 0}, {"colour": "red"}])
def test_bad_twin_config_is_named(bad: dict[str, object]) -> None:
    from orbitwin.testing.harness import TwinConfig

    with pytest.raises((ValueError, TypeError), match="|".join(re.escape(str(k)) for k in bad) + "|speed|dt_s"):
        TwinConfig(**bad)  # type: ignore[arg-type]

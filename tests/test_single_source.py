"""One source for every number in the core: the array area and the physical constants.

The solar array's area is defined once (``solar_array.area_m2``, docs/physics.md#array-area) and
both the power and the thermal model must see it; the physical constants live in
``twin/core/constants.py`` and nowhere else in the core is one written out as a literal.
"""

from __future__ import annotations

import ast
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from twin.core import constants
from twin.core import thermal as th
from twin.core.design import design_from_dict, load_design
from twin.core.params import DesignError
from twin.core.solar_array import array_power_w

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "twin" / "core"
CONSTANTS = CORE / "constants.py"
DESIGN_TOML = ROOT / "twin" / "data" / "v3_compute_sat.toml"
S = constants.SOLAR_CONSTANT_W_M2


def test_power_and_thermal_models_see_one_array_area() -> None:
    d = load_design()
    sa, tp = d.solar_array, d.thermal
    assert tp.array_area_m2 == sa.area_m2
    # what each model makes of it: electrical output at the rating point, absorbed sun on the array node
    eta_area = float(array_power_w(S, 1.0, 1.0, sa.ref_temp_k, 0.0, 0, sa)) / (S * sa.cell_efficiency_bol * sa.packing_factor)
    absorbed = th.absorbed_environment_w(tp, np.array([S]), np.ones(1), np.ones(1), np.zeros(1), np.zeros(1))
    sun_area = absorbed[0, th.ARRAY] / (tp.array_absorptivity * S)
    assert eta_area == pytest.approx(sa.area_m2, rel=1e-12)
    assert sun_area == pytest.approx(sa.area_m2, rel=1e-12)
    assert tp.eps_area_m2[th.ARRAY] == pytest.approx(tp.array_emissivity * tp.array_radiating_faces * sa.area_m2)


def test_a_different_array_area_moves_both_models() -> None:
    data = tomllib.loads(DESIGN_TOML.read_text(encoding="utf-8"))
    data["solar_array"]["area_m2"] = 80.0
    d = design_from_dict(data)
    assert d.solar_array.area_m2 == d.thermal.array_area_m2 == 80.0
    assert d.thermal.heat_capacity_j_k[th.ARRAY] == pytest.approx(80.0 * d.thermal.array_heat_capacity_j_k_m2)


def test_the_thermal_section_holds_no_array_area() -> None:
    data = tomllib.loads(DESIGN_TOML.read_text(encoding="utf-8"))
    assert not [k for k in data["thermal"] if k.startswith("array_") and k.endswith("area_m2")]
    data["thermal"]["array_area_m2"] = 105.0
    with pytest.raises(DesignError) as exc:
        design_from_dict(data)
    assert exc.value.key == "thermal.array_area_m2"


def _significant_digits(x: float) -> int:
    mantissa = f"{abs(x):.15e}".split("e")[0].replace(".", "").rstrip("0")
    return len(mantissa)


def _known_values() -> dict[float, str]:
    """Values of the constants module, and the literals it builds them from, with >= 3 significant digits.

    Shorter ones (the albedo 0.30, the 2.7 K sky) are too common to tell a copy from a coincidence
    (an absorptivity of 0.30, aluminium's 2.70 g/cm^3).
    """
    values = {float(v): k for k, v in vars(constants).items() if k.isupper() and isinstance(v, (int, float))}
    for node in ast.walk(ast.parse(CONSTANTS.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            values.setdefault(float(node.value), f"a literal of {CONSTANTS.name}")
    return {v: k for v, k in values.items() if v != 0.0 and _significant_digits(v) >= 3}


def _numeric_literals(path: Path) -> list[tuple[int, float]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, float(n.value)) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool)]


def test_significant_digits() -> None:
    assert [_significant_digits(x) for x in (86_400.0, 0.3, 2.7, 237.0, 365.25, 6_378_137.0)] == [3, 1, 2, 3, 5, 7]


@pytest.mark.parametrize("path", sorted(p for p in CORE.glob("*.py") if p != CONSTANTS), ids=lambda p: p.name)
def test_no_constant_is_written_out_in_the_core(path: Path) -> None:
    known = _known_values()
    copies = [f"{path.relative_to(ROOT)}:{line}: {value!r} is {known[k]}"
              for line, value in _numeric_literals(path) for k in known if math.isclose(value, k, rel_tol=1e-12)]
    assert not copies, "use twin.core.constants instead of a literal:\n" + "\n".join(copies)


def test_the_scan_finds_a_copy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("ALT = r - 6_378_137.0\nDAY = 86400\n", encoding="utf-8")
    known = _known_values()
    found = {known[k] for _, v in _numeric_literals(bad) for k in known if math.isclose(v, k, rel_tol=1e-12)}
    assert found == {"R_EARTH_M", "SECONDS_PER_DAY"}

"""docs/physics.md against the code: cited anchors exist, every design key and constant is documented.

The code, the design file and the validation messages cite the physics reference by section
(``docs/physics.md`` + ``#`` + anchor). These tests fail when a cited anchor is missing, when a
citation names the file without a section, when a design key or a constant has no row (with its
current value) in the reference, or when the reference and the design file disagree on whether a
figure is an estimate.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from twin.core import constants

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "physics.md"
DESIGN = ROOT / "twin" / "data" / "v3_compute_sat.toml"
SCANNED_DIRS = ("twin", "bridges", "dashboards", "orbitwin", "tests", "firmware-sim", "docs")
SCANNED_SUFFIXES = {".py", ".toml", ".md"}
CITATION = re.compile(r"docs/physics\.md#([A-Za-z0-9_-]+)")
DOC_LINK = re.compile(r"(?:docs/)?physics\.md#([A-Za-z0-9_-]+)")  # Markdown may link relative to docs/
CODE_SUFFIXES = {".py", ".toml"}
TABLE_HEADER = ["Key", "Value", "Unit", "Meaning", "Source", "Basis"]
BASES = {"source", "derived", "estimate", "UNCONFIRMED", "setting"}


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _doc_lines() -> list[str]:
    """Lines of the reference outside fenced code blocks."""
    out, fenced = [], False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def _doc_sections() -> dict[str, list[str]]:
    """Lines of the reference under each heading, keyed by the heading's anchor."""
    sections: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    current = ""
    for line in _doc_lines():
        m = re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)
        if m:
            slug = github_slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            current = slug if n == 0 else f"{slug}-{n}"
            sections[current] = []
        else:
            sections.setdefault(current, []).append(line)
    return sections


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _documented_rows() -> dict[str, tuple[str, str, str]]:
    """Rows of the Key/Value/Unit/Meaning/Source/Basis tables: key -> (value, basis, anchor)."""
    rows: dict[str, tuple[str, str, str]] = {}
    for anchor, lines in _doc_sections().items():
        in_table = False
        for line in lines:
            if not line.startswith("|"):
                in_table = False
                continue
            cells = _cells(line)
            if cells == TABLE_HEADER:
                in_table = True
                continue
            if not in_table or set("".join(cells)) <= set("-: "):
                continue
            assert len(cells) == len(TABLE_HEADER), f"malformed row under #{anchor}: {line}"
            key = re.fullmatch(r"`([^`]+)`", cells[0])
            assert key, f"the Key cell must be a `dotted.key`: {line}"
            assert key.group(1) not in rows, f"{key.group(1)} documented twice"
            rows[key.group(1)] = (cells[1].strip("`"), cells[5], anchor)
    return rows


def _design_values() -> dict[str, Any]:
    """Every key of the design file as a dotted path (memories by name) -> value."""
    out: dict[str, Any] = {}
    for section, table in tomllib.loads(DESIGN.read_text(encoding="utf-8")).items():
        if not isinstance(table, dict):
            out[section] = table
            continue
        for key, value in table.items():
            if section == "radiation" and key == "memories":
                for memory in value:
                    for k, v in memory.items():
                        out[f"radiation.memories[{memory['name']}].{k}"] = v
            else:
                out[f"{section}.{key}"] = value
    return out


def _design_comments() -> dict[str, str | None]:
    """The trailing comment of every key line of the design file (None when there is none)."""
    data = tomllib.loads(DESIGN.read_text(encoding="utf-8"))
    out: dict[str, str | None] = {}
    prefix, memory_index = "", -1
    for line in DESIGN.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^\[\[(.+)\]\]\s*(#.*)?$", line):
            assert m.group(1) == "radiation.memories", line
            memory_index += 1
            prefix = f"radiation.memories[{data['radiation']['memories'][memory_index]['name']}]."
        elif m := re.match(r"^\[(.+)\]\s*(#.*)?$", line):
            prefix = f"{m.group(1)}."
        elif m := re.match(r"^(\w+)\s*=\s*(.*)$", line):
            rest = m.group(2)
            out[prefix + m.group(1)] = rest.split("#", 1)[1].strip() if "#" in rest else None
    return out


def _scanned_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for d in SCANNED_DIRS:
        files += [p for p in (ROOT / d).rglob("*") if p.suffix in SCANNED_SUFFIXES and p.is_file()]
    return [p for p in files if p.exists() and p.resolve() not in (Path(__file__).resolve(), DOC.resolve())]


def _citations() -> list[tuple[str, int, str]]:
    """(file, line, anchor) of every section citation outside the reference itself."""
    out = []
    for path in _scanned_files():
        pattern = CITATION if path.suffix in CODE_SUFFIXES else DOC_LINK
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            out += [(str(path.relative_to(ROOT)), n, a) for a in pattern.findall(line)]
    return out


def test_every_cited_anchor_exists() -> None:
    anchors = set(_doc_sections())
    cites = _citations()
    assert len(cites) >= 40, "the code should cite the physics reference by section"
    missing = [f"{path}:{n}: #{a}" for path, n, a in cites if a not in anchors]
    assert not missing, "anchors cited but missing from docs/physics.md:\n" + "\n".join(missing)


def test_code_citations_name_the_file_and_a_section() -> None:
    bare = []
    for path in (p for p in _scanned_files() if p.suffix in CODE_SUFFIXES):
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for m in re.finditer(r"physics\.md", line):
                cited = line[max(0, m.start() - 5):m.end() + 1]
                if not (cited.startswith("docs/") and cited.endswith("#")):
                    bare.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bare, "cite docs/physics.md#<section>, not the bare file name:\n" + "\n".join(bare)


def test_internal_links_of_the_reference_resolve() -> None:
    anchors = set(_doc_sections())
    links = re.findall(r"\]\(#([^)]+)\)", "\n".join(_doc_lines()))
    assert links
    assert not sorted(set(links) - anchors)


def test_every_design_section_has_a_section_here() -> None:
    sections = set(_doc_sections())
    data = tomllib.loads(DESIGN.read_text(encoding="utf-8"))
    missing = [s for s, t in data.items() if isinstance(t, dict) and s.replace("_", "-") not in sections]
    assert not missing


def test_every_design_key_is_documented_with_its_value() -> None:
    rows = _documented_rows()
    design = _design_values()
    design_rows = {k: v for k, v in rows.items() if not k.startswith("constants.")}
    undocumented = sorted(set(design) - set(design_rows))
    assert not undocumented, f"design keys without a row in docs/physics.md: {undocumented}"
    stale = sorted(set(design_rows) - set(design))
    assert not stale, f"rows in docs/physics.md for keys the design file no longer has: {stale}"
    for key, (value, basis, anchor) in design_rows.items():
        assert basis in BASES, f"{key}: basis {basis!r} not one of {sorted(BASES)}"
        documented = tomllib.loads(f"v = {value}")["v"]
        assert documented == design[key], f"{key}: docs/physics.md says {value}, the design file {design[key]!r}"
        section = key.split(".", 1)[0].replace("_", "-")
        if key != "name":
            assert anchor == section or anchor.startswith(f"{section}-") or (section, anchor) == (
                "solar-array", "array-area"), f"{key} is documented under #{anchor}, not #{section}"


def test_design_comments_agree_with_the_documented_basis() -> None:
    rows = _documented_rows()
    for key, comment in _design_comments().items():
        if key == "name":
            continue
        assert comment, f"{key}: the design file must say where the value comes from"
        assert key in rows, f"{key} has no row in docs/physics.md"
        basis = rows[key][1]
        flagged_unconfirmed = "UNCONFIRMED" in comment
        flagged_estimate = "estimate" in comment.lower()
        assert flagged_unconfirmed == (basis == "UNCONFIRMED"), f"{key}: comment {comment!r} vs basis {basis}"
        if basis == "estimate":
            assert flagged_estimate, f"{key}: docs/physics.md calls it an estimate, the design file does not"
        if flagged_estimate and not flagged_unconfirmed:
            assert basis == "estimate", f"{key}: the design file calls it an estimate, docs/physics.md {basis}"


def test_validation_cases_name_existing_checks() -> None:
    """Every check the Validation section names is a function in the test suite or in physics_checks."""
    text = "\n".join(line for anchor, lines in _doc_sections().items() if anchor.startswith("validation")
                     for line in lines)
    named = set(re.findall(r"`(test_\w+|[a-z_]+_checks?|[a-z_]+_vs_skyfield|orbit_energy_balance)`", text))
    assert len(named) > 30
    sources = [*(ROOT / "tests").glob("test_*.py"), ROOT / "twin" / "validation" / "physics_checks.py"]
    defined = {m for path in sources for m in re.findall(r"^def (\w+)", path.read_text(encoding="utf-8"), re.M)}
    assert not sorted(named - defined)


def test_unconfirmed_list_matches_the_tables() -> None:
    listed = set(re.findall(r"`([a-z_]+\.[^`]+)`", "\n".join(_doc_sections()["unconfirmed-figures"])))
    flagged = {k for k, (_, basis, _) in _documented_rows().items() if basis == "UNCONFIRMED"}
    assert listed == flagged


@pytest.mark.parametrize("name", [n for n in vars(constants) if n.isupper()])
def test_every_constant_is_documented_with_its_value(name: str) -> None:
    rows = _documented_rows()
    key = f"constants.{name}"
    assert key in rows, f"{key} has no row in docs/physics.md#constants"
    value, basis, anchor = rows[key]
    assert anchor == "constants" and basis in BASES
    assert math.isclose(tomllib.loads(f"v = {value}")["v"], getattr(constants, name), rel_tol=1e-15)


def test_documented_constants_exist() -> None:
    documented = {k.split(".", 1)[1] for k in _documented_rows() if k.startswith("constants.")}
    assert documented <= set(vars(constants))


def test_github_slug() -> None:
    assert github_slug("Solar array") == "solar-array"
    assert github_slug("Validation: eclipse") == "validation-eclipse"
    assert github_slug("UNCONFIRMED figures") == "unconfirmed-figures"

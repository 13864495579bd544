"""The layer rules of docs/architecture.md, checked: the import-linter contracts in pyproject.toml,
no import cycle between any two modules, every package placed in a layer, nothing imports ``tests``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMPORTLINTER = PYPROJECT["tool"]["importlinter"]
ROOT_PACKAGES: list[str] = IMPORTLINTER["root_packages"]
# The folders of the packages the wheel ships.
PACKAGE_DIRS = [ROOT / "twin", ROOT / "bridges", ROOT / "dashboards", ROOT / "orbitwin",
                ROOT / "firmware-sim" / "orbitwin_fw", ROOT / "firmware-sim" / "orbitwin_fw_host"]


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(*ROOT_PACKAGES, cache_dir=None)


def test_import_linter_contracts_are_kept() -> None:
    """``lint-imports`` with the repository's pyproject.toml: every contract kept."""
    proc = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache", "--no-logo", "pyproject.toml"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "500"},
    )
    broken = [line.removesuffix(" BROKEN") for line in proc.stdout.splitlines() if line.endswith(" BROKEN")]
    assert proc.returncode == 0, (
        "broken import-linter contracts:\n- " + "\n- ".join(broken) + f"\n{proc.stdout}{proc.stderr}")


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    succ = {v: sorted(ws) for v, ws in edges.items()}
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            for j in range(i, len(succ[v])):
                w = succ[v][j]
                if w not in index:
                    work += [(v, j + 1), (w, 0)]
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
    return components


def test_strongly_connected_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    assert sorted(_strongly_connected(edges)) == [["a", "b", "c"], ["e", "f"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_any_modules() -> None:
    """No cycle anywhere, package ``__init__`` modules and imports inside functions included."""
    graph = _graph()
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = []
    for component in _strongly_connected(edges):
        first = component[0]
        back = next(m for m in component if first in edges[m])
        chain = graph.find_shortest_chain(importer=first, imported=back) or (first, back)
        cycles.append(f"{' -> '.join(chain)} -> {first}  (cycle among {', '.join(component)})")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_twin_package_is_placed_in_a_layer() -> None:
    """A new sub-package of ``twin`` must be given its place in the layers contract."""
    layers = next(c for c in IMPORTLINTER["contracts"] if c["type"] == "layers")["layers"]
    placed = {name.strip().strip("()") for layer in layers for name in layer.replace(":", "|").split("|")}
    children = _graph().find_children("twin")
    assert not children - placed, f"twin sub-packages in no layer: {sorted(children - placed)}"


def test_contracts_cover_every_shipped_package() -> None:
    """import-linter sees every top-level package the wheel ships."""
    packages = PYPROJECT["tool"]["setuptools"]["packages"]  # a list, or {"find": {"include": [...]}}
    names = packages if isinstance(packages, list) else packages["find"]["include"]
    assert {name.split(".")[0] for name in names} == set(ROOT_PACKAGES)


def _sources() -> Iterator[Path]:
    for folder in PACKAGE_DIRS:
        yield from sorted(folder.rglob("*.py"))


def _is_sys_path(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "path"
            and isinstance(node.value, ast.Name) and node.value.id == "sys")


def _imported(node: ast.AST) -> list[str]:
    """Absolute module names an import statement names (relative imports stay inside the package)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []


def _edits_sys_path(node: ast.AST) -> bool:
    """``sys.path.insert(...)``/``append``/... or an assignment to ``sys.path`` or a slice of it."""
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Attribute) and _is_sys_path(node.func.value)
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
    return any(_is_sys_path(t) or (isinstance(t, ast.Subscript) and _is_sys_path(t.value)) for t in targets)


def test_no_package_imports_tests() -> None:
    """Installed code cannot see ``tests/``: no import of it or of its helper modules, no sys.path edits."""
    test_modules = {"tests"} | {p.stem for p in (ROOT / "tests").glob("*.py")}
    offences = []
    for path in _sources():
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            line = getattr(node, "lineno", 0)
            offences += [f"{where}:{line}: imports {name}" for name in _imported(node)
                         if name.split(".")[0] in test_modules]
            if _edits_sys_path(node):
                offences.append(f"{where}:{line}: edits sys.path")
    assert not offences, "\n".join(offences)


def _paho_client_calls(tree: ast.AST) -> list[int]:
    """Lines that construct a paho ``Client`` or import paho's one-shot ``publish``/``subscribe`` helpers."""
    modules: set[str] = set()  # names bound to paho.mqtt.client
    classes: set[str] = set()  # names bound to paho.mqtt.client.Client
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "paho.mqtt.client":
                    modules.add(alias.asname or "paho")
                if alias.name in ("paho.mqtt.publish", "paho.mqtt.subscribe"):
                    lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module in ("paho.mqtt", "paho.mqtt.client"):
            for alias in node.names:
                if node.module == "paho.mqtt" and alias.name == "client":
                    modules.add(alias.asname or "client")
                elif node.module == "paho.mqtt" and alias.name in ("publish", "subscribe"):
                    lines.append(node.lineno)
                elif alias.name == "Client":
                    classes.add(alias.asname or "Client")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in classes:
                lines.append(node.lineno)
            elif isinstance(f, ast.Attribute) and f.attr == "Client" and (
                    (isinstance(f.value, ast.Name) and f.value.id in modules)
                    or ast.unparse(f.value) == "paho.mqtt.client"):
                lines.append(node.lineno)
    return sorted(lines)


def test_paho_client_calls_finds_every_form() -> None:
    src = ("import paho.mqtt.client as mqtt\nfrom paho.mqtt.client import Client as C\nimport paho.mqtt.publish\n"
           "a = mqtt.Client()\nb = C()\nc = other.Client()\n")
    assert _paho_client_calls(ast.parse(src)) == [3, 4, 5]


def test_only_the_mqtt_door_opens_mqtt_connections() -> None:
    """One MQTT door: outside ``twin/mqtt/`` nothing constructs a paho client (the door's ``MqttConnection`` does)."""
    door = ROOT / "twin" / "mqtt"
    offences = [f"{path.relative_to(ROOT)}:{line}: opens its own MQTT client"
                for path in [*_sources(), *sorted((ROOT / "docker").rglob("*.py"))] if door not in path.parents
                for line in _paho_client_calls(ast.parse(path.read_text(), filename=str(path)))]
    assert not offences, "\n".join(offences)

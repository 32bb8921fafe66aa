"""The shape of the library: the module map in ``cglib/__init__.py`` is true (every module is on
it, each imports only modules of its own group or of groups below), there is no import cycle,
functions and classes stay short enough to read at once, and the training phases are tested
through their table, not by name."""

import ast
import re
from pathlib import Path

import pytest

import cglib

PACKAGE = Path(cglib.__file__).parent
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def groups() -> list[list[str]]:
    """The module map's groups, top of the house first: the ``name`` in double backticks of
    each bullet of the package docstring."""
    bullets = re.split(r"\n- ", cglib.__doc__)[1:]
    return [re.findall(r"``(\w+)``", bullet) for bullet in bullets]


def imports(module: str) -> set[str]:
    """The cglib modules ``module`` imports, at the top or inside functions."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "cglib":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cglib."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("cglib.")}
    return found & set(MODULES)


def test_the_module_map_lists_every_module_once():
    listed = [name for group in groups() for name in group if name in MODULES]
    assert sorted(listed) == MODULES


def test_no_module_imports_a_group_above_its_own():
    level = {name: index for index, group in enumerate(groups()) for name in group}
    climbing = [f"{module} ({level[module]}) imports {other} ({level[other]})"
                for module in MODULES for other in imports(module)
                if level[other] < level[module]]
    assert climbing == []


def test_no_import_cycle():
    graph = {module: imports(module) for module in MODULES}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(graph[module]):
            assert state.get(other) != "open", " -> ".join([*path, module, other])
            if other not in state:
                visit(other, [*path, module])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [])


def definitions() -> list[tuple[str, str, str, int]]:
    found = []
    for module in MODULES:
        tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                found.append((module, kind, node.name, node.end_lineno - node.lineno + 1))
    return found


@pytest.mark.parametrize(("kind", "limit"), [("function", 60), ("class", 150)])
def test_functions_and_classes_read_at_once(kind, limit):
    long = [f"{module}.{name}: {lines} lines" for module, found, name, lines in definitions()
            if found == kind and lines > limit]
    assert long == []


def test_phases_are_tested_through_their_table():
    """Outside cglib.config, no code compares a phase with a string literal: what differs
    between phases is a field of :data:`cglib.config.PHASES`."""
    pattern = re.compile(r"phase(\.name)?\s*[!=]=\s*[\"']|[\"'](init|adversarial|done)[\"']\s*"
                         r"[!=]=\s*\w*phase")
    found = [f"{module}.py:{number}: {line.strip()}" for module in MODULES if module != "config"
             for number, line in enumerate(
                 (PACKAGE / f"{module}.py").read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]
    assert found == []

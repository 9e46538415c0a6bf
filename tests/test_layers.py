"""DESIGN.md's layer rule, checked on the source: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"console", "remote", "training", "runtime_checks"}
ALLOWED = {
    "training": {"training"},
    "remote": {"remote"},
    "runtime_checks": {"runtime_checks", "training", "remote"},
    "console": OURS,
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = (imports_of(path) & OURS) - ALLOWED[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, offenders


def test_textual_is_imported_only_under_console_tui() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for pkg in OURS
        for p in (ROOT / pkg).rglob("*.py")
        if "textual" in imports_of(p) and not p.is_relative_to(ROOT / "console" / "tui")
    ]
    assert not offenders, offenders


# --- no import cycles, no module too big to read in one sitting ---------------------------------

MAX_MODULE_LINES = 500


def _modules() -> dict[str, Path]:
    """Every module of our packages by dotted name (a package by its ``__init__``)."""
    found = {}
    for package in sorted(OURS):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports anywhere: top level, inside functions, under
    TYPE_CHECKING, relative or absolute (``from a import b`` counts ``a.b`` when it is a module)."""
    modules = _modules()

    def ours(name: str) -> str | None:
        parts = name.split(".")
        for k in range(len(parts), 0, -1):
            if ".".join(parts[:k]) in modules:
                return ".".join(parts[:k])
        return None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join(here + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                resolved = ours(target)
                # A package importing its own submodules (its public face) is not a cycle.
                if resolved and resolved != name and not resolved.startswith(name + "."):
                    edges.add(resolved)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_our_modules_counting_imports_inside_functions() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_sees_imports_inside_functions() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from console.steps import cloud\n")
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))  # what import_graph walks


def test_no_package_module_is_over_500_lines() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"split these along their ideas: {long}"


def test_no_module_outside_console_steps_imports_a_step_module_and_the_checklist_none_of_the_steps() -> None:
    graph = import_graph()
    step_modules = {m for m in graph if m.startswith("console.steps.")}
    offenders = sorted(f"{m} imports {sorted(graph[m] & step_modules)}" for m in graph
                       if not m.startswith("console.steps") and graph[m] & step_modules)
    offenders += sorted(f"{m} imports console.steps" for m in graph
                        if m.startswith("console.checklist") and graph[m] & (step_modules | {"console.steps"}))
    assert not offenders, offenders

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

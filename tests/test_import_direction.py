"""Imports run one way (docs/architecture.md), function-local imports included.

``study`` and ``labeling`` may import ``attacks``, never ``analysis``; ``attacks``
imports none of the other apps; in ``attacks``, the services queue tasks and the
tasks call the jobs, so neither the tasks nor the jobs import the services.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it; ``from a import b`` gives a and a.b."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imports_of(package: str) -> dict[str, set[str]]:
    files = sorted((REPOSITORY / package).rglob("*.py"))
    return {str(path.relative_to(REPOSITORY)): imported_modules(path) for path in files}


def reaching(imports: dict[str, set[str]], forbidden: str) -> list[str]:
    return sorted(
        f"{path}: {module}"
        for path, modules in imports.items()
        for module in modules
        if module == forbidden or module.startswith(f"{forbidden}.")
    )


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("study", "analysis"),
        ("labeling", "analysis"),
        ("attacks", "analysis"),
        ("attacks", "study"),
        ("attacks", "labeling"),
    ],
)
def test_an_app_never_imports_one_downstream_of_it(package: str, forbidden: str) -> None:
    assert reaching(imports_of(package), forbidden) == []


@pytest.mark.parametrize("module", ["attacks/tasks.py", "attacks/jobs.py"])
def test_the_worker_side_never_imports_the_services(module: str) -> None:
    imports = {module: imported_modules(REPOSITORY / module)}

    assert reaching(imports, "attacks.services") == []
    assert module == "attacks/tasks.py" or reaching(imports, "attacks.tasks") == []

"""Every package the application imports is one that installing it brings.

The Docker image and `./run demo` install the project without the dev extra, so a
module of the application that imports a package listed only there (scipy was) works
in the test suite and fails in production.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement

REPOSITORY = Path(__file__).resolve().parent.parent
APPLICATION = ("config", "attacks", "study", "labeling", "analysis")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main_dependencies() -> set[str]:
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    return {_canonical(Requirement(text).name) for text in project["dependencies"]}


def _installed_requirements(name: str) -> list[str]:
    """What ``name`` requires on this Python, extras left out."""
    try:
        texts = requires(name) or []
    except PackageNotFoundError:
        return []
    wanted = [Requirement(text) for text in texts]
    return [
        _canonical(requirement.name)
        for requirement in wanted
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""})
    ]


def with_their_dependencies(names: set[str]) -> set[str]:
    """The names and everything they require (a package may import what it pulls in)."""
    found: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(_installed_requirements(name))
    return found


def _guards_import_error(node: ast.AST) -> bool:
    """``try: ... except ImportError`` or ``with contextlib.suppress(ImportError)``: an
    optional import, used where it is installed."""
    names = {"ImportError", "ModuleNotFoundError"}
    if isinstance(node, ast.Try):
        caught = [handler.type for handler in node.handlers if handler.type is not None]
        return any(name in ast.unparse(kind) for kind in caught for name in names)
    if isinstance(node, ast.With):
        return any(
            "suppress" in ast.unparse(item.context_expr)
            and any(name in ast.unparse(item.context_expr) for name in names)
            for item in node.items
        )
    return False


def _imports(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []


def imported_top_level_modules() -> dict[str, list[str]]:
    """Top-level module -> the application files that import it (module level or not),
    optional imports left out."""
    imported: dict[str, list[str]] = {}
    for package in APPLICATION:
        for path in (REPOSITORY / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            optional = {
                id(inner)
                for node in ast.walk(tree)
                if _guards_import_error(node)
                for inner in ast.walk(node)
            }
            for node in ast.walk(tree):
                if id(node) in optional:
                    continue
                for name in _imports(node):
                    imported.setdefault(name.split(".")[0], []).append(str(path))
    return imported


def test_the_application_imports_only_what_its_dependencies_install() -> None:
    installed = with_their_dependencies(main_dependencies())
    distributions = packages_distributions()
    own = set(APPLICATION)

    missing = {
        module: sorted(set(paths))[:3]
        for module, paths in imported_top_level_modules().items()
        if module not in sys.stdlib_module_names
        and module not in own
        and not {_canonical(d) for d in distributions.get(module, [module])} & installed
    }

    assert missing == {}, f"imported but not in [project] dependencies: {missing}"


def test_the_check_sees_a_dev_only_package() -> None:
    # scipy is in the main dependencies; scikit-learn only in the dev extra.
    installed = with_their_dependencies(main_dependencies())

    assert "scipy" in installed
    assert "scikit-learn" not in installed

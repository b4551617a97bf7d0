"""The shape of the code: the rooms of each service (docs/ARCHITECTURE.md, "The rooms of a service"), arrows only
downward, and modules and functions small enough to read."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from testkit.infra import REPO_ROOT

SERVICES = sorted(path.name for path in (REPO_ROOT / "services").iterdir() if (path / "app.py").exists())
ROOM = re.compile(
    r"^(__init__|__main__|app|settings|schemas|consumers"
    r"|(domain|service|store|adapters)(_[a-z0-9_]+)?|[a-z0-9_]+_api)\.py$"
)
# Code that is not ours to shape: generated Alembic revisions.
NOT_OURS = ("migrations",)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Modules and functions over the limits, each with the reason it stays so (none, ideally).
SIZE_EXCEPTIONS: dict[str, str] = {}
# Modules not yet named for their room, each with the reason (none, ideally).
UNMOVED_MODULES: dict[str, str] = {}
# Route modules that still import another route module.
ROUTE_IMPORT_EXCEPTIONS: dict[str, str] = {}


def _python_files(*roots: str) -> list[Path]:
    files = []
    for root in roots:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            if not any(part in NOT_OURS for part in path.relative_to(REPO_ROOT).parts):
                files.append(path)
    return files


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    package = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
            elif node.module:
                names.add(node.module)
    return names


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


@pytest.mark.parametrize("service", SERVICES)
def test_every_module_of_a_service_is_named_for_its_room(service: str) -> None:
    strays = {_relative(path) for path in (REPO_ROOT / "services" / service).glob("*.py") if not ROOM.match(path.name)}
    listed = {name for name in UNMOVED_MODULES if name.startswith(f"services/{service}/")}
    assert not strays - listed, f"modules named for no room of docs/ARCHITECTURE.md: {sorted(strays - listed)}"
    assert not listed - strays, f"listed as unmoved but moved: {sorted(listed - strays)}"


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_another(service: str) -> None:
    others = {f"services.{name}" for name in SERVICES} - {f"services.{service}"}
    crossings = [
        (_relative(path), name)
        for path in _python_files(f"services/{service}")
        for name in _imported_modules(path)
        if any(name == other or name.startswith(other + ".") for other in others)
    ]
    assert not crossings


def test_shared_imports_no_service_nor_the_tests() -> None:
    upward = [
        (_relative(path), name)
        for path in _python_files("shared")
        for name in _imported_modules(path)
        if name.split(".")[0] in {"services", "tests", "testkit", "bench", "tools", "sandbox"}
    ]
    assert not upward


@pytest.mark.parametrize("root", ["bench", "testkit"])
def test_benchmarks_and_the_testkit_do_not_import_the_tests(root: str) -> None:
    upward = [
        (_relative(path), name)
        for path in _python_files(root)
        for name in _imported_modules(path)
        if name.split(".")[0] == "tests"
    ]
    assert not upward


@pytest.mark.parametrize("service", SERVICES)
def test_no_route_module_imports_another(service: str) -> None:
    routes = [path for path in (REPO_ROOT / "services" / service).glob("*.py") if path.stem.endswith("api")]
    stems = {path.stem for path in routes}
    crossings = {
        f"{_relative(path)} -> {'.'.join(name.split('.')[:3])}"
        for path in routes
        for name in _imported_modules(path)
        if name.startswith(f"services.{service}.") and name.split(".")[2] in stems - {path.stem}
    }
    listed = {name for name in ROUTE_IMPORT_EXCEPTIONS if name.startswith(f"services/{service}/")}
    assert crossings == listed, f"route modules importing another: {sorted(crossings - listed)}"


def _oversized() -> list[str]:
    found = []
    for path in _python_files("services", "shared", "sandbox", "tools", "testkit", "bench"):
        source = path.read_text(encoding="utf-8")
        if source.count("\n") > MAX_MODULE_LINES:
            found.append(_relative(path))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    found.append(f"{_relative(path)}:{node.name}")
    return found


def test_no_module_or_function_outgrows_its_limit_unless_listed_with_a_reason() -> None:
    unlisted = [name for name in _oversized() if name not in SIZE_EXCEPTIONS]
    assert not unlisted, f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function: {unlisted}"


def test_every_listed_exception_is_still_needed() -> None:
    assert not set(SIZE_EXCEPTIONS) - set(_oversized())


def test_every_pure_domain_module_is_type_checked_strictly() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    strict = {
        module
        for override in config["tool"]["mypy"]["overrides"]
        if override.get("strict")
        for module in override["module"]
    }
    domain_modules = {
        f"services.{path.parent.name}.{path.stem}" for path in (REPO_ROOT / "services").glob("*/domain_*.py")
    }
    assert domain_modules - strict == set(), "add them to the strict override in pyproject.toml"

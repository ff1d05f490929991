"""How the packages depend on each other: what a user or a later change can rely on."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from .conftest import ROOT


def modules_after_importing(*modules: str) -> set[str]:
    code = ("import sys\n" + "".join(f"import {module}\n" for module in modules)
            + "print('\\n'.join(sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    return set(output.split())


def test_authmw_never_imports_apscheduler():
    loaded = modules_after_importing("authmw", "authmw.paste", "authmw.htpasswd")
    assert not {name for name in loaded if name.split(".")[0] == "apscheduler"}


def imports_of(path) -> list[str]:
    """Modules ``path`` imports, relative ones with their dots (``.middleware``)."""
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["htpasswd", "credential_cache", "passwords"])
def test_password_modules_do_not_depend_on_the_middleware(module):
    assert ".middleware" not in imports_of(ROOT / "authmw" / f"{module}.py")


@pytest.mark.parametrize("path", sorted((ROOT / "scheduler_api").glob("*.py")),
                         ids=lambda path: path.name)
def test_scheduler_api_uses_only_what_authmw_exports(path):
    assert [name for name in imports_of(path) if name.startswith("authmw.")] == []


SCHEDULER_API = sorted((ROOT / "scheduler_api").glob("*.py"))


def private_members_reached(path) -> list[str]:
    """``something._name`` where something is not ``self``, ``cls`` or ``super()``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and not (isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                         and node.value.func.id == "super")):
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", [path for path in SCHEDULER_API if path.name != "engine.py"],
                         ids=lambda path: path.name)
def test_only_the_engine_reaches_into_other_objects_private_members(path):
    allowed = {"sys._getframe"}  # Python's, not APScheduler's
    reached = [name for name in private_members_reached(path)
               if name.split(" (")[0] not in allowed]
    assert reached == []


def package_imports(path) -> set[str]:
    """The scheduler_api modules ``path`` imports, at any depth of its code."""
    names = set()
    for name in imports_of(path):
        if name.startswith(".") and len(name) > 1:
            names.add(name[1:].split(".")[0])
        elif name.startswith("scheduler_api."):
            names.add(name.split(".")[1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
            names.update(alias.name for alias in node.names)  # from . import engine
    return names


def test_the_package_has_no_import_cycle():
    graph = {path.stem: package_imports(path) for path in SCHEDULER_API}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        assert module not in visiting, " -> ".join([*visiting, module])
        if module in done:
            return
        visiting.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    assert "scheduler" not in graph["api"] and "scheduler" not in graph["web"]


def test_the_api_module_needs_neither_the_facade_nor_apscheduler_internals():
    assert {"scheduler", "engine", "process", "coordination"}.isdisjoint(
        package_imports(ROOT / "scheduler_api" / "api.py"))

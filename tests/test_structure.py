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

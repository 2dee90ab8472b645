"""The shipped client carries no publisher or store code: no module of ``gupper`` imports
``gupper_publish`` or ``gupper_infra``, at the top, inside a function or for type checking only,
and every one of them imports in a fresh interpreter where those packages cannot be imported.

The format the two sides share lives in the client (``gupper.wire``); the publisher imports it,
never the other way round."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "updater" / "gupper"
FORBIDDEN = ("gupper_publish", "gupper_infra")


def client_files() -> list[Path]:
    return sorted(CLIENT.rglob("*.py"))


def imported_names(path: Path) -> list[str]:
    """Every module an import statement in ``path`` names (absolute ones; relative imports stay in the package)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_the_client_is_the_whole_of_updater_gupper_and_reads_as_python() -> None:
    files = client_files()
    assert {"client.py", "download.py", "errors.py"} <= {f.name for f in files} and len(files) > 25
    assert imported_names(
        CLIENT / "layouts" / "folder.py"
    )  # the walk sees imports (a test that could pass on nothing would prove nothing)


@pytest.mark.parametrize("path", client_files(), ids=lambda p: str(p.relative_to(CLIENT)))
def test_no_client_module_imports_the_publisher_or_the_store(path: Path) -> None:
    bad = [name for name in imported_names(path) if name.split(".")[0] in FORBIDDEN]
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


IMPORT_ALL = """
import importlib, json, pkgutil, sys
for blocked in {forbidden!r}:
    sys.modules[blocked] = None  # "import gupper_publish" now raises ImportError
import gupper
modules = pkgutil.walk_packages(gupper.__path__, "gupper.")
names = sorted(m.name for m in modules if "hook-" not in m.name and not m.name.endswith("__main__"))
for name in names:
    importlib.import_module(name)
print(json.dumps(names))
"""


def test_every_client_module_imports_without_the_publisher_or_the_store() -> None:
    code = IMPORT_ALL.format(forbidden=FORBIDDEN)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    imported = json.loads(proc.stdout)
    assert {"gupper.client", "gupper.layouts.folder", "gupper.wire.files", "gupper.download"} <= set(imported)

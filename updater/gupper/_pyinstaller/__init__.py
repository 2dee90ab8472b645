"""PyInstaller hooks shipped with Gupper, found through the ``pyinstaller40`` entry point.

PyInstaller bundles every module an import statement names, whether or not that import ever runs
in the app. These hooks keep out what the client's start-up never runs, and only for the imports
made by the hooked module (``excludedimports`` is scoped to the importing module and its
submodules): an app that imports any of these modules itself still gets it, and so does any
other package that imports it.

- ``hook-gupper.ed25519.py`` bundles cffi's ``_cffi_backend``, which PyNaCl needs and PyInstaller
  cannot see (its import is made from C).
- ``hook-requests.py`` keeps ``cryptography`` and pyOpenSSL out of a frozen app that gets them only
  through requests' fallback for an ``ssl`` module without SNI (never the case with a Python that
  PyInstaller supports): that fallback alone adds about 5 MB to every one-file build and its
  start-up.
- ``typing_extensions``, which requests, urllib3 and packaging import for type checkers only
  (under ``if TYPE_CHECKING:``), is kept out of their imports when it is installed in the build's
  venv (as it is in most): through it PyInstaller bundled asyncio, concurrent.futures,
  multiprocessing, xmlrpc, xml and pyexpat, about 1.2 MB, and two run-time hooks that import
  multiprocessing and pkgutil at every start. :func:`type_checking_only` reads each module's
  source at build time and excludes it only where every import of it is for type checkers, so a
  release of those packages that imports it at run time keeps it.
- ``hook-gupper.py`` keeps ``ctypes`` (with libffi, about 0.3 MB), ``platform`` and ``sysconfig``
  out of builds for systems where the code that uses them never runs: Gupper calls Windows' and
  macOS's APIs through ctypes.
- ``pre_find_module_path/hook-gupper.py`` lets PyInstaller find Gupper in an editable install.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Iterator


def get_hook_dirs() -> list[str]:
    """The folder holding Gupper's hooks (the ``pyinstaller40`` ``hook-dirs`` entry point)."""
    return [os.path.dirname(__file__)]


def hooked_module(hook_file: str) -> str:
    """The module a hook file is for: ``hook-urllib3.util.py`` -> ``urllib3.util``."""
    return os.path.basename(hook_file).removeprefix("hook-").removesuffix(".py")


def type_checking_only(module: str, imported: str = "typing_extensions") -> list[str]:
    """``[imported]`` when ``module`` (and, for a package, every module in it) imports ``imported``
    under ``if TYPE_CHECKING:`` only, so excluding it changes nothing at run time; else ``[]``
    (an import that runs, or a source that cannot be found or read: PyInstaller's default stands).
    Reads the sources without importing them."""
    sources = list(_sources(module))
    if not sources:
        return []
    for path in sources:
        try:
            with open(path, "rb") as f:
                tree = ast.parse(f.read(), path)
        except (OSError, SyntaxError, ValueError):
            return []
        if any(not guarded for guarded in _imports_of(tree, imported, False)):
            return []
    return [imported]


def _sources(module: str) -> Iterator[str]:
    """The source files of ``module``: its ``.py`` file, or every ``.py`` file of its package."""
    top, _, rest = module.partition(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported to find it
    except (ImportError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        if not rest and spec is not None and spec.origin and spec.origin.endswith(".py"):
            yield spec.origin
        return
    base = os.path.join(next(iter(spec.submodule_search_locations)), *rest.split(".")) if rest else None
    folder = base if base is not None else next(iter(spec.submodule_search_locations))
    if base is not None and os.path.isfile(base + ".py"):
        yield base + ".py"
    elif os.path.isdir(folder):
        for root, _dirs, files in os.walk(folder):
            yield from (os.path.join(root, name) for name in sorted(files) if name.endswith(".py"))


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``<anything>.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_of(node: ast.AST, imported: str, guarded: bool) -> Iterator[bool]:
    """For each import of ``imported`` under ``node``: whether it sits in the body of an ``if TYPE_CHECKING:``."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        names = [node.module or ""] if node.level == 0 else []
    else:
        names = []
    if any(name == imported or name.startswith(imported + ".") for name in names):
        yield guarded
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for stmt in node.body:
            yield from _imports_of(stmt, imported, True)
        for stmt in node.orelse:
            yield from _imports_of(stmt, imported, guarded)
        return
    for child in ast.iter_child_nodes(node):
        yield from _imports_of(child, imported, guarded)

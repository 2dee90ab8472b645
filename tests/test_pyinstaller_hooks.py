"""Gupper's PyInstaller hooks (gupper/_pyinstaller): what they keep out of a frozen app, and that they
never take from the app what the app imports itself.

The builds are real one-file PyInstaller builds made in the project's venv, where Gupper is an
editable install (found through the pre-find-module-path hook, with no ``--paths``) and
``typing_extensions`` is installed, as in most venvs; the rule that reads sources is tested on
packages written here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PyInstaller.archive.readers import CArchiveReader

from gupper._pyinstaller import hooked_module, type_checking_only
from gupper.errors import PreflightFailedError
from gupper.selftest import preflight

from .test_build_helper import installed_libsodium
from .test_e2e_bundle import bundled_names

TIMEOUT = 600

# Through typing_extensions (requests, urllib3 and packaging import it for type checkers only) PyInstaller
# bundled asyncio, which brings concurrent.futures, multiprocessing, xmlrpc, xml and pyexpat; Gupper's
# Windows and macOS code brought ctypes, its Windows code platform and sysconfig, its macOS bundle code
# plistlib (and through it xml and pyexpat).
KEPT_OUT = {
    "plistlib",
    "typing_extensions",
    "asyncio",
    "_asyncio",
    "multiprocessing",
    "_multiprocessing",
    "concurrent",
    "xmlrpc",
    "xml",
    "pyexpat",
    "ctypes",
    "_ctypes",
    "platform",
    "sysconfig",
}

GUPPER_APP = """
from gupper import Updater, UpdaterConfig
import gupper.client, gupper.desktop, gupper.logfile, gupper.outcomes
from gupper.ed25519 import verify

# RFC 8032, section 7.1, test 1 (the empty message): the bundled libsodium checks signatures.
KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065"
    "224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
print("ok", Updater.__name__, UpdaterConfig.__name__, verify(KEY, SIG, b""), verify(KEY, SIG, b"x"))
"""

# Creates its updater first thing, as README says (a pre-flight answers there); no CA bundle set, so
# a later update checks the store against certifi's, which the self-test loads from the bundle.
UPDATER_APP = """
import tempfile
from gupper import Updater, UpdaterConfig

Updater(
    UpdaterConfig(
        app="proof",
        current_version="1.0.0",
        manifest_url="https://updates.invalid/proof/stable/latest.json",
        public_keys=("ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",),
        state_dir=tempfile.mkdtemp(),
    )
)
print("started")
"""

# Imports each module Gupper's hooks keep out of Gupper's own imports, and uses it.
APP_THAT_IMPORTS_THEM = """
import asyncio, ctypes, platform, plistlib, sysconfig, typing_extensions
from concurrent.futures import ThreadPoolExecutor
from xml.etree import ElementTree

from gupper import Updater

async def answer() -> int:
    return ctypes.sizeof(ctypes.c_int32)

with ThreadPoolExecutor(1) as pool:
    threads = pool.submit(lambda: 1).result()
print("ok", asyncio.run(answer()), threads, ElementTree.fromstring("<a/>").tag, bool(platform.machine()),
      bool(sysconfig.get_platform()) and bool(plistlib.dumps({})), typing_extensions.__name__, Updater.__name__)
"""


def freeze(tmp_path: Path, name: str, source: str, extra: Sequence[str] = ()) -> Path:
    """A one-file build of ``source`` with the project venv's PyInstaller, as the README builds (no --paths)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / f"{name}.py"
    src.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONHASHSEED="0", PYINSTALLER_CONFIG_DIR=str(tmp_path / "pyinstaller-config"))
    cmd = [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--clean", "--log-level", "WARN"]
    cmd += ["--name", name, "--distpath", str(tmp_path / "dist"), "--workpath", str(tmp_path / "build")]
    cmd += ["--specpath", str(tmp_path), *extra, str(src)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path / "dist" / name


def run(exe: Path) -> str:
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform != "linux", reason="the modules kept out differ per system; Linux builds here")
def test_an_app_embedding_gupper_carries_none_of_what_only_type_checkers_or_other_systems_use(tmp_path: Path) -> None:
    import typing_extensions  # noqa: F401  # installed in the venv: without the hooks it would be bundled

    exe = freeze(tmp_path, "embeds-gupper", GUPPER_APP)
    # Found without --paths (the venv's install is editable); the signature checks run on the stripped copy.
    assert run(exe).split() == ["ok", "Updater", "UpdaterConfig", "True", "False"]
    names = bundled_names(str(exe))
    assert {"gupper", "requests", "urllib3", "nacl", "packaging"} <= names
    assert not (KEPT_OUT | {"platformdirs"}) & names  # Gupper names its user folders itself (gupper.folders)
    # libsodium without its debug sections (most of its 3.7 MB), in a build made without --strip.
    archive = CArchiveReader(str(exe))
    (sodium,) = [name for name in archive.toc if name.startswith("nacl/_sodium")]
    bundled, installed = archive.extract(sodium), installed_libsodium().read_bytes()
    assert b".debug_info" in installed and b".debug_info" not in bundled
    assert b"crypto_sign_open" in bundled and len(bundled) < len(installed) / 2, (len(bundled), len(installed))


def self_test_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}


@pytest.mark.e2e
def test_the_self_test_of_a_frozen_app_loads_its_update_path_and_one_frozen_without_pynacl_fails_it(
    tmp_path: Path,
) -> None:
    """A real build passes: its transport, certifi's bundle and the stripped libsodium load. One made
    with ``--exclude-module nacl`` starts and runs (nothing at start needs PyNaCl any more), so only
    the self-test's proof keeps it from being installed: it could never check a signature again."""
    good = freeze(tmp_path / "good", "updater-app", UPDATER_APP)
    assert run(good) == "started\n"
    preflight(good, "1.0.0", self_test_env(), 120)
    broken = freeze(tmp_path / "broken", "updater-app", UPDATER_APP, ["--exclude-module", "nacl"])
    assert "nacl" not in bundled_names(str(broken))
    assert run(broken) == "started\n"
    with pytest.raises(PreflightFailedError) as e:
        preflight(broken, "1.0.0", self_test_env(), 120)
    message = str(e.value)
    assert message.startswith("the new version 1.0.0 cannot update itself later: ModuleNotFoundError: "), message
    assert "nacl" in message and message.endswith("runs the same self-test)")


@pytest.mark.e2e
def test_an_app_that_imports_those_modules_itself_still_gets_them(tmp_path: Path) -> None:
    exe = freeze(tmp_path, "imports-them", APP_THAT_IMPORTS_THEM)
    assert run(exe).split() == ["ok", "4", "1", "a", "True", "True", "typing_extensions", "Updater"]
    assert {
        "asyncio",
        "ctypes",
        "platform",
        "plistlib",
        "sysconfig",
        "typing_extensions",
        "concurrent",
        "xml",
    } <= bundled_names(str(exe))


def package(tmp_path: Path, files: dict[str, str]) -> str:
    """Write a package ``pkg_<n>`` under ``tmp_path`` (put on sys.path); its name."""
    name = f"pkg_{len(list(tmp_path.iterdir()))}"
    for rel, text in files.items():
        path = tmp_path / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return name


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


GUARDED = """
import sys
import typing
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from typing_extensions import Self
if sys.version_info >= (3, 13):
    from warnings import deprecated
elif typing.TYPE_CHECKING:
    import typing_extensions as te
else:
    pass
"""


def test_type_checkers_only_imports_are_excluded_for_a_module_and_for_every_module_of_a_package(on_path: Path) -> None:
    name = package(on_path, {"__init__.py": GUARDED, "sub/__init__.py": "", "sub/mod.py": GUARDED})
    assert type_checking_only(name) == ["typing_extensions"]
    assert type_checking_only(f"{name}.sub.mod") == ["typing_extensions"]
    assert type_checking_only(f"{name}.sub") == ["typing_extensions"]


@pytest.mark.parametrize(
    "runtime_import",
    [
        "import typing_extensions",
        "from typing_extensions import Self",
        "try:\n    import typing_extensions\nexcept ImportError:\n    pass",
        "if TYPE_CHECKING:\n    pass\nelse:\n    from typing_extensions import Self",
        "def f():\n    import typing_extensions.more",
    ],
)
def test_an_import_that_runs_keeps_it_bundled(on_path: Path, runtime_import: str) -> None:
    name = package(on_path, {"__init__.py": GUARDED, "runs.py": runtime_import + "\n"})
    assert type_checking_only(name) == []  # one module of the package imports it at run time
    assert type_checking_only(f"{name}.runs") == []


def test_what_cannot_be_read_keeps_the_default(on_path: Path) -> None:
    name = package(on_path, {"__init__.py": "def broken(:\n"})
    assert type_checking_only(name) == []
    assert type_checking_only("no_such_module_anywhere") == []
    assert type_checking_only(f"{name}.missing") == []


def test_each_hook_names_the_module_it_is_for() -> None:
    hooks = Path(__file__).resolve().parent.parent / "updater" / "gupper" / "_pyinstaller"
    names = {hooked_module(str(p)) for p in hooks.glob("hook-*.py")}
    assert {"requests", "packaging.version", "urllib3.util", "urllib3.contrib", "gupper", "gupper.ed25519"} <= names


def load_hook(name: str) -> Any:
    """One of Gupper's hook files as a module (their names are not importable)."""
    path = Path(__file__).resolve().parent.parent / "updater" / "gupper" / "_pyinstaller" / f"hook-{name}.py"
    spec = importlib.util.spec_from_file_location(f"gupper_hook_{name.replace('.', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(sys.platform != "linux" or shutil.which("strip") is None, reason="ELF and binutils' strip")
def test_the_stripped_libsodium_keeps_its_code_and_the_original_is_untouched(tmp_path: Path) -> None:
    hook = load_hook("gupper.ed25519")
    original = installed_libsodium()
    before = original.read_bytes()
    copy = hook.stripped_copy(str(original), str(tmp_path / "out"))
    assert copy == str(tmp_path / "out" / original.name)
    stripped = Path(copy).read_bytes()
    assert original.read_bytes() == before and b".debug_info" in before
    assert b".debug_info" not in stripped and b"crypto_sign_open" in stripped and len(stripped) < len(before) / 2
    assert not list((tmp_path / "out").glob("*.partial"))


def test_what_cannot_be_stripped_is_bundled_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = load_hook("gupper.ed25519")
    not_elf = tmp_path / "_sodium.pyd"
    not_elf.write_bytes(b"MZ\x90\x00 a Windows module")
    assert hook.stripped_copy(str(not_elf), str(tmp_path / "out")) is None
    assert hook.stripped_copy(str(tmp_path / "missing.so"), str(tmp_path / "out")) is None
    monkeypatch.setattr(hook.shutil, "which", lambda name: None)
    assert hook.stripped_copy(str(installed_libsodium()), str(tmp_path / "out")) is None
    assert not (tmp_path / "out").exists()


class _Graph:
    def __init__(self, filename: str) -> None:
        self.node = types.SimpleNamespace(filename=filename)

    def find_node(self, name: str) -> object:
        return self.node if name == "nacl._sodium" else None


@pytest.mark.skipif(sys.platform != "linux" or shutil.which("strip") is None, reason="Linux builds strip it")
@pytest.mark.parametrize(("hooksconfig", "stripped"), [({}, True), ({"gupper": {"strip_libsodium": False}}, False)])
def test_the_hook_bundles_the_copy_unless_the_spec_says_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hooksconfig: dict[str, Any], stripped: bool
) -> None:
    hook = load_hook("gupper.ed25519")
    monkeypatch.setitem(hook.CONF, "workpath", str(tmp_path))
    added: list[tuple[str, str]] = []
    api = types.SimpleNamespace(
        module_graph=_Graph(str(installed_libsodium())),
        analysis=types.SimpleNamespace(hooksconfig=hooksconfig),
        add_binaries=added.extend,
    )
    hook.hook(api)
    expected = [(str(tmp_path / "gupper-stripped" / "nacl" / installed_libsodium().name), "nacl")]
    assert added == (expected if stripped else [])

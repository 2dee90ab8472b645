"""What a frozen app that embeds Gupper carries, read from a real one-file PyInstaller build of the
demo app (built in the project's venv, which has cryptography installed for the publisher)."""

from __future__ import annotations

import subprocess

import pytest

from .e2e_support import E2E

pytestmark = pytest.mark.e2e


def bundled_names(exe: str) -> set[str]:
    """Top-level names of every module, extension and library in a one-file build."""
    from PyInstaller.archive.readers import CArchiveReader, ZlibArchiveReader

    archive = CArchiveReader(exe)
    names: set[str] = set()
    for entry in archive.toc:
        names.add(entry.replace("\\", "/").split("/")[0].split(".")[0])
        if entry.endswith(".pyz"):
            pyz = archive.open_embedded_archive(entry)
            assert isinstance(pyz, ZlibArchiveReader)
            names.update(name.split(".")[0] for name in pyz.toc)
    return names


def test_frozen_app_carries_pynacl_with_its_cffi_backend_and_no_cryptography(e2e: E2E) -> None:
    (exe,) = e2e.build("1.0.0")
    names = bundled_names(str(exe))
    assert {"gupper", "nacl", "_cffi_backend", "requests"} <= names
    # Gupper's hook keeps requests' SNI fallback from dragging these in, although they are installed.
    assert not {"cryptography", "OpenSSL"} & names
    # The demo imports gupper at start (`from gupper import Updater` loads the client and PyNaCl).
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "1.0.0", proc.stderr

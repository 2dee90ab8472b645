"""PyInstaller hook for gupper.ed25519, shipped by Gupper (see ``gupper._pyinstaller``).

PyNaCl's compiled ``nacl._sodium`` imports cffi's ``_cffi_backend`` from C, where PyInstaller
cannot see it, and the contributed hook for ``nacl`` does not name it (pyinstaller/pyinstaller#3525):
without this, a frozen app fails at ``import nacl`` with "No module named '_cffi_backend'".

On Linux, PyNaCl's wheels ship ``nacl/_sodium.abi3.so`` (libsodium, linked in) with its debug
information: 3.7 MB, of which 0.66 MB is code and symbols. A one-file app unpacks every byte of
it at each start (about 14 ms, and 1.07 MB of the file, bench item 9), so the bundle gets a copy
with the debug sections removed (``strip --strip-debug``: code and symbols stay as they were),
made in the build's work folder. A copy given by a hook comes before the one PyInstaller finds for
the extension, so the copy is what is bundled. Without ``strip`` (binutils) the original is bundled
(an INFO line in PyInstaller's log says why); ``hooksconfig={"gupper": {"strip_libsodium": False}}`` in the spec's
Analysis keeps the original too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from PyInstaller import log as logging
from PyInstaller.compat import is_linux
from PyInstaller.config import CONF
from PyInstaller.utils.hooks import get_hook_config

hiddenimports = ["_cffi_backend"]

logger = logging.getLogger(__name__)

_ELF = b"\x7fELF"


def stripped_copy(original: str, folder: str) -> str | None:
    """A copy of ``original`` under ``folder`` (same file name) without debug sections, or None
    when it cannot be made (no ``strip``, not an ELF file, strip failed); the original is untouched."""
    strip = shutil.which("strip")
    try:
        with open(original, "rb") as f:
            if f.read(4) != _ELF:
                return None
    except OSError:
        return None
    if strip is None:
        logger.info("gupper: no 'strip' (binutils) on PATH: %s is bundled with its debug information", original)
        return None
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, os.path.basename(original))
    partial = target + ".partial"
    try:
        proc = subprocess.run(
            [strip, "--strip-debug", "-o", partial, original], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.SubprocessError) as e:
        logger.warning("gupper: could not run strip on %s (%s); bundling it as it is", original, e)
        return None
    if proc.returncode != 0 or not os.path.isfile(partial):
        logger.warning("gupper: strip failed on %s (%s); bundling it as it is", original, proc.stderr.strip()[:200])
        return None
    os.replace(partial, target)
    return target


def hook(hook_api: Any) -> None:
    if not is_linux or get_hook_config(hook_api, "gupper", "strip_libsodium") is False:
        return
    node = hook_api.module_graph.find_node("nacl._sodium")
    original = getattr(node, "filename", None)
    if not original or not os.path.isfile(original):
        return
    copy = stripped_copy(original, os.path.join(CONF["workpath"], "gupper-stripped", "nacl"))
    if copy is not None:
        hook_api.add_binaries([(copy, "nacl")])

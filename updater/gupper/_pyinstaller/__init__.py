"""PyInstaller hooks shipped with Gupper, found through the ``pyinstaller40`` entry point.

``hook-gupper.keys.py`` bundles cffi's ``_cffi_backend``, which PyNaCl needs and PyInstaller
cannot see (its import is made from C).

``hook-requests.py`` keeps ``cryptography`` and pyOpenSSL out of a frozen app that gets them only
through requests' fallback for an ``ssl`` module without SNI (never the case with a Python that
PyInstaller supports): that fallback alone adds about 5 MB to every one-file build and its
start-up, because PyInstaller bundles every module an import statement names. An app that
imports ``cryptography`` itself still gets it: the exclusion holds only for imports made by
requests.
"""

from __future__ import annotations

import os


def get_hook_dirs() -> list[str]:
    """The folder holding Gupper's hooks (the ``pyinstaller40`` ``hook-dirs`` entry point)."""
    return [os.path.dirname(__file__)]

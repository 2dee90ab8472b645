"""PyInstaller pre-find-module-path hook for gupper, shipped by Gupper (see ``gupper._pyinstaller``).

An editable install (``pip install -e``) of Gupper puts no folder on ``sys.path``: setuptools maps
the package through an import finder of its own (Gupper's three source roots are not one simple
layout), which PyInstaller's analysis does not consult, so a frozen app failed at ``import gupper``
with "No module named 'gupper'". This hook adds the folder that holds this very package to the
folders searched for ``gupper``, after the usual ones: an installed wheel is found where it always
was, a copy on ``--paths`` still comes first.
"""

from __future__ import annotations

import os

# .../<root>/gupper/_pyinstaller/pre_find_module_path/hook-gupper.py -> .../<root>
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def pre_find_module_path(api: object) -> None:
    """Search Gupper's own folder for ``gupper`` after the folders PyInstaller searches anyway."""
    dirs = list(api.search_dirs)  # type: ignore[attr-defined]
    if _ROOT not in dirs:
        api.search_dirs = [*dirs, _ROOT]  # type: ignore[attr-defined]

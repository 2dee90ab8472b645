"""Install layouts: how an update is staged, swapped in, rolled back and cleaned up, per kind of install.

They implement :class:`~gupper.layouts.base.InstallLayout`:
:class:`~gupper.layouts.single.SingleFile` (a one-file app: the executable is replaced in place,
``binary`` releases), :class:`~gupper.layouts.folder.OneFolder` (``<root>/versions/<version>/``
side by side and a ``<root>/current`` entry point, ``archive`` releases; docs/packages.md) and
:class:`~gupper.layouts.plain.PlainFolder` (a one-folder build copied as a plain folder, arranged
into that layout by its first update), :class:`~gupper.layouts.windows.WindowsFolder` (a Windows
one-folder app run from ``<root>\\current``, switched by its launcher) and
:class:`~gupper.layouts.bundle.AppBundle` (a macOS ``.app`` bundle, ``app`` releases, swapped as a whole). The
updater (:mod:`gupper.client`) runs the same steps over either; only :func:`open_layout` knows
which one an install is, and it imports the one-folder code only for a one-folder install.
"""

from __future__ import annotations

from pathlib import Path

from ..bundle import bundle_of
from ..folder import FolderLayout, current_folder_root, folder_root, plain_root
from .base import Context, InstallLayout, refuse_early

__all__ = ["Context", "InstallLayout", "open_layout", "refuse_early"]


def open_layout(target: Path, ctx: Context) -> InstallLayout:
    """The layout of the install whose executable is ``target``."""
    bundle = bundle_of(target) if ctx.os_name != "windows" and ctx.config.install_root is None else None
    if bundle is not None:
        from .bundle import AppBundle

        return AppBundle(bundle, target.name, ctx, target)
    windows_root = current_folder_root(target) if ctx.os_name == "windows" and not ctx.config.install_root else None
    if windows_root is not None:
        from .windows import WindowsFolder

        return WindowsFolder(FolderLayout(windows_root, target.name), ctx, target)
    root = folder_root(target, ctx.config.install_root)
    if root is not None:
        from .folder import OneFolder

        return OneFolder(FolderLayout(root, target.name), ctx, target)
    plain = plain_root(target, ctx.bundle_dir) if ctx.config.install_root is None else None
    if plain is not None:
        from .plain import PlainFolder

        return PlainFolder(FolderLayout(plain, target.name), ctx, target)
    from .single import SingleFile

    return SingleFile(target, ctx)

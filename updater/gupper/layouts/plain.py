"""A one-folder build copied as a plain folder (``archive`` releases): arranged for updates by its first one.

What every PyInstaller user ships, and what an installer (a ``.deb``, a zip, a script) makes:
``<root>/<exe>`` with ``_internal/`` beside it. Its first update arranges it into the one-folder
layout, keeping ``<root>/<exe>`` as the entry point (:func:`gupper.folder.adopt_plain_copy`:
``versions/<version>`` of hard links, ``current``, then ``<root>/<exe>`` a link to
``current/<exe>``); from there on it is a :class:`~gupper.layouts.folder.OneFolder`. Nothing the
running app uses is moved or removed; what the copy left at the root goes once no process of it
runs. Windows cannot do it (a running ``.exe`` can be neither replaced nor deleted, and the entry
point would have to become the launcher): there the update is refused in one line saying how to
install the app instead. See docs/packages.md, "First install".
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import folder as _folder
from .. import install as _install
from ..errors import InstallError
from ..results import Update
from ..transfer import Progress
from .folder import OneFolder

log = logging.getLogger("gupper")


class PlainFolder(OneFolder):
    """The :class:`~gupper.layouts.InstallLayout` of a one-folder build copied as a plain folder."""

    @property
    def space_dir(self) -> Path:
        """The root: ``versions/`` is made there."""
        return self.folder.root

    def installed_version(self) -> str | None:
        """The version ``current`` names once arranged; before, the one running from the root."""
        return super().installed_version() or self.ctx.config.current_version

    def check_writable(self) -> None:
        """POSIX: files can be made in the root (``versions/``, ``current``, the entry point's link).

        Raises:
            InstallError: on Windows, naming the layout to install instead; a root this process
                cannot write.
        """
        root, exe = self.folder.root, self.folder.exe
        if self.ctx.os_name == "windows":
            raise InstallError(
                f"cannot update {root / exe}: a one-folder app copied as a plain folder cannot switch versions on "
                f"Windows, where a running .exe and its DLLs can be neither replaced nor moved; install it with the "
                f"launcher as {root / exe} and the app in {root / _folder.CURRENT} (docs/packages.md, 'First install')"
            )
        _install.check_writable(root / exe, self.ctx.os_name, self.ctx.file_ops())
        if self.folder.versions.is_dir():
            _install.check_writable(self.folder.versions / "x", self.ctx.os_name, self.ctx.file_ops())

    def stage(self, update: Update, progress: Progress | None) -> Path:
        """Arrange the copy for updates (once), then build the new version as any one-folder install does."""
        version = self.ctx.config.current_version
        if _folder.adopt_plain_copy(self.folder, version, self.ctx.os_name, self.ctx.file_ops()):
            log.info(
                "gupper: arranged %s for updates (versions/%s and current; %s starts the app as before)",
                self.folder.root,
                version,
                self.folder.exe,
            )
        return super().stage(update, progress)

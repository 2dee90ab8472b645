"""An optional, rotated log file for apps with no console (windowed PyInstaller apps, ``pythonw``).

A windowed app has no stderr: every line the ``gupper`` logger writes is lost unless the app
gives it a file. :func:`log_to_file` is that file, in the platform's per-user log folder, rotated
so it never grows past a few megabytes. Nothing here runs unless the app calls it.
"""

from __future__ import annotations

import logging
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(message)s"


def default_log_dir(app: str) -> Path:
    """The per-user log folder for ``app``: ``~/.local/state/<app>/log`` on Linux,
    ``~/Library/Logs/<app>`` on macOS, ``%LOCALAPPDATA%\\<app>\\Logs`` on Windows (:mod:`gupper.folders`)."""
    from .folders import user_log_dir

    return user_log_dir(app)


def log_to_file(
    app: str,
    *,
    directory: str | Path | None = None,
    logger: str = "gupper",
    level: int = logging.INFO,
    max_bytes: int = 1 << 20,
    backups: int = 3,
) -> Path:
    """Write the ``logger`` logger's lines (``"gupper"``; ``""`` for the whole app) at ``level`` and
    above to ``<directory>/<app>.log``, rotated at ``max_bytes`` with ``backups`` old files kept.

    ``directory`` defaults to :func:`default_log_dir`. Calling it again for the same file adds
    nothing. Returns the log file's path. Never raises for a folder that cannot be made: the
    handler then stays off, and the path is still returned (nothing else on the start-up path
    depends on it).
    """
    import logging.handlers

    folder = Path(directory) if directory is not None else default_log_dir(app)
    path = folder / f"{app}.log"
    target = logging.getLogger(logger)
    for handler in target.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path.absolute():
            return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
    except OSError:
        return path
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(FORMAT))
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > level:
        target.setLevel(level)  # else INFO lines ("updating …") stop at the root logger's WARNING
    return path

"""Viewer: a small Qt (PySide6) desktop app, shipped as a one-folder build, that updates itself.

The same flow as examples/tk_notes with Qt: :class:`gupper.UiQueue` is pumped by
``QTimer.singleShot`` on the UI thread, the offer and the "restart now?" question are
``QMessageBox`` dialogs, and the app quits through ``QApplication.quit()`` after
``restart_when_closed()``. As a one-folder build it updates through a folder delta: only the
files that changed between two versions are fetched (docs/packages.md).
"""

from __future__ import annotations

import logging
import sys

import update_settings  # APP, VERSION, MANIFEST_URL, PUBLIC_KEYS, FIRST_CHECK
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QMessageBox, QProgressBar, QVBoxLayout, QWidget

from gupper import BackgroundUpdates, Result, UiQueue, Update, Updater, UpdaterConfig, log_to_file

log = logging.getLogger("viewer")


def human(size: int) -> str:
    """A byte count as a person reads it."""
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def main() -> int:
    """Run the app."""
    log_to_file(update_settings.APP, logger="")
    updater = Updater(  # first: the self-test answer, this start counted, a failed trial rolled back
        UpdaterConfig(
            app=update_settings.APP,
            current_version=update_settings.VERSION,
            manifest_url=update_settings.MANIFEST_URL,
            public_keys=tuple(update_settings.PUBLIC_KEYS),
        )
    )
    app = QApplication(sys.argv)
    window = QMainWindow()
    window.setWindowTitle(f"Viewer {update_settings.VERSION}")
    body = QWidget()
    column = QVBoxLayout(body)
    status = QLabel(f"Viewer {update_settings.VERSION}")
    bar = QProgressBar()
    bar.hide()
    column.addWidget(status)
    column.addWidget(bar)
    window.setCentralWidget(body)
    window.resize(420, 120)

    def offer(update: Update) -> None:
        size = human(update.download_size)
        log.info("viewer: offering %s (%s to download)", update.version, size)
        answer = QMessageBox.question(
            window, "Update available", f"Viewer {update.version} is available ({size} to download). Install it?"
        )
        if answer == QMessageBox.StandardButton.Yes:
            bar.show()
            updates.install(update)
        else:
            updates.decline(update)

    def progress(done: int, total: int) -> None:
        bar.setMaximum(max(total, 1))
        bar.setValue(done)

    def ready(result: Result) -> None:
        bar.hide()
        status.setText(f"Viewer {result.version} is installed; it runs from the next start")
        answer = QMessageBox.question(window, "Update ready", f"Viewer {result.version} is installed. Restart now?")
        if answer == QMessageBox.StandardButton.Yes:
            updates.restart_when_closed()
            log.info("viewer: quitting for the update")
            app.quit()

    def failed(result: Result) -> None:
        bar.hide()
        status.setText(f"Update failed: {result.message}")

    ui = UiQueue()
    ui.attach(QTimer.singleShot)
    updates = BackgroundUpdates(
        updater,
        ui,
        on_available=offer,
        on_ready=ready,
        on_progress=progress,
        on_failed=failed,
        first_check=update_settings.FIRST_CHECK,
    )
    window.show()
    QTimer.singleShot(0, updater.confirm)  # the window is up: this version started fine
    updates.start()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())

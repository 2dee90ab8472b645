"""Notes: a small Tk desktop app that updates itself in the background and asks first.

What Gupper does here, in the order a user sees it:

1. ``Updater(...)`` first thing: it answers a pre-flight self-test (before any window), counts
   this start against the trial of a freshly installed version, and rolls back one that crashed
   its starts without confirming.
2. The window opens; ``confirm()`` once it is up ends this version's trial.
3. :class:`gupper.BackgroundUpdates` checks soon after start, then every six hours, and when the
   user picks Help > Check for updates (F5). An update on offer is shown on the UI thread with
   what it will really download (a patch is a few kB).
4. "Install" downloads and installs in the background, progress in the status line.
5. "Restart now?": the app saves the note and quits as it always does; the new version starts
   once this process has ended (``restart_when_closed``). "No" keeps this version running, for
   hours if need be: File > Export (F6) still loads code it never loaded before from this
   version's own file, which the update replaced (Gupper keeps it readable).

The update settings (manifest URL, public key) live in ``update_settings.py`` beside this file.
"""

from __future__ import annotations

import logging
import sys
import tkinter as tk
from pathlib import Path
from tkinter import messagebox

import update_settings  # APP, VERSION, MANIFEST_URL, PUBLIC_KEYS, NOTES_FILE, FIRST_CHECK

from gupper import BackgroundUpdates, Result, UiQueue, Update, Updater, UpdaterConfig, log_to_file

log = logging.getLogger("notes")


def human(size: int) -> str:
    """A byte count as a person reads it."""
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def export(notes: str, folder: Path) -> list[Path]:
    """File > Export: the note as CSV (one row per line) and as XML. Their modules load only now."""
    import csv
    import xml.dom.minidom

    folder.mkdir(parents=True, exist_ok=True)
    lines = notes.splitlines()
    with (folder / "notes.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([n, line] for n, line in enumerate(lines, 1))
    doc = xml.dom.minidom.Document()
    root = doc.appendChild(doc.createElement("notes"))
    for line in lines:
        root.appendChild(doc.createElement("line")).appendChild(doc.createTextNode(line))
    (folder / "notes.xml").write_text(doc.toprettyxml(), encoding="utf-8")
    return [folder / "notes.csv", folder / "notes.xml"]


class NotesApp:
    """The window, the note, and the update flow around them."""

    def __init__(self, updater: Updater) -> None:
        self.updater = updater
        self.notes_file = Path(update_settings.NOTES_FILE).expanduser()
        self.root = root = tk.Tk()
        root.title(f"{self.notes_file.name} - Notes {update_settings.VERSION}")
        self.text = tk.Text(root, width=60, height=12)
        self.text.pack(fill="both", expand=True)
        if self.notes_file.exists():
            self.text.insert("1.0", self.notes_file.read_text(encoding="utf-8"))
        self.text.focus_set()
        self.status = tk.Label(root, anchor="w", text=f"Notes {update_settings.VERSION}")
        self.status.pack(fill="x")
        ui = UiQueue()
        ui.attach(root.after)  # Gupper's threads hand their callbacks to this (the UI) thread
        self.updates = BackgroundUpdates(
            updater,
            ui,
            on_available=self.offer,
            on_ready=self.ready,
            on_progress=self.progress,
            on_failed=lambda result: self.say(f"Update failed: {result.message}"),
            on_checked=lambda result: self.say(f"Checked for updates: {result.message}"),
            first_check=update_settings.FIRST_CHECK,
        )
        menu = tk.Menu(root)
        file_menu, help_menu = tk.Menu(menu, tearoff=False), tk.Menu(menu, tearoff=False)
        file_menu.add_command(label="Export", accelerator="F6", command=self.export)
        file_menu.add_command(label="Quit", command=self.save_and_quit)
        help_menu.add_command(label="Check for updates…", accelerator="F5", command=self.updates.check_now)
        menu.add_cascade(label="File", menu=file_menu)
        menu.add_cascade(label="Help", menu=help_menu)
        root.config(menu=menu)
        root.bind("<F5>", lambda _event: self.updates.check_now())
        root.bind("<F6>", lambda _event: self.export())
        root.protocol("WM_DELETE_WINDOW", self.save_and_quit)

    def run(self) -> None:
        """Show the window; confirm this version once it is up; check for updates in the background."""
        self.root.after_idle(self.updater.confirm)  # the window is up: this version started fine
        self.updates.start()
        self.root.mainloop()

    def say(self, line: str) -> None:
        """Show ``line`` in the status bar."""
        self.status["text"] = line

    def offer(self, update: Update) -> None:
        """An update is on offer: ask (the UI thread, called through the UiQueue)."""
        size = human(update.download_size)
        log.info("notes: offering %s (%s to download)", update.version, size)
        question = f"Notes {update.version} is available ({size} to download)."
        if update.notes:
            question += f"\n\n{update.notes}"
        if messagebox.askyesno("Update available", question + "\n\nInstall it now?", parent=self.root):
            self.updates.install(update)
        else:
            self.updates.decline(update)

    def progress(self, done: int, total: int) -> None:
        """Bytes of the update downloaded so far."""
        self.say(f"Downloading the update: {done * 100 // max(total, 1)} %")

    def ready(self, result: Result) -> None:
        """The update is installed: restart now, or run it from the next start."""
        self.say(f"Notes {result.version} is installed; it runs from the next start")
        question = f"Notes {result.version} is installed. Restart now?"
        if messagebox.askyesno("Update ready", question, parent=self.root):
            self.updates.restart_when_closed()
            self.save_and_quit()

    def export(self) -> None:
        """File > Export."""
        written = export(self.text.get("1.0", "end-1c"), self.notes_file.parent / "export")
        log.info("notes: exported %s", ", ".join(p.name for p in written))
        messagebox.showinfo("Exported", f"Exported to {written[0].parent}", parent=self.root)

    def save_and_quit(self) -> None:
        """Save the note, then close the window (the app's one way out)."""
        content = self.text.get("1.0", "end-1c")
        self.notes_file.parent.mkdir(parents=True, exist_ok=True)
        self.notes_file.write_text(content, encoding="utf-8")
        log.info("notes: saved %d characters, quitting", len(content))
        self.root.destroy()


def main() -> int:
    """Run the app."""
    log_to_file(update_settings.APP, logger="")  # a windowed app has no console: keep its lines in a file
    updater = Updater(  # first thing: the self-test answer, this start counted, a failed trial rolled back
        UpdaterConfig(
            app=update_settings.APP,
            current_version=update_settings.VERSION,
            manifest_url=update_settings.MANIFEST_URL,
            public_keys=tuple(update_settings.PUBLIC_KEYS),
        )
    )
    NotesApp(updater).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

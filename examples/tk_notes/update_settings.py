"""Where Notes looks for updates and what it trusts: fixed when the app is built."""

APP = "notes"
VERSION = "1.0.0"
MANIFEST_URL = "https://downloads.example.com/notes/stable/latest.json"
PUBLIC_KEYS = ["ed25519:PASTE-THE-LINE-OF-keys/release.pub"]
NOTES_FILE = "~/.local/share/notes/note.txt"
FIRST_CHECK = 10.0  # seconds after start; then every six hours, and on Help > Check for updates (F5)

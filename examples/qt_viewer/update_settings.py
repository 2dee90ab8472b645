"""Where Viewer looks for updates and what it trusts: fixed when the app is built."""

APP = "viewer"
VERSION = "1.0.0"
MANIFEST_URL = "https://downloads.example.com/viewer/stable/latest.json"
PUBLIC_KEYS = ["ed25519:PASTE-THE-LINE-OF-keys/release.pub"]
FIRST_CHECK = 10.0  # seconds after start; then every six hours

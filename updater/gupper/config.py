"""What an app tells the updater, fixed when the app is built: :class:`UpdaterConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from .platforms import Platform
from .wire.manifest import MAX_MANIFEST_BYTES


@dataclass(frozen=True)
class UpdaterConfig:
    """Everything the updater needs, fixed when the app is built.

    ``executable`` defaults to the running frozen binary; an app run from source (not frozen)
    has updates off unless it names an executable, so a developer's Python is never replaced.
    ``state_dir`` defaults to the user's state directory (``~/.local/state/gupper/<app>`` on
    Linux); it holds the highest manifest serial seen, any adopted key rotation, a pending trial
    run and versions marked bad.
    ``install_root`` selects the one-folder layout (``<root>/versions/<version>/`` and a
    ``<root>/current`` entry point, docs/packages.md); it is also recognised without the setting
    when the executable runs from ``<root>/versions/<version>/``. That layout installs ``archive``
    releases, the single-file one ``binary`` releases.
    ``report_outcomes`` sends one GET when a trial of a new version ends (confirmed, rolled back,
    pre-flight failed or interrupted) to ``outcomes/<version>/<platform>/<outcome>`` beside the
    manifest, for the publisher's access-log statistics (:mod:`gupper.outcomes`; README, "Fleet
    health"); False sends nothing.
    """

    app: str
    current_version: str
    manifest_url: str
    public_keys: tuple[str, ...]
    threshold: int = 1
    channel: str = "stable"
    ca_bundle: str | None = None
    allow_insecure_loopback: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    manifest_timeout: float = 20.0
    download_timeout: float = 900.0
    download_attempts: int = 3
    max_manifest_bytes: int = MAX_MANIFEST_BYTES
    retries: int = 2
    preflight_timeout: float = 60.0
    trial_starts: int = 2
    executable: str | None = None
    platform: Platform | None = None
    state_dir: str | None = None
    install_root: str | None = None
    report_outcomes: bool = True

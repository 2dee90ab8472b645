"""What an app tells the updater, fixed when the app is built: :class:`UpdaterConfig`."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .errors import ConfigError
from .platforms import Platform
from .records import record
from .wire.canonical import valid_app_name
from .wire.manifest import MAX_MANIFEST_BYTES


@record(frozen=True)
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
    An app bundle (``<name>.app/Contents/MacOS/<exe>``) installs ``app`` releases, swapped as a
    whole; with ``check_team_id`` (Sparkle's rule) a bundle signed with a Team ID takes only new
    bundles validly signed by the same team.
    ``channel`` is named by the manifest URL (``.../<app>/<channel>/latest.json``, where
    ``gupper-publish`` puts it) and need not be set: :func:`channel_of`. Set it only for a URL
    laid out otherwise (default then ``stable``).
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
    channel: str | None = None
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
    check_team_id: bool = True


DEFAULT_CHANNEL = "stable"
MANIFEST_NAME = "latest.json"


def layout_of(manifest_url: str) -> tuple[str, str] | None:
    """(app, channel) when ``manifest_url`` ends in ``<app>/<channel>/latest.json``, the publisher's layout. Pure."""
    parts = [unquote(part) for part in urlsplit(manifest_url).path.split("/")]
    if len(parts) < 3 or parts[-1] != MANIFEST_NAME or not (valid_app_name(parts[-3]) and valid_app_name(parts[-2])):
        return None
    return parts[-3], parts[-2]


def channel_in_url(manifest_url: str, app: str) -> str | None:
    """The channel ``manifest_url`` names when it ends in ``<app>/<channel>/latest.json`` (the
    publisher's layout), else None. Pure."""
    found = layout_of(manifest_url)
    return found[1] if found is not None and found[0] == app else None


def resolve_channel(manifest_url: str, app: str, channel: str | None) -> str:
    """``channel``, else the one ``manifest_url`` names, else ``stable``. Pure.

    Raises:
        ConfigError: ``channel`` and the manifest URL name different channels.
    """
    named = channel_in_url(manifest_url, app)
    if channel is None:
        return named or DEFAULT_CHANNEL
    if named is not None and named != channel:
        raise ConfigError(
            f"UpdaterConfig.channel is {channel!r}, but manifest_url names channel {named!r} "
            f"({manifest_url}); leave channel unset (the URL names it), or point manifest_url at "
            f".../{app}/{channel}/{MANIFEST_NAME}"
        )
    return channel


def channel_of(config: UpdaterConfig) -> str:
    """The channel the app follows: ``config.channel``, else the one its manifest URL names, else
    ``stable`` (:func:`resolve_channel`). Pure.

    Raises:
        ConfigError: ``config.channel`` and the manifest URL name different channels.
    """
    return resolve_channel(config.manifest_url, config.app, config.channel)

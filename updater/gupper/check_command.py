"""``python -m gupper check``: read the settings and this install's state, fetch the manifest once,
print what the client's core would do with it (:mod:`gupper.diagnose`). Installs nothing, writes
nothing: no state, no manifest cache, no partial download."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from packaging.version import InvalidVersion, Version

from .config import channel_in_url, layout_of, resolve_channel
from .diagnose import Machine, diagnose, render
from .errors import ConfigError, UpdateError
from .fetch import Fetcher
from .keys import TrustedKeys
from .platforms import Platform, parse_platform_key, platform_candidates
from .state import StateFile, default_state_dir
from .transfer import FetchConfig, check_url
from .wire.manifest import ARCHIVE, BINARY, MAX_MANIFEST_BYTES

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gupper check",
        description="What this machine would do with a channel's manifest: the entry it picks, its rollout "
        "bucket, the decision, its trial state, where its state and logs live. Installs and saves nothing.",
    )
    p.add_argument("url", help="the manifest URL the app is built with (https://.../<app>/<channel>/latest.json)")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        help="a public key the app trusts: 'ed25519:...' or a .pub file (repeat for each)",
    )
    p.add_argument("--threshold", type=int, default=1, help="signatures required, as UpdaterConfig.threshold")
    p.add_argument("--current", default=None, metavar="VERSION", help="the installed app's version: for a decision")
    p.add_argument("--app", default=None, help="the app (default: the URL's <app>)")
    p.add_argument("--channel", default=None, help="the channel (default: the URL's <channel>, else stable)")
    p.add_argument("--platform", default=None, metavar="OS-ARCH", help="another machine's platform (default: this)")
    p.add_argument("--onedir", action="store_true", help="a one-folder install (it takes archive releases)")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the install's state folder (default: this user's, ~/.local/state/gupper/<app> on Linux); "
        "a copy from a field report works",
    )
    p.add_argument("--ca-bundle", default=None, help="CA bundle for the manifest's server, as UpdaterConfig.ca_bundle")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds for the fetch, as manifest_timeout")
    return p


def _key_text(value: str) -> str:
    if value.startswith("ed25519:"):
        return value
    try:
        lines = Path(value).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--key {value}: not 'ed25519:...' nor a readable .pub file ({e})") from e
    return lines[0] if lines else ""


def _machine(args: argparse.Namespace) -> Machine:
    check_url(args.url, False)
    app = args.app or (layout_of(args.url) or ("", ""))[0]
    if not app:
        raise ConfigError(f"{args.url} does not end in <app>/<channel>/latest.json; pass --app")
    channel = resolve_channel(args.url, app, args.channel)
    source = "--channel" if args.channel else "the URL" if channel_in_url(args.url, app) else "the default"
    try:
        current = Version(args.current) if args.current is not None else None
    except InvalidVersion as e:
        raise ConfigError(f"--current {args.current!r} is not a PEP 440 version") from e
    platforms: tuple[Platform, ...]
    if args.platform is None:
        platforms = platform_candidates()  # native CPU first, as the app itself would
    else:
        chosen = parse_platform_key(args.platform)
        if chosen is None:
            raise ConfigError(f"--platform {args.platform!r}: give <os>-<arch> such as linux-amd64")
        platforms = (chosen,)
    state_dir = args.state_dir or default_state_dir(app)
    state_file = StateFile(state_dir)
    return Machine(
        url=args.url,
        app=app,
        channel=channel,
        channel_from=source,
        current=current,
        trusted=TrustedKeys.from_texts([_key_text(k) for k in args.key], args.threshold),
        state=state_file.load() if state_file.path.is_file() else None,
        state_dir=state_dir,
        platforms=platforms,
        kind=ARCHIVE if args.onedir else BINARY,
        now=datetime.now(UTC),
    )


def check(argv: Sequence[str]) -> int:
    """``python -m gupper check ...``: print the diagnosis; 1 when the manifest cannot be fetched or would be
    refused, 2 on a usage error."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as e:  # argparse has printed the usage or the help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        machine = _machine(args)
    except (ConfigError, ValueError) as e:
        print(f"gupper check: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with Fetcher(FetchConfig(ca_bundle=args.ca_bundle, user_agent="gupper-check")) as fetcher:
            fetched = fetcher.get_small(args.url, max_bytes=MAX_MANIFEST_BYTES, timeout=args.timeout)
    except UpdateError as e:
        print(f"manifest   {args.url}\n           cannot be fetched: {e}")
        return EXIT_REFUSED
    assert fetched is not None  # get_small returns None only to an ETag, and none was sent
    diagnosis = diagnose(fetched.body, machine)
    print("\n".join(render(diagnosis)))
    return EXIT_REFUSED if diagnosis.refused is not None else EXIT_OK

"""``gupper-publish``: a thin command line over :mod:`publisher`.

Reads the environment (``GUPPER_STORE``, ``GUPPER_SIGNING_KEY``) and maps every error to one
line and an exit code, here and nowhere else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from .errors import PublishError
from .publish import DEFAULT_EXPIRY, PublishOptions, publish, regenerate_manifest
from .signing import keygen, load_signing_key
from .stores import open_store

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
COMMANDS = ("publish", "keygen", "resign")


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=os.environ.get("GUPPER_STORE"), help="s3://bucket[/prefix] or a folder (env GUPPER_STORE)")
    p.add_argument("--endpoint-url", default=None, help="S3 endpoint for MinIO/R2/local stores (default: AWS_ENDPOINT_URL or AWS)")
    p.add_argument(
        "--key",
        action="append",
        default=None,
        help="signing key file; repeat for several (env GUPPER_SIGNING_KEY, paths joined by os.pathsep)",
    )
    p.add_argument("--channel", default="stable", help="channel manifest to regenerate (default: stable)")
    p.add_argument("--expires-days", type=float, default=DEFAULT_EXPIRY.days, help="manifest lifetime in days (default: 30)")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gupper-publish",
        description="Upload app builds to a store and regenerate their signed latest.json.",
        epilog="'gupper-publish FILE...' is short for 'gupper-publish publish FILE...'.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("publish", help="upload artifacts and regenerate manifests")
    p.add_argument("files", nargs="+", type=Path, help="artifacts named <app>-<version>-<os>-<arch>[.exe]")
    _add_store_args(p)
    k = sub.add_parser("keygen", help="make an Ed25519 signing key pair")
    k.add_argument("prefix", type=Path, help="writes PREFIX.key (mode 0600) and PREFIX.pub")
    r = sub.add_parser("resign", help="re-sign an app's manifest with a fresh serial and expiry (run from cron)")
    r.add_argument("app", help="app name")
    _add_store_args(r)
    return parser


def _options(args: argparse.Namespace) -> PublishOptions:
    key_paths = args.key or [p for p in (os.environ.get("GUPPER_SIGNING_KEY") or "").split(os.pathsep) if p]
    if not key_paths:
        raise PublishError("no signing key: pass --key FILE or set GUPPER_SIGNING_KEY (make one with 'gupper-publish keygen')")
    if not args.store:
        raise PublishError("no store: pass --store s3://bucket[/prefix] (or a folder) or set GUPPER_STORE")
    if not 0 < args.expires_days <= 3660:
        raise PublishError("--expires-days must be between 0 and 3660")
    keys = [load_signing_key(Path(p)) for p in key_paths]
    return PublishOptions(keys=keys, channel=args.channel, expires_in=timedelta(days=args.expires_days))


def run(argv: Sequence[str]) -> int:
    """Run a command; raises PublishError for the caller to report."""
    argv = list(argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in {"-h", "--help"}:
        argv.insert(0, "publish")
    args = _parser().parse_args(argv)
    if args.command == "keygen":
        key_path, pub_path, public = keygen(args.prefix)
        print(f"wrote {key_path} (private, mode 0600: keep it secret, never commit it)")
        print(f"wrote {pub_path}; build this public key into the app:")
        print(public.to_text())
        return EXIT_OK
    options = _options(args)
    store = open_store(args.store, endpoint_url=args.endpoint_url)
    if args.command == "resign":
        result = regenerate_manifest(store, args.app, options, force=True)
        print(json.dumps(result.__dict__) if args.json else f"re-signed {result.key}: serial {result.serial}, expires in {args.expires_days:g} days")
        return EXIT_OK
    report = publish(store, args.files, options)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return EXIT_OK
    for a in report.artifacts:
        print(f"{a.status:9} {store.url}/{a.key} ({a.size} bytes, sha256 {a.sha256[:12]})")
    for m in report.manifests:
        what = "wrote" if m.changed else "unchanged"
        platforms = ", ".join(f"{p} {v}" for p, v in m.platforms.items()) or "no releases"
        print(f"{what:9} {store.url}/{m.key} serial {m.serial}: {platforms}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except PublishError as e:
        print(f"gupper-publish: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gupper-publish: interrupted; the manifest is only written last, so the store is consistent", file=sys.stderr)
        return 130


def main_entry() -> None:
    """Console-script wrapper."""
    raise SystemExit(main())


if __name__ == "__main__":
    main_entry()

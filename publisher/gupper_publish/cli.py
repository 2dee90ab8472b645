"""``gupper-publish``: a thin command line over :mod:`publisher`.

Reads the environment (``GUPPER_STORE``, ``GUPPER_SIGNING_KEY``) and maps every error to one
line and an exit code, here and nowhere else. See docs/release-management.md for the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from gupper.errors import ConfigError
from gupper.keys import PublicKey

from .delta import DEFAULT_PATCHES
from .errors import PublishError, StoreBusy
from .publish import DEFAULT_EXPIRY, ManifestResult, ProgressFactory, PublishOptions, publish, regenerate_manifest
from .release import init_store, promote, prune, rotate_keys, set_rollout, yank
from .s3compat import CHOICES
from .signing import keygen, load_signing_key
from .status import render_table, status
from .stores import Progress, Store, open_store

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_BUSY = 75  # EX_TEMPFAIL: other publishers kept winning the compare-and-swap; running again is the fix
EXIT_INTERRUPTED = 130
COMMANDS = ("publish", "promote", "rollout", "yank", "list", "status", "prune", "init", "rotate-keys", "resign", "keygen")


def _store_args(p: argparse.ArgumentParser, *, positional: bool = False) -> None:
    if positional:
        p.add_argument("store", nargs="?", default=os.environ.get("GUPPER_STORE"), help="s3://bucket[/prefix] or a folder (env GUPPER_STORE)")
    else:
        p.add_argument("--store", default=os.environ.get("GUPPER_STORE"), help="s3://bucket[/prefix] or a folder (env GUPPER_STORE)")
    p.add_argument("--endpoint-url", default=None, help="S3 endpoint for MinIO/R2/local stores (default: AWS_ENDPOINT_URL or AWS)")
    p.add_argument("--s3-compat", default="auto", choices=CHOICES, help="kind of S3 store (default: detect); see docs/s3-compatibility.md")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _signing_args(p: argparse.ArgumentParser, *, channel: bool = True) -> None:
    p.add_argument(
        "--key",
        action="append",
        default=None,
        help="signing key file; repeat for several (env GUPPER_SIGNING_KEY, paths joined by os.pathsep)",
    )
    p.add_argument("--expires-days", type=float, default=DEFAULT_EXPIRY.days, help="manifest lifetime in days (default: 30)")
    p.add_argument(
        "--min-serial", type=int, default=0, metavar="N", help="write serial N or higher: continue the serial of the store the app moved from (its serial + 1)"
    )
    if channel:
        p.add_argument("--channel", default="stable", help="channel (default: stable)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gupper-publish",
        description="Upload app builds to a store and manage their signed latest.json per app and channel.",
        epilog="'gupper-publish FILE...' is short for 'gupper-publish publish FILE...'. Details: docs/release-management.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("publish", help="upload artifacts into a channel and regenerate its manifest")
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        help="artifacts named <app>-<version>-<os>-<arch>[.exe], or one-folder builds (folders, .tar.gz or .zip) named <app>-<version>-<os>-<arch>",
    )
    p.add_argument("--rollout", type=int, default=None, metavar="PERCENT", help="stage the new release for PERCENT (0-100) of installs")
    p.add_argument("--patches", type=int, default=DEFAULT_PATCHES, metavar="K", help="make binary patches from the previous K releases (default 3; 0: none)")
    p.add_argument("--post-install", default=None, metavar="PATH", help="one-folder builds: an executable in the folder that clients run before switching to it")
    _store_args(p)
    _signing_args(p)

    _release_commands(sub)

    p = sub.add_parser("resign", help="re-sign a channel's manifest with a fresh serial and expiry (run from cron)")
    p.add_argument("app", help="app name")
    _store_args(p)
    _signing_args(p)

    k = sub.add_parser("keygen", help="make an Ed25519 signing key pair")
    k.add_argument("prefix", type=Path, help="writes PREFIX.key (mode 0600) and PREFIX.pub")
    return parser


def _release_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("promote", help="add an uploaded release to another channel (no re-upload)")
    p.add_argument("app")
    p.add_argument("version")
    p.add_argument("--to", dest="to_channel", required=True, help="channel to add it to, e.g. stable")
    p.add_argument("--from", dest="from_channel", default=None, help="channel it is in now, e.g. beta (default: take its files from the store)")
    p.add_argument("--rollout", type=int, default=None, metavar="PERCENT", help="stage it for PERCENT (0-100) of installs")
    _store_args(p)
    _signing_args(p, channel=False)

    p = sub.add_parser("rollout", help="raise, halt or complete a staged rollout")
    p.add_argument("app")
    p.add_argument("version")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--percent", type=int, help="offer it to PERCENT (0-100) of installs")
    how.add_argument("--halt", action="store_true", help="percent 0: nobody new gets it, the fallback stays")
    how.add_argument("--complete", action="store_true", help="percent 100: everyone gets it")
    _store_args(p)
    _signing_args(p)

    p = sub.add_parser("yank", help="withdraw a release; installs on it go back to the best remaining one")
    p.add_argument("app")
    p.add_argument("version")
    p.add_argument("--channel", action="append", default=None, help="only this channel (repeatable; default: every channel carrying it)")
    _store_args(p)
    _signing_args(p, channel=False)

    for name in ("list", "status"):
        p = sub.add_parser(name, help="releases per app, channel and platform, rollouts, manifest serials and expiry")
        p.add_argument("app", nargs="?", default=None, help="only this app")
        p.add_argument("--channel", default=None, help="only this channel")
        _store_args(p)

    p = sub.add_parser("prune", help="delete releases older than the newest N that no manifest references")
    p.add_argument("app")
    p.add_argument("--keep", type=int, required=True, metavar="N", help="keep the newest N versions whatever they are")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    _store_args(p)

    p = sub.add_parser("init", help="create the bucket if needed and apply the public-read policy (GetObject only, no listing)")
    _store_args(p, positional=True)

    p = sub.add_parser("rotate-keys", help="announce a new trusted key set in a channel's manifest")
    p.add_argument("app")
    p.add_argument("--new-key", action="append", required=True, help="public key of the new set: a .pub file or 'ed25519:...' (repeat for each)")
    p.add_argument("--threshold", type=int, required=True, help="signatures from the new set a client will require")
    _store_args(p)
    _signing_args(p)


def _store(args: argparse.Namespace) -> Store:
    if not args.store:
        raise PublishError("no store: pass --store s3://bucket[/prefix] (or a folder) or set GUPPER_STORE")
    return open_store(args.store, endpoint_url=args.endpoint_url, s3_compat=args.s3_compat)


def _options(args: argparse.Namespace) -> PublishOptions:
    key_paths = args.key or [p for p in (os.environ.get("GUPPER_SIGNING_KEY") or "").split(os.pathsep) if p]
    if not key_paths:
        raise PublishError("no signing key: pass --key FILE or set GUPPER_SIGNING_KEY (make one with 'gupper-publish keygen')")
    if not 0 < args.expires_days <= 3660:
        raise PublishError("--expires-days must be between 0 and 3660")
    if args.min_serial < 0:
        raise PublishError("--min-serial must be 0 or more")
    keys = [load_signing_key(Path(p)) for p in key_paths]
    # yank's --channel is a list of channels it passes itself; every other --channel names the one to write.
    channel = args.channel if isinstance(getattr(args, "channel", None), str) else "stable"
    return PublishOptions(keys=keys, channel=channel, expires_in=timedelta(days=args.expires_days), min_serial=args.min_serial)


def _public_key_text(value: str) -> str:
    text = value.strip()
    if not text.startswith("ed25519:"):
        try:
            text = next(line.strip() for line in Path(value).read_text(encoding="ascii").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError, StopIteration) as e:
            raise PublishError(f"--new-key {value}: not a readable .pub file or 'ed25519:...' key; use a .pub written by 'gupper-publish keygen'") from e
    try:
        return PublicKey.parse(text).to_text()
    except ConfigError as e:
        raise PublishError(f"--new-key {value}: {e}") from e


def terminal_progress(stream: TextIO) -> ProgressFactory | None:
    """A tqdm bar per upload when ``stream`` is a terminal (nothing in logs or pipes), else None."""
    if not stream.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: uploads work the same without a bar
        return None

    @contextmanager
    def bar(name: str, size: int) -> Iterator[Progress | None]:
        lock = threading.Lock()  # the transfer manager reports from its worker threads
        with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=stream, leave=False) as t:

            def update(n: int) -> None:
                with lock:
                    t.update(n)

            yield update

    return bar


def _say_manifests(store: Store, results: Sequence[ManifestResult]) -> None:
    for m in results:
        what = "wrote" if m.changed else "unchanged"
        platforms = ", ".join(f"{p} {v}" for p, v in m.platforms.items()) or "no releases"
        print(f"{what:9} {store.url}/{m.key} serial {m.serial}: {platforms}")


def _emit(args: argparse.Namespace, store: Store, data: Any, manifests: Sequence[ManifestResult] = ()) -> int:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _say_manifests(store, manifests)
    return EXIT_OK


def _init(args: argparse.Namespace) -> int:
    store = _store(args)
    init = init_store(store)
    if args.json:
        print(json.dumps(init.to_json(), indent=2))
    elif init.policy is None:
        print(f"{'created' if init.created else 'using'} folder {store.url}; serve it read-only over HTTPS, without directory listings")
    else:
        print(f"{'created' if init.created else 'found'} the bucket; applied the public-read policy: anyone may GET under {store.url}/, nobody may list or write")
    return EXIT_OK


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
    if args.command in {"list", "status"}:
        doc = status(_store(args), datetime.now(UTC), args.app, args.channel)
        print(json.dumps(doc, indent=2) if args.json else render_table(doc))
        return EXIT_OK
    if args.command == "prune":
        pruned = prune(_store(args), args.app, args.keep, dry_run=args.dry_run)
        if args.json:
            print(json.dumps(pruned.to_json(), indent=2))
        else:
            verb = "would delete" if args.dry_run else "deleted"
            for key in pruned.deleted:
                print(f"{verb} {key}")
            print(f"kept the newest {len(pruned.kept)} ({', '.join(pruned.kept)}) and every release a manifest uses; {len(pruned.deleted)} file(s) {verb}")
        return EXIT_OK
    if args.command == "init":
        return _init(args)
    # Everything below signs a manifest: load the keys before touching the store.
    options = _options(args)
    store = _store(args)
    if args.command == "publish":
        if args.patches < 0:
            raise PublishError("--patches must be 0 or more")
        report = publish(store, args.files, options, rollout=args.rollout, progress=terminal_progress(sys.stderr), patches=args.patches, post_install=args.post_install)
        if not args.json:
            for a in report.artifacts:
                print(f"{a.status:9} {store.url}/{a.key} ({a.size} bytes, sha256 {a.sha256[:12]})")
        return _emit(args, store, report.to_json(), report.manifests)
    if args.command == "resign":
        result = regenerate_manifest(store, args.app, options, force=True)
        if not args.json:
            print(f"re-signed {result.key}: serial {result.serial}, expires in {args.expires_days:g} days")
            return EXIT_OK
        return _emit(args, store, result.__dict__)
    results: list[ManifestResult]
    if args.command == "promote":
        results = [promote(store, args.app, args.version, to_channel=args.to_channel, from_channel=args.from_channel, rollout=args.rollout, options=options)]
    elif args.command == "rollout":
        percent = 0 if args.halt else 100 if args.complete else args.percent
        results = [set_rollout(store, args.app, args.version, percent, options)]
    elif args.command == "yank":
        results = yank(store, args.app, args.version, options, args.channel)
    else:  # rotate-keys
        results = [rotate_keys(store, args.app, [_public_key_text(k) for k in args.new_key], args.threshold, options)]
    return _emit(args, store, {"manifests": [m.__dict__ for m in results]}, results)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except StoreBusy as e:
        print(f"gupper-publish: busy: {e}", file=sys.stderr)
        return EXIT_BUSY
    except PublishError as e:
        print(f"gupper-publish: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gupper-publish: interrupted; the manifest is only written last, so the store is consistent", file=sys.stderr)
        return EXIT_INTERRUPTED


def main_entry() -> None:
    """Console-script wrapper."""
    raise SystemExit(main())


if __name__ == "__main__":
    main_entry()

"""``gupper-publish``: a thin command line over :mod:`gupper_publish`.

Reads the environment (``GUPPER_STORE``, ``GUPPER_SIGNING_KEY``) and maps every error to one
line and an exit code, here and nowhere else. Whatever it prints to stderr passes through
:func:`redact` first, so a signing key given as text never reaches a log, whatever went wrong.
See docs/release-management.md for the commands.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn, TextIO

from gupper.errors import ConfigError
from gupper.keys import PublicKey
from gupper.platforms import current_platform

from .accesslog import AUTO, FORMATS
from .delta import DEFAULT_PATCHES
from .dryrun import DryRunStore, Write, blob_folder
from .errors import AccessLogError, PublishError, StoreBusyError
from .extras import require
from .health import LogOptions, advance, plan_rollout, stats
from .plans import (
    DEFAULT_EVERY,
    DEFAULT_HALT_IF,
    DEFAULT_MIN_TRIALS,
    RolloutPlan,
    parse_every,
    parse_halt_if,
    parse_steps,
)
from .publish import (
    DEFAULT_EXPIRY,
    ManifestResult,
    Naming,
    ProgressFactory,
    PublishOptions,
    PublishReport,
    publish,
)
from .release import init_store, promote, prune, resign, rotate_keys, set_rollout, yank
from .s3compat import CHOICES
from .signing import is_key_material, key_material, keygen, load_signing_keys, shown
from .status import render_table, status
from .stores import Progress, Store, open_store

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_SOFTWARE = 70  # EX_SOFTWARE: a bug in gupper-publish (the traceback, redacted, says where)
EXIT_BUSY = 75  # EX_TEMPFAIL: other publishers kept winning the compare-and-swap; running again is the fix
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a program whose reader went away
COMMANDS = (
    "publish",
    "promote",
    "rollout",
    "yank",
    "list",
    "status",
    "prune",
    "init",
    "rotate-keys",
    "resign",
    "keygen",
    "build",
    "stats",
    "advance",
)
OFFLINE_COMMANDS = ("keygen", "build")  # need no store (keygen needs the publisher extra's cryptography)
KEY_ENV = "GUPPER_SIGNING_KEY"
LOGS_ENV = "GUPPER_LOGS"


class UsageError(Exception):
    """A command line argparse refused; carries argparse's message (redacted before it is printed)."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is raised for main() to print, redacted, rather than printed here."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage())


def version() -> str:
    """The installed gupper distribution's version."""
    try:
        return metadata.version("gupper")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _app_version_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("app", help="app name, as in its builds' file names (<app>-<version>-<os>-<arch>)")
    p.add_argument("version", help=f"the release's PEP 440 version (e.g. 1.2.0) {what}")


def _store_args(p: argparse.ArgumentParser, *, positional: bool = False) -> None:
    if positional:
        p.add_argument(
            "store",
            nargs="?",
            default=os.environ.get("GUPPER_STORE"),
            help="s3://bucket[/prefix] or a folder (env GUPPER_STORE)",
        )
    else:
        p.add_argument(
            "--store",
            default=os.environ.get("GUPPER_STORE"),
            help="s3://bucket[/prefix] or a folder (env GUPPER_STORE)",
        )
    p.add_argument(
        "--endpoint-url", default=None, help="S3 endpoint for MinIO/R2/local stores (default: AWS_ENDPOINT_URL or AWS)"
    )
    p.add_argument(
        "--s3-compat",
        default="auto",
        choices=CHOICES,
        help="kind of S3 store (default: detect); see docs/s3-compatibility.md",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _signing_args(p: argparse.ArgumentParser, *, channel: bool = True) -> None:
    p.add_argument(
        "--key",
        action="append",
        default=None,
        help="signing key: a .key file, or the key itself (PEM, or base64 of it); repeat for several "
        "(env GUPPER_SIGNING_KEY: the key itself, or paths joined by os.pathsep). Never printed",
    )
    p.add_argument(
        "--expires-days", type=float, default=DEFAULT_EXPIRY.days, help="manifest lifetime in days (default: 30)"
    )
    p.add_argument(
        "--min-serial",
        type=int,
        default=0,
        metavar="N",
        help="write serial N or higher: continue the serial of the store the app moved from (its serial + 1)",
    )
    if channel:
        p.add_argument("--channel", default="stable", help="channel (default: stable)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gupper-publish",
        description="Upload app builds to a store and manage their signed latest.json per app and channel.",
        epilog="'gupper-publish FILE...' is short for 'gupper-publish publish FILE...'. Details: "
        "docs/release-management.md.",
    )
    parser.add_argument(
        "--version", action="version", version=f"gupper-publish {version()}", help="print the version and exit"
    )
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="one of the commands below; 'gupper-publish COMMAND --help' for its options",
    )

    p = sub.add_parser("publish", help="upload artifacts into a channel and regenerate its manifest")
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        help="artifacts named <app>-<version>-<os>-<arch>[.exe], or one-folder builds "
        "(folders, .tar.gz or .zip) named <app>-<version>-<os>-<arch>",
    )
    p.add_argument(
        "--rollout",
        type=int,
        default=None,
        metavar="PERCENT",
        help="stage the new release for PERCENT (0-100) of installs",
    )
    p.add_argument(
        "--patches",
        type=int,
        default=DEFAULT_PATCHES,
        metavar="K",
        help="make binary patches from the previous K releases (default 3; 0: none)",
    )
    p.add_argument(
        "--post-install",
        default=None,
        metavar="PATH",
        help="one-folder builds: an executable in the folder that clients run before switching to it",
    )
    notes = p.add_mutually_exclusive_group()
    notes.add_argument(
        "--notes",
        default=None,
        metavar="TEXT",
        help="release notes, signed into the manifest (apps show them when they ask first)",
    )
    notes.add_argument(
        "--notes-file", default=None, type=Path, metavar="FILE", help="release notes from a UTF-8 text file"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="publish files that are not an executable for the platform in their name (checked "
        "from their ELF/PE/Mach-O header otherwise)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="say which keys would be written, which patches made and what the signed manifest would "
        "say; write nothing",
    )
    naming = p.add_argument_group(
        "naming one build", "publish one FILE (or folder) under any name, e.g. plain 'pyinstaller --name app' output"
    )
    naming.add_argument("--app", default=None, help="the app it is a build of (with --version)")
    naming.add_argument(
        "--version", dest="app_version", default=None, metavar="VERSION", help="its PEP 440 version (with --app)"
    )
    naming.add_argument(
        "--platform",
        default=None,
        metavar="OS-ARCH",
        help="the platform it was built for, e.g. linux-amd64 (default: this machine's, 'python -m gupper platform')",
    )
    _store_args(p)
    _signing_args(p)

    _release_commands(sub)
    _health_commands(sub)

    p = sub.add_parser(
        "resign", help="re-sign every channel's manifest of an app with a fresh serial and expiry (run from cron)"
    )
    p.add_argument("app", help="app name whose channel manifests to re-sign")
    p.add_argument("--channel", default=None, help="only this channel (default: every channel of the app)")
    _store_args(p)
    _signing_args(p, channel=False)

    k = sub.add_parser("keygen", help="make an Ed25519 signing key pair")
    k.add_argument("prefix", type=Path, help="writes PREFIX.key (mode 0600) and PREFIX.pub")

    b = sub.add_parser(
        "build",
        help="build a script with PyInstaller, reproducibly, into dist/<app>-<version>-<os>-<arch>[.exe]",
        epilog="Arguments after '--' go to PyInstaller as they are, e.g. -- --windowed --icon "
        "app.ico. Details: docs/release-management.md.",
    )
    b.add_argument("script", type=Path, help="the app's entry script (what you would pass to pyinstaller)")
    b.add_argument(
        "--name", required=True, help="app name: the executable's name and the first part of the output's name"
    )
    b.add_argument(
        "--version",
        required=True,
        dest="app_version",
        help="the PEP 440 version the output is named after (bake it into your app yourself)",
    )
    b.add_argument(
        "--onedir",
        action="store_true",
        help="a one-folder build (dist/<app>-<version>-<os>-<arch>/) instead of one file",
    )
    b.add_argument("--out", type=Path, default=Path("dist"), help="where the named output goes (default: dist)")
    b.add_argument(
        "--work",
        type=Path,
        default=None,
        help="PyInstaller's work folder (default: build/gupper/<app>); keep it fixed between builds",
    )
    b.add_argument(
        "--no-strip",
        dest="strip",
        action="store_false",
        help="keep the bundled libraries' symbols (by default PyInstaller strips them on Linux: a smaller app "
        "that starts faster; never on Windows or macOS)",
    )
    return parser


def _plan_args(p: argparse.ArgumentParser, how: argparse._MutuallyExclusiveGroup) -> None:
    how.add_argument(
        "--plan",
        metavar="STEPS",
        help="a rollout that runs itself: percents such as 1%%,10%%,50%%,100%%, moved on by 'gupper-publish advance'",
    )
    p.add_argument(
        "--every",
        default=None,
        metavar="SPAN",
        help=f"with --plan: each step lasts at least SPAN (24h, 30m, 2d; default {DEFAULT_EVERY.days * 24}h)",
    )
    p.add_argument(
        "--halt-if",
        action="append",
        default=None,
        metavar="RULE",
        help=f"with --plan: halt when METRIC>N%% (rollback-rate, failure-rate, preflight-failure-rate; repeatable; "
        f"default {DEFAULT_HALT_IF.replace('%', '%%')})",
    )
    p.add_argument(
        "--min-trials",
        type=int,
        default=None,
        metavar="N",
        help=f"with --plan: decide a step from at least N finished trials (default {DEFAULT_MIN_TRIALS})",
    )
    p.add_argument("--yank-on-halt", action="store_true", help="with --plan: yank the release when the plan halts it")


def _health_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "stats",
        help="adoption, checks, downloads and trial outcomes of an app, from the store's access logs",
        description="Read access logs (AWS S3 server access logs, CloudFront standard logs, nginx/Apache "
        "combined, Ceph RGW ops log) and count the app's update requests per channel, version and platform.",
    )
    p.add_argument("app", help="the app whose requests to count")
    _log_args(p)
    p.add_argument(
        "--since",
        default=None,
        metavar="TIME",
        help="count only requests at or after TIME (2026-12-01 or 2026-12-01T12:00:00Z, UTC)",
    )
    p.add_argument(
        "--html", type=Path, default=None, metavar="FILE", help="also write a report page (picture and tables)"
    )
    p.add_argument("--svg", type=Path, default=None, metavar="FILE", help="also write the report's picture alone")
    _store_args(p)

    p = sub.add_parser(
        "advance",
        help="move each rollout plan of a channel on: advance, wait or halt, from the access logs (for cron)",
    )
    p.add_argument("app", help="the app whose channel's rollout plans to move on")
    _log_args(p)
    p.add_argument("--dry-run", action="store_true", help="say what would be decided; change nothing (needs no key)")
    _store_args(p)
    _signing_args(p)


def _release_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("promote", help="add an uploaded release to another channel (no re-upload)")
    _app_version_args(p, "to add to the channel")
    p.add_argument("--to", dest="to_channel", required=True, help="channel to add it to, e.g. stable")
    p.add_argument(
        "--from",
        dest="from_channel",
        default=None,
        help="channel it is in now, e.g. beta (default: take its files from the store)",
    )
    p.add_argument(
        "--rollout", type=int, default=None, metavar="PERCENT", help="stage it for PERCENT (0-100) of installs"
    )
    _store_args(p)
    _signing_args(p, channel=False)

    p = sub.add_parser("rollout", help="raise, halt or complete a staged rollout")
    _app_version_args(p, "being rolled out")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--percent", type=int, help="offer it to PERCENT (0-100) of installs")
    how.add_argument("--halt", action="store_true", help="percent 0: nobody new gets it, the fallback stays")
    how.add_argument("--complete", action="store_true", help="percent 100: everyone gets it")
    _plan_args(p, how)
    _store_args(p)
    _signing_args(p)

    p = sub.add_parser("yank", help="withdraw a release; installs on it go back to the best remaining one")
    _app_version_args(p, "to withdraw")
    p.add_argument(
        "--channel",
        action="append",
        default=None,
        help="only this channel (repeatable; default: every channel carrying it)",
    )
    _store_args(p)
    _signing_args(p, channel=False)

    listings = {
        "list": "releases per app, channel and platform with their rollout state, then each "
        "manifest's serial and expiry",
        "status": "alias of 'list' (the same table, or JSON with --json)",
    }
    for name, text in listings.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("app", nargs="?", default=None, help="only this app")
        p.add_argument("--channel", default=None, help="only this channel")
        _store_args(p)

    p = sub.add_parser("prune", help="delete releases older than the newest N that no manifest references")
    p.add_argument("app", help="app whose old releases to delete")
    p.add_argument("--keep", type=int, required=True, metavar="N", help="keep the newest N versions whatever they are")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    _store_args(p)

    p = sub.add_parser(
        "init", help="create the bucket if needed and apply the public-read policy (GetObject only, no listing)"
    )
    _store_args(p, positional=True)

    p = sub.add_parser("rotate-keys", help="announce a new trusted key set in a channel's manifest")
    p.add_argument("app", help="app whose channel moves to the new keys")
    p.add_argument(
        "--new-key",
        action="append",
        required=True,
        help="public key of the new set: a .pub file or 'ed25519:...' (repeat for each)",
    )
    p.add_argument("--threshold", type=int, required=True, help="signatures from the new set a client will require")
    _store_args(p)
    _signing_args(p)


def _log_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--logs",
        action="append",
        default=None,
        metavar="WHERE",
        help=f"access logs: a log file, a folder of them or s3://bucket/prefix (repeatable; env {LOGS_ENV})",
    )
    p.add_argument(
        "--format",
        default=AUTO,
        choices=(AUTO, *FORMATS),
        help="the logs' format (default: taken from each log's first line)",
    )


def _log_options(args: argparse.Namespace) -> LogOptions:
    sources = args.logs or ([os.environ[LOGS_ENV]] if os.environ.get(LOGS_ENV) else [])
    if not sources:
        raise PublishError(
            f"no access logs: pass --logs with a log file, a folder of logs or s3://bucket/prefix (or set {LOGS_ENV})"
        )
    return LogOptions(tuple(sources), args.format, args.endpoint_url)


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise PublishError(
            f"--since {text!r}: give a UTC date or time such as 2026-12-01 or 2026-12-01T12:00:00Z"
        ) from e
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _plan(args: argparse.Namespace) -> RolloutPlan:
    if args.min_trials is not None and args.min_trials < 0:
        raise PublishError("--min-trials must be 0 or more")
    return RolloutPlan(
        steps=parse_steps(args.plan),
        every=parse_every(args.every) if args.every is not None else DEFAULT_EVERY,
        halt_if=tuple(parse_halt_if(r) for r in (args.halt_if or [DEFAULT_HALT_IF])),
        min_trials=DEFAULT_MIN_TRIALS if args.min_trials is None else args.min_trials,
        yank_on_halt=args.yank_on_halt,
    )


def _stats(args: argparse.Namespace) -> int:
    from .fleet_report import render_html, render_svg, render_text

    store = _store(args) if args.store else None
    doc, counts = stats(args.app, _log_options(args), store=store, since=_since(args.since))
    for skipped in counts.skipped:
        print(f"gupper-publish: skipped {skipped}", file=sys.stderr)
    if counts.logs == 0:
        raise AccessLogError("no access log among the logs given; check --logs (and --format)")
    print(json.dumps(doc, indent=2) if args.json else render_text(doc))
    for path, text in ((args.html, render_html), (args.svg, render_svg)):
        if path is not None:
            path.write_text(text(doc), encoding="utf-8")
            print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def _advance(args: argparse.Namespace) -> int:
    logs = _log_options(args)
    options = PublishOptions(keys=[], channel=args.channel) if args.dry_run else _options(args)
    store = _store(args)
    now = datetime.now(UTC)
    done = advance(store, args.app, logs, options, now=now, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"decisions": [d.to_json(now) for d in done]}, indent=2))
        return EXIT_OK
    if not done:
        print(f"nothing to advance: no rollout plan runs in {args.app}/{options.channel}")
    for d in done:
        note = "" if d.applied else (" (dry run)" if args.dry_run else " (not applied: another advance moved it first)")
        print(d.line + note)
    return EXIT_OK


def _rollout(args: argparse.Namespace, store: Store, options: PublishOptions) -> ManifestResult:
    if args.plan is not None:
        return plan_rollout(store, args.app, args.version, _plan(args), options)
    if args.every is not None or args.halt_if or args.min_trials is not None or args.yank_on_halt:
        raise PublishError("--every, --halt-if, --min-trials and --yank-on-halt go with --plan")
    percent = 0 if args.halt else 100 if args.complete else args.percent
    return set_rollout(store, args.app, args.version, percent, options)


def _store(args: argparse.Namespace) -> Store:
    if not args.store:
        raise PublishError("no store: pass --store s3://bucket[/prefix] (or a folder) or set GUPPER_STORE")
    if is_key_material(args.store):  # swapped variables: never make a folder named after the key
        raise PublishError(
            "the store (--store or GUPPER_STORE) holds a private key, not "
            "s3://bucket[/prefix] or a folder; check which variable goes where"
        )
    return open_store(args.store, endpoint_url=args.endpoint_url, s3_compat=args.s3_compat)


def _options(args: argparse.Namespace) -> PublishOptions:
    given = [("--key", v) for v in args.key] if args.key else [(KEY_ENV, os.environ.get(KEY_ENV) or "")]
    if not any(v.strip() for _, v in given):
        raise PublishError(
            f"no signing key: pass --key FILE or set {KEY_ENV} to a key file's path or to the "
            "key itself (make one with 'gupper-publish keygen')"
        )
    if not 0 < args.expires_days <= 3660:
        raise PublishError("--expires-days must be between 0 and 3660")
    if args.min_serial < 0:
        raise PublishError("--min-serial must be 0 or more")
    keys = [k for source, value in given for k in load_signing_keys(value, source=source)]
    # yank's --channel is a list of channels it passes itself; every other --channel names the one to write.
    channel = args.channel if isinstance(getattr(args, "channel", None), str) else "stable"
    return PublishOptions(
        keys=keys, channel=channel, expires_in=timedelta(days=args.expires_days), min_serial=args.min_serial
    )


def _public_key_text(value: str) -> str:
    text = value.strip()
    private = (
        f"--new-key takes a public key, and {shown(value)} is a private key; pass the .pub "
        "written beside it by 'gupper-publish keygen'"
    )
    if is_key_material(value):
        raise PublishError(private)
    if not text.startswith("ed25519:"):
        try:
            text = next(line.strip() for line in Path(value).read_text(encoding="ascii").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError, StopIteration) as e:
            raise PublishError(
                f"--new-key {shown(value)}: not a readable .pub file or 'ed25519:...' key; use a "
                ".pub written by 'gupper-publish keygen'"
            ) from e
        if "PRIVATE KEY" in text:
            raise PublishError(private)
    try:
        return PublicKey.parse(text).to_text()
    except ConfigError as e:
        raise PublishError(f"--new-key {value}: {e}") from e


def terminal_progress(stream: TextIO) -> ProgressFactory | None:
    """Progress on ``stream`` when it is a terminal (nothing in logs or pipes), else None.

    A step with a byte count (hashing, uploading) gets a tqdm bar; one without (packing a
    folder, making patches, tens of seconds for a large build) a line with its elapsed time.
    """
    if not stream.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: everything works the same without the display
        have_tqdm = False
    else:
        have_tqdm = True

    @contextmanager
    def bar(what: str, size: int) -> Iterator[Progress | None]:
        if size <= 0 or not have_tqdm:
            with _ticker(stream, what):
                yield None
            return
        lock = threading.Lock()  # the transfer manager reports from its worker threads
        with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=what, file=stream, leave=False) as t:

            def update(n: int) -> None:
                with lock:
                    t.update(n)

            yield update

    return bar


@contextmanager
def _ticker(stream: TextIO, what: str, every: float = 1.0) -> Iterator[None]:
    """``what ... 12 s`` rewritten in place every ``every`` seconds until the step ends, then ``what: done in 34 s``."""
    start = time.monotonic()
    stop = threading.Event()

    def line(text: str, end: str = "") -> None:
        stream.write(f"\r\x1b[K{text}{end}")
        stream.flush()

    def tick() -> None:
        while not stop.wait(every):
            line(f"{what} ... {time.monotonic() - start:.0f} s")

    line(f"{what} ...")
    thread = threading.Thread(target=tick, name="gupper-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        line(f"{what}: done in {time.monotonic() - start:.0f} s", "\n")


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
        print(
            f"{'created' if init.created else 'using'} folder {store.url}; serve it read-only "
            "over HTTPS, without directory listings"
        )
    else:
        print(
            f"{'created' if init.created else 'found'} the bucket; applied the public-read "
            f"policy: anyone may GET under {store.url}/, nobody may list or write"
        )
    return EXIT_OK


def _say_publish(store: Store, report: PublishReport) -> None:
    for a in report.artifacts:
        print(f"{a.status:9} {store.url}/{a.key} ({a.size} bytes, sha256 {a.sha256[:12]})")
    for p in report.patches:
        print(f"{'patch':9} {store.url}/{p.key} ({p.size} bytes, from {p.from_version})")


def _say_dry_run(args: argparse.Namespace, store: DryRunStore, report: PublishReport) -> int:
    """What a publish would have written, in the order it would have: each key (a one-folder release's
    content-addressed files as one line per folder), then each manifest's signed content."""
    manifests = {m.key: m for m in report.manifests}
    signed = {key: json.loads(data)["signed"] for key in manifests if (data := store.written(key)) is not None}
    if args.json:
        doc = {
            "dry_run": True,
            **report.to_json(),
            "writes": [{"key": w.key, "size": w.size, "sha256": w.sha256} for w in store.writes],
            "signed": signed,
        }
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    patches = {p.key: p for p in report.patches}
    for a in report.artifacts:
        if a.status == "unchanged":
            print(f"{'unchanged':13} {store.url}/{a.key} ({a.size} bytes, sha256 {a.sha256[:12]}): already there")
    folders: dict[str, list[Write]] = {}
    for w in store.writes:
        folder = blob_folder(w.key)
        if folder is not None:
            folders.setdefault(folder, []).append(w)
    for w in store.writes:
        url, folder = f"{store.url}/{w.key}", blob_folder(w.key)
        if folder is not None:
            group = folders[folder]
            if w is group[0]:
                size = sum(g.size for g in group)
                print(f"{'would upload':13} {store.url}/{folder}/ ({len(group)} objects, {size} bytes)")
        elif w.key in manifests:
            m = manifests[w.key]
            platforms = ", ".join(f"{p} {v}" for p, v in m.platforms.items()) or "no releases"
            print(f"{'would write':13} {url} serial {m.serial}: {platforms}")
        elif w.key in patches:
            print(f"{'would upload':13} {url} ({w.size} bytes, patch from {patches[w.key].from_version})")
        elif w.data is not None:
            print(f"{'would write':13} {url} ({w.size} bytes)")
        else:
            print(f"{'would upload':13} {url} ({w.size} bytes, sha256 {w.sha256[:12]})")
    for m in report.manifests:
        if not m.changed:
            print(f"{'unchanged':13} {store.url}/{m.key} serial {m.serial}: nothing to change")
    for key, content in signed.items():
        print(f"{store.url}/{key} would say (signed, not written):")
        print(json.dumps(content, indent=2))
    print(f"dry run: nothing was written to {store.url}")
    return EXIT_OK


def _keygen(prefix: Path) -> int:
    key_path, pub_path, public = keygen(prefix)
    print(f"wrote {key_path} (private, mode 0600: keep it secret, never commit it)")
    print(f"wrote {pub_path} (key id {public.keyid[:16]}); build this public key into the app:")
    print(public.to_text())
    return EXIT_OK


def _build(args: argparse.Namespace, pyinstaller_args: Sequence[str]) -> int:
    from .build import BuildOptions, build, shipping_note

    out = build(
        BuildOptions(
            script=args.script,
            name=args.name,
            version=args.app_version,
            onedir=args.onedir,
            out_dir=args.out,
            work_dir=args.work,
            pyinstaller_args=tuple(pyinstaller_args),
            strip=args.strip,
        ),
        os.environ,
    )
    if args.onedir:  # stderr: stdout is the path alone, for scripts
        print(shipping_note(args.name, str(out), current_platform()), file=sys.stderr)
    print(out)
    return EXIT_OK


def _notes(args: argparse.Namespace) -> str | None:
    """The release notes given with --notes or --notes-file."""
    if args.notes_file is None:
        return str(args.notes) if args.notes is not None else None
    try:
        return str(args.notes_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise PublishError(f"cannot read the release notes {args.notes_file} ({e}); give a UTF-8 text file") from e


def _naming(args: argparse.Namespace) -> Naming | None:
    """What --app, --version and --platform say the one build is, if any of them was given."""
    if args.app is None and args.app_version is None and args.platform is None:
        return None
    if args.app is None or args.app_version is None:
        raise PublishError("--app and --version go together (and --platform, default this machine's); give both")
    return Naming(args.app, args.app_version, args.platform)


def run(argv: Sequence[str]) -> int:
    """Run a command; raises PublishError for the caller to report."""
    argv = list(argv)
    # 'gupper-publish --version 1.2.0 --app x FILE' names a build: only '--version' alone asks for ours.
    if argv and argv[0] not in COMMANDS and argv[0] not in {"-h", "--help"} and argv != ["--version"]:
        argv.insert(0, "publish")
    passthrough: list[str] = []
    if argv[:1] == ["build"] and "--" in argv:  # argparse cannot take options meant for PyInstaller after a positional
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    args = _parser().parse_args(argv)
    if args.command == "build":
        return _build(args, passthrough)
    require("publisher", f"gupper-publish {args.command}")
    if args.command == "keygen":
        return _keygen(args.prefix)
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
            print(
                f"kept the newest {len(pruned.kept)} ({', '.join(pruned.kept)}) and every release "
                f"a manifest uses; {len(pruned.deleted)} file(s) {verb}"
            )
        return EXIT_OK
    if args.command == "init":
        return _init(args)
    if args.command == "stats":
        return _stats(args)
    if args.command == "advance":
        return _advance(args)
    # Everything below signs a manifest: load the keys before touching the store.
    options = _options(args)
    store = _store(args)
    if args.command == "publish":
        if args.patches < 0:
            raise PublishError("--patches must be 0 or more")
        progress = terminal_progress(sys.stderr)
        dry = DryRunStore(store) if args.dry_run else None
        report = publish(
            dry or store,
            args.files,
            options,
            rollout=args.rollout,
            progress=progress,
            patches=args.patches,
            post_install=args.post_install,
            force=args.force,
            notes=_notes(args),
            naming=_naming(args),
        )
        if dry is not None:
            return _say_dry_run(args, dry, report)
        if not args.json:
            _say_publish(store, report)
        return _emit(args, store, report.to_json(), report.manifests)
    if args.command == "resign":
        resigned = resign(store, args.app, options, None if args.channel is None else [args.channel])
        if args.json:
            return _emit(args, store, {"manifests": [m.__dict__ for m in resigned]})
        for result in resigned:
            print(f"re-signed {result.key}: serial {result.serial}, expires in {args.expires_days:g} days")
        return EXIT_OK
    results: list[ManifestResult]
    if args.command == "promote":
        results = [
            promote(
                store,
                args.app,
                args.version,
                to_channel=args.to_channel,
                from_channel=args.from_channel,
                rollout=args.rollout,
                options=options,
            )
        ]
    elif args.command == "rollout":
        results = [_rollout(args, store, options)]
    elif args.command == "yank":
        results = yank(store, args.app, args.version, options, args.channel)
    else:  # rotate-keys
        results = [rotate_keys(store, args.app, [_public_key_text(k) for k in args.new_key], args.threshold, options)]
    return _emit(args, store, {"manifests": [m.__dict__ for m in results]}, results)


def secrets_in(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """Every value on the command line or in GUPPER_SIGNING_KEY that is key text rather than a file name."""
    values = [environ.get(KEY_ENV, ""), *argv, *(a.split("=", 1)[1] for a in argv if a.startswith("--") and "=" in a)]
    return [v for v in values if v.strip() and is_key_material(v)]


def _sensitive(secret: str) -> set[str]:
    """The parts of a key text that must not be printed: itself, each base64 line of it, its whole base64 body."""
    out = {secret.strip(), "".join(secret.split())}
    texts = [secret]
    material = key_material(secret)
    if material is not None:  # base64 of a PEM: the PEM it stands for; DER: its base64, as a PEM body shows it
        texts.append(
            material.decode("ascii", "replace")
            if material.lstrip().startswith(b"-----BEGIN")
            else base64.b64encode(material).decode("ascii")
        )
    for text in texts:
        body = [
            line.strip()
            for line in text.replace("\\n", "\n").splitlines()
            if line.strip() and not line.strip().startswith("-----")
        ]
        out.update(body)
        out.add("".join(body))
    return {piece for piece in out if len(piece) >= 16}


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret, and every line or base64 body of one, replaced by ``[redacted]``."""
    pieces = {piece for secret in secrets for piece in _sensitive(secret)}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "[redacted]")
    return text


def _say(message: str, secrets: Sequence[str]) -> None:
    print(redact(message, secrets), file=sys.stderr)


class _Redacting:
    """A text stream that redacts what is written to it (stdout while a key was given as text)."""

    def __init__(self, stream: TextIO, secrets: Sequence[str]) -> None:
        self._stream, self._secrets = stream, secrets

    def write(self, text: str) -> int:
        return self._stream.write(redact(text, self._secrets))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding: the stream's own
        return getattr(self._stream, name)


def _mute_stdout() -> None:
    """After the reader of stdout went away: point it at devnull so the exit-time flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests capturing stdout)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code. The one place that maps errors to exit codes and messages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    secrets = secrets_in(argv, os.environ)
    stdout = sys.stdout
    if secrets:
        sys.stdout = _Redacting(stdout, secrets)  # a TextIO in all that print() uses
    try:
        return run(argv)
    except SystemExit as e:  # argparse: --help or --version (0), already printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except UsageError as e:
        _say(e.usage.rstrip() + f"\ngupper-publish: usage error: {e}", secrets)
        return EXIT_USAGE
    except StoreBusyError as e:
        _say(f"gupper-publish: busy: {e}", secrets)
        return EXIT_BUSY
    except PublishError as e:
        _say(f"gupper-publish: error: {e}", secrets)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _say("gupper-publish: interrupted; the manifest is only written last, so the store is consistent", secrets)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. 'list --json | head -1': the reader has all it wanted
        _mute_stdout()
        return EXIT_PIPE
    except OSError as e:  # the file system or the network refused: say what, without a traceback
        _say(f"gupper-publish: error: {e}", secrets)
        return EXIT_ERROR
    except Exception:  # a bug: the traceback helps, redacted like everything else
        _say(
            traceback.format_exc().rstrip()
            + "\ngupper-publish: internal error (a bug): please report it with the traceback above",
            secrets,
        )
        return EXIT_SOFTWARE
    finally:
        sys.stdout = stdout


def main_entry() -> None:
    """Console-script wrapper."""
    raise SystemExit(main())


if __name__ == "__main__":
    main_entry()

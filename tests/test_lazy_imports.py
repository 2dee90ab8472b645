"""What a start-up that finds no update loads: ``import gupper`` loads nothing, and a whole
no-update ``run()`` (a 200, then a 304 answered from the kept copy) never loads patching, archives,
folder deltas or cryptography. Checked in a fresh interpreter against the HTTPS simulator; the
figures these imports cost are in bench/results.md (import cost), never in a test."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from bench.imports import STARTUP

from .conftest import MakeManifest, entry
from .httpsim import Handler, Sim

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "/app/stable/latest.json"

# Needed only once an update is found, or never on a one-file install.
ONLY_WHEN_UPDATING = [
    "gupper.bspatch",  # binary deltas
    "gupper.folder_delta",  # one-folder deltas
    "gupper.package",  # one-folder archives
    "gupper.layouts.folder",  # the one-folder layout
    "gupper.layouts.staging",  # building a version folder
    "gupper.layouts.plain",  # a one-folder build copied as a plain folder
    "gupper.layouts.bundle",  # a macOS app bundle
    "gupper.layouts.windows",  # a Windows one-folder app run from its current folder
    "plistlib",  # an app bundle's Info.plist
    "gupper.wire.files",  # one-folder file lists and patch indexes
    "gupper.periodic",  # check_periodically() only
    "gupper.desktop",  # BackgroundUpdates, UiQueue: bundled (gupper/__init__.py names them), loaded when used
    "gupper.logfile",  # log_to_file() only
    "logging.handlers",  # its rotating file handler (and smtplib behind it)
    "tqdm",  # progress bars are the publisher's; the client reports progress through a callback
    "tarfile",
    "gzip",
    "cryptography",  # the publisher signs with it; the client verifies with PyNaCl
    "OpenSSL",
    "filelock",  # not a client dependency: gupper._lock (2.4 MB of sqlite3/asyncio in a bundle)
    "sqlite3",
    "asyncio",
    "dataclasses",  # Gupper's classes are gupper.records: nothing compiled at import (bench item 13); not
    # "inspect" behind it: from Python 3.13 requests loads it (urllib3.http2 -> importlib.metadata)
    "nacl.signing",  # gupper.ed25519 calls libsodium's one check through PyNaCl's compiled module
    "nacl.bindings",  # (every binding PyNaCl has: about 12 ms a start)
]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import gupper
    after_import = sorted(sys.modules)
    from gupper import Platform, Status, Updater, UpdaterConfig
    cfg = UpdaterConfig(
        app="app", current_version="2.0.0", manifest_url=sys.argv[1], public_keys=(sys.argv[2],), ca_bundle=sys.argv[3],
        executable=sys.argv[4], state_dir=sys.argv[5], platform=Platform("linux", "amd64"), retries=0,
    )
    statuses = [Updater(cfg, environ={}, argv=["app"]).run(restart=False).status.value for _ in range(2)]
    print(json.dumps({"after_import": after_import, "after_check": sorted(sys.modules), "statuses": statuses}))
    """
)


def no_update_start(sim: Sim, tmp_path: Path, public_key: str) -> dict[str, list[str]]:
    exe = tmp_path / "install" / "app"
    exe.parent.mkdir()
    exe.write_bytes(b"#!/bin/sh\n")
    args = [sim.url(MANIFEST), public_key, sim.ca_path, str(exe), str(tmp_path / "state")]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, list[str]] = json.loads(proc.stdout)
    return out


def etag_route(body: bytes) -> Handler:
    """Serve ``body`` with an ETag and answer a matching If-None-Match with 304."""
    tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

    def handle(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("If-None-Match") == tag:
            h.send_response(304)
            h.send_header("ETag", tag)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(200)
        h.send_header("ETag", tag)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return handle


def test_import_gupper_loads_no_submodule_and_no_transport(
    sim: Sim, tmp_path: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    sim.routes[MANIFEST] = make_manifest(platforms={"linux-amd64": entry("2.0.0")})
    loaded = set(no_update_start(sim, tmp_path, keypair[2])["after_import"])
    assert "gupper" in loaded
    assert not {m for m in loaded if m.startswith("gupper.")}, (
        "import gupper must not load its submodules (names load on first use)"
    )
    assert not {"requests", "urllib3", "nacl", "packaging"} & loaded


def test_a_start_without_update_never_loads_patching_archives_or_cryptography(
    sim: Sim, tmp_path: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    sim.routes[MANIFEST] = etag_route(make_manifest(platforms={"linux-amd64": entry("2.0.0")}))
    out = no_update_start(sim, tmp_path, keypair[2])
    assert out["statuses"] == ["up-to-date", "up-to-date"]
    assert [r[1] for r in sim.requests] == [MANIFEST, MANIFEST]
    assert sim.requests[1][2].get("If-None-Match"), "the second start must revalidate the kept manifest (304)"
    loaded = set(out["after_check"])
    assert {"gupper.client", "gupper.fetch", "gupper.ed25519", "nacl._sodium"} <= loaded  # the check did run
    # Bench item 13 times what such a start imports: its statement loads every module the start did.
    timed = subprocess.run(
        [sys.executable, "-c", STARTUP + "; import sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert {m for m in loaded if m.startswith(("gupper", "nacl", "requests", "urllib3"))} <= set(timed)
    assert not {m for m in loaded for heavy in ONLY_WHEN_UPDATING if m == heavy or m.startswith(heavy + ".")}
    # Reading the manifest's timestamps: datetime.strptime's first call imports _strptime and builds its tables.
    assert "_strptime" not in loaded


JUST_UPDATED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from gupper import Platform, Updater, UpdaterConfig
    cfg = UpdaterConfig(
        app="app", current_version="2.0.0", manifest_url=sys.argv[1], public_keys=(sys.argv[2],), ca_bundle=sys.argv[3],
        executable=sys.argv[4], state_dir=sys.argv[5], platform=Platform("linux", "amd64"),
        report_outcomes=sys.argv[6] == "report",
    )
    updater = Updater(cfg, argv=["app"])  # the environment names the version the update restarted into
    status = updater.run().status.value
    updater.confirm()
    print(json.dumps({"status": status, "loaded": sorted(sys.modules)}))
    """
)
TRANSPORT = {"requests", "urllib3", "ssl", "http.client", "nacl", "nacl._sodium", "_cffi_backend", "gupper.fetch"}


def test_the_start_an_update_restarted_into_confirms_without_loading_the_transport_or_libsodium(
    sim: Sim, tmp_path: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    """It does not check again (the version that installed it just did) and confirms its trial: a
    local write. Neither needs requests, urllib3, ssl or libsodium: this start does not pay for them."""
    from gupper import Platform, Status, Updater, UpdaterConfig
    from gupper.restart import RESTARTED_ENV
    from gupper.state import StateFile

    from .conftest import fake_app

    new = fake_app("2.0.0")
    sim.routes["/app/2.0.0/app-2.0.0-linux-amd64"] = new
    sim.routes[MANIFEST] = make_manifest(
        platforms={"linux-amd64": entry("2.0.0", size=len(new), sha=hashlib.sha256(new).hexdigest())}
    )
    exe = tmp_path / "install" / "app"
    exe.parent.mkdir()
    exe.write_bytes(b"#!/bin/sh\necho old\n")
    exe.chmod(0o755)
    cfg = UpdaterConfig(
        app="app", current_version="1.0.0", manifest_url=sim.url(MANIFEST), public_keys=(keypair[2],),
        ca_bundle=sim.ca_path, executable=str(exe), state_dir=str(tmp_path / "state"),
        platform=Platform("linux", "amd64"), report_outcomes=False,
    )  # fmt: skip
    assert Updater(cfg, environ={}, argv=["app"]).run(restart=False).status is Status.INSTALLED
    state = StateFile(tmp_path / "state")
    assert state.load().trial is not None
    args = [sim.url(MANIFEST), keypair[2], sim.ca_path, str(exe), str(tmp_path / "state"), "no-report"]
    proc = subprocess.run(
        [sys.executable, "-c", JUST_UPDATED_SCRIPT, *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env={**os.environ, RESTARTED_ENV: "2.0.0"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "just-updated"
    assert state.load().trial is None, "the trial must be confirmed"
    assert len(sim.requests) == 2, "no request after the update: no check, no report"
    assert not TRANSPORT & set(out["loaded"])

"""Crash-safety and bad networks, fast: resumable downloads, pre-flight, trial run and rollback,
one updater at a time. Real TLS sockets (the simulator), real subprocesses for the pre-flight."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from filelock import FileLock

from gupper import Platform, PreflightFailedError, PreflightInterruptedError, Status, Updater, UpdaterConfig
from gupper.state import StateFile
from gupper_publish.signing import build_signed, public_key_of, sign_manifest

from . import httpsim
from .conftest import NOW, fake_app
from .httpsim import Sim

pytestmark = pytest.mark.posix

MANIFEST = "/app/stable/latest.json"
ARTIFACT = "/app/2.0.0/app-2.0.0-linux-amd64"
OLD = fake_app("1.0.0")
NEW = fake_app("2.0.0", pad=200_000)


class RangeServer:
    """Serves one artifact with ETag and Range/If-Range, optionally cutting the first response short."""

    def __init__(self, data: bytes, etag: str = '"v2"', cut_first_at: int | None = None) -> None:
        self.data, self.etag, self.cut_at = data, etag, cut_first_at
        self.log: list[dict[str, Any]] = []

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        rng, if_range = h.headers.get("Range"), h.headers.get("If-Range")
        start = 0
        if rng and (if_range is None or if_range == self.etag):
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            assert m, rng
            start = int(m.group(1))
        body = self.data[start:]
        send = body if self.cut_at is None else body[: self.cut_at]
        self.cut_at = None  # only the first response is cut
        h.send_response(206 if start else 200)
        h.send_header("ETag", self.etag)
        h.send_header("Content-Length", str(len(body)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}")
        h.end_headers()
        h.close_connection = True
        h.wfile.write(send)
        self.log.append({"range": rng, "if_range": if_range, "status": 206 if start else 200, "sent": len(send)})


KEY = Ed25519PrivateKey.generate()


def publish(sim: Sim, artifact: bytes | httpsim.Handler, data: bytes = NEW, version: str = "2.0.0") -> None:
    sim.routes[ARTIFACT] = artifact
    entry = {
        "version": version,
        "type": "binary",
        "url": "../2.0.0/app-2.0.0-linux-amd64",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    signed = build_signed(
        app="app", channel="stable", serial=1, now=NOW, expires_in=timedelta(days=30), platforms={"linux-amd64": entry}
    )
    sim.routes[MANIFEST] = sign_manifest(signed, [KEY])


def updater(sim: Sim, exe: Path, **kw: Any) -> Updater:
    cfg = UpdaterConfig(
        app="app",
        current_version="1.0.0",
        manifest_url=sim.url(MANIFEST),
        public_keys=(public_key_of(KEY).to_text(),),
        ca_bundle=sim.ca_path,
        executable=str(exe),
        platform=Platform("linux", "amd64"),
        state_dir=str(exe.parent.parent / "state"),
        retries=0,
        download_attempts=1,
        read_timeout=2,
        preflight_timeout=10,
    )
    return Updater(replace(cfg, **kw), clock=lambda: NOW, environ={}, argv=["app"], restart_on_rollback=False)


def names(exe: Path) -> list[str]:
    return sorted(p.name for p in exe.parent.iterdir())


# --- Resumable downloads ---------------------------------------------------------------------


def test_interrupted_download_resumes_from_its_offset_on_the_next_run(sim: Sim, exe: Path) -> None:
    server = RangeServer(NEW, cut_first_at=len(NEW) // 2)
    publish(sim, server)
    first = updater(sim, exe).run(restart=False)
    assert first.status is Status.FAILED and "broke mid-transfer" in first.message
    assert exe.read_bytes() == OLD and names(exe) == [".app.gupper-partial", "app"]
    assert (exe.parent / ".app.gupper-partial").stat().st_size == len(NEW) // 2
    second = updater(sim, exe).run(restart=False)
    assert second.status is Status.INSTALLED and exe.read_bytes() == NEW
    assert server.log[1] == {
        "range": f"bytes={len(NEW) // 2}-",
        "if_range": '"v2"',
        "status": 206,
        "sent": len(NEW) - len(NEW) // 2,
    }
    served = sum(r["sent"] for r in server.log)
    print(f"artifact {len(NEW)} bytes, served {served} bytes in {len(server.log)} responses ({served / len(NEW):.3f}x)")
    assert served < 1.2 * len(NEW)
    assert StateFile(exe.parent.parent / "state").load().partial is None


def test_in_run_retry_with_backoff_resumes_the_same_download(sim: Sim, exe: Path) -> None:
    server = RangeServer(NEW, cut_first_at=1000)
    publish(sim, server)
    assert updater(sim, exe, download_attempts=3).run(restart=False).status is Status.INSTALLED
    assert [r["status"] for r in server.log] == [200, 206] and exe.read_bytes() == NEW


def test_a_changed_file_on_the_server_restarts_from_zero_never_splices(sim: Sim, exe: Path) -> None:
    publish(sim, RangeServer(NEW, cut_first_at=5000))
    assert updater(sim, exe).run(restart=False).status is Status.FAILED
    server = RangeServer(NEW, etag='"republished"')  # same bytes, new ETag: If-Range fails → full 200
    sim.routes[ARTIFACT] = server
    assert updater(sim, exe).run(restart=False).status is Status.INSTALLED
    assert server.log[0]["status"] == 200 and server.log[0]["if_range"] == '"v2"' and exe.read_bytes() == NEW


def test_a_partial_for_another_release_is_dropped(sim: Sim, exe: Path) -> None:
    (exe.parent / ".app.gupper-partial").write_bytes(b"stale bytes of something else")
    server = RangeServer(NEW)
    publish(sim, server)
    assert updater(sim, exe).run(restart=False).status is Status.INSTALLED
    assert server.log[0]["range"] is None


# --- Pre-flight ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("binary", "message"),
    [
        (b"#!/bin/sh\nexit 7\n", "failed its self-test (exit code 7); not installed"),
        (fake_app("2.0.0", self_test_version="9.9.9"), "reports version 9.9.9; not installed"),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 100, "cannot be started here"),
    ],
)
def test_a_release_failing_preflight_is_never_swapped_in_and_is_marked_bad(
    sim: Sim, exe: Path, binary: bytes, message: str
) -> None:
    publish(sim, binary, data=binary)
    result = updater(sim, exe, preflight_timeout=1).run(restart=False)
    assert (
        result.status is Status.FAILED and isinstance(result.error, PreflightFailedError) and message in result.message
    )
    assert exe.read_bytes() == OLD and names(exe) == ["app"]
    again = updater(sim, exe).run(restart=False)
    assert again.status is Status.UP_TO_DATE and "marked bad" in again.message
    assert [p for _, p, _ in sim.requests].count(ARTIFACT) == 1  # skipped, not fetched again


def test_a_self_test_that_does_not_answer_in_time_is_retried_then_given_up(sim: Sim, exe: Path) -> None:
    """No answer within the timeout is no verdict by itself (a busy machine, an antivirus scan of a
    fresh file): the release is tried again, and skipped only after three in a row."""
    hung = b"#!/bin/sh\nexec sleep 30\n"
    publish(sim, hung, data=hung)
    for attempt in (1, 2):
        result = updater(sim, exe, preflight_timeout=0.5).run(restart=False)
        assert isinstance(result.error, PreflightInterruptedError), result
        assert "did not answer its self-test within 0.5 s" in result.message and exe.read_bytes() == OLD
        assert StateFile(exe.parent.parent / "state").load().preflight_interrupted == {"2.0.0": attempt}
    third = updater(sim, exe, preflight_timeout=0.5).run(restart=False)
    assert isinstance(third.error, PreflightFailedError) and "skipped on this machine" in third.message
    again = updater(sim, exe).run(restart=False)
    assert again.status is Status.UP_TO_DATE and "marked bad" in again.message


# --- Trial run and automatic rollback --------------------------------------------------------


def test_new_version_that_never_confirms_is_rolled_back_and_marked_bad(sim: Sim, exe: Path) -> None:
    publish(sim, NEW)
    assert updater(sim, exe).run(restart=False).status is Status.INSTALLED

    def as_new() -> Updater:  # the new binary, starting
        return updater(sim, exe, current_version="2.0.0", trial_starts=2)

    assert as_new().run(restart=False).status is Status.UP_TO_DATE  # start 1: crashes later, never confirms
    assert as_new().run(restart=False).status is Status.UP_TO_DATE  # start 2: same
    result = as_new().run(restart=False)  # start 3: too many
    assert result.status is Status.ROLLED_BACK and result.version == "1.0.0"
    assert exe.read_bytes() == OLD and names(exe) == ["app"]
    state = StateFile(exe.parent.parent / "state").load()
    assert state.trial is None and "without Updater.confirm()" in state.bad_versions["2.0.0"]
    back = updater(sim, exe).run(restart=False)
    assert back.status is Status.UP_TO_DATE and "marked bad" in back.message


def test_confirm_ends_the_trial_and_removes_the_backup(sim: Sim, exe: Path) -> None:
    publish(sim, NEW)
    assert updater(sim, exe).run(restart=False).status is Status.INSTALLED
    new = updater(sim, exe, current_version="2.0.0", trial_starts=1)
    new.run(restart=False)
    new.confirm()
    assert names(exe) == ["app"]
    for _ in range(3):
        assert updater(sim, exe, current_version="2.0.0", trial_starts=1).run(restart=False).status is Status.UP_TO_DATE
    assert exe.read_bytes() == NEW


# --- One updater at a time -------------------------------------------------------------------


def test_a_second_instance_does_not_update_while_one_is(sim: Sim, exe: Path) -> None:
    publish(sim, NEW)
    u = updater(sim, exe)
    assert u.layout is not None and u.layout.lock_path == exe.with_name(".app.gupper-lock")  # beside the install
    with FileLock(str(u.layout.lock_path)):
        result = u.run(restart=False)
    assert result.status is Status.BUSY and exe.read_bytes() == OLD and sim.requests == []


def test_an_update_installed_by_another_instance_is_not_downloaded_again(sim: Sim, exe: Path) -> None:
    publish(sim, NEW)
    exe.write_bytes(NEW)  # the other instance swapped it in after we (1.0.0) started
    result = updater(sim, exe).run(restart=False)
    assert result.status is Status.INSTALLED and [p for _, p, _ in sim.requests] == [MANIFEST]


# --- Disk full -------------------------------------------------------------------------------

_RUN_UPDATER = """
import json, logging, resource, sys
from datetime import datetime
from gupper import Platform, Updater, UpdaterConfig
cfg = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (cfg.pop("fsize"), resource.RLIM_INFINITY))  # no file may grow past this
logging.basicConfig(level=logging.WARNING, format="%(message)s")
now = datetime.fromisoformat(cfg.pop("now"))
config = UpdaterConfig(platform=Platform("linux", "amd64"), **cfg)
result = Updater(config, clock=lambda: now, environ={}, argv=["app"]).run(restart=False)
print(result.status.value)
"""


def test_disk_full_is_one_clear_line_and_leaves_nothing(sim: Sim, exe: Path) -> None:
    import json
    import subprocess
    import sys

    publish(sim, NEW)
    cfg = {
        "app": "app",
        "current_version": "1.0.0",
        "manifest_url": sim.url(MANIFEST),
        "public_keys": [public_key_of(KEY).to_text()],
        "ca_bundle": sim.ca_path,
        "executable": str(exe),
        "state_dir": str(exe.parent.parent / "state"),
        "retries": 0,
        "download_attempts": 1,
        "fsize": len(NEW) // 2,
        "now": NOW.isoformat(),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_UPDATER, json.dumps(cfg)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.stdout.strip() == "failed", proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert (
        line.startswith("gupper: update failed, carrying on with 1.0.0: cannot write the update beside")
        and "free some disk space" in line
    )
    assert names(exe) == ["app"] and exe.read_bytes() == OLD


# --- Long-running apps ----------------------------------------------------------------------


def test_check_periodically_installs_in_the_background_and_stops(sim: Sim, exe: Path) -> None:
    import threading

    publish(sim, NEW)
    results: list[Any] = []
    got = threading.Event()

    def on_result(result: Any) -> None:
        results.append(result)
        got.set()

    checker = updater(sim, exe).check_periodically(0.05, on_result)
    try:
        assert got.wait(timeout=30), "no check within 30 s"
    finally:
        checker.stop()
    assert results[0].status is Status.INSTALLED and checker.installed == "2.0.0" and exe.read_bytes() == NEW
    assert not checker._thread.is_alive()
    assert [p for _, p, _ in sim.requests].count(ARTIFACT) == 1  # installed once; it stops checking after that


def test_check_periodically_refuses_nonsense_intervals(sim: Sim, exe: Path) -> None:
    from gupper import ConfigError

    with pytest.raises(ConfigError):
        updater(sim, exe).check_periodically(0, lambda r: None)

"""``Updater.run()`` against hostile and merely broken servers: it never hangs past its bound,
never raises, and is never stuck failing after one bad response (issue 11's reproductions).

Real TLS sockets: a raw server of the tests' own (:mod:`tests.rawhttp`) that controls every byte
and its timing, real subprocesses for pre-flights, real processes killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper import Platform, Status, Updater, UpdaterConfig
from gupper.fetch import Fetcher
from gupper.state import ClientState, ManifestCache, PartialDownload, StateFile
from gupper.transfer import FetchConfig
from gupper_publish.signing import build_signed, public_key_of, sign_manifest

from . import httpsim, rawhttp
from .conftest import NOW, fake_app
from .rawhttp import RawServer, Request, Script, Step, response, trickled

pytestmark = pytest.mark.posix  # the fake installed app is a shell script

MANIFEST = "/app/stable/latest.json"
ARTIFACT = "/app/2.0.0/app-2.0.0-linux-amd64"
OLD = fake_app("1.0.0")
NEW = fake_app("2.0.0", pad=300_000)
KEY = Ed25519PrivateKey.generate()
SLACK = 2.0  # scheduling slack on a loaded 2-core machine; the hangs fixed here were unbounded


def manifest(
    serial: int = 1,
    version: str = "2.0.0",
    data: bytes = NEW,
    url: str = "../2.0.0/app-2.0.0-linux-amd64",
    notes: str | None = None,
    patches: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> bytes:
    entry: dict[str, Any] = {
        "version": version,
        "type": "binary",
        "url": url,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if notes is not None:
        entry["notes"] = notes
    if patches is not None:
        entry["patches"] = patches
    signed = build_signed(
        app="app",
        channel="stable",
        serial=serial,
        now=NOW,
        expires_in=timedelta(days=30),
        platforms={"linux-amd64": entry},
    )
    signed.update(extra)
    return sign_manifest(signed, [KEY])


PATCH = "/app/2.0.0/app-2.0.0-linux-amd64.from-old.bsdiff4"


def patch_from_old(size: int, sha256: str) -> dict[str, Any]:
    """A manifest's bsdiff4 patch from OLD, at :data:`PATCH`."""
    return {
        "format": "bsdiff4",
        "from_sha256": hashlib.sha256(OLD).hexdigest(),
        "url": ".." + PATCH.removeprefix("/app"),
        "size": size,
        "sha256": sha256,
    }


def updater(base: str, ca: str, exe: Path, **kw: Any) -> Updater:
    cfg = UpdaterConfig(
        app="app",
        current_version="1.0.0",
        manifest_url=base + MANIFEST,
        public_keys=(public_key_of(KEY).to_text(),),
        ca_bundle=ca,
        executable=str(exe),
        platform=Platform("linux", "amd64"),
        state_dir=str(exe.parent.parent / "state"),
        retries=0,
        download_attempts=1,
        connect_timeout=2,
        read_timeout=2,
        manifest_timeout=3,
        download_timeout=3,
        preflight_timeout=10,
    )
    return Updater(replace(cfg, **kw), clock=lambda: NOW, environ={}, argv=["app"])


def names(exe: Path) -> list[str]:
    return sorted(p.name for p in exe.parent.iterdir())


def timed_run(u: Updater) -> tuple[Any, float]:
    start = time.monotonic()
    result = u.run(restart=False)
    return result, time.monotonic() - start


def ok_manifest(etag: str = '"m1"', body: bytes | None = None) -> Script:
    return Script.of(response(200, [("ETag", etag)], body if body is not None else manifest()), end="keep")


def ok_artifact(data: bytes = NEW, etag: str | None = '"a1"') -> Script:
    return Script.of(response(200, [("ETag", etag)] if etag else [], data), end="keep")


# --- 1. One deadline per request, whatever the server does ------------------------------------

# A head of 500 bytes sent one byte per 50 ms takes 25 s; the body never comes.
HEAD = response(200, [("ETag", '"m1"'), ("X-Pad", "p" * 450)], b"")


@pytest.mark.parametrize(
    "script",
    [
        Script(trickled(HEAD, 0.05), end="hang"),  # status line and headers one byte at a time
        # fewer interim responses than the bound (tests/test_field_round_two.py), each slower than the last
        Script(tuple(Step(b"HTTP/1.1 103 Early Hints\r\n\r\n", 0.2 * i) for i in range(10)), end="hang"),
        Script(
            (Step(response(200, [("Content-Length", "100000")], b"")), *trickled(b"x" * 400, 0.02)), end="hang"
        ),  # body trickle
    ],
    ids=["head-trickle", "slow-interim-responses", "body-trickle"],
)
def test_a_trickling_manifest_is_cut_off_at_its_deadline(
    raw: RawServer, exe: Path, script: Script, request: pytest.FixtureRequest
) -> None:
    raw.routes[MANIFEST] = script
    result, took = timed_run(updater(raw.base, raw.ca_path, exe, manifest_timeout=1.5))
    print(f"\nmanifest, {request.node.callspec.id}: run() returned after {took:.2f} s (manifest_timeout 1.5 s)")
    assert result.status is Status.FAILED and "deadline" in result.message, result.message
    assert took < 1.5 + SLACK, took
    assert exe.read_bytes() == OLD and names(exe) == ["app"]


def test_a_trickling_artifact_head_is_cut_off_at_its_deadline(raw: RawServer, exe: Path) -> None:
    raw.routes[MANIFEST] = ok_manifest()
    raw.routes[ARTIFACT] = Script(
        trickled(response(200, [("ETag", '"a1"'), ("X-Pad", "p" * 450)], NEW)[:500], 0.05), end="hang"
    )
    result, took = timed_run(updater(raw.base, raw.ca_path, exe, download_timeout=1.5))
    print(f"\nartifact, head trickle: run() returned after {took:.2f} s (download_timeout 1.5 s)")
    assert result.status is Status.FAILED and "deadline" in result.message, result.message
    assert took < 1.5 + SLACK, took


def test_the_worst_case_with_an_update_is_the_documented_sum(raw: RawServer, exe: Path) -> None:
    """manifest_timeout + (1 + download_attempts) x download_timeout + back-off: a patch and every
    attempt at the full file each trickle until their own deadline."""
    patch_url = PATCH
    raw.routes[MANIFEST] = ok_manifest(body=manifest(patches=[patch_from_old(size=1000, sha256="ab" * 32)]))
    slow = Script(trickled(response(200, [("ETag", '"a1"')], NEW)[:300], 0.05), end="hang")
    raw.routes[ARTIFACT] = slow
    raw.routes[patch_url] = slow
    result, took = timed_run(updater(raw.base, raw.ca_path, exe, download_timeout=1.0, download_attempts=2))
    bound = 3 + (1 + 2) * 1.0 + 2.25
    print(f"\nworst case with an update: run() returned after {took:.2f} s (documented bound {bound:.2f} s)")
    assert result.status is Status.FAILED and "deadline" in result.message
    assert raw.paths().count(ARTIFACT) == 2 and raw.paths().count(patch_url) == 1
    assert 3.0 <= took < bound + SLACK, took
    assert exe.read_bytes() == OLD and names(exe) == ["app"]


def test_a_trickled_tls_handshake_is_cut_off_at_the_deadline(tmp_path: Path, exe: Path) -> None:
    with httpsim.serve(tmp_path) as sim, rawhttp.trickle_relay(int(sim.base.rsplit(":", 1)[1]), 0.05) as port:
        sim.routes[MANIFEST] = manifest()
        start = time.monotonic()
        with (
            pytest.raises(Exception, match="deadline") as err,
            Fetcher(FetchConfig(ca_bundle=sim.ca_path, retries=0)) as f,
        ):
            f.get_small(f"https://127.0.0.1:{port}{MANIFEST}", max_bytes=1 << 20, timeout=1.0)
        assert type(err.value).__name__ == "TransferTimeoutError"
        assert time.monotonic() - start < 1.0 + SLACK


def test_one_tls_context_per_ca_bundle_serves_every_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Loading a CA bundle is the dear part of a TLS context (certifi's: about 20 ms): the check, each download and
    # an outcome report each made a new connection, and each loaded the bundle again.
    loaded: list[str] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, cafile: Any = None, *args: Any, **kwargs: Any) -> None:
        loaded.append(str(cafile))
        load(self, cafile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    with httpsim.serve(tmp_path) as sim:
        sim.routes[MANIFEST] = manifest()
        config = FetchConfig(ca_bundle=sim.ca_path, retries=0)
        for _ in range(3):  # a fetcher per step, a connection per fetcher, as the client does
            with Fetcher(config) as f:
                assert f.get_small(sim.url(MANIFEST), max_bytes=1 << 20, timeout=10) is not None
        assert len(sim.requests) == 3 and loaded == [sim.ca_path]
        ca = Path(sim.ca_path)
        ca.write_bytes(ca.read_bytes() + b"\n")  # a changed bundle is loaded again, once
        for _ in range(2):
            with Fetcher(config) as f:
                assert f.get_small(sim.url(MANIFEST), max_bytes=1 << 20, timeout=10) is not None
        assert loaded == [sim.ca_path, sim.ca_path]
        with Fetcher(replace(config, ca_bundle=str(tmp_path / "missing.pem"))) as f, pytest.raises(Exception) as err:
            f.get_small(sim.url(MANIFEST), max_bytes=1 << 20, timeout=10)  # no context cached: one line naming it
        assert type(err.value).__name__ == "ConfigError" and "missing.pem does not exist" in str(err.value)


def test_a_resolver_that_hangs_cannot_hold_the_app(monkeypatch: pytest.MonkeyPatch, exe: Path) -> None:
    release = threading.Event()
    real = socket.getaddrinfo

    def hanging(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "updates.example.test":
            release.wait(30)  # a broken resolver; released at the end of the test
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    cfg = UpdaterConfig(
        app="app",
        current_version="1.0.0",
        manifest_url="https://updates.example.test" + MANIFEST,
        public_keys=(public_key_of(KEY).to_text(),),
        executable=str(exe),
        platform=Platform("linux", "amd64"),
        state_dir=str(exe.parent.parent / "state"),
        manifest_timeout=1.0,
        retries=0,
    )
    try:
        result, took = timed_run(Updater(cfg, clock=lambda: NOW, environ={}, argv=["app"]))
    finally:
        release.set()
    assert result.status is Status.FAILED and "deadline" in result.message
    assert took < 1.0 + SLACK


# --- 2. Nothing escapes run() ------------------------------------------------------------------


def test_304_to_an_unconditional_request_is_a_failure_not_a_crash(raw: RawServer, exe: Path) -> None:
    raw.routes[MANIFEST] = Script.of(response(304, [("ETag", '"m1"')], length=False))
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert (
        result.status is Status.FAILED and "304" in result.message and type(result.error).__name__ == "HTTPStatusError"
    )
    assert [r.headers.get("if-none-match") for r in raw.requests] == [None]


@pytest.mark.parametrize(
    "location",
    [b"https://[::1/x", b"https://127.0.0.1:99999999/x", b"/\xff\xfe/latest.json", b"https://\xc3\x28.example/x"],
)
def test_an_unusable_redirect_is_a_failure_not_a_crash(raw: RawServer, exe: Path, location: bytes) -> None:
    raw.routes[MANIFEST] = Script.of(response(302, [("Location", location)]))
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.FAILED and result.error is not None, result
    assert "\n" not in result.message and exe.read_bytes() == OLD


@pytest.mark.parametrize("url", ["https://[::1/app", "https://127.0.0.1:99999999/app", "https://h\x00st/app"])
def test_a_signed_entry_url_that_does_not_parse_is_refused_as_malformed(raw: RawServer, exe: Path, url: str) -> None:
    raw.routes[MANIFEST] = ok_manifest(body=manifest(url=url))
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.FAILED and type(result.error).__name__ == "MalformedError", result
    assert ARTIFACT not in raw.paths()


def test_a_bug_in_gupper_is_one_line_and_a_failed_result(
    raw: RawServer, exe: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw.routes[MANIFEST] = ok_manifest()

    def broken(step: str) -> None:
        if step == "checked":
            raise ZeroDivisionError("a bug")

    u = updater(raw.base, raw.ca_path, exe)
    u.checkpoint = broken
    with caplog.at_level(logging.INFO, logger="gupper"):
        result = u.run(restart=False)
    assert result.status is Status.FAILED and "internal error (ZeroDivisionError: a bug)" in result.message
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [f"gupper: {result.message}"]
    assert exe.read_bytes() == OLD


def test_an_unsupported_cpu_turns_updates_off_instead_of_crashing(exe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gupper.platforms._machine", lambda: "riscv64")
    pub = public_key_of(KEY).to_text()
    cfg = UpdaterConfig(
        app="app",
        current_version="1.0.0",
        manifest_url="https://example.test" + MANIFEST,
        public_keys=(pub,),
        executable=str(exe),
    )
    result = Updater(cfg, environ={}).run(restart=False)
    assert result.status is Status.DISABLED and "riscv64" in result.message


# --- 3. One bad response costs at most one start -----------------------------------------------


def conditional(current_etag: str, body: bytes) -> Any:
    """An honest store: 304 when the client already has ``current_etag``, else the body."""

    def route(req: Request) -> Script:
        if req.headers.get("if-none-match") == current_etag:
            return Script.of(response(304, [("ETag", current_etag)], length=False), end="keep")
        return Script.of(response(200, [("ETag", current_etag)], body), end="keep")

    return route


def test_a_captive_portal_page_does_not_poison_the_manifest_cache(raw: RawServer, exe: Path) -> None:
    current = manifest(version="1.0.0")  # up to date
    raw.routes[MANIFEST] = conditional('"m1"', current)
    assert updater(raw.base, raw.ca_path, exe).run(restart=False).status is Status.UP_TO_DATE
    raw.routes[MANIFEST] = Script.of(
        response(200, [("ETag", '"portal"')], b"<html>Please log in to the hotel wifi</html>")
    )
    assert updater(raw.base, raw.ca_path, exe).run(restart=False).status is Status.FAILED
    raw.routes[MANIFEST] = conditional('"m1"', current)  # back on the honest network: it answers 304
    again = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert again.status is Status.UP_TO_DATE, again.message
    assert raw.requests[-1].headers.get("if-none-match") == '"m1"'


def test_a_replayed_old_manifest_does_not_poison_the_manifest_cache(raw: RawServer, exe: Path) -> None:
    newer = manifest(serial=2, version="1.0.0")
    raw.routes[MANIFEST] = conditional('"m2"', newer)
    assert updater(raw.base, raw.ca_path, exe).run(restart=False).status is Status.UP_TO_DATE
    raw.routes[MANIFEST] = Script.of(response(200, [("ETag", '"m1"')], manifest(serial=1, version="1.0.0")))
    replayed = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert replayed.status is Status.FAILED and type(replayed.error).__name__ == "RollbackError"
    raw.routes[MANIFEST] = conditional('"m2"', newer)
    assert updater(raw.base, raw.ca_path, exe).run(restart=False).status is Status.UP_TO_DATE


def test_a_cached_copy_that_fails_is_dropped_and_the_next_request_is_unconditional(raw: RawServer, exe: Path) -> None:
    raw.routes[MANIFEST] = conditional('"m1"', manifest(version="1.0.0"))
    assert updater(raw.base, raw.ca_path, exe).run(restart=False).status is Status.UP_TO_DATE
    cache = ManifestCache(exe.parent.parent / "state", "stable")
    assert cache.load(1 << 20) is not None
    later = updater(raw.base, raw.ca_path, exe)
    later.clock = lambda: NOW + timedelta(days=31)  # the publisher stopped re-signing
    expired = later.run(restart=False)
    assert expired.status is Status.FAILED and type(expired.error).__name__ == "ExpiredError"
    assert raw.requests[-1].headers.get("if-none-match") == '"m1"' and cache.load(1 << 20) is None
    raw.routes[MANIFEST] = conditional('"m2"', manifest(serial=2, version="1.0.0"))
    assert updater(raw.base, raw.ca_path, exe).run(restart=False).status is Status.UP_TO_DATE
    assert raw.requests[-1].headers.get("if-none-match") is None


# --- 4 and 5. Nothing beside the executable outlives its run unless it can be resumed ----------


def test_a_partial_without_a_validator_is_not_left_beside_the_executable(raw: RawServer, exe: Path) -> None:
    raw.routes[MANIFEST] = ok_manifest()
    raw.routes[ARTIFACT] = Script.of(
        response(200, [("Content-Length", str(len(NEW)))], NEW[: len(NEW) // 2], length=False), end="reset"
    )
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.FAILED and "mid-transfer" in result.message
    assert names(exe) == ["app"] and exe.read_bytes() == OLD
    assert StateFile(exe.parent.parent / "state").load().partial is None


KILLER = """
import os, signal, sys
from dataclasses import replace
sys.path.insert(0, {root!r})
from tests.test_field_hardening import updater
from pathlib import Path
u = updater({base!r}, {ca!r}, Path({exe!r}), public_keys=({public!r},))
def kill(step):
    if step == {step!r}:
        os.kill(os.getpid(), signal.SIGKILL)
u.checkpoint = kill
u.run(restart=False)
"""


def run_killed_at(step: str, raw: RawServer, exe: Path) -> subprocess.CompletedProcess[str]:
    root = str(Path(__file__).resolve().parent.parent)
    code = KILLER.format(
        root=root, base=raw.base, ca=raw.ca_path, exe=str(exe), step=step, public=public_key_of(KEY).to_text()
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc


BIG = fake_app("2.0.0", pad=3 << 20)  # several of the writer's 1 MiB pieces: a kill at half leaves some on disk


def half_then_rest(req: Request) -> Script:
    """The artifact with ETag and Range/If-Range."""
    rng = req.headers.get("range")
    if rng and req.headers.get("if-range") == '"a1"':
        start = int(rng.removeprefix("bytes=").rstrip("-"))
        head = response(
            206, [("ETag", '"a1"'), ("Content-Range", f"bytes {start}-{len(BIG) - 1}/{len(BIG)}")], BIG[start:]
        )
        return Script.of(head)
    return Script.of(response(200, [("ETag", '"a1"')], BIG))


def test_a_download_killed_mid_way_is_resumed_by_the_next_start(raw: RawServer, exe: Path) -> None:
    raw.routes[MANIFEST] = ok_manifest(body=manifest(data=BIG))
    raw.routes[ARTIFACT] = half_then_rest
    run_killed_at("download-half", raw, exe)  # a real SIGKILL, no handler runs
    partial = exe.parent / ".app.gupper-partial"
    kept = partial.stat().st_size
    assert 0 < kept < len(BIG)
    record = StateFile(exe.parent.parent / "state").load().partial
    assert record is not None and record.etag == '"a1"' and record.path == str(partial)
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert (
        result.status is Status.INSTALLED
        and exe.read_bytes() == BIG
        and [n if n == "app" else n[: len(".app.gupper-previous-")] for n in names(exe)]
        == [".app.gupper-previous-", "app"]
    )
    resumed = [r for r in raw.requests if r.path == ARTIFACT][-1]
    assert resumed.headers.get("range") == f"bytes={kept}-" and resumed.headers.get("if-range") == '"a1"'


def test_a_download_killed_before_its_first_byte_leaves_nothing_unrecorded(raw: RawServer, exe: Path) -> None:
    raw.routes[MANIFEST] = ok_manifest(body=manifest(data=BIG))
    raw.routes[ARTIFACT] = half_then_rest
    run_killed_at("download-started", raw, exe)
    state = StateFile(exe.parent.parent / "state").load()
    partial = exe.parent / ".app.gupper-partial"
    assert state.partial is not None and state.partial.path == str(partial)  # recorded before the first byte
    assert updater(raw.base, raw.ca_path, exe).run(restart=False).status is Status.INSTALLED


@pytest.mark.parametrize("step", ["downloaded", "preflight-passed"])
def test_a_complete_download_killed_before_its_install_is_reused_not_fetched_again(
    raw: RawServer, exe: Path, step: str
) -> None:
    raw.routes[MANIFEST] = ok_manifest(body=manifest(data=BIG))
    raw.routes[ARTIFACT] = half_then_rest
    run_killed_at(step, raw, exe)
    assert (exe.parent / ".app.gupper-partial").stat().st_size == len(BIG)
    gets = raw.paths().count(ARTIFACT)
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.INSTALLED and exe.read_bytes() == BIG
    assert raw.paths().count(ARTIFACT) == gets  # not one more byte of it fetched
    assert StateFile(exe.parent.parent / "state").load().partial is None


def test_a_kept_partial_of_a_release_no_longer_offered_is_removed(raw: RawServer, exe: Path) -> None:
    raw.routes[MANIFEST] = ok_manifest(body=manifest(data=BIG))
    raw.routes[ARTIFACT] = half_then_rest
    run_killed_at("download-half", raw, exe)
    assert ".app.gupper-partial" in names(exe)
    raw.routes[MANIFEST] = ok_manifest(etag='"m2"', body=manifest(serial=2, version="1.0.0"))  # 2.0.0 was pulled
    assert updater(raw.base, raw.ca_path, exe).run(restart=False).status is Status.UP_TO_DATE
    assert names(exe) == ["app"] and StateFile(exe.parent.parent / "state").load().partial is None


def test_leftovers_of_killed_runs_are_cleaned_at_the_next_start(raw: RawServer, exe: Path) -> None:
    state_dir = exe.parent.parent / "state"
    StateFile(state_dir).save(ClientState())
    old = time.time() - 3600
    stale = state_dir / ".state.json.0123456789ab.tmp"  # a kill during a state write
    stale.write_text("{")
    os.utime(stale, (old, old))
    fresh = state_dir / ".state.json.ba9876543210.tmp"  # another instance writing right now
    fresh.write_text("{")
    unrecorded = exe.parent / ".app.gupper-partial"  # no record: a kill before the partial was recorded
    unrecorded.write_bytes(NEW[:1000])
    raw.routes[MANIFEST] = ok_manifest(body=manifest(version="1.0.0"))
    assert updater(raw.base, raw.ca_path, exe).run(restart=False).status is Status.UP_TO_DATE
    assert not stale.exists() and fresh.exists() and names(exe) == ["app"]


def test_a_recorded_partial_that_cannot_be_resumed_is_removed(raw: RawServer, exe: Path) -> None:
    state_dir = exe.parent.parent / "state"
    partial = exe.parent / ".app.gupper-partial"
    partial.write_bytes(NEW)  # complete already: nothing to resume, and not verified
    state = ClientState(
        partial=PartialDownload(raw.url(ARTIFACT), hashlib.sha256(NEW).hexdigest(), len(NEW), '"a1"', str(partial))
    )
    StateFile(state_dir).save(state)
    raw.routes[MANIFEST] = ok_manifest(body=manifest(version="1.0.0"))
    assert updater(raw.base, raw.ca_path, exe).run(restart=False).status is Status.UP_TO_DATE
    assert names(exe) == ["app"]


# --- 6. A self-test killed from outside is retried, a crash is a verdict ------------------------


def self_test_dies_of(sig: str) -> bytes:
    return (
        f'#!/bin/sh\nif [ -n "$GUPPER_SELF_TEST" ]; then mkdir -p "$TMPDIR/_MEIfake"; kill -{sig} $$; fi\n'.encode()
        + b"echo 2.0.0\n"
        + b"#" * 2000
        + b"\n"
    )


def test_a_self_test_killed_by_a_signal_is_retried_then_given_up(raw: RawServer, exe: Path) -> None:
    killed = self_test_dies_of("KILL")
    raw.routes[MANIFEST] = ok_manifest(body=manifest(data=killed))
    raw.routes[ARTIFACT] = ok_artifact(killed)
    state = StateFile(exe.parent.parent / "state")
    for attempt in (1, 2):
        result = updater(raw.base, raw.ca_path, exe).run(restart=False)
        assert result.status is Status.FAILED and "killed by signal 9" in result.message
        assert type(result.error).__name__ == "PreflightInterruptedError" and "2.0.0" not in state.load().bad_versions
        assert state.load().preflight_interrupted == {"2.0.0": attempt}
    third = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert (
        type(third.error).__name__ == "PreflightFailedError"
        and "interrupted 3 times" in state.load().bad_versions["2.0.0"]
    )
    assert exe.read_bytes() == OLD and names(exe) == ["app"]
    scratch = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("gupper-preflight-app*")]
    assert scratch == []  # the self-test's extraction folder (here: $TMPDIR/_MEIfake) is gone


def test_a_self_test_that_crashes_is_a_verdict_at_once(raw: RawServer, exe: Path) -> None:
    crashing = self_test_dies_of("SEGV")
    raw.routes[MANIFEST] = ok_manifest(body=manifest(data=crashing))
    raw.routes[ARTIFACT] = ok_artifact(crashing)
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert (
        type(result.error).__name__ == "PreflightFailedError"
        and "2.0.0" in StateFile(exe.parent.parent / "state").load().bad_versions
    )


# --- 7. Refusals that need no network come before the "updating" line, once ---------------------


def warnings_and_infos(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gupper" and r.levelno >= logging.INFO]


def test_an_unwritable_install_folder_is_refused_in_one_line_before_any_download(
    raw: RawServer, exe: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gupper import InstallError

    def denied(
        target: Path, *args: object
    ) -> None:  # what the writability probe says in Program Files or /usr/local/bin
        raise InstallError(
            f"cannot update {target}: no write permission on {target.parent}; reinstall the app in a folder you own"
        )

    monkeypatch.setattr("gupper.install.check_writable", denied)
    raw.routes[MANIFEST] = ok_manifest()
    with caplog.at_level(logging.INFO, logger="gupper"):
        result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.FAILED and "no write permission" in result.message
    assert warnings_and_infos(caplog) == [f"gupper: update failed, carrying on with 1.0.0: {result.message}"]
    assert raw.paths() == [MANIFEST]


def test_too_little_disk_space_is_refused_in_one_line_before_any_download(
    raw: RawServer, exe: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr("gupper.layouts.base.shutil.disk_usage", lambda p: real(p)._replace(free=1000))
    raw.routes[MANIFEST] = ok_manifest()
    with caplog.at_level(logging.INFO, logger="gupper"):
        result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert "not enough disk space" in result.message and "1000 free" in result.message
    assert len(warnings_and_infos(caplog)) == 1 and raw.paths() == [MANIFEST]


def test_a_version_marked_bad_is_skipped_with_one_line(
    raw: RawServer, exe: Path, caplog: pytest.LogCaptureFixture
) -> None:
    StateFile(exe.parent.parent / "state").save(ClientState(bad_versions={"2.0.0": "failed its self-test"}))
    raw.routes[MANIFEST] = ok_manifest()
    with caplog.at_level(logging.INFO, logger="gupper"):
        result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.UP_TO_DATE
    assert warnings_and_infos(caplog) == [
        "gupper: skipping 2.0.0, marked bad on this machine (failed its self-test); waiting for a newer release"
    ]
    assert raw.paths() == [MANIFEST]

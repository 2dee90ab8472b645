"""What a second pass of hostile servers found (issue 22), through real TLS sockets.

Each test names the item of the issue it reproduces: ``416`` answers (1, 2), ``1xx`` interim
responses other than ``100`` (3), a declared length over the signed size (4), error lines that
said the wrong thing (6), and which URL relative artifact URLs resolve against (8). The servers
are :mod:`tests.rawhttp` (every byte of the response is the test's) and plain sockets.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import bsdiff4
import pytest
import trustme

from gupper import Status
from gupper.errors import HTTPStatusError, TooLargeError, TransferTimeoutError
from gupper.fetch import MAX_INTERIM, Fetcher
from gupper.state import ClientState, PartialDownload, StateFile
from gupper.transfer import FetchConfig, Resume

from . import httpsim, rawhttp
from .rawhttp import RawServer, Request, Script, Step, response
from .test_field_hardening import (
    ARTIFACT,
    MANIFEST,
    NEW,
    OLD,
    PATCH,
    SLACK,
    manifest,
    names,
    ok_artifact,
    ok_manifest,
    patch_from_old,
    timed_run,
    updater,
)

pytestmark = pytest.mark.posix  # the fake installed app is a shell script


def with_patch(patch: bytes) -> bytes:
    """A signed manifest offering NEW with ``patch`` from OLD at :data:`PATCH`."""
    return manifest(patches=[patch_from_old(len(patch), hashlib.sha256(patch).hexdigest())])


UNSATISFIABLE = Script.of(response(416, [("Content-Range", f"bytes */{len(NEW)}")]), end="keep")


def keep_half_a_download(exe: Path) -> Path:
    """A recorded, resumable partial of NEW beside ``exe``, as a download killed half-way leaves it."""
    partial = exe.parent / ".app.gupper-partial"
    partial.write_bytes(NEW[: len(NEW) // 2])
    record = PartialDownload("x", hashlib.sha256(NEW).hexdigest(), len(NEW), '"a1"', str(partial))
    StateFile(exe.parent.parent / "state").save(ClientState(partial=record))
    return partial


# --- Item 1: 416 ------------------------------------------------------------------------------------


def test_416_to_every_download_request_is_an_http_failure_and_leaves_nothing(raw: RawServer, exe: Path) -> None:
    """It returned "cannot set permissions on the update … (No such file or directory)": the loop
    ran out on a 416 and returned as if a verified file were there."""
    raw.routes[MANIFEST] = ok_manifest()
    raw.routes[ARTIFACT] = UNSATISFIABLE
    result = updater(raw.base, raw.ca_path, exe, download_attempts=3).run(restart=False)
    assert result.status is Status.FAILED and isinstance(result.error, HTTPStatusError), result
    assert result.error.status == 416 and "answered HTTP 416" in result.message
    assert raw.paths().count(ARTIFACT) == 1  # a 416 to a request for the whole file is not retried
    assert exe.read_bytes() == OLD and names(exe) == ["app"]


def test_416_to_a_resumed_download_starts_again_from_zero(raw: RawServer, exe: Path) -> None:
    keep_half_a_download(exe)
    raw.routes[MANIFEST] = ok_manifest()

    def route(req: Request) -> Script:  # the file changed: the kept half no longer fits it
        return UNSATISFIABLE if req.headers.get("range") else ok_artifact()

    raw.routes[ARTIFACT] = route
    result = updater(raw.base, raw.ca_path, exe, download_attempts=1).run(restart=False)
    assert result.status is Status.INSTALLED and exe.read_bytes() == NEW, result
    gets = [r.headers.get("range") for r in raw.requests if r.path == ARTIFACT]
    assert gets == [f"bytes={len(NEW) // 2}-", None]


def test_416_to_a_resumed_download_and_to_the_fresh_one_fails_after_both(raw: RawServer, exe: Path) -> None:
    keep_half_a_download(exe)
    raw.routes[MANIFEST] = ok_manifest()
    raw.routes[ARTIFACT] = UNSATISFIABLE
    result = updater(raw.base, raw.ca_path, exe, download_attempts=3).run(restart=False)
    assert result.status is Status.FAILED and isinstance(result.error, HTTPStatusError) and result.error.status == 416
    assert [r.headers.get("range") for r in raw.requests if r.path == ARTIFACT] == [f"bytes={len(NEW) // 2}-", None]
    assert exe.read_bytes() == OLD and names(exe) == ["app"]
    assert StateFile(exe.parent.parent / "state").load().partial is None


# --- Item 2: a patch answered with 416 falls back ------------------------------------------------


@pytest.mark.parametrize("answer", [UNSATISFIABLE, Script.of(response(404), end="keep")], ids=["416", "404"])
def test_a_patch_the_server_will_not_give_falls_back_to_the_full_file(
    raw: RawServer, exe: Path, answer: Script
) -> None:
    """docs/delta.md: any failure of a patch falls back; a 416 said "free some disk space"."""
    raw.routes[MANIFEST] = ok_manifest(body=with_patch(bsdiff4.diff(OLD, NEW)))
    raw.routes[PATCH] = answer
    raw.routes[ARTIFACT] = ok_artifact()
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.INSTALLED and exe.read_bytes() == NEW, result
    assert raw.paths() == [MANIFEST, PATCH, ARTIFACT]


# --- Item 3: 1xx interim responses ------------------------------------------------------------------

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"
INTERIM = {
    "103": EARLY_HINTS,
    "102": PROCESSING,
    "199": b"HTTP/1.1 199 Whatever\r\nX-A: b\r\n\r\n",
    "100-then-103": b"HTTP/1.1 100 Continue\r\n\r\n" + EARLY_HINTS,
    "as-many-as-allowed": (EARLY_HINTS + PROCESSING) * (MAX_INTERIM // 2),
}


@pytest.mark.parametrize("interim", list(INTERIM.values()), ids=list(INTERIM))
def test_interim_responses_before_the_answer_are_skipped(raw: RawServer, exe: Path, interim: bytes) -> None:
    """RFC 9110 §15.2: a client skips 1xx responses it does not expect; behind a CDN sending Early
    Hints every check failed with "answered HTTP 103"."""
    raw.routes[MANIFEST] = Script((Step(interim), *ok_manifest().steps), end="keep")
    raw.routes[ARTIFACT] = Script((Step(interim), *ok_artifact().steps), end="keep")
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.INSTALLED and exe.read_bytes() == NEW, result


def test_101_is_a_final_answer_nothing_asked_for(raw: RawServer, exe: Path) -> None:
    raw.routes[MANIFEST] = Script.of(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + b"x" * 100)
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.FAILED and "answered HTTP 101" in result.message, result
    assert exe.read_bytes() == OLD


@pytest.mark.parametrize(
    "steps",
    [
        tuple(Step(b"HTTP/1.1 100 Continue\r\n\r\n", 0.01) for _ in range(3000)),
        tuple(Step(EARLY_HINTS, 0.01) for _ in range(3000)),
        tuple(Step(b"HTTP/1.1 103 X\r\nLink: " + b"a" * 1000 + b"\r\n\r\n", 0.001) for _ in range(20000)),
        (Step(b"HTTP/1.1 103 X\r\n" + b"X-Pad: a\r\n" * 9000 + b"\r\n"), Step(response(200, [], b"{}"))),
    ],
    ids=["endless-100", "endless-103", "fast-padded-103", "one-huge-103"],
)
def test_interim_responses_past_the_bound_are_refused_without_waiting_for_the_deadline(
    raw: RawServer, exe: Path, steps: tuple[Step, ...]
) -> None:
    raw.routes[MANIFEST] = Script(steps, end="hang")
    result, took = timed_run(updater(raw.base, raw.ca_path, exe, manifest_timeout=20))
    print(f"\n{len(steps)} interim responses: run() returned after {took:.2f} s (manifest_timeout 20 s)")
    assert result.status is Status.FAILED and "interim (1xx) responses" in result.message, result.message
    assert took < 1 + SLACK, took
    assert exe.read_bytes() == OLD and names(exe) == ["app"]


# --- Item 4: a declared length over the signed size -------------------------------------------------


def test_an_artifact_declaring_more_than_the_signed_size_is_refused_before_its_body(raw: RawServer, exe: Path) -> None:
    """It was read until the read timeout after the last signed byte (~45 s with the defaults)."""
    raw.routes[MANIFEST] = ok_manifest()
    raw.routes[ARTIFACT] = Script.of(response(200, [("Content-Length", str(len(NEW) + 1))], NEW), end="hang")
    result, took = timed_run(updater(raw.base, raw.ca_path, exe, read_timeout=10, download_timeout=20))
    print(f"\ndeclared length one over the signed size: run() returned after {took:.2f} s (read_timeout 10 s)")
    assert result.status is Status.FAILED and isinstance(result.error, TooLargeError), result
    assert f"{len(NEW) + 1} bytes, more than the {len(NEW)} bytes the manifest signed" in result.message
    assert took < 10, took
    assert exe.read_bytes() == OLD and names(exe) == ["app"]


def test_a_resumed_range_declaring_more_than_the_rest_is_refused(raw: RawServer, tmp_path: Path) -> None:
    half = len(NEW) // 2
    raw.routes[ARTIFACT] = Script.of(
        response(
            206,
            [("ETag", '"a1"'), ("Content-Range", f"bytes {half}-{len(NEW)}/{len(NEW) + 1}")],
            NEW[half:] + b"!",
        )
    )
    out = tmp_path / "partial"
    out.write_bytes(NEW[:half])
    resume = Resume(half, '"a1"', hashlib.sha256(NEW[:half]))
    with out.open("r+b") as f, Fetcher(FetchConfig(ca_bundle=raw.ca_path, retries=0)) as fetcher:
        f.seek(half)
        with pytest.raises(TooLargeError, match=r"more than the \d+ bytes the manifest signed"):
            fetcher.download(
                raw.url(ARTIFACT), f, size=len(NEW), sha256=hashlib.sha256(NEW).hexdigest(), timeout=5, resume=resume
            )
    assert out.read_bytes() == NEW[:half]  # refused before a byte of it was written


# --- Item 6: error lines that say what happened -------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


CERTS: dict[str, tuple[Callable[[trustme.CA], trustme.LeafCert], str]] = {
    "expired": (
        lambda ca: ca.issue_cert("127.0.0.1", not_before=_now() - timedelta(days=30), not_after=_now() - timedelta(1)),
        "the server's certificate has expired (or this computer's clock is wrong)",
    ),
    "not-yet-valid": (
        lambda ca: ca.issue_cert("127.0.0.1", not_before=_now() + timedelta(1), not_after=_now() + timedelta(30)),
        "the server's certificate is not valid yet; check this computer's clock",
    ),
    "wrong-host": (
        lambda ca: ca.issue_cert("updates.example.com"),
        "the server's certificate is not valid for 127.0.0.1; check the host name in the URL",
    ),
    "untrusted": (
        lambda ca: trustme.CA().issue_cert("127.0.0.1"),
        "the certificate is not trusted (unable to get local issuer certificate); set the app's CA bundle",
    ),
}


@pytest.mark.parametrize("kind", list(CERTS))
def test_a_certificate_failure_says_which_check_failed(tmp_path: Path, exe: Path, kind: str) -> None:
    """Each of these said "the certificate is not trusted; set the app's CA bundle"."""
    ca = trustme.CA()
    issue, says = CERTS[kind]
    with rawhttp.serve(tmp_path, ca, issue(ca)) as raw:
        raw.routes[MANIFEST] = ok_manifest()
        result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.FAILED and says in result.message, result.message
    assert result.message.startswith(f"TLS verification failed for {raw.base}{MANIFEST}: ")
    assert raw.requests == []  # the handshake failed: no request was sent


@contextlib.contextmanager
def silent_listener(send: bytes = b"") -> Iterator[int]:
    """A TCP port that accepts connections, sends ``send`` (nothing by default) and then nothing more (until the
    test ends)."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn = listener.accept()[0]
                held.append(conn)
                conn.sendall(send)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in held:
            conn.close()


def fetch_error(url: str, ca: str | None = None, **config: Any) -> tuple[BaseException, float]:
    """What a manifest GET of ``url`` raises, and after how long."""
    start = time.monotonic()
    with pytest.raises(Exception) as err, Fetcher(FetchConfig(ca_bundle=ca, retries=0, **config)) as fetcher:
        fetcher.get_small(url, max_bytes=1 << 20, timeout=10)
    return err.value, time.monotonic() - start


def test_a_server_that_accepts_and_never_answers_is_no_answer_within_the_timeout() -> None:
    """It was "ConnectionError"."""
    with silent_listener() as port:
        error, took = fetch_error(f"https://127.0.0.1:{port}{MANIFEST}", connect_timeout=0.5, read_timeout=3)
    assert isinstance(error, TransferTimeoutError), error
    assert str(error) == (
        f"no answer from 127.0.0.1:{port} within 0.5 s (the TLS handshake did not finish); check the network or "
        "try later"
    )
    assert took < 0.5 + SLACK


def test_a_server_that_takes_the_request_and_never_answers_is_no_answer_within_the_read_timeout(
    raw: RawServer,
) -> None:
    raw.routes[MANIFEST] = Script((), end="hang")
    error, took = fetch_error(raw.url(MANIFEST), raw.ca_path, connect_timeout=3, read_timeout=0.5)
    assert isinstance(error, TransferTimeoutError), error
    assert str(error) == (
        f"no answer from {raw.url(MANIFEST)} within 0.5 s (the request was sent); check the server or try later"
    )
    assert took < 0.5 + SLACK


def test_plain_http_on_the_https_port_says_so() -> None:
    with silent_listener(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n") as port:
        error, _took = fetch_error(f"https://127.0.0.1:{port}{MANIFEST}", connect_timeout=3, read_timeout=3)
    assert str(error) == (
        f"the TLS handshake with 127.0.0.1 failed (WRONG_VERSION_NUMBER) for https://127.0.0.1:{port}{MANIFEST}; "
        "check that the URL's port serves https"
    )


def test_a_trickled_tls_handshake_is_a_timeout(tmp_path: Path) -> None:
    """Every byte of the handshake comes within the read timeout, the whole never within the connect
    timeout; it was a ConnectionError."""
    with httpsim.serve(tmp_path) as sim, rawhttp.trickle_relay(int(sim.base.rsplit(":", 1)[1]), 0.05) as port:
        error, took = fetch_error(f"https://127.0.0.1:{port}{MANIFEST}", sim.ca_path, connect_timeout=0.5)
    assert isinstance(error, TransferTimeoutError), error
    assert "within 0.5 s (the TLS handshake did not finish)" in str(error)
    assert took < 0.5 + SLACK


def test_a_connection_never_accepted_is_a_connect_timeout() -> None:
    """A listener whose backlog is full drops the SYN: connect() waits for its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    try:
        for _ in range(8):  # more than a backlog of 0 holds
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            queued.append(s)
        error, took = fetch_error(f"https://127.0.0.1:{port}{MANIFEST}", connect_timeout=0.5, read_timeout=3)
    finally:
        for s in queued:
            s.close()
        listener.close()
    assert isinstance(error, TransferTimeoutError), error
    assert str(error) == f"could not connect to 127.0.0.1:{port} within 0.5 s; check the network or try later"
    assert took < 0.5 + SLACK


def test_a_redirect_to_a_huge_url_is_shortened_in_the_one_log_line(
    raw: RawServer, exe: Path, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "/" + "a" * 60_000
    raw.routes[MANIFEST] = Script.of(response(302, [("Location", huge)]))
    with caplog.at_level(logging.INFO, logger="gupper"):
        result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.FAILED and "answered HTTP 404" in result.message, result.message[:300]
    assert f"... ({len(raw.base) + len(huge)} characters)" in result.message
    lines = [r.getMessage() for r in caplog.records if r.name == "gupper" and r.levelno >= logging.WARNING]
    assert len(lines) == 1 and len(lines[0]) < 400, lines


# --- Item 8: relative URLs resolve against the configured manifest URL ----------------------------------


@pytest.mark.parametrize("fetched", [ARTIFACT, PATCH], ids=["artifact", "patch"])
def test_relative_urls_resolve_against_the_configured_manifest_url_not_a_redirect_target(
    raw: RawServer, exe: Path, fetched: str
) -> None:
    """docs/manifest.md: the same signed manifest means the same files whether it came fresh, as a
    cached copy confirmed by a 304, or through a redirect."""
    patch = bsdiff4.diff(OLD, NEW)
    moved = "/mirror/v9" + MANIFEST
    raw.routes[MANIFEST] = Script.of(response(302, [("Location", moved)]), end="keep")
    raw.routes[moved] = ok_manifest(body=with_patch(patch) if fetched == PATCH else manifest())
    # Served beside the configured URL only; beside the redirect's target everything is a 404.
    raw.routes[PATCH] = Script.of(response(200, [("ETag", '"p1"')], patch), end="keep")
    raw.routes[ARTIFACT] = ok_artifact()
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.INSTALLED and exe.read_bytes() == NEW, result
    assert raw.paths() == [MANIFEST, moved, fetched]

"""A raw-response fuzzer for the client: hypothesis writes whole HTTP responses byte by byte
(status lines, 1xx responses, duplicate, huge, non-ASCII and conflicting headers, chunking,
encodings, redirects, truncated or extended bodies, resets, hangs and trickles), served over real
TLS by :mod:`tests.rawhttp`, for the manifest and for the artifact.

The property, for every response: ``Updater.run()`` returns a :class:`Result` (never raises)
within the documented bound plus slack, its peak memory stays bounded, the installed executable
is byte-identical unless the update was installed whole and verified, and nothing is left beside
it but a partial download the next start can resume. For the well-formed answers the outcome is
known as well: installed when the answer is good behind any number of ``1xx`` interim responses
up to the bound (100, 102, 103, 199), refused when an artifact declares more bytes than signed,
an HTTP error on a ``416``.

The quick run (120 examples, derandomised, ~15 s) is part of the quick tier; the ``soak`` run
(random, ``GUPPER_SOAK_EXAMPLES``, default 600) runs in CI and by hand with ``-m soak``.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gupper import Result, Status
from gupper.errors import HTTPStatusError, TooLargeError
from gupper.fetch import MAX_INTERIM
from gupper.state import StateFile

from . import rawhttp
from .rawhttp import RawServer, Script, Step
from .test_field_hardening import ARTIFACT, MANIFEST, NEW, OLD, manifest, updater

pytestmark = pytest.mark.posix

TIMEOUT = 0.8  # manifest_timeout = download_timeout in the fuzzed config
BOUND = 2 * TIMEOUT  # one manifest request, one artifact request (download_attempts=1, retries=0)
SLACK = 2.5
PEAK = 48 << 20  # bytes of Python allocations: headers are bounded by http.client, bodies by us
QUICK_EXAMPLES = 120
SOAK_EXAMPLES = int(os.environ.get("GUPPER_SOAK_EXAMPLES", "600"))  # CI runs 600 (a few minutes); longer by hand
GOOD_MANIFEST = manifest()

_CODES = [100, 101, 102, 103, 199, 200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 404, 416, 429, 500, 503]

status_lines = st.one_of(
    st.just(b"HTTP/1.1 200 OK"),  # weighted: a share of the cases must get far enough to install
    st.just(b"HTTP/1.1 200 OK"),
    st.sampled_from(_CODES).map(lambda c: f"HTTP/1.1 {c} Reason".encode()),
    st.sampled_from(
        [
            b"HTTP/1.0 200 OK",
            b"HTTP/2 200",
            b"ICY 200 OK",
            b"HTTP/1.1 2000 X",
            b"HTTP/1.1 -1 X",
            b"",
            b"HTTP/1.1 200 \xff\xfe",
            b"garbage",
        ]
    ),
    st.binary(max_size=40).filter(lambda b: b"\r\n" not in b),
)

header_values = st.one_of(
    st.sampled_from([b"0", b"1", b"-5", b"abc", b"99999999999999", b"", b"\xff\xfe", b"\xc3\x28", b"a" * 70_000]),
    st.binary(max_size=64).filter(lambda b: b"\r" not in b and b"\n" not in b),
)

locations = st.sampled_from(
    [
        b"/app/stable/latest.json",  # a loop onto itself
        b"/elsewhere",
        b"https://127.0.0.1:1/x",  # nothing listens there
        b"http://127.0.0.1/x",  # not https
        b"https://[::1/x",
        b"\xff\xfe",
        b"",
        b"//evil.example/x",
        b"ftp://127.0.0.1/x",
    ]
)


def headers_for(body: bytes) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    n = str(len(body)).encode()
    one = st.one_of(
        st.sampled_from(
            [
                (b"Content-Length", n),
                (b"Content-Length", str(max(0, len(body) - 1)).encode()),
                (b"Content-Length", str(len(body) + 1000).encode()),
                (b"Content-Length", b"5, 6"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Transfer-Encoding", b"gzip, chunked"),
                (b"Content-Encoding", b"gzip"),
                (b"ETag", b'"v1"'),
                (b"ETag", b'W/"weak"'),
                (b"ETag", b'"\xff\xfe"'),
                (b"Content-Range", b"bytes 0-10/20"),
                (b"Connection", b"close"),
                (b" X-Folded", b"obs-fold"),
                (b"NoColon", b""),
            ]
        ),
        st.tuples(st.just(b"Content-Length"), header_values),
        st.tuples(st.just(b"Location"), locations),
        st.tuples(st.just(b"ETag"), header_values),
        st.tuples(
            st.binary(min_size=1, max_size=20).filter(lambda b: b":" not in b and b"\r" not in b and b"\n" not in b),
            header_values,
        ),
    )
    return st.one_of(st.lists(one, max_size=6), st.just([(b"X-Many-%d" % i, b"x") for i in range(150)]))


INTERIM = [
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 102 Processing\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload; as=style\r\nLink: </app.js>; rel=preload\r\n\r\n",
    b"HTTP/1.1 199 Misc\r\nX-Info: 1\r\n\r\n",
]
interim = st.sampled_from(INTERIM)
"""A 1xx response a client must skip (RFC 9110 §15.2)."""


def chunked(body: bytes, broken: bool) -> bytes:
    out = bytearray()
    for i in range(0, len(body), 1000):
        part = body[i : i + 1000]
        out += (b"zz" if broken and i == 0 else f"{len(part):x}".encode()) + b"\r\n" + part + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


@st.composite
def well_formed(draw: Any, kind: str, good: bytes) -> Script:
    """A good answer (``kind`` ``good``), one declaring more bytes than ``good`` has, or a 416, behind 0 to
    MAX_INTERIM interim responses."""
    if kind == "416":
        data = rawhttp.response(416, [("Content-Range", f"bytes */{len(good)}")])
    else:
        over = draw(st.sampled_from([1, 1000, 1 << 31])) if kind == "over-declared" else 0
        head = rawhttp.response(200, [("ETag", '"g1"'), ("X-Extra", "1"), ("Content-Length", str(len(good) + over))])
        data = head + good
    before = draw(st.lists(interim, max_size=MAX_INTERIM))
    event(f"well-formed, {kind}: {'behind interim responses' if before else 'no interim responses'}")
    data = b"".join(before) + data
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
    bounds = [0, *cuts, len(data)]
    end = draw(st.sampled_from(["close", "keep"] if kind == "good" else ["hang", "close", "keep"]))
    return Script(tuple(Step(data[a:b], 0.01) for a, b in itertools.pairwise(bounds)), end=end)


@st.composite
def responses(draw: Any, good: bytes) -> Script:
    """One response, as bytes and timing."""
    body = draw(
        st.sampled_from(
            [
                "good",
                "good",
                "good",
                "truncated",
                "extended",
                "empty",
                "random",
                "gzip",
                "chunked",
                "broken-chunks",
                "large",
            ]
        ).map(
            lambda k: {
                "good": good,
                "truncated": good[: len(good) // 2],
                "extended": good + b"tail",
                "empty": b"",
                "random": hashlib.sha256(good).digest() * 8,
                "gzip": gzip.compress(good, mtime=0),
                "chunked": chunked(good, False),
                "broken-chunks": chunked(good, True),
                "large": b"L" * (3 << 20),
            }[k]
        )
    )
    head = bytearray(draw(status_lines) + b"\r\n")
    for name, value in draw(headers_for(body)):
        head += name + b": " + value + b"\r\n"
    if draw(st.booleans()):
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    prefix = b"".join(draw(st.lists(st.one_of(interim, st.just(b"HTTP/1.1 101 Switching\r\n\r\n")), max_size=25)))
    data = prefix + bytes(head) + b"\r\n" + body
    delivery = draw(st.sampled_from(["whole", "whole", "split", "trickle-head", "endless-1xx"]))
    if delivery == "whole":
        steps: tuple[Step, ...] = (Step(data),)
    elif delivery == "split":
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
        bounds = [0, *cuts, len(data)]
        steps = tuple(Step(data[a:b], 0.02) for a, b in itertools.pairwise(bounds))
    elif delivery == "trickle-head":
        steps = (*rawhttp.trickled(data[:60], 0.02), Step(data[60:]))
    else:
        steps = tuple(Step(draw(interim), 0.005) for _ in range(2000))
    return Script(steps, end=draw(st.sampled_from(["close", "reset", "hang", "keep"])))


@st.composite
def cases(draw: Any) -> tuple[str, Script, str | None]:
    """Where the response goes, the response, and the outcome it must have (None: any, within the property).

    A fair share are well-formed answers with a known outcome, so installs are exercised too: installed
    when good, refused (TooLargeError) when an artifact declares more than its signed size, an HTTP
    error on a 416. The kinds a client once got wrong come first: hypothesis draws early choices more.
    """
    if draw(st.integers(0, 2)) == 0:
        kind = draw(st.sampled_from(["over-declared", "416", "good", "good", "good"]))
        target = "artifact" if kind == "over-declared" else draw(st.sampled_from(["manifest", "artifact"]))
        expect = {"good": "installed", "over-declared": "too-large", "416": "http-416"}[kind]
        return target, draw(well_formed(kind, GOOD_MANIFEST if target == "manifest" else NEW)), expect
    target = draw(st.sampled_from(["manifest", "artifact"]))
    return target, draw(responses(GOOD_MANIFEST if target == "manifest" else NEW)), None


class Lab:
    """One raw server for the whole run, and a fresh install and state per example."""

    def __init__(self, base: Path, server: RawServer) -> None:
        self.base, self.server, self.n = base, server, 0

    def check(self, target: str, script: Script, expect: str | None = None) -> None:
        self.n += 1
        root = self.base / f"case-{self.n}"
        (root / "install").mkdir(parents=True)
        exe = root / "install" / "app"
        exe.write_bytes(OLD)
        exe.chmod(0o755)
        good_manifest = Script.of(rawhttp.response(200, [("ETag", '"m1"')], GOOD_MANIFEST), end="keep")
        good_artifact = Script.of(rawhttp.response(200, [("ETag", '"a1"')], NEW), end="keep")
        self.server.routes.clear()
        self.server.routes.update(
            {
                MANIFEST: script if target == "manifest" else good_manifest,
                ARTIFACT: script if target == "artifact" else good_artifact,
            }
        )
        self.server.routes["/elsewhere"] = script
        u = updater(
            self.server.base,
            self.server.ca_path,
            exe,
            manifest_timeout=TIMEOUT,
            download_timeout=TIMEOUT,
            connect_timeout=0.5,
            read_timeout=0.5,
        )
        tracemalloc.start()
        start = time.monotonic()
        try:
            result = u.run(restart=False)
        finally:
            took = time.monotonic() - start
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert isinstance(result, Result)
        event(f"{target}: {result.status.value} {type(result.error).__name__ if result.error else ''}".strip())
        if expect is not None:
            event(f"expected: {expect}")
            assert (result.status is Status.INSTALLED) == (expect == "installed"), (expect, result)
            if expect == "too-large":
                assert isinstance(result.error, TooLargeError), result
            if expect == "http-416":
                assert isinstance(result.error, HTTPStatusError) and result.error.status == 416, result
        event(f"took {'over' if took > TIMEOUT else 'under'} one deadline")
        assert took < BOUND + SLACK, (took, result)
        assert peak < PEAK, peak
        assert "\n" not in result.message
        installed = result.status is Status.INSTALLED
        assert exe.read_bytes() == (NEW if installed else OLD), result
        left = {p.name for p in exe.parent.iterdir()} - {"app"}
        if installed:
            left -= {n for n in left if n.startswith(".app.gupper-previous-")}
        kept = StateFile(root / "state").load().partial
        if kept is not None and kept.etag and kept.path == str(exe.parent / ".app.gupper-partial"):
            left.discard(".app.gupper-partial")  # resumable, and recorded as such
        assert not left, (left, result)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("fuzz")
    with rawhttp.serve(base) as server:
        yield Lab(base, server)


@settings(
    max_examples=QUICK_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)
@given(case=cases())
def test_fuzzed_responses_never_hang_raise_leak_or_touch_the_app(
    lab: Lab, case: tuple[str, Script, str | None]
) -> None:
    lab.check(*case)


@pytest.mark.soak
@settings(max_examples=SOAK_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(case=cases())
def test_fuzzed_responses_soak(lab: Lab, case: tuple[str, Script, str | None]) -> None:
    lab.check(*case)

"""The CA bundle's root that verified a host, remembered between processes (gupper.anchors).

Pure tests of the memo and the bundle's blocks, then real TLS handshakes against the tests' raw
server on 127.0.0.1 with a bundle of certifi's roots plus the test CAs, as a user's app has: the
first connection remembers the root, the next ones load only it, a store that moved to another
root of the bundle is still reached (and the new root remembered), and nothing the memo says can
make the client trust a certificate the bundle does not hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
import trustme

from gupper import anchors, fetch
from gupper.errors import DownloadError
from gupper.fetch import Fetcher
from gupper.transfer import FetchConfig
from tests import httpsim, rawhttp
from tests.rawhttp import Script, response

BODY = b'{"ok": true}'


def _der(ca: trustme.CA) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())


@pytest.fixture(autouse=True)
def fresh_process_caches() -> Iterator[None]:
    """Each test starts as a new process would: no context or bundle kept from another test."""
    for cache in (fetch._TLS_CONTEXTS, fetch._BUNDLES, fetch._NARROWED):
        cache.clear()
    yield
    for cache in (fetch._TLS_CONTEXTS, fetch._BUNDLES, fetch._NARROWED):
        cache.clear()


@pytest.fixture
def full_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The whole bundles loaded into a context (each costs ~20 ms for certifi's): recorded, then loaded."""
    loaded: list[str] = []
    real = fetch._load_context

    def load(ca_file: str) -> object:
        loaded.append(ca_file)
        return real(ca_file)

    monkeypatch.setattr(fetch, "_load_context", load)
    return loaded


def bundle_of(path: Path, *cas: trustme.CA) -> Path:
    """certifi's bundle with ``cas`` appended: a private CA added to the public roots."""
    path.write_bytes(Path(certifi.where()).read_bytes() + b"".join(ca.cert_pem.bytes() for ca in cas))
    return path


def new_process_get(url: str, bundle: Path, memo: Path) -> bytes:
    """GET ``url`` as a new process's first request would (per-process caches emptied first)."""
    for cache in (fetch._TLS_CONTEXTS, fetch._BUNDLES, fetch._NARROWED):
        cache.clear()
    with Fetcher(FetchConfig(ca_bundle=str(bundle), anchor_memo=str(memo))) as f:
        got = f.get_small(url, max_bytes=1000, timeout=20)
    assert got is not None
    return got.body


def first_start(tmp_path: Path, srv: rawhttp.RawServer, *cas: trustme.CA) -> tuple[Path, Path]:
    """A first start that trusts certifi's bundle plus ``cas``: it checks and remembers; the bundle and the memo."""
    bundle, memo = bundle_of(tmp_path / "bundle.pem", *cas), tmp_path / "memo.json"
    assert new_process_get(srv.url("/latest.json"), bundle, memo) == BODY
    return bundle, memo


def move_store(srv: rawhttp.RawServer, ca: trustme.CA) -> None:
    """The store's next connections show a certificate from ``ca``."""
    assert srv.context is not None
    ca.issue_cert("127.0.0.1").configure_cert(srv.context)


def remembered(memo: Path, bundle: Path, host: str) -> bytes | None:
    data = bundle.read_bytes()
    return anchors.recall(memo, data, anchors.digest(data), host)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[rawhttp.RawServer, trustme.CA, str]]:
    ca = trustme.CA()
    with rawhttp.serve(tmp_path, ca) as srv:
        srv.routes["/latest.json"] = Script.of(response(200, [("Content-Type", "application/json")], BODY))
        yield srv, ca, srv.base.removeprefix("https://")


# --- pure -----------------------------------------------------------------------------------


def test_a_certificate_is_found_as_one_block_of_the_bundle_and_only_whole_blocks_are_read_back() -> None:
    one, two = trustme.CA(), trustme.CA()
    bundle = b"# comment\n" + one.cert_pem.bytes() + b"\n# another\n" + two.cert_pem.bytes()
    span = anchors.find(bundle, _der(two))
    assert span is not None
    assert anchors.certificate_at(bundle, span) == two.cert_pem.bytes().strip()
    assert anchors.find(bundle, _der(trustme.CA())) is None
    first = anchors.find(bundle, _der(one))
    assert first is not None
    assert anchors.certificate_at(bundle, (first[0], span[1])) is None  # two blocks
    assert anchors.certificate_at(bundle, (span[0] + 1, span[1])) is None  # not a block's start
    assert anchors.certificate_at(bundle, (span[0], span[1] - 1)) is None
    assert anchors.certificate_at(bundle, (span[0], len(bundle) + 10)) is None
    assert anchors.certificate_at(bundle, (-5, span[1])) is None


@pytest.mark.parametrize(
    "memo",
    [
        b"",
        b"not json",
        b"[]",
        b'{"bundle": "other", "hosts": {"h:443": [[0, 10]]}}',
        b'{"bundle": "D", "hosts": {"elsewhere:443": [[0, 10]]}}',
        b'{"bundle": "D", "hosts": {"h:443": [["0", 10]]}}',
        b'{"bundle": "D", "hosts": {"h:443": [[0.0, 10]]}}',
        b'{"bundle": "D", "hosts": {"h:443": [[0, 10, 20]]}}',
        b'{"bundle": "D", "hosts": {"h:443": [0, 10]}}',
        b'{"bundle": "D", "hosts": {"h:443": []}}',
        json.dumps({"bundle": "D", "hosts": {"h:443": [[0, 10]] * (anchors.MAX_CHAIN + 1)}}).encode(),
        b'{"bundle": "D", "hosts": []}',
    ],
)
def test_a_memo_for_another_bundle_or_host_or_not_written_by_gupper_is_not_used(memo: bytes) -> None:
    assert anchors.parse(memo, "D", "h:443") is None


def test_a_memo_keeps_other_hosts_of_the_same_bundle_at_most_max_hosts_and_drops_another_bundles() -> None:
    memo = anchors.updated(None, "D", "a:443", [(1, 2)])
    memo = anchors.updated(memo, "D", "b:443", [(3, 4), (5, 6)])
    assert anchors.parse(memo, "D", "a:443") == ((1, 2),)
    assert anchors.parse(memo, "D", "b:443") == ((3, 4), (5, 6))
    for i in range(anchors.MAX_HOSTS + 5):
        memo = anchors.updated(memo, "D", f"h{i}:443", [(i, i + 1)])
    assert len(json.loads(memo)["hosts"]) == anchors.MAX_HOSTS
    last = f"h{anchors.MAX_HOSTS + 4}:443"
    assert anchors.parse(memo, "D", last) == ((anchors.MAX_HOSTS + 4, anchors.MAX_HOSTS + 5),)
    memo = anchors.updated(memo, "E", "a:443", [(7, 8)])
    assert json.loads(memo)["hosts"] == {"a:443": [[7, 8]]}
    assert anchors.parse(memo, "D", last) is None


# --- real TLS -------------------------------------------------------------------------------


def test_the_first_connection_remembers_the_root_and_the_next_process_loads_only_it(
    tmp_path: Path, server: tuple[rawhttp.RawServer, trustme.CA, str], full_loads: list[str]
) -> None:
    srv, ca, host = server
    bundle, memo = bundle_of(tmp_path / "bundle.pem", trustme.CA(), ca, trustme.CA()), tmp_path / "state" / "memo.json"
    assert new_process_get(srv.url("/latest.json"), bundle, memo) == BODY
    assert full_loads == [str(bundle)]
    assert remembered(memo, bundle, host) == ca.cert_pem.bytes().strip()
    for _ in range(2):
        assert new_process_get(srv.url("/latest.json"), bundle, memo) == BODY
    assert full_loads == [str(bundle)]  # the later starts loaded one certificate, not the bundle


def test_a_store_that_moved_to_another_root_of_the_bundle_is_reached_and_its_new_root_remembered(
    tmp_path: Path, server: tuple[rawhttp.RawServer, trustme.CA, str], full_loads: list[str]
) -> None:
    srv, ca, host = server
    other = trustme.CA()
    bundle, memo = first_start(tmp_path, srv, ca, other)
    move_store(srv, other)  # the store's new certificate, from the other root
    assert new_process_get(srv.url("/latest.json"), bundle, memo) == BODY
    assert remembered(memo, bundle, host) == other.cert_pem.bytes().strip()
    assert len(full_loads) == 2  # the remembered root refused it; the whole bundle decided
    assert new_process_get(srv.url("/latest.json"), bundle, memo) == BODY
    assert len(full_loads) == 2


def test_a_root_the_bundle_does_not_hold_is_refused_as_before_and_the_memo_kept(
    tmp_path: Path, server: tuple[rawhttp.RawServer, trustme.CA, str]
) -> None:
    srv, ca, _host = server
    bundle, memo = first_start(tmp_path, srv, ca)
    kept = memo.read_bytes()
    move_store(srv, trustme.CA())
    with pytest.raises(DownloadError, match="not trusted"):
        new_process_get(srv.url("/latest.json"), bundle, memo)
    assert memo.read_bytes() == kept


def test_a_root_dropped_from_the_bundle_is_not_trusted_even_though_the_memo_named_it(
    tmp_path: Path, server: tuple[rawhttp.RawServer, trustme.CA, str]
) -> None:
    srv, ca, _host = server
    bundle, memo = first_start(tmp_path, srv, ca)
    bundle_of(bundle, trustme.CA())  # a certifi update that dropped the root: same file, other bytes
    with pytest.raises(DownloadError, match="not trusted"):
        new_process_get(srv.url("/latest.json"), bundle, memo)


def tamper(kind: str, memo: Path, data: bytes, host: str) -> None:
    digest = anchors.digest(data)
    writes = {
        "untouched": None,
        "no-host": {"bundle": digest, "hosts": {}},
        "other-bundle": {"bundle": "0" * 64, "hosts": {host: [[0, len(data)]]}},
        "not-a-block": {"bundle": digest, "hosts": {host: [[0, len(data)]]}},  # every certificate of the bundle
        "torn": b"{",
        "huge": b" " * (anchors.MAX_MEMO_BYTES + 1),
    }
    what = writes[kind]
    if isinstance(what, bytes):
        memo.write_bytes(what)
    elif what is not None:
        memo.write_text(json.dumps(what))


@pytest.mark.parametrize("kind", ["untouched", "no-host", "other-bundle", "not-a-block", "torn", "huge"])
def test_a_memo_that_says_nothing_usable_leaves_the_whole_bundle_to_decide(
    tmp_path: Path, server: tuple[rawhttp.RawServer, trustme.CA, str], full_loads: list[str], kind: str
) -> None:
    srv, ca, host = server
    bundle, memo = first_start(tmp_path, srv, ca)
    tamper(kind, memo, bundle.read_bytes(), host)
    assert new_process_get(srv.url("/latest.json"), bundle, memo) == BODY
    assert len(full_loads) == (1 if kind == "untouched" else 2)
    assert remembered(memo, bundle, host) == ca.cert_pem.bytes().strip()  # remembered again


def test_a_memo_that_cannot_be_written_costs_nothing_but_the_shortcut(
    tmp_path: Path, server: tuple[rawhttp.RawServer, trustme.CA, str], full_loads: list[str]
) -> None:
    srv, ca, _host = server
    (tmp_path / "file").write_text("not a folder")
    bundle, memo = bundle_of(tmp_path / "bundle.pem", ca), tmp_path / "file" / "memo.json"
    for _ in range(2):
        assert new_process_get(srv.url("/latest.json"), bundle, memo) == BODY
    assert len(full_loads) == 2


def test_an_intermediate_the_server_leaves_out_is_remembered_with_the_root(
    tmp_path: Path, full_loads: list[str]
) -> None:
    """A server that sends only its leaf: the whole bundle supplies the intermediate; remembering
    only the root would fail every later start and load the whole bundle again."""
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("127.0.0.1")
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_chain_pems[0].bytes())  # the leaf alone, no intermediate
    (tmp_path / "leaf.key").write_bytes(leaf.private_key_pem.bytes())
    with rawhttp.serve(tmp_path, root) as srv:
        srv.routes["/latest.json"] = Script.of(response(200, body=BODY))
        assert srv.context is not None
        srv.context.load_cert_chain(str(tmp_path / "leaf.pem"), str(tmp_path / "leaf.key"))
        bundle = bundle_of(tmp_path / "bundle.pem", root, intermediate)
        memo = tmp_path / "memo.json"
        for _ in range(3):
            assert new_process_get(srv.url("/latest.json"), bundle, memo) == BODY
        host = srv.base.removeprefix("https://")
        kept = remembered(memo, bundle, host)
        assert kept is not None
        assert intermediate.cert_pem.bytes().strip() in kept and root.cert_pem.bytes().strip() in kept
        assert full_loads == [str(bundle)]


def test_through_a_connect_proxy_the_origins_root_is_remembered_and_a_moved_store_still_reached(
    tmp_path: Path,
    server: tuple[rawhttp.RawServer, trustme.CA, str],
    full_loads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv, ca, host = server
    other = trustme.CA()
    bundle, memo = bundle_of(tmp_path / "bundle.pem", ca, other), tmp_path / "memo.json"
    with httpsim.connect_proxy() as (proxy, seen):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        for name in ("NO_PROXY", "no_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        for _ in range(2):
            assert new_process_get(srv.url("/latest.json"), bundle, memo) == BODY
        assert seen == [host, host]  # both through the tunnel
        assert full_loads == [str(bundle)]  # the second loaded only the origin's root
        assert remembered(memo, bundle, host) == ca.cert_pem.bytes().strip()
        move_store(srv, other)
        assert new_process_get(srv.url("/latest.json"), bundle, memo) == BODY
        assert seen == [host] * 4  # the refused handshake, then a new tunnel for the whole bundle
    assert remembered(memo, bundle, host) == other.cert_pem.bytes().strip()


def test_through_an_https_proxy_nothing_is_remembered_or_narrowed() -> None:
    """TLS inside TLS: the wrapped socket cannot say what verified the origin, so such a connection
    always loads the whole bundle (README, "Dependencies the client ships")."""
    from urllib3.util.url import parse_url

    direct = fetch._HTTPSConnection("store.example", 8443)
    assert direct._origin() == "store.example:8443"
    tunnelled = fetch._HTTPSConnection("proxy.example", 3128, proxy=parse_url("http://proxy.example:3128"))
    tunnelled.set_tunnel("store.example", 443, scheme="http")
    assert tunnelled._origin() == "store.example:443"
    tls_in_tls = fetch._HTTPSConnection("proxy.example", 3129, proxy=parse_url("https://proxy.example:3129"))
    tls_in_tls.set_tunnel("store.example", 443, scheme="https")
    assert tls_in_tls._origin() is None

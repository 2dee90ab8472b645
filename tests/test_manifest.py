"""Pure core: canonical bytes, signing and verification of manifests."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gupper.errors import BadSignatureError, ConfigError, ExpiredError, MalformedError, ManifestError, WrongTargetError
from gupper.keys import PublicKey, TrustedKeys
from gupper.manifest import canonical_bytes, verify_manifest
from gupper_publish.signing import public_key_of, sign_manifest

from .conftest import NOW, MakeManifest, entry


def verify(data: bytes, trusted: TrustedKeys, **kw: object) -> object:
    args: dict[str, object] = {"app": "app", "channel": "stable", "now": NOW}
    args.update(kw)
    return verify_manifest(data, trusted, **args)  # type: ignore[arg-type]


def test_canonical_bytes_are_sorted_compact_and_utf8() -> None:
    assert canonical_bytes({"b": 1, "a": ["é", True, None]}) == '{"a":["é",true,null],"b":1}'.encode()


@pytest.mark.parametrize("bad", [1.5, {"x": 1e3}, [2**60], {1: "a"}])
def test_canonical_bytes_refuse_values_without_a_canonical_form(bad: object) -> None:
    with pytest.raises(MalformedError):
        canonical_bytes(bad)


def test_roundtrip_verifies_and_exposes_fields(make_manifest: MakeManifest, trusted: TrustedKeys) -> None:
    m = verify_manifest(make_manifest(serial=7), trusted, app="app", channel="stable", now=NOW)
    assert m.serial == 7 and m.app == "app" and m.channel == "stable"
    e = m.entry_for("linux-amd64")
    assert e is not None and str(e.version) == "2.0.0" and e.size == 10
    assert m.entry_for("windows-amd64") is None


def test_file_formatting_does_not_matter_only_signed_content(make_manifest: MakeManifest, trusted: TrustedKeys) -> None:
    doc = json.loads(make_manifest())
    compact = json.dumps(doc, separators=(",", ":")).encode()
    assert verify_manifest(compact, trusted, app="app", channel="stable", now=NOW).serial == 1


def test_tampered_payload_is_refused(make_manifest: MakeManifest, trusted: TrustedKeys) -> None:
    doc = json.loads(make_manifest())
    doc["signed"]["platforms"]["linux-amd64"]["sha256"] = "cd" * 32
    with pytest.raises(BadSignatureError, match="0 valid signature"):
        verify_manifest(json.dumps(doc).encode(), trusted, app="app", channel="stable", now=NOW)


def test_signature_from_another_key_is_refused(make_manifest: MakeManifest, trusted: TrustedKeys) -> None:
    data = make_manifest(keys=[Ed25519PrivateKey.generate()])
    with pytest.raises(BadSignatureError, match="not signed with this app's key"):
        verify_manifest(data, trusted, app="app", channel="stable", now=NOW)


def test_missing_signatures_are_refused(make_manifest: MakeManifest, trusted: TrustedKeys) -> None:
    doc = json.loads(make_manifest())
    doc["signatures"] = []
    with pytest.raises(BadSignatureError):
        verify_manifest(json.dumps(doc).encode(), trusted, app="app", channel="stable", now=NOW)


def test_duplicate_signatures_count_once_towards_threshold(
    make_manifest: MakeManifest, keypair: tuple[object, Ed25519PrivateKey, str]
) -> None:
    other = Ed25519PrivateKey.generate()
    two_of_two = TrustedKeys((PublicKey.parse(keypair[2]), public_key_of(other)), threshold=2)
    doc = json.loads(make_manifest())
    doc["signatures"] = doc["signatures"] * 3
    with pytest.raises(BadSignatureError, match="1 valid signature"):
        verify_manifest(json.dumps(doc).encode(), two_of_two, app="app", channel="stable", now=NOW)
    both = make_manifest(keys=[keypair[1], other])
    assert verify_manifest(both, two_of_two, app="app", channel="stable", now=NOW).serial == 1


def test_expired_manifest_is_refused_with_a_hint(make_manifest: MakeManifest, trusted: TrustedKeys) -> None:
    data = make_manifest(now=NOW - timedelta(days=31), expires_in=timedelta(days=30))
    with pytest.raises(ExpiredError, match="re-sign"):
        verify_manifest(data, trusted, app="app", channel="stable", now=NOW)


@pytest.mark.parametrize(("app", "channel"), [("other", "stable"), ("app", "beta")])
def test_manifest_for_another_app_or_channel_is_refused(
    make_manifest: MakeManifest, trusted: TrustedKeys, app: str, channel: str
) -> None:
    with pytest.raises(WrongTargetError, match="check the manifest URL"):
        verify_manifest(make_manifest(app=app, channel=channel), trusted, app="app", channel="stable", now=NOW)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("version", "not a version", "not PEP 440"),
        ("sha256", "XYZ", "64 lowercase hex"),
        ("size", 0, "out of range"),
        ("size", "10", "wrong type"),
        ("url", "", "unusable url"),
        ("url", "//evil.example/x", "unusable url"),
    ],
)
def test_bad_entries_are_malformed(
    make_manifest: MakeManifest, trusted: TrustedKeys, field: str, value: object, message: str
) -> None:
    e = entry()
    e[field] = value
    with pytest.raises(MalformedError, match=message):
        verify_manifest(make_manifest(platforms={"linux-amd64": e}), trusted, app="app", channel="stable", now=NOW)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"signed": {}}',
        b'{"signed": [], "signatures": []}',
        b'{"signed":{"serial":1.5},"signatures":[]}',
        b"\xff\xfe",
    ],
)
def test_garbage_is_malformed(data: bytes, trusted: TrustedKeys) -> None:
    with pytest.raises(MalformedError):
        verify_manifest(data, trusted, app="app", channel="stable", now=NOW)


def test_unsupported_schema_is_refused_after_signature_check(make_manifest: MakeManifest, trusted: TrustedKeys) -> None:
    with pytest.raises(MalformedError, match="schema 2 is not supported"):
        verify_manifest(make_manifest(schema=2), trusted, app="app", channel="stable", now=NOW)


def test_public_key_parsing_errors_are_config_errors() -> None:
    for text in ["rsa:abc", "ed25519:!!!", "ed25519:AAAA"]:
        with pytest.raises(ConfigError):
            PublicKey.parse(text)


def test_trusted_keys_refuse_duplicates_and_bad_thresholds(keypair: tuple[object, Ed25519PrivateKey, str]) -> None:
    with pytest.raises(ConfigError, match="twice"):
        TrustedKeys.from_texts([keypair[2], keypair[2]])
    with pytest.raises(ConfigError, match="threshold"):
        TrustedKeys.from_texts([keypair[2]], threshold=2)


_FUZZ_KEY = Ed25519PrivateKey.generate()
_FUZZ_TRUSTED = TrustedKeys((public_key_of(_FUZZ_KEY),))
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
)
_near_valid = st.fixed_dictionaries(
    {
        "_type": st.just("gupper-manifest") | st.text(max_size=4),
        "schema": st.just(1) | st.integers(),
        "app": st.just("app") | st.text(max_size=4),
        "channel": st.just("stable"),
        "serial": st.integers(),
        "created": st.just("2026-11-01T00:00:00Z") | st.text(max_size=4),
        "expires": st.just("2027-01-01T00:00:00Z") | st.text(max_size=4),
        "platforms": st.dictionaries(
            st.text(max_size=12),
            st.dictionaries(st.sampled_from(["version", "type", "url", "size", "sha256"]), _json_values),
        ),
    },
)


def _signed_doc(signed: object) -> bytes:
    try:
        return sign_manifest(signed, [_FUZZ_KEY])  # type: ignore[arg-type]
    except ManifestError:  # no canonical form: the publisher refuses it too; feed it unsigned
        return json.dumps({"signed": signed, "signatures": []}).encode()


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048) | (_json_values | _near_valid).map(_signed_doc))
def test_any_bytes_give_a_manifest_or_a_manifest_error(data: bytes) -> None:
    # Anything but a ManifestError escaping from here fails the test.
    with contextlib.suppress(ManifestError):
        verify_manifest(data, _FUZZ_TRUSTED, app="app", channel="stable", now=NOW)

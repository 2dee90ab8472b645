"""The order in which a fetched manifest is accepted (gupper.trust.accept_manifest, pure): verify
with the keys trusted now, then freshness, then a key rotation; and what the caller is told to
adopt and save."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper.errors import BadSignatureError, ExpiredError, RollbackError
from gupper.keys import TrustedKeys
from gupper.trust import Acceptance, ChannelRecord, accept_manifest, digest_of
from gupper_publish.signing import build_signed, public_key_of, sign_manifest

from .conftest import NOW, MakeManifest, entry

Key = tuple[Path, Ed25519PrivateKey, str]


FIRST = ChannelRecord()  # a fresh install has seen nothing


def accept(data: bytes, trusted: TrustedKeys, seen: ChannelRecord = FIRST) -> Acceptance:
    return accept_manifest(data, trusted, seen, app="app", channel="stable", now=NOW)


def test_a_newer_manifest_is_saved_and_the_same_one_again_changes_nothing(
    make_manifest: MakeManifest, trusted: TrustedKeys
) -> None:
    first = accept(make_manifest(serial=3), trusted, ChannelRecord(2, "x"))
    assert first.adopt is None and first.record == ChannelRecord(3, digest_of(first.manifest))
    again = accept(make_manifest(serial=3), trusted, first.record)
    assert again.adopt is None and again.record is None  # nothing new to write to the state file


def test_verification_comes_before_freshness(make_manifest: MakeManifest, trusted: TrustedKeys) -> None:
    """An expired replay of an old manifest is refused as expired: nothing in an unverified or
    stale manifest is compared with state."""
    old = make_manifest(serial=1, now=NOW - timedelta(days=40))
    with pytest.raises(ExpiredError):
        accept(old, trusted, ChannelRecord(5, "x"))
    with pytest.raises(RollbackError, match="older than serial 5"):
        accept(make_manifest(serial=1), trusted, ChannelRecord(5, "x"))


def rotation(signers: list[Ed25519PrivateKey], new: Ed25519PrivateKey) -> bytes:
    announced = {"keys": [public_key_of(new).to_text()], "threshold": 1}
    signed = build_signed(
        app="app",
        channel="stable",
        serial=2,
        now=NOW,
        expires_in=timedelta(days=30),
        platforms={"linux-amd64": entry()},
        keys=announced,
    )
    return sign_manifest(signed, signers)


def test_a_rotation_is_adopted_only_when_the_new_keys_sign_it(keypair: Key, trusted: TrustedKeys) -> None:
    new = Ed25519PrivateKey.generate()
    with pytest.raises(BadSignatureError, match="sign the rotation with both"):
        accept(rotation([keypair[1]], new), trusted)
    data = rotation([keypair[1], new], new)
    both = accept(data, trusted)
    assert both.adopt is not None and [k.keyid for k in both.adopt.keys] == [public_key_of(new).keyid]
    seen = ChannelRecord(2, digest_of(both.manifest))
    assert accept(data, trusted, seen).record == seen  # a rotation is saved even at a serial already seen

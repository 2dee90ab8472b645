"""The wire model (gupper.wire): documents written by the previous publisher still verify and
re-serialise byte for byte, unknown fields survive a round trip and are ignored by the client, and
every typed field is checked once, when the manifest is parsed.

tests/data/previous-format/ was written by gupper-publish as of commit c7dae61 (before the model):
a channel with a one-file release carrying bsdiff4 patches, a one-folder release with its file
list and patch index, a 10% rollout with fallbacks, release notes, a yank and a rotated key set.
Only public keys are in it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from gupper.errors import MalformedError
from gupper.keys import TrustedKeys
from gupper.manifest import canonical_bytes, load_envelope, verify_manifest
from gupper.policy import choose_update
from gupper.wire import canonical
from gupper.wire.files import FileList, PatchIndex, list_from_wire
from gupper.wire.manifest import FILES_PATCH_FORMAT, PATCH_FORMAT, Entry, Manifest
from gupper_publish import channels as ch

from .conftest import NOW, MakeManifest, entry

PREVIOUS = Path(__file__).parent / "data" / "previous-format"


def previous_manifest() -> Manifest:
    trusted = TrustedKeys.from_texts([(PREVIOUS / "trusted.pub").read_text()])
    return verify_manifest((PREVIOUS / "latest.json").read_bytes(), trusted, app="app", channel="stable", now=NOW)


def test_a_manifest_of_the_previous_publisher_verifies_and_reserialises_byte_for_byte() -> None:
    manifest = previous_manifest()
    signed, _signatures = load_envelope((PREVIOUS / "latest.json").read_bytes())
    assert manifest.to_json() == signed
    assert canonical_bytes(manifest.to_json()) == manifest.signed_bytes  # what the signatures cover
    one_file, folder = manifest.entries["linux-amd64"], manifest.entries["darwin-arm64"]
    assert (one_file.version, one_file.rollout and one_file.rollout.percent, one_file.notes) == (
        Version("2.0.0"),
        10,
        "Faster start.\nNew icon.",
    )
    assert one_file.fallback is not None and one_file.fallback.version == Version("1.0.0")
    assert [(p.format, p.from_version) for p in one_file.patches] == [(PATCH_FORMAT, "1.1.0"), (PATCH_FORMAT, "1.0.0")]
    assert folder.type == "archive" and folder.format == "tar.gz" and folder.files_url and folder.blobs_url
    assert [(p.format, p.from_version) for p in folder.patches] == [(FILES_PATCH_FORMAT, "1.0.0")]
    assert manifest.yanked == (Version("1.1.0"),)
    assert manifest.keys is not None and len(manifest.keys.keys) == 2 and manifest.keys.threshold == 1


def test_the_previous_channel_state_derives_the_very_same_manifest() -> None:
    """The publisher, now building through the model, signs what the previous one signed for the same state."""
    state = ch.state_from_json((PREVIOUS / "channel.json").read_bytes(), app="app", channel="stable", where="previous")
    manifest = previous_manifest()
    assert ch.derive(state, "app/stable/latest.json") == ch.payload_of(manifest)
    wanted = ch.derived(state, "app/stable/latest.json")
    rebuilt = Manifest(
        "app",
        "stable",
        state.serial,
        manifest.created,
        manifest.expires,
        wanted.entries,
        key_set=wanted.keys,
        yanked=wanted.yanked,
    )
    assert canonical_bytes(rebuilt.to_json()) == manifest.signed_bytes


def test_the_previous_file_list_and_patch_index_reserialise_byte_for_byte() -> None:
    folder = previous_manifest().entries["darwin-arm64"]
    listed = list_from_wire((PREVIOUS / "files.json.gz").read_bytes())
    assert hashlib.sha256(listed).hexdigest() == folder.files_sha256
    assert FileList.from_bytes(listed).to_bytes() == listed
    (patch,) = folder.patches
    index = (PREVIOUS / "index.files.json").read_bytes()
    assert hashlib.sha256(index).hexdigest() == patch.sha256
    parsed = PatchIndex.from_bytes(index)
    assert parsed.to_bytes() == index and sorted(parsed.patches) == ["app"]


def test_unknown_fields_are_kept_on_a_round_trip_and_ignored_by_the_client(
    make_manifest: MakeManifest, trusted: TrustedKeys
) -> None:
    future_patch = {"format": "zstd-2", "url": "../2.0.0/x.zst", "size": 5, "sha256": "cd" * 32, "window": 27}
    known_patch = {
        "format": "bsdiff4",
        "from_sha256": "ef" * 32,
        "url": "../2.0.0/x.bsdiff4",
        "size": 4,
        "sha256": "ab" * 32,
        "level": 9,
    }
    e: dict[str, Any] = {
        **entry("2.0.0"),
        "signature_url": "../2.0.0/x.sig",
        "patches": [future_patch, known_patch],
        "rollout": {"percent": 100, "id": "2.0.0", "salt_v2": "x"},
    }
    data = make_manifest(
        platforms={"linux-amd64": e, "plan9-amd64": {"anything": ["goes", 1]} | entry("9.0.0")},
        mirrors=["https://m.example/"],
    )
    manifest = verify_manifest(data, trusted, app="app", channel="stable", now=NOW)
    assert manifest.to_json() == load_envelope(data)[0]
    assert manifest.unknown == {"mirrors": ["https://m.example/"]}
    got = manifest.entries["linux-amd64"]
    assert (
        got.unknown == {"signature_url": "../2.0.0/x.sig"}
        and got.rollout is not None
        and got.rollout.unknown == {"salt_v2": "x"}
    )
    assert got.patches_of(PATCH_FORMAT)[0].unknown == {"level": 9} and got.patches_of("zstd-2")[0].from_sha256 is None
    decision = choose_update(manifest, "linux-amd64", Version("1.0.0"), install_id="i")
    assert decision.entry is got and "update available" in decision.reason


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"notes": 5}, "field 'notes' has the wrong type"),
        ({"rollout": {"percent": 150, "id": "2.0.0"}}, "rollout percent 150, outside 0..100"),
        ({"rollout": "10%"}, "malformed 'rollout'"),
        ({"fallback": {**entry("1.0.0"), "sha256": "XYZ"}}, "fallback has a sha256 that is not 64 lowercase hex"),
        ({"patches": "none"}, "field 'patches' has the wrong type"),
        ({"patches": [{"format": "bsdiff4", "url": "../x", "size": 3}]}, "patch 0 lacks field 'sha256'"),
        (
            {"patches": [{"format": "bsdiff4", "url": "//evil.example/x", "size": 3, "sha256": "ab" * 32}]},
            "unusable url",
        ),
        ({"files_sha256": "not hex"}, "files_sha256 that is not 64 lowercase hex"),
        ({"files_url": "ftp://host/list"}, "neither relative nor http"),
    ],
)
def test_a_bad_optional_field_is_malformed_when_the_manifest_is_parsed(
    make_manifest: MakeManifest, trusted: TrustedKeys, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(MalformedError, match=message):
        verify_manifest(
            make_manifest(platforms={"linux-amd64": {**entry(), **extra}}),
            trusted,
            app="app",
            channel="stable",
            now=NOW,
        )


def test_null_optional_fields_read_as_absent(make_manifest: MakeManifest, trusted: TrustedKeys) -> None:
    data = make_manifest(
        platforms={"linux-amd64": {**entry(), "notes": None, "rollout": None, "fallback": None, "patches": None}}
    )
    got = verify_manifest(data, trusted, app="app", channel="stable", now=NOW).entries["linux-amd64"]
    assert (got.notes, got.rollout, got.fallback, got.patches) == (None, None, None, ())


def test_the_publisher_builds_entries_that_parse_back_to_themselves() -> None:
    state = ch.state_from_json((PREVIOUS / "channel.json").read_bytes(), app="app", channel="stable", where="previous")
    for platform, built in ch.derived(state, "app/stable/latest.json").entries.items():
        assert Entry.from_json(platform, json.loads(json.dumps(built.to_json()))) == built
    signed = Manifest("app", "stable", 1, NOW, NOW + timedelta(days=1), {}).to_json()
    assert Manifest.from_json(signed).to_json() == signed


def test_timestamps_are_read_as_format_time_writes_them() -> None:
    when = datetime(2026, 2, 28, 23, 59, 7, tzinfo=UTC)
    assert canonical.parse_time(canonical.format_time(when), "expires") == when
    assert canonical.parse_time("2028-02-29T00:00:00Z", "created") == datetime(2028, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30T00:00:00Z",  # no such day
        "2026-13-01T00:00:00Z",
        "2026-01-31T24:00:00Z",
        "2026-01-31T12:00:60Z",
        "2026-1-31T12:00:00Z",  # format_time pads every field
        "2026-01-31 12:00:00Z",
        "2026-01-31T12:00:00",
        "2026-01-31T12:00:00+00:00",
        "2026-01-31T12:00:00Zjunk",
        "\u0662\u0660\u0662\u0666-01-31T12:00:00Z",  # digits, but not ASCII ones
        "",
        20260131,
        None,
    ],
)
def test_anything_else_is_a_malformed_timestamp_naming_the_field(text: object) -> None:
    with pytest.raises(MalformedError, match=r"'expires'.*2026-01-31T12:00:00Z"):
        canonical.parse_time(text, "expires")

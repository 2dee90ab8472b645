"""Pure core: artifact names, store keys, relative URLs and version selection."""

from __future__ import annotations

import pytest
from packaging.version import Version

from gupper.errors import IntegrityError
from gupper.platforms import Platform, current_platform, parse_platform_key
from gupper.wire.canonical import is_sha256, valid_app_name
from gupper.wire.files import FilePatch
from gupper_publish.artifacts import parse_artifact_name
from gupper_publish.channels import ArtifactRecord, ChannelState, add_release, check_channel_name, derive
from gupper_publish.errors import BadArtifactNameError, PublishError
from gupper_publish.layout import manifest_key, relative_url
from gupper_publish.policy import validate_bucket_name
from gupper_publish.release import releases_in
from gupper_publish.stores import ObjectInfo


@pytest.mark.parametrize(
    ("filename", "app", "version", "plat", "canonical"),
    [
        ("app-1.2.0-linux-amd64", "app", "1.2.0", "linux-amd64", "app-1.2.0-linux-amd64"),
        ("app-1.2.0-windows-amd64.exe", "app", "1.2.0", "windows-amd64", "app-1.2.0-windows-amd64.exe"),
        ("my-tool-2.0rc1-macos-aarch64", "my-tool", "2.0rc1", "darwin-arm64", "my-tool-2.0rc1-darwin-arm64"),
        ("app-1.0-linux-x86_64", "app", "1.0", "linux-amd64", "app-1.0-linux-amd64"),
    ],
)
def test_artifact_names_parse_and_canonicalise(
    filename: str, app: str, version: str, plat: str, canonical: str
) -> None:
    name = parse_artifact_name(filename)
    assert (name.app, str(name.version), name.platform.key, name.filename) == (app, version, plat, canonical)
    assert name.key == f"{app}/{version}/{canonical}"


@pytest.mark.parametrize(
    "filename",
    [
        "app",
        "app-1.2.0-linux",
        "app-banana-linux-amd64",
        "app-1.2.0-plan9-amd64",
        "app-1.2.0-linux-mips",
        "app-1.2.0-linux-amd64.exe",
        "app-1.2.0-windows-amd64",
        "../app-1.2.0-linux-amd64",
        "..-1.0-linux-amd64",
        "-1.0-linux-amd64",
    ],
)
def test_bad_names_are_refused_with_the_pattern(filename: str) -> None:
    with pytest.raises(BadArtifactNameError, match=r"<app>-<version>-<os>-<arch>"):
        parse_artifact_name(filename)


@pytest.mark.parametrize("end", ["\n", "\r\n", "\n\n"])
def test_a_trailing_newline_never_passes_for_a_name_or_a_digest(end: str) -> None:
    """Issue 22 item 7: ``$`` also matches before a final newline; the rules match the whole text."""

    assert valid_app_name("beta") and not valid_app_name("beta" + end)
    assert is_sha256("ab" * 32) and not is_sha256("ab" * 32 + end)
    with pytest.raises(PublishError, match="invalid channel"):
        check_channel_name("beta" + end)
    with pytest.raises(BadArtifactNameError):
        parse_artifact_name(f"app{end}-1.2.0-linux-amd64")
    patch = {"from_sha256": "ab" * 32, "file": f"{'ab' * 32}-{'cd' * 32}.bsdiff4", "size": 10, "sha256": "ef" * 32}
    assert FilePatch.from_json("bin/app", patch).file == patch["file"]
    with pytest.raises(IntegrityError, match="unusable name"):
        FilePatch.from_json("bin/app", {**patch, "file": patch["file"] + end})
    assert validate_bucket_name("my-bucket") == "my-bucket"
    with pytest.raises(ValueError, match="bucket"):
        validate_bucket_name("my-bucket" + end)


def test_relative_url_points_from_manifest_to_artifact() -> None:
    assert (
        relative_url(manifest_key("app", "stable"), "app/1.2.0/app-1.2.0-linux-amd64")
        == "../1.2.0/app-1.2.0-linux-amd64"
    )
    assert (
        relative_url("app/stable/latest.json", "app/1.0+local/app-1.0+local-linux-amd64")
        == "../1.0%2Blocal/app-1.0%2Blocal-linux-amd64"
    )


def _objs(*keys: str) -> list[ObjectInfo]:
    return [ObjectInfo(k, 100) for k in keys]


def test_selection_takes_the_highest_version_per_platform_by_pep440_not_by_string() -> None:
    rels = releases_in(
        _objs(
            "app/1.9.0/app-1.9.0-linux-amd64",
            "app/1.10.0/app-1.10.0-linux-amd64",
            "app/2.0.0rc1/app-2.0.0rc1-linux-amd64",
            "app/1.0.0/app-1.0.0-windows-amd64.exe",
            "app/stable/latest.json",
            "other/9.0/other-9.0-linux-amd64",
            "app/3.0/app-1.0-linux-amd64",  # misplaced: not at its canonical key
        ),
        "app",
    )
    assert sorted(r.key for r in rels) == [
        "app/1.0.0/app-1.0.0-windows-amd64.exe",
        "app/1.10.0/app-1.10.0-linux-amd64",
        "app/1.9.0/app-1.9.0-linux-amd64",
        "app/2.0.0rc1/app-2.0.0rc1-linux-amd64",
    ]

    def channel(name: str) -> dict[str, str]:
        state = ChannelState("app", name)
        for r in rels:
            if r.name.version.is_prerelease and name == "stable":
                continue  # refused for stable at publish time (tests/test_release_channels.py)
            record = ArtifactRecord(r.name.filename, r.size, "ab" * 32)
            state = add_release(state, r.name.version, {r.name.platform.key: record}, rollout=None, added="")
        return {p: e["version"] for p, e in derive(state, manifest_key("app", name))["platforms"].items()}

    assert channel("stable") == {"linux-amd64": "1.10.0", "windows-amd64": "1.0.0"}
    assert channel("beta")["linux-amd64"] == str(Version("2.0.0rc1"))


def test_current_platform_normalises_and_refuses_unknown() -> None:
    assert current_platform("darwin", "arm64") == Platform("darwin", "arm64")
    assert current_platform("win32", "AMD64") == Platform("windows", "amd64")
    assert current_platform("linux", "aarch64").key == "linux-arm64"
    with pytest.raises(ValueError, match="unsupported platform"):
        current_platform("sunos5", "sparc")
    assert parse_platform_key("macos-x86_64") == Platform("darwin", "amd64")
    assert parse_platform_key("linux") is None

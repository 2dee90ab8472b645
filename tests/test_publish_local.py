"""Publisher against the local-folder store, library and CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper.keys import TrustedKeys
from gupper.manifest import verify_manifest
from gupper_publish import ImmutableConflictError, LocalStore, PublishOptions, publish
from gupper_publish.cli import main
from gupper_publish.errors import BadArtifactNameError, SigningKeyError
from gupper_publish.signing import load_signing_key

from .conftest import NOW
from .exe_stubs import stub_for

KeyPair = tuple[Path, Ed25519PrivateKey, str]


def artifact(dir_: Path, name: str, content: bytes | None = None) -> Path:
    path = dir_ / name
    path.write_bytes(stub_for(name, content if content is not None else f"binary of {name}\n".encode() * 50))
    return path


def read_manifest(root: Path, trusted: TrustedKeys, app: str = "app") -> object:
    return verify_manifest(
        (root / app / "stable" / "latest.json").read_bytes(), trusted, app=app, channel="stable", now=NOW
    )


def test_publish_uploads_to_immutable_keys_and_writes_a_verifiable_manifest(
    tmp_path: Path, keypair: KeyPair, trusted: TrustedKeys
) -> None:
    dist, root = tmp_path / "dist", tmp_path / "store"
    dist.mkdir()
    files = [
        artifact(dist, "app-1.0.0-linux-amd64"),
        artifact(dist, "app-1.1.0-linux-amd64"),
        artifact(dist, "app-1.0.0-windows-x86_64.exe"),
    ]
    report = publish(LocalStore(root), files, PublishOptions(keys=[keypair[1]], clock=lambda: NOW))
    assert [a.status for a in report.artifacts] == ["uploaded"] * 3
    assert (root / "app/1.0.0/app-1.0.0-windows-amd64.exe").read_bytes() == files[2].read_bytes()
    m = read_manifest(root, trusted)
    assert {k: (str(e.version), e.url) for k, e in m.entries.items()} == {  # type: ignore[attr-defined]
        "linux-amd64": ("1.1.0", "../1.1.0/app-1.1.0-linux-amd64"),
        "windows-amd64": ("1.0.0", "../1.0.0/app-1.0.0-windows-amd64.exe"),
    }
    assert m.serial == 1  # type: ignore[attr-defined]


def test_republishing_identical_files_is_a_no_op_and_new_releases_bump_the_serial(
    tmp_path: Path, keypair: KeyPair, trusted: TrustedKeys
) -> None:
    root, opts = tmp_path / "store", PublishOptions(keys=[keypair[1]], clock=lambda: NOW)
    f1 = artifact(tmp_path, "app-1.0.0-linux-amd64")
    publish(LocalStore(root), [f1], opts)
    before = (root / "app/stable/latest.json").read_bytes()
    again = publish(LocalStore(root), [f1], opts)
    assert again.artifacts[0].status == "unchanged" and not again.manifests[0].changed
    assert (root / "app/stable/latest.json").read_bytes() == before
    publish(LocalStore(root), [artifact(tmp_path, "app-1.0.1-linux-amd64")], opts)
    assert read_manifest(root, trusted).serial == 2  # type: ignore[attr-defined]


def test_a_different_file_under_a_published_name_is_refused_and_nothing_changes(
    tmp_path: Path, keypair: KeyPair
) -> None:
    root, opts = tmp_path / "store", PublishOptions(keys=[keypair[1]], clock=lambda: NOW)
    publish(LocalStore(root), [artifact(tmp_path, "app-1.0.0-linux-amd64")], opts)
    snapshot = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ImmutableConflictError, match="bump the version"):
        publish(
            LocalStore(root),
            [artifact(other, "app-1.0.1-linux-amd64"), artifact(other, "app-1.0.0-linux-amd64", b"evil")],
            opts,
        )
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == snapshot  # 1.0.1 was not uploaded either


def test_cli_publishes_with_env_store_and_key(
    tmp_path: Path,
    keypair: KeyPair,
    trusted: TrustedKeys,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GUPPER_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("GUPPER_SIGNING_KEY", str(keypair[0]))
    assert main([str(artifact(tmp_path, "app-2.0.0-darwin-arm64"))]) == 0
    out = capsys.readouterr().out
    assert "uploaded" in out and "serial 1: darwin-arm64 2.0.0" in out
    assert main(["publish", "--json", str(tmp_path / "app-2.0.0-darwin-arm64")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["artifacts"][0]["status"] == "unchanged"


@pytest.mark.parametrize(
    ("argv_extra", "message"),
    [
        (["app-1.0.0-linux"], "expected <app>-<version>-<os>-<arch>"),
        (["missing-1.0.0-linux-amd64"], "is not a file"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_1(
    tmp_path: Path, keypair: KeyPair, capsys: pytest.CaptureFixture[str], argv_extra: list[str], message: str
) -> None:
    for name in argv_extra:
        if name.startswith("app-"):
            artifact(tmp_path, name)
    code = main(
        ["--store", str(tmp_path / "store"), "--key", str(keypair[0]), *[str(tmp_path / n) for n in argv_extra]]
    )
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1 and err.startswith("gupper-publish: error:")
    assert not (tmp_path / "store").exists()


def test_cli_without_key_or_store_says_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GUPPER_SIGNING_KEY", raising=False)
    monkeypatch.delenv("GUPPER_STORE", raising=False)
    assert main([str(artifact(tmp_path, "app-1.0.0-linux-amd64"))]) == 1
    assert "GUPPER_SIGNING_KEY" in capsys.readouterr().err


def test_keygen_writes_a_0600_private_key_and_never_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", str(tmp_path / "k" / "release")]) == 0
    key = tmp_path / "k" / "release.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    out = capsys.readouterr().out
    pem_body = key.read_text().splitlines()[1]
    assert pem_body not in out and (tmp_path / "k" / "release.pub").read_text().strip() in out
    assert main(["keygen", str(tmp_path / "k" / "release")]) == 1  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_group_readable_signing_key_is_refused(tmp_path: Path, keypair: KeyPair) -> None:
    loose = tmp_path / "loose.key"
    loose.write_bytes(keypair[0].read_bytes())
    os.chmod(loose, 0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_signing_key(loose)
    (tmp_path / "junk.key").write_text("junk")
    os.chmod(tmp_path / "junk.key", 0o600)
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM"):
        load_signing_key(tmp_path / "junk.key")


def test_resign_bumps_serial_and_expiry(
    tmp_path: Path, keypair: KeyPair, trusted: TrustedKeys, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    assert (
        main(["--store", str(store), "--key", str(keypair[0]), str(artifact(tmp_path, "app-1.0.0-linux-amd64"))]) == 0
    )
    assert main(["resign", "app", "--store", str(store), "--key", str(keypair[0]), "--expires-days", "7"]) == 0
    doc = json.loads((store / "app/stable/latest.json").read_text())
    assert doc["signed"]["serial"] == 2 and "linux-amd64" in doc["signed"]["platforms"]


def test_name_checks_happen_before_any_upload(tmp_path: Path, keypair: KeyPair) -> None:
    good, bad = artifact(tmp_path, "app-1.0.0-linux-amd64"), artifact(tmp_path, "app_1.0.0_linux_amd64")
    with pytest.raises(BadArtifactNameError):
        publish(LocalStore(tmp_path / "store"), [good, bad], PublishOptions(keys=[keypair[1]]))
    assert not (tmp_path / "store").exists()


def test_release_notes_are_signed_into_the_entry_and_kept_on_republish(
    tmp_path: Path, keypair: KeyPair, trusted: TrustedKeys
) -> None:
    from packaging.version import Version

    from gupper.client import Update

    dist, root = tmp_path / "dist", tmp_path / "store"
    dist.mkdir()
    linux = artifact(dist, "app-1.1.0-linux-amd64")
    (tmp_path / "notes.txt").write_text("Search your notes.\nFaster start-up.\n", encoding="utf-8")
    args = ["publish", str(linux), "--store", str(root), "--key", str(keypair[0]), "--patches", "0"]
    assert main([*args, "--notes-file", str(tmp_path / "notes.txt")]) == 0
    entry = read_manifest(root, trusted).entries["linux-amd64"]  # type: ignore[attr-defined]
    assert entry.extra["notes"] == "Search your notes.\nFaster start-up."
    update = Update(Version("1.0.0"), entry, "https://example.test/x", read_manifest(root, trusted))  # type: ignore[arg-type]
    assert update.notes == "Search your notes.\nFaster start-up."  # what an app that asks first shows
    windows = artifact(dist, "app-1.1.0-windows-amd64.exe")  # same release, another platform, no --notes: kept
    assert main(["publish", str(windows), "--store", str(root), "--key", str(keypair[0]), "--patches", "0"]) == 0
    entries = read_manifest(root, trusted).entries  # type: ignore[attr-defined]
    assert (
        entries["windows-amd64"].extra["notes"]
        == entries["linux-amd64"].extra["notes"]
        == "Search your notes.\nFaster start-up."
    )


@pytest.mark.parametrize(
    ("notes", "message"), [("x" * 20000, "over the 16384 byte limit"), ("bell\x07", "control characters")]
)
def test_unusable_release_notes_are_refused_before_any_upload(
    tmp_path: Path, keypair: KeyPair, notes: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dist, root = tmp_path / "dist", tmp_path / "store"
    dist.mkdir()
    linux = artifact(dist, "app-1.1.0-linux-amd64")
    assert main(["publish", str(linux), "--store", str(root), "--key", str(keypair[0]), "--notes", notes]) == 1
    assert message in capsys.readouterr().err and not root.exists()

"""Multi-file packages, fast: deterministic archives, safe extraction, the ``current`` switch, and
the one-folder install layout through the updater (real TLS simulator, real pre-flight)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper import Platform, Status, Updater, UpdaterConfig
from gupper.errors import InstallError, IntegrityError, PreflightFailedError
from gupper.folder import FolderLayout, detect, run_post_install, switch
from gupper.install import FileOps
from gupper.package import extract_package
from gupper.state import StateFile
from gupper.wire.files import LIST_NAME, FileList, PackageEntry
from gupper_publish.archive import make_archive, pack_folder
from gupper_publish.publish import PublishOptions, publish
from gupper_publish.signing import build_signed, public_key_of, sign_manifest
from gupper_publish.stores import LocalStore

from .conftest import NOW, fake_app
from .httpsim import Sim
from .test_desktop_flows import ended

pytestmark = pytest.mark.posix

KEY = Ed25519PrivateKey.generate()


def make_folder(base: Path, version: str, *, exe: bytes | None = None, data: bytes = b"library bytes\n") -> Path:
    """A one-folder build: ``app`` (executable), ``_internal/lib.so``, a symlink to it, an empty dir.

    ``app`` is a shell script the updater can run: publishing it needs ``force`` (it is no ELF)."""
    folder = base / f"app-{version}-linux-amd64"
    (folder / "_internal" / "empty").mkdir(parents=True)
    (folder / "app").write_bytes(exe if exe is not None else fake_app(version))
    (folder / "app").chmod(0o755)
    (folder / "_internal" / "lib.so").write_bytes(data)
    (folder / "lib.so").symlink_to("_internal/lib.so")
    return folder


# --- publisher: deterministic archives ---------------------------------------------------------


def test_identical_folders_give_identical_archives_and_a_tar_gz_is_repacked_the_same(tmp_path: Path) -> None:
    a = make_folder(tmp_path / "a", "1.0.0")
    b = make_folder(tmp_path / "b", "1.0.0")
    os.utime(b / "app", (1, 1))
    (b / "_internal" / "lib.so").chmod(0o600)  # modes are normalised to 0644 / 0755
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    (tmp_path / "w3").mkdir()
    out_a, list_a = make_archive(a, tmp_path / "w1")
    out_b, list_b = make_archive(b, tmp_path / "w2")
    assert (
        out_a.name == "app-1.0.0-linux-amd64.tar.gz" and out_a.read_bytes() == out_b.read_bytes() and list_a == list_b
    )
    user = tmp_path / "app-1.0.0-linux-amd64.tar.gz"
    with tarfile.open(user, "w:gz") as tar:  # a user's own tar: real mtimes, uids, a top folder
        tar.add(b, arcname="app-1.0.0-linux-amd64")
    out_c, _ = make_archive(user, tmp_path / "w3")
    assert out_c.read_bytes() == out_a.read_bytes()
    with tarfile.open(out_a, "r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [LIST_NAME, "_internal", "_internal/empty", "_internal/lib.so", "app", "lib.so"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    link = members[-1]
    assert link.issym() and link.linkname == "_internal/lib.so"


def test_publishing_a_folder_writes_an_archive_entry_with_its_file_list_signed(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "dist", "1.2.0")
    store = LocalStore(tmp_path / "site")
    publish(store, [folder], PublishOptions(keys=[KEY], clock=lambda: NOW), force=True)
    signed = json.loads((tmp_path / "site" / "app" / "stable" / "latest.json").read_bytes())["signed"]
    entry = signed["platforms"]["linux-amd64"]
    archive = tmp_path / "site" / "app" / "1.2.0" / "app-1.2.0-linux-amd64.tar.gz"
    assert (
        entry["type"] == "archive"
        and entry["format"] == "tar.gz"
        and entry["url"] == "../1.2.0/app-1.2.0-linux-amd64.tar.gz"
    )
    assert (
        entry["size"] == archive.stat().st_size and entry["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    )
    with tarfile.open(archive, "r:gz") as tar:
        listing = tar.extractfile(LIST_NAME).read()  # type: ignore[union-attr]
    assert entry["files_sha256"] == hashlib.sha256(listing).hexdigest()
    again = publish(store, [folder], PublishOptions(keys=[KEY], clock=lambda: NOW), force=True)  # same folder: a no-op
    assert [a.status for a in again.artifacts] == ["unchanged"] and not again.manifests[0].changed


# --- safe extraction ---------------------------------------------------------------------------


def craft(
    path: Path,
    entries: list[dict[str, Any]],
    members: list[tuple[tarfile.TarInfo, bytes | None]],
    *,
    listing: bytes | None = None,
) -> str:
    """Write a hand-made archive: a list (given or from ``entries``) then ``members`` as they are."""
    listing = (
        listing
        if listing is not None
        else json.dumps({"_type": "gupper-files", "schema": 1, "files": entries}).encode()
    )
    with (
        path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        info = tarfile.TarInfo(LIST_NAME)
        info.size = len(listing)
        tar.addfile(info, io.BytesIO(listing))
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return hashlib.sha256(listing).hexdigest()


def reg(name: str, data: bytes, size: int | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    info.mode = 0o644
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def file_entry(path: str, data: bytes) -> dict[str, Any]:
    return {"path": path, "type": "file", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "mode": 0o644}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(versions dir to extract into, an outside dir that must stay untouched)."""
    versions = tmp_path / "root" / "versions"
    versions.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    yield versions, outside
    assert sorted(p.name for p in outside.iterdir()) == [], "something was written outside the versions dir"
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["versions"]
    assert not (tmp_path / "evil").exists()


EVIL = b"#!/bin/sh\necho pwned\n"

MALICIOUS: dict[str, tuple[list[dict[str, Any]], list[tuple[tarfile.TarInfo, bytes | None]], str]] = {
    "traversal in the list": (
        [file_entry("../../outside/evil", EVIL)],
        [reg("../../outside/evil", EVIL)],
        "could resolve outside",
    ),
    "traversal in the tar only": ([file_entry("ok", EVIL)], [reg("../../outside/ok", EVIL)], "does not name"),
    "absolute path": ([file_entry("/tmp/evil", EVIL)], [reg("/tmp/evil", EVIL)], "not a relative path"),
    "symlink out (absolute)": (
        [{"path": "l", "type": "link", "target": "/etc"}],
        [special("l", tarfile.SYMTYPE, "/etc")],
        "outside the package",
    ),
    "symlink out (relative)": (
        [{"path": "l", "type": "link", "target": "../../outside"}],
        [special("l", tarfile.SYMTYPE, "../../outside")],
        "outside the package",
    ),
    "symlink out through another link": (
        [
            {"path": "d", "type": "dir"},
            {"path": "d/up", "type": "link", "target": ".."},
            {"path": "d/out", "type": "link", "target": "up/../.."},
        ],
        [
            special("d", tarfile.DIRTYPE),
            special("d/up", tarfile.SYMTYPE, ".."),
            special("d/out", tarfile.SYMTYPE, "up/../.."),
        ],
        "outside the package",
    ),
    "tar link differs from the list": (
        [{"path": "l", "type": "link", "target": "x"}],
        [special("l", tarfile.SYMTYPE, "../../outside")],
        "not the link",
    ),
    "write through a link": (
        [{"path": "l", "type": "link", "target": "sub"}, file_entry("l/evil", EVIL)],
        [special("l", tarfile.SYMTYPE, "sub"), reg("l/evil", EVIL)],
        "not a listed directory",
    ),
    "character device in the list": (
        [{"path": "tty", "type": "chr"}],
        [special("tty", tarfile.CHRTYPE)],
        "only dir, file and link",
    ),
    "device in the tar": ([file_entry("tty", b"")], [special("tty", tarfile.CHRTYPE)], "not a regular file"),
    "fifo in the tar": ([file_entry("pipe", b"")], [special("pipe", tarfile.FIFOTYPE)], "not a regular file"),
    "hard link in the tar": (
        [file_entry("h", b"")],
        [special("h", tarfile.LNKTYPE, "/etc/passwd")],
        "not a regular file",
    ),
    "more bytes than declared": ([file_entry("big", b"x" * 10)], [reg("big", b"x" * 5000)], "listed 10 bytes"),
    "altered bytes": ([file_entry("f", b"good")], [reg("f", b"evil")], "does not match"),
    "member not in the list": ([file_entry("f", b"a")], [reg("f", b"a"), reg("extra", b"b")], "does not name"),
    "listed member missing": ([file_entry("f", b"a"), file_entry("g", b"b")], [reg("f", b"a")], "lacks 'g'"),
    "listed twice in the tar": ([file_entry("f", b"a")], [reg("f", b"a"), reg("f", b"a")], "does not name"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_a_malicious_archive_is_refused_and_nothing_is_written_outside(
    tmp_path: Path, sandbox: tuple[Path, Path], case: str
) -> None:
    versions, _ = sandbox
    entries, members, message = MALICIOUS[case]
    archive = tmp_path / "evil.tar.gz"
    digest = craft(archive, entries, members)
    dest = versions / ".2.0.0.gupper-x.tmp"
    with pytest.raises(IntegrityError, match="refused") as info:
        extract_package(archive, dest, digest)
    assert message in str(info.value)
    shutil.rmtree(dest)  # the caller removes the half-written temp folder


def test_an_archive_without_its_list_first_or_with_another_list_is_refused(
    tmp_path: Path, sandbox: tuple[Path, Path]
) -> None:
    versions, _ = sandbox
    archive = tmp_path / "a.tar.gz"
    craft(archive, [file_entry("f", b"a")], [reg("f", b"a")])
    with pytest.raises(IntegrityError, match="does not match the signed files_sha256"):
        extract_package(archive, versions / "x", "00" * 32)
    shutil.rmtree(versions / "x")
    with tarfile.open(archive, "w:gz") as tar:
        info, data = reg("f", b"a")
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(IntegrityError, match="does not start with its file list"):
        extract_package(archive, versions / "y")
    shutil.rmtree(versions / "y")
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(IntegrityError, match="damaged"):
        extract_package(archive, versions / "z")
    shutil.rmtree(versions / "z")


def test_a_good_archive_extracts_with_modes_links_and_empty_dirs(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "dist", "2.0.0")
    archive = tmp_path / "a.tar.gz"
    digest = pack_folder(folder, archive)
    dest = tmp_path / "out"
    entries = extract_package(archive, dest, digest)
    assert {e.path for e in entries} == {"_internal", "_internal/empty", "_internal/lib.so", "app", "lib.so"}
    assert (dest / "app").read_bytes() == fake_app("2.0.0") and os.access(dest / "app", os.X_OK)
    assert (dest / "lib.so").is_symlink() and os.readlink(dest / "lib.so") == "_internal/lib.so"
    assert (dest / "lib.so").read_bytes() == b"library bytes\n" and (dest / "_internal" / "empty").is_dir()
    assert oct((dest / "_internal" / "lib.so").stat().st_mode & 0o777) == oct(0o644)


def test_file_list_checks_links_with_leading_dotdots_only_within_depth() -> None:
    ok = [PackageEntry("a", "dir"), PackageEntry("a/b", "dir"), PackageEntry("a/b/l", "link", target="../../x")]
    FileList.from_bytes(FileList.of(ok).to_bytes())
    with pytest.raises(IntegrityError):
        FileList.from_bytes(FileList.of([*ok[:2], PackageEntry("a/b/l", "link", target="../../../x")]).to_bytes())


# --- the current switch ------------------------------------------------------------------------


def layout_with(tmp_path: Path, *versions: str, current: str) -> FolderLayout:
    layout = FolderLayout(tmp_path / "root", "app")
    for v in versions:
        d = layout.version_dir(v)
        d.mkdir(parents=True)
        (d / "app").write_bytes(fake_app(v))
        (d / "app").chmod(0o755)
    layout.current.symlink_to(f"versions/{current}")
    return layout


def test_switch_replaces_the_link_atomically_through_a_temp_name(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, "1.0.0", "2.0.0", current="1.0.0")
    calls: list[str] = []

    def replace_(src: str, dst: str) -> None:
        calls.append(f"replace {Path(src).name} -> {Path(dst).name}")
        assert os.readlink(dst) == "versions/1.0.0" and os.readlink(src) == "versions/2.0.0"
        os.replace(src, dst)

    switch(layout, "2.0.0", "linux", FileOps(replace=replace_))
    assert os.readlink(layout.current) == "versions/2.0.0" and layout.current_version("linux") == "2.0.0"
    assert len(calls) == 1 and calls[0].startswith("replace .current.gupper-") and calls[0].endswith(".tmp -> current")
    assert sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"]
    assert (layout.entry_point("linux")).read_bytes() == fake_app("2.0.0")
    assert detect(layout.version_dir("2.0.0") / "app", None) == layout


def test_switch_refuses_a_missing_version_and_a_failed_rename_leaves_the_old_link(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, "1.0.0", "2.0.0", current="1.0.0")
    with pytest.raises(InstallError, match="missing"):
        switch(layout, "3.0.0", "linux")

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")

    with pytest.raises(InstallError, match="left as it was"):
        switch(layout, "2.0.0", "linux", FileOps(replace=refuse))
    assert os.readlink(layout.current) == "versions/1.0.0" and sorted(p.name for p in layout.root.iterdir()) == [
        "current",
        "versions",
    ]


def test_windows_current_is_a_pointer_file_written_atomically(tmp_path: Path) -> None:
    layout = FolderLayout(tmp_path / "root", "app.exe")
    for v in ("1.0.0", "2.0.0"):
        layout.version_dir(v).mkdir(parents=True)
        (layout.version_dir(v) / "app.exe").write_bytes(b"MZ" + v.encode())
    layout.current.write_text("versions\\1.0.0\n")
    writes: list[str] = []

    def symlink(src: str, dst: str) -> None:
        raise AssertionError("no symlinks on Windows")

    def write_file(path: str, data: bytes) -> None:
        writes.append(Path(path).name)
        Path(path).write_bytes(data)

    ops = FileOps(symlink=symlink, write_file=write_file)
    switch(layout, "2.0.0", "windows", ops)
    assert layout.current.read_text() == "versions\\2.0.0\n" and not layout.current.is_symlink()
    assert writes[0].startswith(".current.gupper-") and layout.current_version("windows", ops) == "2.0.0"
    assert layout.entry_point("windows", ops) == layout.version_dir("2.0.0") / "app.exe"
    assert sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"]


# --- the updater with a one-folder install -----------------------------------------------------

MANIFEST = "/app/stable/latest.json"


def serve_release(
    sim: Sim,
    tmp_path: Path,
    version: str,
    *,
    exe: bytes | None = None,
    hook: bytes | None = None,
    platform: str = "linux-amd64",
    serial: int = 1,
) -> None:
    folder = make_folder(tmp_path / f"dist-{version}", version, exe=exe)
    if hook is not None:
        (folder / "hooks").mkdir()
        (folder / "hooks" / "migrate").write_bytes(hook)
        (folder / "hooks" / "migrate").chmod(0o755)
    serve_package(sim, folder, tmp_path, version, "hooks/migrate" if hook is not None else None, platform, serial)


def serve_package(
    sim: Sim,
    folder: Path,
    tmp_path: Path,
    version: str,
    hook: str | None = None,
    platform: str = "linux-amd64",
    serial: int = 1,
    kind: str = "archive",
) -> None:
    """Publish ``folder`` as ``version``'s one release (``kind``: ``archive``, or ``app`` for a bundle), packed as the
    publisher packs it, under a manifest signed with the test key."""
    suffix = ".app.tar.gz" if kind == "app" else ".tar.gz"
    archive = tmp_path / f"app-{version}{suffix}"
    files_sha256 = pack_folder(folder, archive, hook)
    data = archive.read_bytes()
    name = f"app-{version}-{platform}{suffix}"
    sim.routes[f"/app/{version}/{name}"] = data
    entry = {
        "version": version,
        "type": kind,
        "format": "tar.gz",
        "url": f"../{version}/{name}",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "files_sha256": files_sha256,
    }
    signed = build_signed(
        app="app", channel="stable", serial=serial, now=NOW, expires_in=timedelta(days=30), platforms={platform: entry}
    )
    sim.routes[MANIFEST] = sign_manifest(signed, [KEY])


def folder_updater(
    sim: Sim, layout: FolderLayout, version: str = "1.0.0", file_ops: FileOps | None = None, **kw: Any
) -> Updater:
    cfg = UpdaterConfig(
        app="app",
        current_version=version,
        manifest_url=sim.url(MANIFEST),
        public_keys=(public_key_of(KEY).to_text(),),
        ca_bundle=sim.ca_path,
        executable=str(layout.current / "app"),
        platform=Platform("linux", "amd64"),
        state_dir=str(layout.root.parent / "state"),
        retries=0,
        download_attempts=1,
        read_timeout=2,
        preflight_timeout=10,
    )
    return Updater(
        replace(cfg, **kw), clock=lambda: NOW, environ={}, argv=["app"], restart_on_rollback=False, file_ops=file_ops
    )


def versions_of(layout: FolderLayout) -> list[str]:
    return sorted(p.name for p in layout.versions.iterdir())


def test_folder_install_updates_switches_current_and_keeps_the_last_two(sim: Sim, tmp_path: Path) -> None:
    layout = layout_with(tmp_path, "0.9.0", "1.0.0", current="1.0.0")
    serve_release(sim, tmp_path, "2.0.0")
    up = folder_updater(sim, layout)
    assert up.folder == layout  # recognised from <root>/versions/<v>/app without any setting
    result = up.run(restart=False)
    assert result.status is Status.INSTALLED, result.message
    assert layout.current_version("linux") == "2.0.0" and versions_of(layout) == ["1.0.0", "2.0.0"]
    assert (layout.current / "app").read_bytes() == fake_app("2.0.0") and (
        layout.current / "lib.so"
    ).read_bytes() == b"library bytes\n"
    assert sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"]
    trial = StateFile(layout.root.parent / "state").load().trial
    assert (
        trial is not None and trial.target == str(layout.current) and trial.backup == str(layout.version_dir("1.0.0"))
    )
    new = folder_updater(sim, layout, "2.0.0")
    assert new.run(restart=False).status is Status.UP_TO_DATE
    new.confirm()
    assert versions_of(layout) == ["1.0.0", "2.0.0"]  # the previous folder stays for a later rollback


def test_folder_release_that_never_confirms_is_rolled_back_by_switching_current(sim: Sim, tmp_path: Path) -> None:
    layout = layout_with(tmp_path, "1.0.0", current="1.0.0")
    serve_release(sim, tmp_path, "2.0.0")
    assert folder_updater(sim, layout).run(restart=False).status is Status.INSTALLED
    for _ in range(2):
        assert folder_updater(sim, layout, "2.0.0").run(restart=False).status is Status.UP_TO_DATE
    result = folder_updater(sim, layout, "2.0.0").run(restart=False)
    assert result.status is Status.ROLLED_BACK and result.version == "1.0.0"
    assert layout.current_version("linux") == "1.0.0" and (layout.current / "app").read_bytes() == fake_app("1.0.0")
    back = folder_updater(sim, layout).run(restart=False)
    assert back.status is Status.UP_TO_DATE and "marked bad" in back.message


def test_folder_release_failing_preflight_is_removed_and_current_untouched(sim: Sim, tmp_path: Path) -> None:
    layout = layout_with(tmp_path, "1.0.0", current="1.0.0")
    serve_release(sim, tmp_path, "2.0.0", exe=b"#!/bin/sh\nexit 7\n")
    result = folder_updater(sim, layout).run(restart=False)
    assert result.status is Status.FAILED and "failed its self-test (exit code 7)" in result.message
    assert layout.current_version("linux") == "1.0.0" and versions_of(layout) == ["1.0.0"]
    assert sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"]


def test_a_one_file_install_offered_a_one_folder_build_fails_in_one_warning_line(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Never "up to date": that install would never update again, silently (issue 21, item 1)."""
    layout = layout_with(tmp_path, "1.0.0", current="1.0.0")
    serve_release(sim, tmp_path, "2.0.0")
    exe = tmp_path / "single" / "app"
    exe.parent.mkdir()
    exe.write_bytes(fake_app("1.0.0"))
    single = folder_updater(sim, layout, executable=str(exe))
    assert single.folder is None
    with caplog.at_level(logging.INFO, logger="gupper"):
        result = single.run(restart=False)
    said = (
        "release 2.0.0 for linux-amd64 is a one-folder build, which this install (a one-file build) cannot take: "
        "install 2.0.0 by hand once, or publish a one-file build for linux-amd64"
    )
    assert result.status is Status.FAILED and result.message == said
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"gupper: update failed, carrying on with 1.0.0: {said}")
    ]
    assert exe.read_bytes() == fake_app("1.0.0") and sorted(p.name for p in exe.parent.iterdir()) == ["app"]


# --- a one-folder build copied as a plain folder (issue 21, item 1) --------------------------------


def plain_copy(tmp_path: Path, version: str = "1.0.0") -> Path:
    """``make_folder``'s build copied by hand to ``<tmp>/opt/app``: ``app``, ``_internal/``, a link."""
    root = tmp_path / "opt" / "app"
    shutil.copytree(make_folder(tmp_path / "dist", version), root, symlinks=True)
    return root


def plain_updater(sim: Sim, root: Path, version: str = "1.0.0", **kw: Any) -> Updater:
    state = str(root.parent / "state")
    return folder_updater(sim, FolderLayout(root, "app"), version, executable=str(root / "app"), state_dir=state, **kw)


def test_a_plain_copy_of_a_folder_app_arranges_itself_and_updates_twice(sim: Sim, tmp_path: Path) -> None:
    root = plain_copy(tmp_path)
    internal = (root / "_internal" / "lib.so").stat().st_ino
    serve_release(sim, tmp_path, "2.0.0")
    up = plain_updater(sim, root)
    assert up.layout is not None and up.layout.kind == "archive"  # was a one-file install, offered nothing
    result = up.run(restart=False)
    assert result.status is Status.INSTALLED, result.message
    layout = FolderLayout(root, "app")
    assert os.readlink(layout.current) == "versions/2.0.0"
    assert versions_of(layout) == [".plain-copy.json", "1.0.0", "2.0.0"]
    assert os.readlink(root / "app") == "current/app"  # the entry point the user knows still starts the app
    assert subprocess.run([root / "app"], capture_output=True, text=True, check=True).stdout == "2.0.0\n"
    # 1.0.0 is the copy itself, hard-linked: nothing the running 1.0.0 uses was moved or removed
    assert (layout.version_dir("1.0.0") / "_internal" / "lib.so").stat().st_ino == internal
    assert (root / "_internal" / "lib.so").stat().st_ino == internal
    assert os.readlink(layout.version_dir("1.0.0") / "lib.so") == "_internal/lib.so"
    trial = StateFile(root.parent / "state").load().trial
    assert trial is not None and trial.backup == str(layout.version_dir("1.0.0"))
    # 2.0.0 starts from the link: a one-folder install; what the plain copy left goes now that none of it runs
    new = plain_updater(sim, root, "2.0.0")
    assert new.folder == layout and new.run(restart=False).status is Status.UP_TO_DATE
    new.confirm()
    assert sorted(p.name for p in root.iterdir()) == ["app", "current", "versions"]
    serve_release(sim, tmp_path, "3.0.0", serial=2)
    assert plain_updater(sim, root, "2.0.0").run(restart=False).status is Status.INSTALLED
    assert os.readlink(layout.current) == "versions/3.0.0" and versions_of(layout) == ["2.0.0", "3.0.0"]
    assert subprocess.run([root / "app"], capture_output=True, text=True, check=True).stdout == "3.0.0\n"


def test_a_plain_copy_still_running_keeps_what_it_left_at_the_root(sim: Sim, tmp_path: Path) -> None:
    from gupper.folder import remove_plain_leftovers

    root = plain_copy(tmp_path)
    serve_release(sim, tmp_path, "2.0.0")
    assert plain_updater(sim, root).run(restart=False).status is Status.INSTALLED
    layout = FolderLayout(root, "app")
    assert remove_plain_leftovers(layout, busy=lambda exe: exe == root / "app") == []  # a 1.0.0 still runs from root
    assert (root / "_internal" / "lib.so").is_file() and (root / "lib.so").is_symlink()
    assert remove_plain_leftovers(layout, busy=lambda exe: False) == ["_internal", "lib.so"]
    assert sorted(p.name for p in root.iterdir()) == ["app", "current", "versions"]
    assert sorted(p.name for p in layout.versions.iterdir()) == ["1.0.0", "2.0.0"]  # the record went with them


KILL_ADOPT = """
import os, signal, sys
sys.path[:0] = {paths!r}
from pathlib import Path
from gupper.folder import FolderLayout, adopt_plain_copy
from gupper.install import FileOps
kill_at, calls = int(sys.argv[2]), [0]
def killing(op):
    def call(*args):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return op(*args)
    return call
real = FileOps()
ops = FileOps(**{{name: killing(getattr(real, name)) for name in FileOps.__dataclass_fields__ if name != "sleep"}})
adopt_plain_copy(FolderLayout(Path(sys.argv[1]), "app"), "1.0.0", "linux", ops)
print(calls[0])
"""


def test_a_kill_at_each_step_of_arranging_a_plain_copy_leaves_an_app_that_runs(tmp_path: Path) -> None:
    """SIGKILL before every filesystem step of :func:`adopt_plain_copy` (real processes): the copy
    always starts, and the next start's clean-up plus the next arranging finish the job."""
    from gupper.folder import adopt_plain_copy, cleanup_leftovers

    script = KILL_ADOPT.format(paths=sys.path)
    kill_at, kills = 1, 0
    while True:
        root = plain_copy(tmp_path / str(kill_at))
        command = [sys.executable, "-c", script, str(root), str(kill_at)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode == 0:
            assert int(proc.stdout) == kill_at - 1  # every step had its kill
            break
        assert proc.returncode == -9, proc.stderr
        kills += 1
        run = subprocess.run([root / "app"], capture_output=True, text=True, timeout=60, check=False)
        assert run.stdout == "1.0.0\n", (kill_at, run)
        layout = FolderLayout(root, "app")
        cleanup_leftovers(layout)
        adopt_plain_copy(layout, "1.0.0", "linux")
        assert os.readlink(root / "app") == "current/app" and os.readlink(layout.current) == "versions/1.0.0"
        assert sorted(p.name for p in root.iterdir()) == ["_internal", "app", "current", "lib.so", "versions"]
        assert versions_of(layout) == [".plain-copy.json", "1.0.0"], kill_at
        assert subprocess.run([root / "app"], capture_output=True, text=True, check=True).stdout == "1.0.0\n"
        kill_at += 1
    # versions/1.0.0 put in place (rename, sync), current made (link, barrier, rename, sync), the entry point (link,
    # rename, sync)
    assert kills == 9


def test_a_plain_copy_on_windows_is_refused_in_one_warning_line_never_up_to_date(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = plain_copy(tmp_path)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    serve_release(sim, tmp_path, "2.0.0", platform="windows-amd64")
    with caplog.at_level(logging.INFO, logger="gupper"):
        result = plain_updater(sim, root, platform=Platform("windows", "amd64")).run(restart=False)
    assert result.status is Status.FAILED
    assert "a one-folder app copied as a plain folder cannot switch" in result.message
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "launcher" in caplog.records[0].getMessage()
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before and sim.requests[-1][1] == MANIFEST


def test_leftovers_of_a_killed_folder_update_are_cleaned_on_the_next_start(sim: Sim, tmp_path: Path) -> None:
    layout = layout_with(tmp_path, "1.0.0", current="1.0.0")
    (layout.versions / ".2.0.0.gupper-abc.tmp" / "_internal").mkdir(parents=True)  # killed mid-extraction
    (layout.root / ".current.gupper-def.tmp").symlink_to("versions/2.0.0")  # killed before the rename
    sim.routes[MANIFEST] = b"not json"
    folder_updater(sim, layout).run(restart=False)
    assert versions_of(layout) == ["1.0.0"] and sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"]


def test_a_folder_with_a_link_out_or_a_fifo_cannot_be_published(tmp_path: Path) -> None:
    from gupper_publish.errors import PublishError

    folder = make_folder(tmp_path / "dist", "1.2.0")
    (folder / "etc").symlink_to("/etc")
    store = LocalStore(tmp_path / "site")
    with pytest.raises(PublishError, match="outside the package"):
        publish(store, [folder], PublishOptions(keys=[KEY], clock=lambda: NOW))
    (folder / "etc").unlink()
    os.mkfifo(folder / "pipe")
    with pytest.raises(PublishError, match="device, FIFO or socket"):
        publish(store, [folder], PublishOptions(keys=[KEY], clock=lambda: NOW))
    assert not (tmp_path / "site").exists() or not list((tmp_path / "site").rglob("*.tar.gz"))


# --- post-install hook -------------------------------------------------------------------------

MIGRATE = (
    b'#!/bin/sh\necho "$GUPPER_PREVIOUS_VERSION -> $GUPPER_NEW_VERSION in $(basename '
    b'"$PWD")" > "$GUPPER_INSTALL_ROOT/migrated"\n'
)


def test_a_post_install_hook_runs_in_the_new_folder_before_the_switch(sim: Sim, tmp_path: Path) -> None:
    layout = layout_with(tmp_path, "1.0.0", current="1.0.0")
    serve_release(sim, tmp_path, "2.0.0", hook=MIGRATE)
    assert folder_updater(sim, layout).run(restart=False).status is Status.INSTALLED
    assert (layout.root / "migrated").read_text() == "1.0.0 -> 2.0.0 in 2.0.0\n"
    assert layout.current_version("linux") == "2.0.0"


def test_a_failing_post_install_hook_aborts_the_switch_and_marks_the_version_bad(sim: Sim, tmp_path: Path) -> None:
    layout = layout_with(tmp_path, "1.0.0", current="1.0.0")
    serve_release(sim, tmp_path, "2.0.0", hook=b"#!/bin/sh\nexit 4\n")
    result = folder_updater(sim, layout).run(restart=False)
    assert (
        result.status is Status.FAILED
        and "the post-install hook of 2.0.0 failed (exit code 4); not installed" in result.message
    )
    assert layout.current_version("linux") == "1.0.0" and versions_of(layout) == ["1.0.0"]
    assert "marked bad" in folder_updater(sim, layout).run(restart=False).message


def version_with_hook(tmp_path: Path, hook: bytes) -> FolderLayout:
    """versions/2.0.0 of an install, holding a post-install hook ``hooks/migrate`` and its file list."""
    layout = layout_with(tmp_path, "1.0.0", "2.0.0", current="1.0.0")
    folder = layout.version_dir("2.0.0")
    (folder / "hooks").mkdir()
    (folder / "hooks" / "migrate").write_bytes(hook)
    (folder / "hooks" / "migrate").chmod(0o755)
    entries = [PackageEntry("hooks", "dir"), PackageEntry("hooks/migrate", "file", len(hook), "ab" * 32, 0o755)]
    (folder / LIST_NAME).write_bytes(FileList.of(entries, "hooks/migrate").to_bytes())
    return layout


def test_a_post_install_hook_on_windows_opens_no_console_window(tmp_path: Path) -> None:
    """A windowed app's update must not flash a console for its hook (issue 21, item 7)."""
    layout = version_with_hook(tmp_path, b"#!/bin/sh\nexit 0\n")
    started: list[dict[str, Any]] = []

    class Done:
        returncode, pid, _handle = 0, 4242, 7

        def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
            return b"", b""

        def poll(self) -> int:
            return 0

        def kill(self) -> None:
            pass

    def popen(argv: list[str], **kw: Any) -> Done:
        started.append({"argv": argv, **kw})
        return Done()

    run_post_install(layout, "2.0.0", "1.0.0", {}, 10, "windows", jobs=None, popen=popen)
    (call,) = started
    assert call["argv"] == [str(layout.version_dir("2.0.0") / "hooks" / "migrate")]
    assert call["creationflags"] & 0x08000000  # CREATE_NO_WINDOW
    assert call["cwd"] == layout.version_dir("2.0.0") and call["env"]["GUPPER_NEW_VERSION"] == "2.0.0"


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfd_open is Linux's")
def test_a_hung_post_install_hook_is_killed_with_what_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    layout = version_with_hook(tmp_path, f"#!/bin/sh\nsleep 300 &\necho $! > {pids}\nexec sleep 300\n".encode())
    with pytest.raises(PreflightFailedError, match=r"the post-install hook of 2.0.0 did not finish within 0.5 s"):
        run_post_install(layout, "2.0.0", "1.0.0", dict(os.environ), 0.5)
    child = int(pids.read_text())
    assert ended(child, 30), "the hook's background child outlived the hook's timeout"


def test_a_post_install_hook_must_be_a_listed_executable(tmp_path: Path) -> None:
    from gupper_publish.errors import PublishError

    folder = make_folder(tmp_path / "dist", "1.2.0")
    for hook in ("_internal/lib.so", "missing", "../outside"):
        with pytest.raises(PublishError, match="not a listed executable file"):
            pack_folder(folder, tmp_path / "a.tar.gz", hook)


@pytest.mark.parametrize(
    "case", ["traversal in the list", "symlink out (relative)", "more bytes than declared", "fifo in the tar"]
)
def test_the_updater_refuses_a_signed_malicious_archive_and_changes_nothing(
    sim: Sim, tmp_path: Path, case: str
) -> None:
    layout = layout_with(tmp_path, "1.0.0", current="1.0.0")
    outside = tmp_path / "outside"
    outside.mkdir()
    entries, members, message = MALICIOUS[case]
    archive = tmp_path / "evil.tar.gz"
    files_sha256 = craft(archive, entries, members)
    data = archive.read_bytes()
    sim.routes["/app/2.0.0/app-2.0.0-linux-amd64.tar.gz"] = data
    entry = {
        "version": "2.0.0",
        "type": "archive",
        "format": "tar.gz",
        "url": "../2.0.0/app-2.0.0-linux-amd64.tar.gz",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "files_sha256": files_sha256,
    }
    signed = build_signed(
        app="app", channel="stable", serial=1, now=NOW, expires_in=timedelta(days=30), platforms={"linux-amd64": entry}
    )
    sim.routes[MANIFEST] = sign_manifest(signed, [KEY])  # signed by the real key: only extraction stands in the way
    result = folder_updater(sim, layout).run(restart=False)
    assert result.status is Status.FAILED and isinstance(result.error, IntegrityError) and message in result.message
    assert layout.current_version("linux") == "1.0.0" and versions_of(layout) == ["1.0.0"]
    assert sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"] and list(outside.iterdir()) == []
    again = folder_updater(sim, layout).run(restart=False)  # the signed bytes are the problem: never fetched again
    assert again.status is Status.UP_TO_DATE and "marked bad" in again.message
    assert sum(path.endswith(".tar.gz") for _, path, _ in sim.requests) == 1


def test_an_archive_damaged_in_transit_is_not_marked_bad(sim: Sim, tmp_path: Path) -> None:
    layout = layout_with(tmp_path, "1.0.0", current="1.0.0")
    serve_release(sim, tmp_path, "2.0.0")
    url = "/app/2.0.0/app-2.0.0-linux-amd64.tar.gz"
    good = sim.routes[url]
    assert isinstance(good, bytes)
    sim.routes[url] = good[:-1] + bytes([good[-1] ^ 1])
    assert folder_updater(sim, layout).run(restart=False).status is Status.FAILED
    sim.routes[url] = good  # the store (or the CDN) is fixed: the next start installs
    assert folder_updater(sim, layout).run(restart=False).status is Status.INSTALLED


# --- publisher: .zip input ---------------------------------------------------------------------

S_LINK, S_DIR, S_FILE = 0o120000, 0o040000, 0o100000


def zip_folder(
    folder: Path,
    out: Path,
    *,
    top: str | None = None,
    dir_entries: bool = True,
    extra: Sequence[tuple[zipfile.ZipInfo, bytes]] = (),
) -> Path:
    """Zip a build folder the way ``zip -r --symlinks`` does: symlinks as ``S_IFLNK`` members whose
    content is the target, Unix modes in ``external_attr``; ``top`` prefixes every name."""
    prefix = f"{top}/" if top else ""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        if top and dir_entries:
            zf.writestr(zinfo(f"{top}/", S_DIR | 0o755), b"")
        for path in sorted(folder.rglob("*")):
            name = prefix + path.relative_to(folder).as_posix()
            st = path.lstat()
            if path.is_symlink():
                zf.writestr(zinfo(name, S_LINK | 0o777), os.readlink(path).encode())
            elif path.is_dir():
                if dir_entries or not any(path.iterdir()):
                    zf.writestr(zinfo(name + "/", S_DIR | 0o755), b"")
            else:
                zf.writestr(zinfo(name, S_FILE | (st.st_mode & 0o777)), path.read_bytes())
        for info, data in extra:
            zf.writestr(info, data)
    return out


def zinfo(name: str, mode: int, *, compress: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 5, 6, 7, 8, 9))
    info.create_system, info.external_attr, info.compress_type = 3, mode << 16, compress
    return info


def archive_of(path: Path, workdir: Path, post_install: str | None = None) -> bytes:
    workdir.mkdir(parents=True)
    out, _ = make_archive(path, workdir, post_install)
    data = out.read_bytes()
    out.unlink()
    assert list(workdir.iterdir()) == [], "the unpacked zip was not cleaned up"
    return data


def test_a_zip_of_a_folder_gives_the_byte_identical_archive_with_modes_and_links(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "dist", "1.2.0")
    expected = archive_of(folder, tmp_path / "w0")
    stale = [
        (zinfo("app-1.2.0-linux-amd64/.gupper-files.json", S_FILE | 0o644), b"{}"),
        (zinfo("__MACOSX/app-1.2.0-linux-amd64/._app", S_FILE | 0o644), b"\0"),
    ]
    zips = {
        "one top folder": zip_folder(folder, tmp_path / "a" / "app-1.2.0-linux-amd64.zip", top="app-1.2.0-linux-amd64"),
        "no top folder, no dir entries": zip_folder(
            folder, tmp_path / "b" / "app-1.2.0-linux-amd64.zip", dir_entries=False
        ),
        "a stale file list and macOS resource forks": zip_folder(
            folder, tmp_path / "c" / "app-1.2.0-linux-amd64.zip", top="app-1.2.0-linux-amd64", extra=stale
        ),
    }
    for i, (case, path) in enumerate(zips.items()):
        assert archive_of(path, tmp_path / f"w{i + 1}") == expected, case
    with tarfile.open(fileobj=io.BytesIO(expected), mode="r:gz") as tar:
        modes = {m.name: m.mode for m in tar.getmembers() if m.isreg()}
        link = tar.getmember("lib.so")
    assert (
        modes == {LIST_NAME: 0o644, "_internal/lib.so": 0o644, "app": 0o755}
        and link.issym()
        and link.linkname == "_internal/lib.so"
    )


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs Info-ZIP's zip")
def test_a_zip_made_by_info_zip_gives_the_byte_identical_archive(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "dist", "1.2.0")
    subprocess.run(
        ["zip", "-qr", "--symlinks", "app-1.2.0-linux-amd64.zip", folder.name], cwd=folder.parent, check=True
    )
    assert archive_of(folder.parent / "app-1.2.0-linux-amd64.zip", tmp_path / "w1") == archive_of(
        folder, tmp_path / "w2"
    )


def test_publishing_a_zip_publishes_the_folders_archive_and_the_folder_is_then_unchanged(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "dist", "1.2.0")
    (folder / "hooks").mkdir()
    (folder / "hooks" / "migrate").write_bytes(b"#!/bin/sh\n")
    (folder / "hooks" / "migrate").chmod(0o755)  # --post-install needs the executable bit to survive the zip
    zipped = zip_folder(folder, tmp_path / "app-1.2.0-linux-amd64.zip", top=folder.name)
    store = LocalStore(tmp_path / "site")
    report = publish(
        store, [zipped], PublishOptions(keys=[KEY], clock=lambda: NOW), force=True, post_install="hooks/migrate"
    )
    assert [(a.key, a.status) for a in report.artifacts] == [("app/1.2.0/app-1.2.0-linux-amd64.tar.gz", "uploaded")]
    entry = json.loads((tmp_path / "site" / "app" / "stable" / "latest.json").read_bytes())["signed"]["platforms"][
        "linux-amd64"
    ]
    assert entry["type"] == "archive" and entry["url"] == "../1.2.0/app-1.2.0-linux-amd64.tar.gz"
    again = publish(
        store, [folder], PublishOptions(keys=[KEY], clock=lambda: NOW), force=True, post_install="hooks/migrate"
    )
    assert [a.status for a in again.artifacts] == ["unchanged"] and not again.manifests[0].changed
    assert not list((tmp_path / "site").rglob("*.zip"))


def zip_with(path: Path, members: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name case, and writes it anyway
        with zipfile.ZipFile(path, "w") as zf:
            for info, data in members:
                zf.writestr(info, data)
    return path


def good(
    name: str = "top/app", data: bytes = b"#!/bin/sh\n", mode: int = S_FILE | 0o755
) -> tuple[zipfile.ZipInfo, bytes]:
    return zinfo(name, mode), data


def patch_central(path: Path, name: str, fields: dict[tuple[int, str], int]) -> None:
    """Overwrite fields (offset, struct format) of ``name``'s central directory record: zipfile
    writes only what it considers sane, and reads members by their central record."""
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02")
    while raw[at + 46 : at + 46 + struct.unpack_from("<H", raw, at + 28)[0]] != name.encode():
        at = raw.index(b"PK\x01\x02", at + 4)
    for (offset, fmt), value in fields.items():
        struct.pack_into(fmt, raw, at + offset, value)
    path.write_bytes(bytes(raw))


ENCRYPTED = {(8, "<H"): 0x1}  # general purpose flag bit 0
NO_UNIX_MODES = {(4, "<H"): 20, (38, "<I"): 0}  # made by MS-DOS, no external attributes
ZIP_PATCHES: dict[str, tuple[str, dict[tuple[int, str], int]]] = {
    "encrypted member": ("top/secret", ENCRYPTED),
    "no unix modes (made on Windows)": ("top/app", NO_UNIX_MODES),
}

MALICIOUS_ZIPS: dict[str, tuple[list[tuple[zipfile.ZipInfo, bytes]], str]] = {
    "absolute path": ([good(), good("/tmp/evil")], "'/tmp/evil' is an absolute path"),
    "traversal": ([good(), good("../evil")], "'../evil' climbs out of the folder with '..'"),
    "traversal below the top": ([good(), good("top/../../evil")], "'top/../../evil' climbs out"),
    "backslashes": ([good(), good("..\\evil")], "'..\\\\evil' holds a backslash"),
    "drive letter": ([good(), good("C:/evil")], "'C:/evil' holds ':'"),
    "control character": ([good(), good("top/a\nb")], "'top/a\\nb' holds a control character"),
    "dot part": ([good(), good("top/./x")], "'top/./x' holds an empty or '.' path part"),
    "duplicate name": ([good(), good(data=b"other")], "'top/app' appears twice"),
    "file and dir of one name": ([good(), good("top/app/", b"", S_DIR | 0o755)], "'top/app/' appears twice"),
    "symlink out (relative)": (
        [good(), good("top/l", b"../../outside", S_LINK | 0o777)],
        "'top/l' is a symlink to '../../outside', outside the zip",
    ),
    "symlink out (absolute)": (
        [good(), good("top/l", b"/etc", S_LINK | 0o777)],
        "'top/l' is a symlink to '/etc', outside the zip",
    ),
    "symlink out and a file through it": (
        [good(), good("top/out", b"../../outside", S_LINK | 0o777), good("top/out/evil", b"pwned")],
        "'top/out' is a symlink to '../../outside', outside the zip",
    ),
    "a file through a symlink inside": (
        [good(), good("top/l", b"sub", S_LINK | 0o777), good("top/l/evil", b"x")],
        "'top/l/evil' lies under 'top/l', which is a link, not a directory",
    ),
    "a file under a file": (
        [good(), good("top/app/evil", b"x")],
        "'top/app/evil' lies under 'top/app', which is a file",
    ),
    "character device": ([good(), good("top/tty", b"", 0o020000 | 0o644)], "'top/tty' is a device, FIFO or socket"),
    "fifo": ([good(), good("top/pipe", b"", 0o010000 | 0o644)], "'top/pipe' is a device, FIFO or socket"),
    "encrypted member": ([good(), good("top/secret")], "'top/secret' is encrypted"),
    "bzip2 member": (
        [good(), (zinfo("top/b", S_FILE | 0o644, compress=zipfile.ZIP_BZIP2), b"b")],
        "'top/b' uses compression method 12",
    ),
    "no unix modes (made on Windows)": ([good()], "carries no Unix permissions"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS_ZIPS))
def test_a_malicious_zip_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    from gupper_publish.errors import PublishError

    members, message = MALICIOUS_ZIPS[case]
    zipped = zip_with(tmp_path / "dist" / "app-1.2.0-linux-amd64.zip", members)
    if case in ZIP_PATCHES:
        patch_central(zipped, *ZIP_PATCHES[case])
    (tmp_path / "outside").mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(PublishError) as info:
        publish(LocalStore(tmp_path / "site"), [zipped], PublishOptions(keys=[KEY], clock=lambda: NOW))
    text = str(info.value)
    assert message in text and "\n" not in text, text
    assert (
        text.startswith("app-1.2.0-linux-amd64.zip")
        and "zip -r --symlinks app-1.2.0-linux-amd64.zip app-1.2.0-linux-amd64" in text
    )
    assert sorted(tmp_path.rglob("*")) == before and not (tmp_path / "site").exists()


def test_a_zip_bomb_is_refused_by_its_declared_sizes_before_anything_is_written(tmp_path: Path) -> None:
    from gupper_publish.archive import unpack_user_zip
    from gupper_publish.errors import PublishError

    zipped = zip_with(
        tmp_path / "app-1.2.0-linux-amd64.zip",
        [good(), good("top/a", b"\0" * (600 << 10)), good("top/b", b"\0" * (600 << 10))],
    )
    assert zipped.stat().st_size < 10 << 10  # 1.2 MiB of zeros, deflated
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(
        PublishError,
        match=r"member 'top/b' takes the declared unpacked size past the 1048576-byte limit \(a zip bomb\?\); refused",
    ):
        unpack_user_zip(zipped, into, max_bytes=1 << 20)
    assert list(into.iterdir()) == []
    assert (
        unpack_user_zip(zipped, into, max_bytes=2 << 20) == into / "top"
        and (into / "top" / "b").stat().st_size == 600 << 10
    )


def test_a_zip_member_holding_more_than_its_declared_size_is_refused(tmp_path: Path) -> None:
    from gupper_publish.errors import PublishError

    zipped = zip_with(
        tmp_path / "app-1.2.0-linux-amd64.zip", [good("top/app", b"#!/bin/sh\n" + b"#" * 5000, S_FILE | 0o755)]
    )
    patch_central(zipped, "top/app", {(24, "<I"): 10})  # declare 10 bytes uncompressed
    with zipfile.ZipFile(zipped) as zf:
        assert zf.getinfo("top/app").file_size == 10 and zf.getinfo("top/app").compress_size > 10
    with pytest.raises(
        PublishError, match=r"app-1.2.0-linux-amd64.zip: cannot unpack member 'top/app' \(Bad CRC-32"
    ) as info:
        make_archive(zipped, tmp_path)
    assert "\n" not in str(info.value) and sorted(p.name for p in tmp_path.iterdir()) == ["app-1.2.0-linux-amd64.zip"]


def test_a_zip_without_unix_modes_is_fine_for_windows_and_not_a_zip_is_one_line(tmp_path: Path) -> None:
    from gupper_publish.errors import PublishError

    zipped = zip_with(tmp_path / "app-1.2.0-windows-amd64.zip", [good()])
    patch_central(zipped, "top/app", NO_UNIX_MODES)
    assert archive_of(zipped, tmp_path / "w1")
    broken = tmp_path / "app-1.2.0-linux-amd64.zip"
    broken.write_bytes(b"PK not really a zip")
    with pytest.raises(
        PublishError,
        match=r"cannot read .*app-1.2.0-linux-amd64.zip as a zip \(File is not a zip file\); "
        r"pass the build folder itself",
    ):
        make_archive(broken, tmp_path)

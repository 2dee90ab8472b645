"""Folder deltas: the publisher stores a one-folder release file by file with per-file patches, and
the updater builds the new version from the installed one plus only what changed.

Real parts: ``publish()`` into a real folder store, served over real TLS by the simulator, the
real updater installing into a real folder layout."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper import Platform, Status, Updater, UpdaterConfig
from gupper.errors import IntegrityError
from gupper.folder import FolderLayout
from gupper.folder_delta import plan
from gupper.wire.files import LIST_NAME, MAX_LIST_BYTES, FilePatch, PackageEntry, PatchIndex, list_from_wire
from gupper_publish.folder_delta import list_to_wire
from gupper_publish.publish import PublishOptions, publish
from gupper_publish.release import prune
from gupper_publish.signing import public_key_of
from gupper_publish.stores import LocalStore

from .conftest import NOW, fake_app
from .httpsim import Sim

pytestmark = pytest.mark.posix  # symlinks in the packages, shell-script apps for the pre-flight

KEY = Ed25519PrivateKey.generate()
MANIFEST = "/app/stable/latest.json"


def noise(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def release(base: Path, version: str) -> Path:
    """A one-folder build. Across versions: ``app`` changes a little (patched), ``big.bin`` never
    (reused), ``data.bin`` a little (patched), ``moved.bin`` moves to ``sub/`` (reused by content),
    ``notes.txt`` is new in 2.0.0 (fetched). ``app`` is a shell script: publishing needs ``force``."""
    folder = base / f"app-{version}-linux-amd64"
    (folder / "_internal" / "sub").mkdir(parents=True)
    two = version == "2.0.0"
    (folder / "app").write_bytes(fake_app(version, pad=60_000))
    (folder / "app").chmod(0o755)
    (folder / "_internal" / "big.bin").write_bytes(noise(1, 300_000))
    data = bytearray(noise(2, 120_000))
    if two:
        data[5000:5010] = b"0123456789"
    (folder / "_internal" / "data.bin").write_bytes(bytes(data))
    (folder / "_internal" / ("sub/moved.bin" if two else "moved.bin")).write_bytes(noise(3, 50_000))
    (folder / "_internal" / "empty.txt").write_bytes(b"")
    if two:
        (folder / "_internal" / "notes.txt").write_bytes(b"new in 2.0.0\n" * 100)
    (folder / "lib.so").symlink_to("_internal/big.bin")
    return folder


def serve_store(sim: Sim, root: Path) -> None:
    """Serve every object of a folder store at its key, as a static HTTPS host would."""
    sim.routes.clear()
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            sim.routes["/" + path.relative_to(root).as_posix()] = path.read_bytes()


def publish_both(tmp_path: Path, patches: int = 3) -> tuple[LocalStore, Path, Path]:
    store = LocalStore(tmp_path / "store")
    v1, v2 = release(tmp_path / "dist", "1.0.0"), release(tmp_path / "dist", "2.0.0")
    publish(store, [v1], PublishOptions(keys=[KEY], clock=lambda: NOW), force=True, patches=patches)
    publish(store, [v2], PublishOptions(keys=[KEY], clock=lambda: NOW), force=True, patches=patches)
    return store, v1, v2


def install(tmp_path: Path, build: Path, version: str = "1.0.0") -> FolderLayout:
    layout = FolderLayout(tmp_path / "root", "app")
    layout.versions.mkdir(parents=True)
    shutil.copytree(build, layout.version_dir(version), symlinks=True)
    layout.current.symlink_to(f"versions/{version}")
    return layout


def updater(sim: Sim, layout: FolderLayout, **kw: Any) -> Updater:
    cfg = UpdaterConfig(
        app="app",
        current_version="1.0.0",
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
    return Updater(replace(cfg, **kw), clock=lambda: NOW, environ={}, argv=["app"])


def tree(root: Path) -> list[tuple[str, str, bytes]]:
    out = []
    for p in sorted(root.rglob("*")):
        if p.name == LIST_NAME:
            continue
        kind = "link" if p.is_symlink() else "dir" if p.is_dir() else oct(p.stat().st_mode & 0o777)
        out.append(
            (
                p.relative_to(root).as_posix(),
                kind,
                os.readlink(p).encode() if p.is_symlink() else p.read_bytes() if p.is_file() else b"",
            )
        )
    return out


def got(sim: Sim) -> list[str]:
    return [path for method, path, _ in sim.requests if method == "GET" and not path.endswith("latest.json")]


def served_bytes(sim: Sim, paths: list[str]) -> int:
    return sum(len(route) for p in paths if isinstance(route := sim.routes[p], bytes))


# --- publisher ---------------------------------------------------------------------------------


def test_a_folder_release_is_stored_file_by_file_with_a_patch_index_signed_in_its_entry(tmp_path: Path) -> None:
    store, _v1, v2 = publish_both(tmp_path)
    signed = json.loads((store.root / "app/stable/latest.json").read_bytes())["signed"]
    entry = signed["platforms"]["linux-amd64"]
    assert entry["files_url"] == "../2.0.0/files/app-2.0.0-linux-amd64.json.gz"
    assert entry["blobs_url"] == "../2.0.0/files/sha256/"
    listed = list_from_wire((store.root / "app/2.0.0/files/app-2.0.0-linux-amd64.json.gz").read_bytes())
    assert hashlib.sha256(listed).hexdigest() == entry["files_sha256"]
    blobs = {p.name for p in (store.root / "app/2.0.0/files/sha256").iterdir()}
    files = [p for p in v2.rglob("*") if p.is_file() and not p.is_symlink()]
    assert blobs == {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}  # each content once
    (index,) = entry["patches"]
    assert (index["from_version"], index["format"]) == ("1.0.0", "files-bsdiff4")
    data = (store.root / "app/2.0.0/patches" / index["url"].rsplit("/", 1)[1]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == index["sha256"] and len(data) == index["size"]
    parsed = PatchIndex.from_bytes(data)
    patched = parsed.patches
    assert sorted(patched) == ["_internal/data.bin", "app"]  # changed in place; moved and new files are not patched
    assert parsed.delta.remove == ("_internal/moved.bin",)
    assert sorted(e.path for e in parsed.delta.put) == [
        "_internal/data.bin",
        "_internal/notes.txt",
        "_internal/sub/moved.bin",
        "app",
    ]
    for path, fp in patched.items():
        assert fp.size < (v2 / path).stat().st_size // 10
        assert (store.root / "app/2.0.0/patches/files" / fp.file).stat().st_size == fp.size
    before = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*"))
    publish(
        store, [v2], PublishOptions(keys=[KEY], clock=lambda: NOW), force=True
    )  # the same release again: nothing new
    assert sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*")) == before


def test_pruning_a_folder_release_removes_its_files_and_patches(tmp_path: Path) -> None:
    store, _v1, _v2 = publish_both(tmp_path)
    prune(store, "app", keep=1)
    assert not (store.root / "app/1.0.0").exists()
    assert (store.root / "app/2.0.0/files/sha256").is_dir()


# --- updater -----------------------------------------------------------------------------------


def test_a_folder_update_fetches_only_patches_and_new_files_and_links_the_rest(sim: Sim, tmp_path: Path) -> None:
    store, v1, v2 = publish_both(tmp_path)
    serve_store(sim, store.root)
    layout = install(tmp_path, v1)
    result = updater(sim, layout).run(restart=False)
    assert result.status is Status.INSTALLED, result.message
    new = layout.version_dir("2.0.0")
    assert layout.current_version("linux") == "2.0.0" and tree(new) == tree(v2)
    fetched = got(sim)
    archive = "/app/2.0.0/app-2.0.0-linux-amd64.tar.gz"
    assert archive not in fetched
    notes = hashlib.sha256((v2 / "_internal/notes.txt").read_bytes()).hexdigest()
    patches = [p for p in fetched if p.startswith("/app/2.0.0/patches/files/") and p.endswith(".bsdiff4")]
    assert sorted(set(fetched) - set(patches)) == [
        f"/app/2.0.0/files/sha256/{notes}",  # the one new file, fetched whole
        "/app/2.0.0/patches/app-2.0.0-linux-amd64.from-1.0.0.files.json",  # the new list comes from it: not fetched
    ]
    assert len(patches) == 2 and len(fetched) == 4  # app and data.bin patched; each object fetched once
    assert served_bytes(sim, fetched) < len(sim.routes[archive]) // 10  # type: ignore[arg-type]
    same_inode = (new / "_internal/big.bin").stat().st_ino == (
        layout.version_dir("1.0.0") / "_internal/big.bin"
    ).stat().st_ino
    assert same_inode  # unchanged files are hard links, not copies
    assert (new / "_internal/sub/moved.bin").stat().st_ino == (
        layout.version_dir("1.0.0") / "_internal/moved.bin"
    ).stat().st_ino
    assert not [p for p in layout.versions.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("kept_list", [False, True], ids=["installed-by-copy", "list-kept-by-the-updater"])
def test_a_file_damaged_on_disk_is_fetched_instead_of_copied(sim: Sim, tmp_path: Path, kept_list: bool) -> None:
    store, v1, v2 = publish_both(tmp_path)
    serve_store(sim, store.root)
    layout = install(tmp_path, v1)
    if kept_list:  # the list says big.bin is intact: only hashing it again before reuse finds the damage
        kept = list_from_wire((store.root / "app/1.0.0/files/app-1.0.0-linux-amd64.json.gz").read_bytes())
        (layout.version_dir("1.0.0") / LIST_NAME).write_bytes(kept)
    damaged = layout.version_dir("1.0.0") / "_internal/big.bin"
    damaged.write_bytes(b"X" + damaged.read_bytes()[1:])
    assert updater(sim, layout).run(restart=False).status is Status.INSTALLED
    assert tree(layout.version_dir("2.0.0")) == tree(v2)
    big = hashlib.sha256((v2 / "_internal/big.bin").read_bytes()).hexdigest()
    assert f"/app/2.0.0/files/sha256/{big}" in got(sim)
    assert damaged.read_bytes()[:1] == b"X"  # the installed version is never written to


def test_a_tampered_file_in_the_store_falls_back_to_the_archive(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, v1, v2 = publish_both(tmp_path)
    serve_store(sim, store.root)
    notes = hashlib.sha256((v2 / "_internal/notes.txt").read_bytes()).hexdigest()
    sim.routes[f"/app/2.0.0/files/sha256/{notes}"] = b"evil" * 325
    layout = install(tmp_path, v1)
    assert updater(sim, layout).run(restart=False).status is Status.INSTALLED
    assert tree(layout.version_dir("2.0.0")) == tree(v2)
    assert "/app/2.0.0/app-2.0.0-linux-amd64.tar.gz" in got(sim)
    warnings = [r.getMessage() for r in caplog.records if "folder delta failed" in r.getMessage()]
    assert len(warnings) == 1 and "does not match the signed sha256" in warnings[0], warnings
    assert not [p for p in layout.versions.iterdir() if p.name.startswith(".")]


def test_an_install_that_differs_from_its_release_fetches_the_list_and_a_tampered_one_falls_back(
    sim: Sim, tmp_path: Path
) -> None:
    store, v1, v2 = publish_both(tmp_path)
    serve_store(sim, store.root)
    listed = "/app/2.0.0/files/app-2.0.0-linux-amd64.json.gz"
    good = sim.routes[listed]
    sim.routes[listed] = b'{"_type":"gupper-files","schema":1,"files":[{"path":"../x","type":"dir"}]}'
    layout = install(tmp_path, v1)
    (layout.version_dir("1.0.0") / "_internal/extra.txt").write_bytes(
        b"left by someone\n"
    )  # not the published 1.0.0 any more
    assert updater(sim, layout).run(restart=False).status is Status.INSTALLED
    assert got(sim).count(listed) == 1 and "/app/2.0.0/app-2.0.0-linux-amd64.tar.gz" in got(sim)
    assert tree(layout.version_dir("2.0.0")) == tree(v2)
    assert not (tmp_path / "x").exists() and not (layout.root / "x").exists()
    sim.routes[listed], sim.requests[:] = good, []
    again = install(tmp_path / "again", v1)
    (again.version_dir("1.0.0") / "_internal/extra.txt").write_bytes(b"left by someone\n")
    assert updater(sim, again).run(restart=False).status is Status.INSTALLED
    assert listed in got(sim) and "/app/2.0.0/app-2.0.0-linux-amd64.tar.gz" not in got(
        sim
    )  # the good list: still a delta
    assert tree(again.version_dir("2.0.0")) == tree(v2)


def test_the_list_delta_rebuilds_the_new_list_byte_for_byte(tmp_path: Path) -> None:
    from gupper.package import scan_folder
    from gupper.wire.files import FileList, ListDelta
    from gupper_publish.folder_delta import list_delta

    v1, v2 = release(tmp_path, "1.0.0"), release(tmp_path, "2.0.0")
    (v2 / "hook").write_bytes(b"#!/bin/sh\n")
    (v2 / "hook").chmod(0o755)
    old, new = FileList.of(scan_folder(v1)).to_bytes(), FileList.of(scan_folder(v2), "hook").to_bytes()
    for a, b in ((old, new), (new, old), (old, old)):
        d = list_delta(FileList.from_bytes(a), FileList.from_bytes(b))
        assert ListDelta.from_json(d.to_json()).apply(FileList.from_bytes(a)).to_bytes() == b
    wrong = ListDelta()  # a delta that does not reproduce the list: the signed files_sha256 decides
    assert (
        hashlib.sha256(wrong.apply(FileList.from_bytes(old)).to_bytes()).hexdigest() != hashlib.sha256(new).hexdigest()
    )


def test_without_patches_changed_files_are_fetched_whole_and_a_release_with_none_takes_the_archive(
    sim: Sim, tmp_path: Path
) -> None:
    store, v1, v2 = publish_both(tmp_path, patches=1)
    state = json.loads((store.root / "app/stable/channel.json").read_bytes())
    state["releases"]["2.0.0"]["artifacts"]["linux-amd64"]["patches"] = []
    (store.root / "app/stable/channel.json").write_text(json.dumps(state))
    from gupper_publish.publish import regenerate_manifest

    regenerate_manifest(store, "app", PublishOptions(keys=[KEY], clock=lambda: NOW), force=True)
    serve_store(sim, store.root)
    layout = install(tmp_path, v1)
    assert updater(sim, layout).run(restart=False).status is Status.INSTALLED
    assert tree(layout.version_dir("2.0.0")) == tree(v2)
    fetched = got(sim)
    assert (
        not [p for p in fetched if "/patches/" in p] and sum("/sha256/" in p for p in fetched) == 3
    )  # app, data.bin, notes.txt


# --- the pure plan -----------------------------------------------------------------------------


def f(path: str, content: str, size: int = 100, mode: int = 0o644) -> PackageEntry:
    return PackageEntry(path, "file", size=size, sha256=hashlib.sha256(content.encode()).hexdigest(), mode=mode)


def test_plan_reuses_by_content_patches_from_a_listed_source_and_fetches_the_rest() -> None:
    old = [f("a", "A"), f("b", "B"), f("c", "C")]
    new = [f("moved/a", "A"), f("b", "B2"), f("c", "C2"), f("d", "D"), f("e", "", size=0)]
    patches = {
        "b": FilePatch(f("b", "B").sha256, "x", 10, "0" * 64),
        "c": FilePatch(f("zz", "not installed").sha256, "y", 10, "0" * 64),  # its source is not here
    }
    p = plan(old, new, patches)
    actions = {s.entry.path: (s.action, s.source) for s in p.steps}
    assert actions == {
        "moved/a": ("reuse", "a"),
        "b": ("patch", "b"),
        "c": ("fetch", ""),
        "d": ("fetch", ""),
        "e": ("reuse", ""),
    }
    assert p.download == 10 + 100 + 100 and p.count("fetch") == 2


def test_plan_never_takes_a_patch_no_smaller_than_the_file() -> None:
    p = plan([f("b", "B")], [f("b", "B2", size=50)], {"b": FilePatch(f("b", "B").sha256, "x", 50, "0" * 64)})
    assert [s.action for s in p.steps] == ["fetch"]


def index_with(**patch: Any) -> bytes:
    good = {"from_sha256": "0" * 64, "file": "0" * 64 + "-" + "1" * 64 + ".bsdiff4", "size": 1, "sha256": "0" * 64}
    return json.dumps({"_type": "gupper-files-patches", "schema": 1, "patches": {"a": {**good, **patch}}}).encode()


@pytest.mark.parametrize(
    "index",
    [
        b"[]",
        b'{"_type":"gupper-files-patches","schema":2,"patches":{}}',
        index_with(file="../../x"),
        index_with(size=-1),
        index_with(sha256="x"),
    ],
)
def test_a_malformed_patch_index_is_refused(index: bytes) -> None:
    with pytest.raises(IntegrityError, match="patch index"):
        PatchIndex.from_bytes(index)


def test_promote_without_a_source_channel_keeps_the_folder_delta(tmp_path: Path) -> None:
    from gupper_publish.release import promote

    store, _v1, _v2 = publish_both(tmp_path)
    promote(
        store, "app", "2.0.0", to_channel="beta", options=PublishOptions(keys=[KEY], clock=lambda: NOW, channel="beta")
    )
    beta = json.loads((store.root / "app/beta/latest.json").read_bytes())["signed"]["platforms"]["linux-amd64"]
    stable = json.loads((store.root / "app/stable/latest.json").read_bytes())["signed"]["platforms"]["linux-amd64"]
    assert {k: beta.get(k) for k in ("files_sha256", "files_url", "blobs_url")} == {
        k: stable[k] for k in ("files_sha256", "files_url", "blobs_url")
    }


def test_a_stored_list_is_gzip_bounded_against_bombs_and_trailing_bytes() -> None:
    listing = b'{"_type":"gupper-files","files":[],"schema":1}'
    assert list_from_wire(list_to_wire(listing)) == listing and list_from_wire(listing) == listing
    bomb = gzip.compress(b" " * (MAX_LIST_BYTES + 1), mtime=0)
    assert len(bomb) < 100_000
    for bad in (bomb, list_to_wire(listing) + b"junk", list_to_wire(listing)[:-4], b"\x1f\x8b" + b"\0" * 20):
        with pytest.raises(IntegrityError, match="file list"):
            list_from_wire(bad)


def test_a_file_whose_mode_changes_is_copied_not_linked_and_the_installed_one_keeps_its_mode(tmp_path: Path) -> None:
    from gupper.folder_delta import build

    installed = tmp_path / "installed"
    installed.mkdir()
    (installed / "tool").write_bytes(b"same bytes\n")
    (installed / "tool").chmod(0o644)
    (installed / "data").write_bytes(b"data\n")
    (installed / "data").chmod(0o644)
    new = [f_real(installed / "tool", "tool", 0o755), f_real(installed / "data", "data", 0o644)]

    def no_fetch(url: str, size: int, sha256: str, out: Any) -> None:
        raise AssertionError(f"nothing should be fetched, asked for {url}")

    built = build(plan(new, new, {}), new, b"{}", installed, tmp_path / "new", tmp_path / "work", no_fetch, str, str)
    assert (built.linked, built.copied, built.downloaded) == (1, 1, 0)
    assert (tmp_path / "new/tool").stat().st_mode & 0o777 == 0o755 and (
        installed / "tool"
    ).stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "new/data").stat().st_ino == (installed / "data").stat().st_ino


def f_real(path: Path, name: str, mode: int) -> PackageEntry:
    data = path.read_bytes()
    return PackageEntry(name, "file", size=len(data), sha256=hashlib.sha256(data).hexdigest(), mode=mode)

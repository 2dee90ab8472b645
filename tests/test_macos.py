"""macOS behaviour proven on any OS: ``.app`` bundles refused by path, ``F_FULLFSYNC`` through an
injected ``fcntl``; on macOS itself (the CI workflow's macOS job) the constant and the real call."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from gupper import InstallError, Platform, Status
from gupper._fsutil import F_FULLFSYNC, atomic_write, drive_barrier, full_fsync
from gupper.folder import FolderLayout, switch
from gupper.install import FileOps, app_bundle_of, apply, check_writable, temp_path_for

from .conftest import MakeManifest, fake_app
from .httpsim import serve
from .test_client import make_updater
from .test_windows import publish_one

BUNDLE_MESSAGE = (
    "cannot update {exe}: it is inside the macOS app bundle {bundle}, and replacing a "
    "file in a signed bundle breaks its code signature; "
    "publish the bundle itself (gupper-publish dist/<name>.app): an app bundle whose program is Contents/MacOS/<exe> "
    "is updated as a whole"
)


@pytest.mark.parametrize(
    ("path", "bundle"),
    [
        ("/Applications/Demo.app/Contents/MacOS/demo", "/Applications/Demo.app"),
        (
            "/Users/u/Applications/My Tool.APP/Contents/Resources/app/versions/1.0/app",
            "/Users/u/Applications/My Tool.APP",
        ),
        ("/opt/demo/app", None),
        ("/opt/Demo.app/app", None),  # a folder named .app without Contents/ is no bundle
    ],
)
def test_app_bundles_are_recognised_by_their_layout(path: str, bundle: str | None) -> None:
    assert app_bundle_of(Path(path)) == (Path(bundle) if bundle else None)


def test_an_app_bundle_offered_a_one_file_build_fails_before_downloading(
    tmp_path: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    """A bundle's program is updated with its whole bundle (an ``app`` release): a one-file build is
    not what it can take, and nothing inside it is replaced."""
    bundle = tmp_path / "Demo.app"
    exe = bundle / "Contents" / "MacOS" / "demo"
    exe.parent.mkdir(parents=True)
    exe.write_bytes(fake_app("1.0.0"))
    with serve(tmp_path) as sim:
        publish_one(sim, make_manifest, "darwin-arm64")
        updater = make_updater(
            sim, exe, keypair[2], platform=Platform("darwin", "arm64"), state_dir=str(tmp_path / "state")
        )
        assert updater.layout is not None and updater.layout.kind == "app"
        result = updater.run(restart=False)
    assert result.status is Status.FAILED and result.message == (
        "release 2.0.0 for darwin-arm64 is a one-file build, which this install (a macOS app bundle (.app)) cannot "
        "take: install 2.0.0 by hand once, or publish a macOS app bundle (.app) for darwin-arm64"
    )
    assert [r[1] for r in sim.requests] == ["/app/stable/latest.json"]
    assert exe.read_bytes() == fake_app("1.0.0") and sorted(p.name for p in exe.parent.iterdir()) == ["demo"]


def test_a_program_elsewhere_in_an_app_bundle_is_refused(tmp_path: Path) -> None:
    exe = tmp_path / "Demo.app" / "Contents" / "Resources" / "tool"
    with pytest.raises(InstallError) as info:
        check_writable(exe)
    assert str(info.value) == BUNDLE_MESSAGE.format(exe=exe, bundle=tmp_path / "Demo.app")


def test_a_folder_install_inside_an_app_bundle_is_refused(tmp_path: Path) -> None:
    layout = FolderLayout(tmp_path / "Demo.app" / "Contents" / "Resources" / "demo", "demo")
    with pytest.raises(InstallError) as info:
        check_writable(layout.current)
    assert str(info.value) == BUNDLE_MESSAGE.format(exe=layout.current, bundle=tmp_path / "Demo.app")


def test_full_fsync_uses_f_fullfsync_on_macos_and_falls_back_to_fsync() -> None:
    calls: list[tuple[str, int, int]] = []

    def fcntl_(fd: int, cmd: int) -> int:
        calls.append(("fcntl", fd, cmd))
        return 0

    def fsync(fd: int) -> None:
        calls.append(("fsync", fd, 0))

    full_fsync(7, "darwin", fcntl_, fsync)
    assert calls == [("fcntl", 7, F_FULLFSYNC)]  # the drive's cache flushed, not only handed to the drive
    calls.clear()

    def refused(fd: int, cmd: int) -> int:
        calls.append(("fcntl", fd, cmd))
        raise OSError(errno.ENOTSUP, "Operation not supported")  # e.g. an SMB or FAT volume

    full_fsync(7, "darwin", refused, fsync)
    assert calls == [("fcntl", 7, F_FULLFSYNC), ("fsync", 7, 0)]
    calls.clear()
    full_fsync(7, "linux", fcntl_, fsync)
    assert calls == [("fsync", 7, 0)]


def test_the_drive_cache_is_flushed_before_the_rename_that_installs(tmp_path: Path) -> None:
    """POSIX apply and the one-folder switch: on macOS a barrier (F_FULLFSYNC) on the new file or
    folder comes before the rename, so the rename cannot reach the disk before the bytes do."""
    order: list[str] = []

    def replace(src: str, dst: str) -> None:
        order.append(f"replace {Path(dst).name}")
        os.replace(src, dst)

    def symlink(to: str, path: str) -> None:  # a pointer file stands in: Windows needs a privilege for links
        Path(path).write_text(to)

    ops = FileOps(
        barrier=lambda p: order.append(f"barrier {Path(p).name}"),
        replace=replace,
        fsync_dir=lambda p: order.append("fsync_dir"),
        symlink=symlink,
    )
    target = tmp_path / "app"
    target.write_bytes(b"old")
    new = temp_path_for(target)
    new.write_bytes(b"new")
    apply(new, target, "darwin", ops)
    assert order == [f"barrier {new.name}", "replace app", "fsync_dir"] and target.read_bytes() == b"new"
    order.clear()
    layout = FolderLayout(tmp_path / "root", "app")
    (layout.version_dir("2.0.0")).mkdir(parents=True)
    (layout.version_dir("2.0.0") / "app").write_bytes(b"2")
    switch(layout, "2.0.0", "darwin", ops)
    assert order == ["barrier 2.0.0", "replace current", "fsync_dir"]


def test_the_barrier_is_a_full_fsync_on_macos_only(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    synced: list[int] = []
    drive_barrier(str(path), "darwin", synced.append)
    if os.name == "posix":  # Windows cannot open a folder as a file (and never flushes this way)
        drive_barrier(str(tmp_path), "darwin", synced.append)  # a folder too (the one-folder switch)
    drive_barrier(str(path), "linux", synced.append)
    drive_barrier(str(path), "windows", synced.append)
    assert len(synced) == (2 if os.name == "posix" else 1)


@pytest.mark.skipif(sys.platform != "darwin", reason="F_FULLFSYNC exists on macOS only")
def test_f_fullfsync_is_the_real_constant_and_works_here(tmp_path: Path) -> None:
    import fcntl

    assert fcntl.F_FULLFSYNC == F_FULLFSYNC  # type: ignore[attr-defined,unused-ignore]
    with open(tmp_path / "f", "wb") as f:
        f.write(b"x")
        f.flush()
        assert fcntl.fcntl(f.fileno(), F_FULLFSYNC) != -1  # raises OSError if the volume refuses it
    drive_barrier(str(tmp_path))
    atomic_write(tmp_path / "state.json", b"{}")
    assert (tmp_path / "state.json").read_bytes() == b"{}"

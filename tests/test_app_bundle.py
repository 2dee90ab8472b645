"""macOS app bundles (issue 21, item 2), fast: the whole ``<name>.app`` swapped for the new one.

The swap is the real ``renameat2(RENAME_EXCHANGE)`` on this Linux filesystem (the same logic as
``renamex_np(RENAME_SWAP)`` on APFS, whose call is checked through an injected C library); the
quarantine attribute's removal and the ``codesign`` Team ID check (Sparkle's rule) run against
injected macOS calls. The updater goes through a bundle laid out as PyInstaller makes one, whose
program is a script standing in for the app: update, trial, rollback, refusals.
"""

from __future__ import annotations

import ctypes
import errno
import os
import plistlib
import subprocess
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gupper import InstallError, PreflightFailedError, Status, Updater
from gupper._fsutil import AT_FDCWD, RENAME_EXCHANGE, RENAME_SWAP, XATTR_NOFOLLOW, exchange_paths, remove_xattr
from gupper.bundle import (
    QUARANTINE,
    backups_of,
    check_not_translocated,
    check_team,
    follow_moved_bundle,
    strip_quarantine,
    swap,
    team_identifier,
)
from gupper.folder import FolderLayout
from gupper.install import FileOps
from gupper.state import StateFile

from .conftest import fake_app
from .httpsim import Sim
from .test_packages import folder_updater, serve_package

pytestmark = pytest.mark.posix

EXCHANGE = sys.platform.startswith("linux") or sys.platform == "darwin"
"""Where the real exchange runs: renameat2 here, renamex_np in the CI workflow's macOS job."""


def make_bundle(path: Path, version: str, *, program: bytes | None = None, name: str = "app") -> Path:
    """``<path>`` laid out as PyInstaller 6 makes a .app: the program, Frameworks/ and Resources/
    cross-linked, Info.plist."""
    contents = path / "Contents"
    for sub in ("MacOS", "Frameworks", "Resources"):
        (contents / sub).mkdir(parents=True)
    (contents / "MacOS" / name).write_bytes(program if program is not None else fake_app(version))
    (contents / "MacOS" / name).chmod(0o755)
    (contents / "Frameworks" / "libpython.dylib").write_bytes(b"lib\n")
    (contents / "Resources" / "base_library.zip").write_bytes(f"modules of {version}\n".encode())
    (contents / "Frameworks" / "base_library.zip").symlink_to("../Resources/base_library.zip")
    (contents / "Info.plist").write_bytes(
        plistlib.dumps({"CFBundleExecutable": name, "CFBundleShortVersionString": version})
    )
    return path


def tree(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = ("-> " + os.readlink(p)) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


# --- the exchange ---------------------------------------------------------------------------------


@pytest.mark.skipif(not EXCHANGE, reason="renameat2 is Linux's, renamex_np macOS's")
def test_two_bundles_are_exchanged_in_one_step(tmp_path: Path) -> None:
    old, new = make_bundle(tmp_path / "Notes.app", "1.0.0"), make_bundle(tmp_path / ".new", "2.0.0")
    inode = (old / "Contents" / "MacOS").stat().st_ino
    exchange_paths(str(new), str(old))
    assert (old / "Contents" / "MacOS" / "app").read_bytes() == fake_app("2.0.0")
    assert (new / "Contents" / "MacOS" / "app").read_bytes() == fake_app("1.0.0")
    assert (new / "Contents" / "MacOS").stat().st_ino == inode  # the old bundle moved whole, nothing copied
    with pytest.raises(FileNotFoundError):
        exchange_paths(str(tmp_path / "missing"), str(old))


class FakeLibc:
    """A C library that records its calls and returns what it is told, setting errno as libc does."""

    def __init__(self, result: int = 0, error: int = 0) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.result, self.error = result, error
        for name in ("renamex_np", "renameat2", "removexattr"):
            setattr(self, name, self._function(name))

    def _function(self, name: str) -> Any:
        def call(*args: Any) -> int:
            self.calls.append((name, args))
            if self.result != 0:
                ctypes.set_errno(self.error)
            return self.result

        return _Callable(call)


class _Callable:
    def __init__(self, function: Callable[..., int]) -> None:
        self.function, self.argtypes, self.restype = function, None, None

    def __call__(self, *args: Any) -> int:
        return self.function(*args)


def test_on_macos_the_exchange_is_renamex_np_with_rename_swap_and_errors_name_both_paths() -> None:
    libc = FakeLibc()
    exchange_paths("/Applications/.Notes.app.gupper-previous-1", "/Applications/Notes.app", "darwin", libc)
    assert libc.calls == [
        ("renamex_np", (b"/Applications/.Notes.app.gupper-previous-1", b"/Applications/Notes.app", RENAME_SWAP))
    ]
    linux = FakeLibc()
    exchange_paths("/a", "/b", "linux", linux)
    assert linux.calls == [("renameat2", (AT_FDCWD, b"/a", AT_FDCWD, b"/b", RENAME_EXCHANGE))]
    refused = FakeLibc(result=-1, error=errno.ENOTSUP)  # an HFS volume over SMB, FAT: no swap
    with pytest.raises(OSError) as info:
        exchange_paths("/a", "/b", "darwin", refused)
    assert info.value.errno == errno.ENOTSUP and (info.value.filename, info.value.filename2) == ("/a", "/b")
    with pytest.raises(OSError) as nothing:
        exchange_paths("/a", "/b", "win32", FakeLibc())
    assert nothing.value.errno == errno.ENOSYS


class SwapFS:
    """FileOps for the swap: no exchange here (a FAT or network volume); renames optionally refused."""

    def __init__(self, refuse_rename: int = 0) -> None:
        self.renames: list[tuple[str, str]] = []
        self.refuse = refuse_rename

    def ops(self) -> FileOps:
        def exchange(a: str, b: str) -> None:
            raise OSError(errno.EINVAL, "Invalid argument", a, None, b)

        def rename(a: str, b: str) -> None:
            self.renames.append((Path(a).name, Path(b).name))
            if len(self.renames) == self.refuse:
                raise PermissionError(errno.EACCES, "Permission denied", a)
            os.rename(a, b)

        return FileOps(exchange=exchange, rename=rename)


def test_without_an_exchange_the_swap_is_three_renames_and_a_failed_one_is_undone(tmp_path: Path) -> None:
    old, new = make_bundle(tmp_path / "Notes.app", "1.0.0"), make_bundle(tmp_path / "backup", "2.0.0")
    fs = SwapFS()
    swap(new, old, fs.ops())
    assert plistlib.loads((old / "Contents" / "Info.plist").read_bytes())["CFBundleShortVersionString"] == "2.0.0"
    assert plistlib.loads((new / "Contents" / "Info.plist").read_bytes())["CFBundleShortVersionString"] == "1.0.0"
    aside = fs.renames[0][1]
    assert fs.renames == [
        ("backup", aside),
        ("Notes.app", "backup"),
        (aside, "Notes.app"),
    ]  # new aside, old out, new in
    before_old, before_new = tree(old), tree(new)
    refused = SwapFS(refuse_rename=3)  # the new one cannot go in: the old one goes back
    with pytest.raises(
        InstallError, match=r"cannot swap Notes\.app for its update: Permission denied; it was left as it was"
    ):
        swap(new, old, refused.ops())
    assert tree(old) == before_old and tree(new) == before_new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Notes.app", "backup"]


# --- macOS calls, injected ------------------------------------------------------------------------


def test_the_quarantine_attribute_is_removed_from_every_path_of_the_new_bundle_links_not_followed(
    tmp_path: Path,
) -> None:
    bundle = make_bundle(tmp_path / "Notes.app", "2.0.0")
    (tmp_path / "outside").write_text("not ours")
    (bundle / "Contents" / "Resources" / "escape").symlink_to("../../../outside")
    removed: list[tuple[str, str]] = []
    visited = strip_quarantine(bundle, FileOps(remove_xattr=lambda p, name: removed.append((p, name))))
    expected = [bundle, *sorted(bundle.rglob("*"))]
    assert sorted(removed) == sorted((str(p), QUARANTINE) for p in expected) and visited == len(expected)
    assert str(tmp_path / "outside") not in {p for p, _ in removed}
    # the real macOS call: removexattr(path, name, XATTR_NOFOLLOW); "no such attribute" is no error
    libc = FakeLibc()
    remove_xattr("/Applications/Notes.app", QUARANTINE, "darwin", libc)
    assert libc.calls == [("removexattr", (b"/Applications/Notes.app", QUARANTINE.encode(), XATTR_NOFOLLOW))]
    remove_xattr("/x", QUARANTINE, "darwin", FakeLibc(result=-1, error=93))  # ENOATTR
    with pytest.raises(OSError):
        remove_xattr("/x", QUARANTINE, "darwin", FakeLibc(result=-1, error=errno.EPERM))
    linux = FakeLibc()
    remove_xattr("/x", QUARANTINE, "linux", linux)
    assert linux.calls == []  # no quarantine off macOS
    with pytest.raises(InstallError, match="cannot remove the quarantine attribute from"):

        def refuse(path: str, name: str) -> None:
            raise PermissionError(errno.EPERM, "Operation not permitted", path)

        strip_quarantine(bundle, FileOps(remove_xattr=refuse))


SIGNED = """Executable=/Applications/Notes.app/Contents/MacOS/notes
Identifier=com.example.notes
Format=app bundle with Mach-O thin (arm64)
CodeDirectory v=20500 size=1234 flags=0x10000(runtime) hashes=27+7 location=embedded
Signature size=9000
Authority=Developer ID Application: Example Ltd (AB12CD34EF)
Authority=Developer ID Certification Authority
Authority=Apple Root CA
Timestamp=1 Dec 2026 at 10:00:00
Info.plist entries=20
TeamIdentifier={team}
Runtime Version=14.0.0
Sealed Resources version=2 rules=13 files=120
Internal requirements count=1 size=180
"""
AD_HOC = """Executable=/Applications/Notes.app/Contents/MacOS/notes
Identifier=notes
Format=app bundle with Mach-O thin (arm64)
CodeDirectory v=20400 size=1000 flags=0x20002(adhoc,linker-signed) hashes=20+0 location=embedded
Signature=adhoc
Info.plist=not bound
TeamIdentifier=not set
Sealed Resources=none
Internal requirements=none
"""


def codesign(
    answers: dict[tuple[str, str], tuple[int, str]],
) -> tuple[list[list[str]], Callable[[Sequence[str]], tuple[int, str]]]:
    calls: list[list[str]] = []

    def run(args: Sequence[str]) -> tuple[int, str]:
        calls.append(list(args))
        return answers[args[0], Path(args[-1]).name]

    return calls, run


def test_a_bundle_signed_by_a_team_takes_only_a_validly_signed_bundle_of_the_same_team(tmp_path: Path) -> None:
    installed, new = tmp_path / "Notes.app", tmp_path / ".Notes.app.gupper-1.tmp"
    assert team_identifier(SIGNED.format(team="AB12CD34EF")) == "AB12CD34EF" and team_identifier(AD_HOC) is None
    same = {
        ("--display", "Notes.app"): (0, SIGNED.format(team="AB12CD34EF")),
        ("--verify", new.name): (0, ""),
        ("--display", new.name): (0, SIGNED.format(team="AB12CD34EF")),
    }
    calls, run = codesign(same)
    check_team(installed, new, "2.0.0", FileOps(codesign=run))
    assert calls == [
        ["--display", "--verbose=2", str(installed)],
        ["--verify", "--deep", "--strict", str(new)],
        ["--display", "--verbose=2", str(new)],
    ]
    other = {**same, ("--display", new.name): (0, SIGNED.format(team="ZZ99ZZ99ZZ"))}
    with pytest.raises(PreflightFailedError, match="signed by team ZZ99ZZ99ZZ, the installed app by team AB12CD34EF"):
        check_team(installed, new, "2.0.0", FileOps(codesign=codesign(other)[1]))
    ad_hoc_new = {**same, ("--display", new.name): (0, AD_HOC)}
    with pytest.raises(PreflightFailedError, match=r"signed by team none \(ad hoc\)"):
        check_team(installed, new, "2.0.0", FileOps(codesign=codesign(ad_hoc_new)[1]))
    broken = {**same, ("--verify", new.name): (1, f"{new}: a sealed resource is missing or invalid")}
    with pytest.raises(
        PreflightFailedError, match=r"does not carry a valid code signature .*a sealed resource is missing"
    ):
        check_team(installed, new, "2.0.0", FileOps(codesign=codesign(broken)[1]))
    # PyInstaller's ad hoc signature (or none, or not macOS): no Team ID to compare, nothing checked
    for answer in ((0, AD_HOC), (1, "code object is not signed at all"), (127, "not here")):
        calls, run = codesign({("--display", "Notes.app"): answer})
        check_team(installed, new, "2.0.0", FileOps(codesign=run))
        assert len(calls) == 1


def test_a_translocated_app_is_refused_with_where_to_move_it() -> None:
    path = Path("/private/var/folders/xy/T/AppTranslocation/1A2B/d/Notes.app")
    with pytest.raises(InstallError) as info:
        check_not_translocated(path)
    assert str(info.value) == (
        "cannot update Notes.app: macOS runs it from a read-only copy (App Translocation, for an app started where "
        "it was downloaded); move Notes.app to /Applications (drag it there in the Finder) and start it from there"
    )
    check_not_translocated(Path("/Applications/Notes.app"))


def test_after_the_swap_the_running_app_loads_its_own_files_from_the_backup() -> None:
    sysmod: Any = types.ModuleType("sys")
    sysmod._MEIPASS = "/Applications/Notes.app/Contents/Frameworks"
    sysmod.path = [
        "/Applications/Notes.app/Contents/Frameworks/base_library.zip",
        "/Applications/Notes.app/Contents/Frameworks/lib-dynload",
        "/Applications/Notes.app/Contents/Frameworks",
        "/Applications/Notes.application/elsewhere",  # another folder whose name starts the same
    ]
    sysmod.path_importer_cache = {"x": None}
    backup = Path("/Applications/.Notes.app.gupper-previous-1")
    assert follow_moved_bundle(Path("/Applications/Notes.app"), backup, sysmod)
    assert f"{backup}/Contents/Frameworks" == sysmod._MEIPASS
    assert sysmod.path == [
        f"{backup}/Contents/Frameworks/base_library.zip",
        f"{backup}/Contents/Frameworks/lib-dynload",
        f"{backup}/Contents/Frameworks",
        "/Applications/Notes.application/elsewhere",
    ]
    assert sysmod.path_importer_cache == {}
    assert not follow_moved_bundle(Path("/Applications/Other.app"), backup, sysmod)


# --- through the updater --------------------------------------------------------------------------


def serve_bundle(sim: Sim, tmp_path: Path, version: str, serial: int = 1, **kw: Any) -> Path:
    """Publish ``version`` as an ``app`` release: the bundle's Contents/ packed as the publisher does."""
    bundle = make_bundle(tmp_path / f"dist-{version}" / "Notes.app", version, **kw)
    serve_package(sim, bundle, tmp_path, version, serial=serial, kind="app")
    return bundle


def bundle_updater(
    sim: Sim, bundle: Path, version: str = "1.0.0", file_ops: FileOps | None = None, **kw: Any
) -> Updater:
    program, state = str(bundle / "Contents" / "MacOS" / "app"), str(bundle.parent.parent / "state")
    return folder_updater(
        sim, FolderLayout(bundle, "app"), version, file_ops, executable=program, state_dir=state, **kw
    )


def run_bundle(bundle: Path) -> str:
    return subprocess.run(
        [bundle / "Contents" / "MacOS" / "app"], capture_output=True, text=True, check=True, timeout=60
    ).stdout


@pytest.mark.skipif(not EXCHANGE, reason="renameat2 is Linux's, renamex_np macOS's")
def test_an_app_bundle_is_swapped_whole_kept_for_rollback_and_rolled_back_when_it_never_confirms(
    sim: Sim, tmp_path: Path
) -> None:
    applications = tmp_path / "Applications"
    bundle = make_bundle(applications / "Notes.app", "1.0.0")
    old_inode = (bundle / "Contents" / "MacOS").stat().st_ino
    published = serve_bundle(sim, tmp_path, "2.0.0")
    xattrs: list[str] = []
    ops = FileOps(remove_xattr=lambda path, name: xattrs.append(path))
    up = bundle_updater(sim, bundle, file_ops=ops)
    assert up.layout is not None and up.layout.kind == "app" and up.folder is None
    result = up.run(restart=False)
    assert result.status is Status.INSTALLED, result.message
    assert tree(bundle) == tree(published) and run_bundle(bundle) == "2.0.0\n"  # no file list left inside it
    (backup,) = backups_of(bundle)
    assert (backup / "Contents" / "MacOS").stat().st_ino == old_inode and run_bundle(backup) == "1.0.0\n"
    assert sorted(p.name for p in applications.iterdir()) == [backup.name, "Notes.app"]
    assert backup.name.startswith(".Notes.app.gupper-previous-")
    trial = StateFile(tmp_path / "state").load().trial
    assert trial is not None and trial.target == str(bundle) and trial.backup == str(backup)
    assert len(xattrs) == len(list(published.rglob("*"))) + 1 and all(".tmp" in p for p in xattrs)  # before the swap
    assert up.layout.entry_point(None) == bundle / "Contents" / "MacOS" / "app"  # the restart runs the new bundle
    for _ in range(2):  # 2.0.0 starts twice and never confirms (it crashes after its update check)
        assert bundle_updater(sim, bundle, "2.0.0").run(restart=False).status is Status.UP_TO_DATE
    rolled = bundle_updater(sim, bundle, "2.0.0").run(restart=False)
    assert rolled.status is Status.ROLLED_BACK and rolled.version == "1.0.0"
    assert run_bundle(bundle) == "1.0.0\n" and (bundle / "Contents" / "MacOS").stat().st_ino == old_inode
    back = bundle_updater(sim, bundle, "1.0.0")
    assert "marked bad" in back.run(restart=False).message
    assert sorted(p.name for p in applications.iterdir()) == ["Notes.app"]  # the failed 2.0.0 removed
    back.confirm()


@pytest.mark.skipif(not EXCHANGE, reason="renameat2 is Linux's, renamex_np macOS's")
def test_a_bundle_from_another_team_or_without_its_program_is_refused_and_marked_bad(sim: Sim, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "Applications" / "Notes.app", "1.0.0")
    before = tree(bundle)
    serve_bundle(sim, tmp_path / "2", "2.0.0")

    def signed_by(new_team: str) -> Callable[[Sequence[str]], tuple[int, str]]:
        def run(args: Sequence[str]) -> tuple[int, str]:
            installed = Path(args[-1]).name == "Notes.app"
            return (
                (0, "") if args[0] == "--verify" else (0, SIGNED.format(team="AB12CD34EF" if installed else new_team))
            )

        return run

    result = bundle_updater(sim, bundle, file_ops=FileOps(codesign=signed_by("ZZ99ZZ99ZZ"))).run(restart=False)
    assert result.status is Status.FAILED
    assert "signed by team ZZ99ZZ99ZZ, the installed app by team AB12CD34EF; not installed" in result.message
    assert tree(bundle) == before and sorted(p.name for p in bundle.parent.iterdir()) == ["Notes.app"]
    again = bundle_updater(sim, bundle, file_ops=FileOps(codesign=signed_by("ZZ99ZZ99ZZ"))).run(restart=False)
    assert again.status is Status.UP_TO_DATE and "marked bad" in again.message
    # the check is Sparkle's rule, on by default; an app that signs its releases otherwise turns it off
    serve_bundle(sim, tmp_path / "3", "3.0.0", serial=2)
    unchecked = bundle_updater(sim, bundle, file_ops=FileOps(codesign=signed_by("ZZ99ZZ99ZZ")), check_team_id=False)
    assert unchecked.run(restart=False).status is Status.INSTALLED and run_bundle(bundle) == "3.0.0\n"
    # a release whose program has another name: the bundle it would leave could not be started as this one
    serve_bundle(sim, tmp_path / "4", "4.0.0", serial=3, name="Notes")
    renamed = bundle_updater(sim, bundle, "3.0.0").run(restart=False)
    assert renamed.status is Status.FAILED and "has no Contents/MacOS/app" in renamed.message
    assert run_bundle(bundle) == "3.0.0\n"

"""The bundles users really ship (issue 21), end to end with real PyInstaller one-folder builds of the
demo app, published through the local S3 store:

- a one-folder build copied by hand (``cp -r dist/app-1.0.0-<platform> ~/opt/app``) updates itself
  twice, 1.0.0 -> 2.0.0 -> 3.0.0, arranging itself into ``versions/`` + ``current`` on the first
  update while a 1.0.0 started from the plain copy keeps running on its own files;
- SIGKILL at every step boundary of that first update leaves an app that starts from the same
  path and finishes the update;
- a macOS app bundle: a real ``--windowed`` one-folder build laid out as PyInstaller 6 lays out a
  ``.app`` (``Contents/MacOS``, ``Contents/Frameworks`` and ``Contents/Resources`` cross-linked,
  ``Info.plist``), published as an ``app`` release, swapped whole for the new bundle with
  ``renameat2(RENAME_EXCHANGE)``, relaunched from the bundle, and swapped back when the next
  release crashes at every start.
"""

from __future__ import annotations

import os
import plistlib
import select
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.build import build_app
from gupper.bundle import backups_of
from gupper.folder import FolderLayout
from gupper.state import StateFile

from .e2e_support import E2E, PLATFORM, gupper_lines
from .test_e2e_folder import GREETING, STEPS, build_folders, same_tree

pytestmark = [pytest.mark.e2e, pytest.mark.posix]
WAIT = 120.0
"""Bound on waiting for a started app to print its first line."""


@pytest.fixture
def env(e2e: E2E) -> E2E:
    e2e.clear()
    return e2e


def copy_by_hand(tmp: Path, build: Path) -> Path:
    """What a user or an installer does with a one-folder build: the folder, copied as it is."""
    root = tmp / "opt" / "app"
    shutil.copytree(build, root, symlinks=True)
    return root


def test_a_one_folder_app_copied_by_hand_updates_itself_twice(env: E2E, tmp_path: Path) -> None:
    v1, v2, v3 = build_folders(env, "1.0.0", "2.0.0", "3.0.0")
    root = copy_by_hand(tmp_path, v1)
    layout = FolderLayout(root, "app")
    env.publish(v1)
    # A 1.0.0 started from the plain copy, still running through both updates (an app left open)
    holder = subprocess.Popen(
        [str(root / "app")],
        env=env.app_env(tmp_path, {"GUPPER_DEMO_HOLD": "1"}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and select.select([holder.stdout], [], [], WAIT)[0], "the holder never started"
        assert holder.stdout.readline().strip() == GREETING.format("1.0.0")
        env.publish(v2)
        first = env.run_app(root / "app", tmp_path)
        assert first.returncode == 0 and first.stdout.splitlines() == [GREETING.format("2.0.0")], first.stderr
        lines = gupper_lines(first.stderr)
        assert lines[0].startswith("gupper: updating app 1.0.0 -> 2.0.0 ("), lines
        arranged = f"gupper: arranged {root} for updates (versions/1.0.0 and current; app starts the app as before)"
        assert lines[1] == arranged
        assert "gupper: now running 2.0.0" in lines
        assert os.readlink(root / "app") == "current/app" and os.readlink(layout.current) == "versions/2.0.0"
        assert same_tree(layout.version_dir("2.0.0"), v2) and same_tree(layout.version_dir("1.0.0"), v1)
        assert (root / "_internal").is_dir()  # the running 1.0.0's own files: kept while it runs
        assert holder.poll() is None
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    env.publish(v3)
    second = env.run_app(root / "app", tmp_path)
    assert second.returncode == 0 and second.stdout.splitlines() == [GREETING.format("3.0.0")], second.stderr
    assert os.readlink(layout.current) == "versions/3.0.0" and same_tree(layout.version_dir("3.0.0"), v3)
    assert sorted(p.name for p in root.iterdir()) == ["app", "current", "versions"]  # the plain copy's files: gone
    assert sorted(p.name for p in layout.versions.iterdir()) == ["2.0.0", "3.0.0"]
    again = env.run_app(root / "app", tmp_path)
    assert again.returncode == 0 and again.stdout.splitlines() == [GREETING.format("3.0.0")]


def test_sigkill_at_every_step_of_the_first_update_of_a_copy_by_hand_leaves_an_app_that_starts(
    env: E2E, tmp_path: Path
) -> None:
    v1, v2 = build_folders(env, "1.0.0", "2.0.0")
    env.publish(v1, v2)
    kills = 0
    for step in STEPS:
        tmp = tmp_path / step
        root = copy_by_hand(tmp, v1)
        killed = env.run_app(root / "app", tmp, env={"GUPPER_DEMO_KILL_AT": step})
        assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (step, killed.returncode, killed.stderr)
        kills += 1
        assert os.access(root / "app", os.X_OK), step  # the plain app, or the link to current/app
        proc = env.run_app(root / "app", tmp)
        assert proc.returncode == 0, (step, proc.stderr)
        assert proc.stdout.splitlines() == [GREETING.format("2.0.0")], (step, proc.stderr)
        layout = FolderLayout(root, "app")
        assert os.readlink(root / "app") == "current/app" and os.readlink(layout.current) == "versions/2.0.0", step
        assert same_tree(layout.version_dir("2.0.0"), v2), step
        assert sorted(p.name for p in root.iterdir()) == ["app", "current", "versions"], step
        assert {p.name for p in layout.versions.iterdir()} <= {"1.0.0", "2.0.0"}, step
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ncopy-by-hand first-update kills: {kills} of {len(STEPS)} steps, 0 failures")


# --- a macOS app bundle, laid out on Linux ---------------------------------------------------------


def build_windowed(env: E2E, *versions: tuple[str, str]) -> list[Path]:
    """One-folder ``--windowed`` builds of the demo, (version, fault) each, cached across the session."""
    out = env.build_dir / "dist-windowed"

    def one(spec: tuple[str, str]) -> Path:
        version, fault = spec
        return build_app(
            version,
            env.manifest_url,
            [env.key.public],
            out / (fault or "plain"),
            cache_dir=env.build_dir / "cache",
            onedir=True,
            windowed=True,
            fault=fault,
        )

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, versions))


def lay_out_as_app(build: Path, bundle: Path, version: str) -> Path:
    """A one-folder build laid out as PyInstaller 6 lays out a macOS ``.app``: the program in
    ``Contents/MacOS``, binaries in ``Contents/Frameworks`` and data in ``Contents/Resources``, each
    cross-linked into the other, and ``Info.plist``. Linux's bootloader looks for its files in
    ``_internal`` beside the program (macOS's finds ``Contents/Frameworks`` by itself): a link."""
    contents = bundle / "Contents"
    for sub in ("MacOS", "Frameworks", "Resources"):
        (contents / sub).mkdir(parents=True)
    shutil.copy2(build / "app", contents / "MacOS" / "app")
    (contents / "MacOS" / "_internal").symlink_to("../Frameworks")
    internal = build / "_internal"
    for path in sorted(internal.rglob("*")):
        rel = path.relative_to(internal)
        if path.is_dir() and not path.is_symlink():
            (contents / "Frameworks" / rel).mkdir(exist_ok=True)
            (contents / "Resources" / rel).mkdir(exist_ok=True)
            continue
        binary = path.is_file() and path.read_bytes()[:4] == b"\x7fELF"
        home, other = ("Frameworks", "Resources") if binary else ("Resources", "Frameworks")
        shutil.copy2(path, contents / home / rel, follow_symlinks=False)
        up = "../" * len(rel.parts)
        (contents / other / rel).symlink_to(f"{up}{home}/{rel.as_posix()}")
    (contents / "Info.plist").write_bytes(
        plistlib.dumps(
            {
                "CFBundleExecutable": "app",
                "CFBundleIdentifier": "com.example.gupper-demo",
                "CFBundleName": "Demo",
                "CFBundlePackageType": "APPL",
                "CFBundleShortVersionString": version,
                "NSHighResolutionCapable": True,
            }
        )
    )
    return bundle


def bundle_tree(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every path under a bundle: a link's target, or a file's bytes."""
    out: dict[str, tuple[str, bytes]] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p).encode())
        elif p.is_file():
            out[rel] = ("file", p.read_bytes())
        else:
            out[rel] = ("dir", b"")
    return out


def test_an_app_bundle_is_published_swapped_whole_relaunched_and_swapped_back_from_a_crashing_release(
    env: E2E, tmp_path: Path
) -> None:
    v1, v2, v3 = build_windowed(env, ("1.0.0", ""), ("2.0.0", ""), ("3.0.0", "crash-after-update-check"))
    dist = tmp_path / "dist"
    releases = {
        v: lay_out_as_app(build, dist / f"app-{v}-{PLATFORM.key}.app", v)
        for v, build in (("1.0.0", v1), ("2.0.0", v2), ("3.0.0", v3))
    }
    published = env.publish(releases["1.0.0"], releases["2.0.0"])
    assert f"app-2.0.0-{PLATFORM.key}.app.tar.gz" in published.stdout
    applications = tmp_path / "Applications"
    demo = applications / "Demo.app"
    shutil.copytree(releases["1.0.0"], demo, symlinks=True)  # dragged to Applications
    old_program = (demo / "Contents" / "MacOS" / "app").stat().st_ino
    program = demo / "Contents" / "MacOS" / "app"

    # killed right after the swap, before it relaunches: what the swap left can be seen
    first = env.run_app(program, tmp_path, env={"GUPPER_DEMO_KILL_AT": "restarting"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert gupper_lines(first.stderr)[0].startswith("gupper: updating app 1.0.0 -> 2.0.0 (")
    assert bundle_tree(demo) == bundle_tree(releases["2.0.0"])  # the whole bundle, nothing of the old one in it
    (backup,) = backups_of(demo)
    assert (backup / "Contents" / "MacOS" / "app").stat().st_ino == old_program  # swapped out whole, not copied
    assert bundle_tree(backup) == bundle_tree(releases["1.0.0"])
    again = env.run_app(program, tmp_path)
    assert again.returncode == 0 and again.stdout.splitlines() == [GREETING.format("2.0.0")], again.stderr
    assert backups_of(demo) == []  # 2.0.0 started and confirmed: the backup went

    env.publish(releases["3.0.0"])
    crashed = env.run_app(program, tmp_path)  # installs 3.0.0 and relaunches into it, which crashes
    assert crashed.returncode == 3 and "demo fault: crashing at crash-after-update-check" in crashed.stderr
    assert "gupper: now running 3.0.0" in gupper_lines(crashed.stderr)
    assert env.run_app(program, tmp_path).returncode == 3  # its second start: crashes again
    rolled = env.run_app(program, tmp_path)  # its third: swapped back, and 2.0.0 starts in its place
    assert rolled.returncode == 0 and rolled.stdout.splitlines() == [GREETING.format("2.0.0")], rolled.stderr
    assert any("3.0.0 started 2 times without Updater.confirm()" in line for line in gupper_lines(rolled.stderr))
    assert bundle_tree(demo) == bundle_tree(releases["2.0.0"])
    assert "3.0.0" in StateFile(tmp_path / "state").load().bad_versions
    last = env.run_app(program, tmp_path)
    assert last.returncode == 0 and last.stdout.splitlines() == [GREETING.format("2.0.0")]
    assert any("skipping 3.0.0, marked bad on this machine" in line for line in gupper_lines(last.stderr))
    assert sorted(p.name for p in applications.iterdir()) == ["Demo.app"]  # the failed bundle removed too

"""One-folder apps end to end: real PyInstaller one-folder builds published as archives through the
S3 store process, installed as ``<root>/versions/<version>/`` with a ``current`` link; SIGKILL at
every step boundary leaves a runnable v1 or v2."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.build import build_app
from gupper.folder import FolderLayout
from gupper.manifest import canonical_bytes
from gupper.package import scan_folder
from gupper.wire.files import LIST_NAME
from gupper_publish.signing import sign_manifest

from .e2e_support import E2E, PLATFORM, gupper_lines

pytestmark = [pytest.mark.e2e, pytest.mark.posix]

GREETING = "Hello from the Gupper demo app, version {}"
STEPS = [
    "checked",
    "download-started",
    "download-half",
    "downloaded",
    "extracted",
    "preflight-passed",
    "trial-started",
    "swapped",
    "restarting",
]


@pytest.fixture
def env(e2e: E2E) -> E2E:
    e2e.clear()
    return e2e


def build_folders(env: E2E, *versions: str) -> list[Path]:
    """One-folder builds ``app-<version>-<os>-<arch>/`` (cached across the session by build_app)."""
    out = env.build_dir / "dist-onedir"

    def one(version: str) -> Path:
        return build_app(
            version, env.manifest_url, [env.key.public], out, cache_dir=env.build_dir / "cache", onedir=True
        )

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, versions))


def install_folder(tmp: Path, build: Path, version: str) -> FolderLayout:
    """Install a one-folder build as an installer would: ``versions/<version>/`` and ``current``."""
    layout = FolderLayout(tmp / "install", "app")
    layout.versions.mkdir(parents=True)
    shutil.copytree(build, layout.version_dir(version), symlinks=True)
    layout.current.symlink_to(f"versions/{version}")
    return layout


def run(
    env: E2E, layout: FolderLayout, tmp: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return env.run_app(layout.current / "app", tmp, env=extra)


def same_tree(a: Path, b: Path) -> bool:
    def listing(root: Path) -> list[tuple[str, bytes]]:
        paths = [
            p for p in sorted(root.rglob("*")) if p.name != LIST_NAME
        ]  # the updater keeps the file list with each version
        return [
            (p.relative_to(root).as_posix(), p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
            for p in paths
        ]

    return listing(a) == listing(b)


def test_a_folder_app_updates_through_the_store_and_runs_the_new_version(env: E2E, tmp_path: Path) -> None:
    v1, v2 = build_folders(env, "1.0.0", "2.0.0")
    publish = env.publish(v1, v2)
    assert f"app-2.0.0-{PLATFORM.key}.tar.gz" in publish.stdout
    layout = install_folder(tmp_path, v1, "1.0.0")
    proc = run(env, layout, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [GREETING.format("2.0.0")], proc.stderr
    lines = gupper_lines(proc.stderr)
    assert any(line.startswith("gupper: updating app 1.0.0 -> 2.0.0") for line in lines), lines
    assert "gupper: now running 2.0.0" in lines
    assert os.readlink(layout.current) == "versions/2.0.0"
    assert sorted(p.name for p in layout.versions.iterdir()) == ["1.0.0", "2.0.0"]
    assert sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"]
    assert same_tree(layout.version_dir("2.0.0"), v2)
    again = run(env, layout, tmp_path)
    assert again.returncode == 0 and again.stdout.splitlines() == [GREETING.format("2.0.0")]
    assert len(env.artifact_gets()) == 1


def test_sigkill_at_every_step_boundary_leaves_a_runnable_folder_app(env: E2E, tmp_path: Path) -> None:
    v1, v2 = build_folders(env, "1.0.0", "2.0.0")
    env.publish(v1, v2)
    kills = 0
    for step in STEPS:
        tmp = tmp_path / step
        layout = install_folder(tmp, v1, "1.0.0")
        killed = run(env, layout, tmp, {"GUPPER_DEMO_KILL_AT": step})
        assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (step, killed.returncode, killed.stderr)
        kills += 1
        assert layout.current_version("linux") in {"1.0.0", "2.0.0"}, step
        assert (layout.current / "app").is_file(), step
        proc = run(env, layout, tmp)
        assert proc.returncode == 0, (step, proc.stderr)
        assert proc.stdout.splitlines() == [GREETING.format("2.0.0")], (step, proc.stderr)
        assert os.readlink(layout.current) == "versions/2.0.0" and same_tree(layout.version_dir("2.0.0"), v2), step
        assert sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"], step
        assert set(p.name for p in layout.versions.iterdir()) <= {"1.0.0", "2.0.0"}, step
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nfolder step kills: {kills} of {len(STEPS)} steps, 0 failures")


# --- a signed manifest naming a malicious archive: only the package checks stand in the way ---

EVIL = b"#!/bin/sh\necho pwned\n"
ESCAPE = "../../../outside"  # from <tmp>/install/versions/.2.0.0.gupper-<hex>.tmp/ to the sentinel <tmp>/outside/


def _tar_info(name: str, kind: bytes, *, size: int = 0, mode: int = 0o644, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.linkname = kind, size, mode, linkname
    return info


def _file(path: str, data: bytes) -> dict[str, Any]:
    return {"path": path, "type": "file", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "mode": 0o644}


def malicious_archive(v2: Path, out: Path, case: str) -> tuple[int, str, str]:
    """The real v2 package (its file list, then every file) with an attack in it: the list and the
    tar agree with each other (listed) or the list is v2's own and only the tar lies; returns the
    archive's size, sha256 and its list's sha256, as a compromised signer would put them in the manifest."""
    genuine = scan_folder(v2)
    entries: list[dict[str, Any]] = [e.to_json() for e in genuine]
    tail: list[tuple[tarfile.TarInfo, bytes | None]] = []  # after v2's own members: a half-extracted folder to clean up
    oversize = ""
    if case == "traversal (listed)":
        entries.append(_file(f"{ESCAPE}/evil", EVIL))
        tail.append((_tar_info(f"{ESCAPE}/evil", tarfile.REGTYPE, size=len(EVIL)), EVIL))
    elif case == "traversal (tar only)":
        tail.append((_tar_info(f"{ESCAPE}/evil", tarfile.REGTYPE, size=len(EVIL)), EVIL))
    elif case == "symlink out and a file through it (listed)":
        entries += [{"path": "escape", "type": "link", "target": ESCAPE}, _file("escape/evil", EVIL)]
        tail += [
            (_tar_info("escape", tarfile.SYMTYPE, linkname=ESCAPE), None),
            (_tar_info("escape/evil", tarfile.REGTYPE, size=len(EVIL)), EVIL),
        ]
    elif case == "symlink out and a file through it (tar only)":
        entries += [{"path": "escape", "type": "dir"}, _file("escape/evil", EVIL)]
        tail += [
            (_tar_info("escape", tarfile.SYMTYPE, linkname=ESCAPE), None),
            (_tar_info("escape/evil", tarfile.REGTYPE, size=len(EVIL)), EVIL),
        ]
    else:
        assert case == "oversize", case
        oversize = "app"  # the executable, with more bytes than its listed size and sha256 cover
    listing = canonical_bytes(
        {"_type": "gupper-files", "schema": 1, "files": sorted(entries, key=lambda e: str(e["path"]))}
    )
    with (
        out.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_tar_info(LIST_NAME, tarfile.REGTYPE, size=len(listing)), io.BytesIO(listing))
        for e in genuine:
            if e.kind == "dir":
                tar.addfile(_tar_info(e.path, tarfile.DIRTYPE, mode=0o755))
            elif e.kind == "link":
                tar.addfile(_tar_info(e.path, tarfile.SYMTYPE, linkname=e.target))
            else:
                data = (v2 / e.path).read_bytes() + (EVIL if e.path == oversize else b"")
                tar.addfile(_tar_info(e.path, tarfile.REGTYPE, size=len(data), mode=e.mode), io.BytesIO(data))
        for info, payload in tail:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    data = out.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest(), hashlib.sha256(listing).hexdigest()


def serve_malicious(env: E2E, archive: Path, case: str, v2: Path) -> int:
    """Put the malicious archive where 2.0.0's was and re-sign the manifest for it with the real
    release key (a higher serial, the malicious size and hashes), as a stolen key would; returns its size."""
    s3, bucket = env.s3(), env.store.bucket
    size, sha256, files_sha256 = malicious_archive(v2, archive, case)
    s3.put_object(Bucket=bucket, Key=f"app/2.0.0/app-2.0.0-{PLATFORM.key}.tar.gz", Body=archive.read_bytes())
    signed = json.loads(s3.get_object(Bucket=bucket, Key="app/stable/latest.json")["Body"].read())["signed"]
    entry = signed["platforms"][PLATFORM.key]
    assert entry["version"] == "2.0.0" and entry["type"] == "archive" and entry["sha256"] != sha256
    entry.update(size=size, sha256=sha256, files_sha256=files_sha256)
    signed["serial"] += 1
    s3.put_object(Bucket=bucket, Key="app/stable/latest.json", Body=sign_manifest(signed, [env.key.private]))
    return size


def tree(root: Path, skip: str) -> dict[str, tuple[Any, ...]]:
    """Everything under ``root`` (links not followed) but ``skip``: type, mode, size, link target, and
    a file's mtime (a directory's changes when the update's temp files come and go beside it)."""
    out: dict[str, tuple[Any, ...]] = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(top, d) != root / skip]
        for name in (*dirs, *files):
            path = Path(top, name)
            st = path.lstat()
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            mtime = st.st_mtime_ns if stat.S_ISREG(st.st_mode) else 0
            out[path.relative_to(root).as_posix()] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_size,
                mtime,
                target,
            )
    return out


MALICIOUS = {
    "traversal (listed)": "package member '../../../outside/evil' could resolve outside the package; refused",
    "traversal (tar only)": "the package holds '../../../outside/evil', which its file list does not name (or "
    "names once); refused",
    "symlink out and a file through it (listed)": (
        "link 'escape' points to '../../../outside', outside the package; refused"
    ),
    "symlink out and a file through it (tar only)": (
        "package member 'escape' is not the directory its list says; refused"
    ),
    "oversize": "package member 'app' is not a regular file of the listed {app_size} bytes; refused",
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_a_signed_malicious_archive_is_refused_and_the_folder_app_runs_on_untouched(
    env: E2E, tmp_path: Path, case: str
) -> None:
    v1, v2 = build_folders(env, "1.0.0", "2.0.0")
    env.publish(v2)  # the real publisher's manifest and archive entry for 2.0.0 (v1 need not be in the store)
    size = serve_malicious(env, tmp_path / "evil.tar.gz", case, v2)
    layout = install_folder(tmp_path, v1, "1.0.0")
    outside = tmp_path / "outside"  # the sentinel beside the install root that the attacks aim at
    outside.mkdir()
    (tmp_path / "tmpdir").mkdir()
    message = MALICIOUS[case].format(app_size=(v2 / "app").stat().st_size)
    before = tree(tmp_path, skip="state")  # the updater's own state (serials, trial) may change; nothing else may
    env.access_log.write_text("")
    for attempt in ("first run", "next run"):
        proc = run(env, layout, tmp_path)
        assert proc.returncode == 0, (attempt, proc.stderr)
        assert proc.stdout.splitlines() == [GREETING.format("1.0.0")], (attempt, proc.stderr)
        if attempt == "first run":
            updating, refusal = gupper_lines(proc.stderr)  # the download, then one line saying why it was not installed
            assert updating == f"gupper: updating app 1.0.0 -> 2.0.0 ({size} bytes)", (attempt, proc.stderr)
            assert refusal.startswith("gupper: update failed, carrying on with 1.0.0: ") and refusal.endswith(
                message
            ), (attempt, refusal)
        else:  # the signed bytes themselves were refused: 2.0.0 is marked bad and never fetched again
            (skipped,) = gupper_lines(proc.stderr)
            assert skipped.startswith("gupper: skipping 2.0.0, marked bad on this machine (") and message in skipped, (
                proc.stderr
            )
            assert len(env.artifact_gets()) == 1
        assert os.readlink(layout.current) == "versions/1.0.0", attempt
        assert sorted(p.name for p in layout.versions.iterdir()) == ["1.0.0"], attempt  # no temp folder, no 2.0.0
        assert list(outside.iterdir()) == [], attempt
        assert tree(tmp_path, skip="state") == before, attempt

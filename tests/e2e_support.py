"""Session-wide real parts for end-to-end tests: the local S3 store process, a release key,
and real one-file PyInstaller builds of the demo app that trust that key and store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.build import build_app
from gupper.platforms import current_platform
from gupper_infra.client import LocalStore, start_local_store
from gupper_publish.signing import keygen, load_signing_key

ROOT = Path(__file__).resolve().parent.parent
PLATFORM = current_platform()
"""What the demo builds here are named after (``app-<version>-<key>[.exe]``)."""
EXE = "app" + PLATFORM.exe_suffix
"""The installed app's file name: ``app``, ``app.exe`` on Windows (CreateProcess needs the suffix)."""
WINDOWS = PLATFORM.os == "windows"


def artifact(version: str) -> str:
    """The published file name of the demo's one-file build of ``version`` for this platform."""
    return f"app-{version}-{PLATFORM.key}{PLATFORM.exe_suffix}"


@dataclass
class ReleaseKey:
    path: Path
    private: Ed25519PrivateKey
    public: str


@dataclass
class E2E:
    """The store, the key, the builds, and helpers to drive them like a user would."""

    store: LocalStore
    key: ReleaseKey
    access_log: Path
    build_dir: Path
    builds: dict[tuple[str, str], Path] = field(default_factory=dict)

    @property
    def manifest_url(self) -> str:
        return self.store.url("app/stable/latest.json")

    def restart_store(self) -> None:
        """Start a fresh (empty) store on the same ports, after a test stopped it."""
        from urllib.parse import urlsplit

        self.store.stop()
        ports = [str(urlsplit(u).port) for u in (self.store.s3_endpoint, self.store.public_base)]
        self.store = start_local_store(
            self.store.state_dir,
            access_log=self.access_log,
            extra_args=["--s3-port", ports[0], "--public-port", ports[1]],
        )

    def s3(self) -> Any:
        import boto3

        return boto3.client("s3", **self.store.boto3_kwargs())

    def build(self, *versions: str, fault: str = "") -> list[Path]:
        """Build (once per session) the demo app at each version, in parallel; ``fault`` bakes in a crash."""
        missing = [v for v in versions if (v, fault) not in self.builds]
        out = self.build_dir / (f"dist-{fault}" if fault else "dist")

        def one(version: str) -> Path:
            return build_app(
                version, self.manifest_url, [self.key.public], out, cache_dir=self.build_dir / "cache", fault=fault
            )

        with ThreadPoolExecutor(2) as pool:
            self.builds.update(zip([(v, fault) for v in missing], pool.map(one, missing), strict=True))
        return [self.builds[v, fault] for v in versions]

    def publish(
        self, *files: Path, key: Path | None = None, patches: int = 0, extra: Sequence[str] = (), timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``gupper-publish`` through its CLI; no delta patches unless asked (making one takes ~14 s)."""
        cmd = [
            sys.executable,
            "-m",
            "gupper_publish",
            "--store",
            f"s3://{self.store.bucket}",
            "--key",
            str(key or self.key.path),
        ]
        cmd += ["--patches", str(patches), *extra, *map(str, files)]
        proc = subprocess.run(
            cmd,
            env=dict(os.environ, **self.store.s3_env()),
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Any ``gupper-publish`` command against the session's store, signed with its key."""
        cmd = [sys.executable, "-m", "gupper_publish", *args, "--store", f"s3://{self.store.bucket}"]
        if args and args[0] not in ("list", "status", "prune", "init"):
            cmd += ["--key", str(self.key.path)]
        proc = subprocess.run(
            cmd, env=dict(os.environ, **self.store.s3_env()), text=True, capture_output=True, timeout=120, check=False
        )
        assert not check or proc.returncode == 0, proc.stderr
        return proc

    def clear(self) -> None:
        """Empty the bucket so each test sets up exactly the store it needs."""
        s3 = self.s3()
        for obj in s3.list_objects_v2(Bucket=self.store.bucket).get("Contents", []):
            s3.delete_object(Bucket=self.store.bucket, Key=obj["Key"])
        self.access_log.write_text("")

    def install(self, tmp: Path, version: str) -> Path:
        """Copy a build into a fresh install dir as ``app`` (``app.exe``), as an installer would."""
        (exe,) = self.build(version)
        d = tmp / "install"
        d.mkdir(parents=True)
        target = d / EXE
        shutil.copyfile(exe, target)
        target.chmod(0o755)
        return target

    def app_env(self, tmp: Path, env: dict[str, str] | None = None) -> dict[str, str]:
        """The environment the installed app runs with: its own temp dir and state dir under ``tmp``."""
        tmpdir = tmp / "tmpdir"
        tmpdir.mkdir(exist_ok=True, parents=True)
        run_env = {k: v for k, v in os.environ.items() if not k.startswith(("_PYI_", "PYINSTALLER_"))}
        run_env.update(
            REQUESTS_CA_BUNDLE=self.store.ca,
            TMPDIR=str(tmpdir),
            TMP=str(tmpdir),  # Windows: GetTempPath (where the one-file bootloader extracts) reads TMP, then TEMP
            TEMP=str(tmpdir),
            GUPPER_DEMO_STATE_DIR=str(
                tmp / "state"
            ),  # the updater's state per test (gupper.folders ignores XDG_* on macOS and Windows)
            XDG_STATE_HOME=str(tmp / "state"),
            GUPPER_DEMO_DEBUG="1",
            NO_PROXY="127.0.0.1,localhost",
        )
        run_env.update(env or {})
        return run_env

    def run_app(
        self, exe: Path, tmp: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed app with its own TMPDIR, so leftover ``_MEI*`` dirs can be seen."""
        return subprocess.run(
            [str(exe), *args],
            env=self.app_env(tmp, env),
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
            **kw,
        )

    def artifact_gets(self) -> list[dict[str, Any]]:
        """GETs of release binaries the public front served (not manifests, not trial outcome reports)."""
        return [
            r
            for r in self.served()
            if r["method"] == "GET" and not r["path"].endswith("latest.json") and "/outcomes/" not in r["path"]
        ]

    def served(self) -> list[dict[str, Any]]:
        """Requests the public front served, from its access log."""
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gupper_lines(stderr: str) -> list[str]:
    """What the app logged, less the test-only debug lines."""
    return [line for line in stderr.splitlines() if not line.startswith("debug:")]


def meipass_dirs(stderr: str) -> list[str]:
    return [line.split("meipass=", 1)[1] for line in stderr.splitlines() if line.startswith("debug:")]


@pytest.fixture(scope="session")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    if shutil.which("ldd") is None and sys.platform.startswith("linux"):
        pytest.fail("PyInstaller needs ldd (package libc-bin); install it to run the end-to-end tests")
    base = tmp_path_factory.mktemp("e2e")
    key_path, _pub, public = keygen(base / "keys" / "release")
    access_log = base / "access.log"
    store = start_local_store(base / "store", access_log=access_log)
    try:
        yield E2E(
            store, ReleaseKey(key_path, load_signing_key(key_path), public.to_text()), access_log, base / "builds"
        )
    finally:
        store.stop()


def no_leftovers(install_dir: Path, tmp: Path, expected: Sequence[str] = (EXE,), updated: bool = False) -> None:
    """Nothing beside the app but ``expected``, no extraction dir left in the temp dir.

    On Windows, right after an update the old exe is still there under ``<exe>.old`` (the process
    that ran it waited for the new one), and the backup may be too (a hard link to that image,
    which Windows may refuse to delete while it runs); the next start removes both.
    """
    names = sorted(p.name for p in install_dir.iterdir())
    if updated and WINDOWS:
        names = [n for n in names if not n.startswith(f".{EXE}.gupper-previous-")]
        expected = [*expected, EXE + ".old"]
    assert names == sorted(expected)
    tmpdir = tmp / "tmpdir"
    assert not [p.name for p in tmpdir.iterdir()] if tmpdir.exists() else True

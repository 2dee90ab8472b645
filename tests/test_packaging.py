"""``pip install gupper`` for real: a wheel built from this tree, installed without extras into a
fresh venv, gives the client alone; the publisher's command then names the pip line to run.

pip works offline here: only the machine's local package indexes (``file://`` ones from pip's
own configuration) are used, for the build backend and the client's dependencies. Without one
the test is skipped rather than reaching the network.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300
HINT = "run: pip install 'gupper[publisher]'"
MISSING = "boto3, botocore, bsdiff4, cryptography, filelock"
CLIENT_DISTRIBUTIONS = {
    "gupper",
    "requests",
    "urllib3",
    "certifi",
    "idna",
    "charset-normalizer",
    "packaging",
    "pynacl",
    "cffi",
    "pycparser",
}

pytestmark = pytest.mark.e2e


def local_indexes() -> list[str]:
    """The ``file://`` package indexes pip is configured with on this machine."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    ).stdout
    urls = [u for line in out.splitlines() if "index-url" in line for u in re.findall(r"file://\S+?(?=['\s]|$)", line)]
    return [u for u in urls if Path(u.removeprefix("file://")).is_dir()]


def offline_pip_env() -> dict[str, str]:
    indexes = local_indexes()
    if not indexes:
        pytest.skip("no local package index configured for pip: this test installs offline only")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "GUPPER_", "VIRTUAL_ENV"))}
    return {
        **env,
        "PIP_INDEX_URL": indexes[0],
        "PIP_EXTRA_INDEX_URL": " ".join(indexes[1:]),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], offline_pip_env(), out
    )
    assert proc.returncode == 0, proc.stderr
    (found,) = out.glob("gupper-*.whl")
    return found


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Path]:
    """A fresh venv with ``pip install gupper`` (no extras) from the wheel: its bin folder."""
    home = tmp_path_factory.mktemp("venv")
    env = offline_pip_env()
    assert run([sys.executable, "-m", "venv", str(home / "v")], env, home).returncode == 0
    bin_dir = home / "v" / ("Scripts" if os.name == "nt" else "bin")
    proc = run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], env, home)
    assert proc.returncode == 0, proc.stderr
    yield bin_dir


def test_the_wheel_holds_three_namespaced_packages_and_extras_by_role(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/", 1)[0] for name in zf.namelist() if not name.split("/", 1)[0].endswith(".dist-info")}
        meta = email.message_from_bytes(zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))))
    assert tops == {
        "gupper",
        "gupper_publish",
        "gupper_infra",
    }  # no generic updater/publisher/infra to collide with an app's modules
    requires = meta.get_all("Requires-Dist") or []
    base = {r.split(";")[0].strip() for r in requires if "extra ==" not in r}
    by_extra: dict[str, set[str]] = {}
    for r in requires:
        if "extra ==" in r:
            name, extra = r.split(";")[0].strip(), r.split("extra ==")[1].strip().strip("'\"")
            by_extra.setdefault(extra, set()).add(re.split(r"[<>=\[ ]", name, maxsplit=1)[0].lower())
    assert not any(name.lower().startswith(("boto3", "bsdiff4", "moto", "pyinstaller", "tqdm")) for name in base)
    assert (
        {"boto3", "bsdiff4", "tqdm"} <= by_extra["publisher"]
        and "moto" in by_extra["store"]
        and "pyinstaller" in by_extra["build"]
    )


def test_without_the_publisher_extra_the_command_names_the_pip_line(client_venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUPPER_", "VIRTUAL_ENV", "PYTHONPATH"))}
    (tmp_path / "app-1.0.0-linux-amd64").write_bytes(b"\x7fELF")
    for cmd, command in (
        ([str(client_venv / "gupper-publish"), "list", "--store", str(tmp_path / "store")], "list"),
        (
            [str(client_venv / "gupper-publish"), "app-1.0.0-linux-amd64", "--store", "s3://bucket", "--key", "k.key"],
            "publish",
        ),
        ([str(client_venv / "python"), "-m", "gupper_publish", "rollout", "app", "1.0.0", "--halt"], "rollout"),
    ):
        proc = run(cmd, env, tmp_path)
        assert proc.returncode == 1 and proc.stdout == "", proc
        assert (
            proc.stderr == f"gupper-publish: error: gupper-publish {command} needs the publisher extra "
            f"({MISSING} not installed); {HINT}\n"
        )
    assert not (tmp_path / "store").exists()
    # The version and help work with the client alone; making a key pair needs the publisher's cryptography.
    assert run([str(client_venv / "gupper-publish"), "--version"], env, tmp_path).stdout.startswith("gupper-publish ")
    keygen = run([str(client_venv / "gupper-publish"), "keygen", str(tmp_path / "keys" / "release")], env, tmp_path)
    assert (
        keygen.returncode == 1
        and keygen.stderr
        == f"gupper-publish: error: gupper-publish keygen needs the publisher extra ({MISSING} not installed); {HINT}\n"
    )
    assert not (tmp_path / "keys").exists()
    (tmp_path / "main.py").write_text("print('hi')\n")
    build = run(
        [str(client_venv / "gupper-publish"), "build", "main.py", "--name", "tool", "--version", "1.0"], env, tmp_path
    )
    assert build.returncode == 1
    assert (
        build.stderr == "gupper-publish: error: gupper-publish build needs the build extra (PyInstaller "
        "not installed); run: pip install 'gupper[build]'\n"
    )


def test_the_client_alone_installs_only_its_own_dependencies_and_imports_nothing_else(
    client_venv: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    listed = run([str(client_venv / "python"), "-m", "pip", "list", "--format=freeze"], env, tmp_path).stdout
    installed = {line.split("==")[0].lower() for line in listed.split()} - {"pip", "setuptools", "wheel"}
    assert installed == CLIENT_DISTRIBUTIONS
    probe = (
        "import sys, gupper; from gupper import Updater, UpdaterConfig; "
        "extra = sorted(m for m in sys.modules if m.split('.')[0] in {'gupper_publish', "
        "'gupper_infra', 'boto3', 'botocore', 'bsdiff4', 'tqdm'}); "
        "print(extra)"
    )
    proc = run([str(client_venv / "python"), "-c", probe], env, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr  # what an app freezes: the client only

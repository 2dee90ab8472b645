"""The developer's local tools as a new user runs them (issue 22 item 11): ``scripts/_venv.sh`` when pip
fails, and ``scripts/ceph.sh start`` as a background job (stdin from /dev/null). The local store's
restart is in tests/test_infra_localstore.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .rgw_support import missing_binaries

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120

FAILING_PIP = """#!/bin/sh
# A venv's python whose pip fails (no index, a broken wheel, a full disk: any of them).
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "ERROR: pip failed on purpose" >&2; exit 1; fi
exec {python} "$@"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the scripts and pyproject.toml whose .venv has a python that fails every pip."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "_venv.sh", tmp_path / "scripts" / "_venv.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAILING_PIP.format(python=sys.executable))
    python.chmod(0o755)
    return tmp_path


@pytest.mark.posix
@pytest.mark.parametrize(
    "how",
    [
        "source scripts/_venv.sh && echo went-on",  # set -e is off inside && and ||
        "source scripts/_venv.sh || echo reported",
        "source scripts/_venv.sh; echo went-on",
        "bash scripts/_venv.sh && echo went-on",
    ],
)
def test_a_failed_pip_leaves_no_installed_stamp_and_stops_the_script(checkout: Path, how: str) -> None:
    """The stamp was written after a failed pip when sourced inside && or ||: a broken venv later runs never
    repaired."""
    done = subprocess.run(
        ["bash", "-c", how],
        cwd=checkout,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert "ERROR: pip failed on purpose" in done.stderr
    assert "error: pip could not set up .venv (see above)" in done.stderr
    assert not (checkout / ".venv" / ".gupper-installed").exists()
    assert "went-on" not in done.stdout
    assert ("reported" in done.stdout) == ("||" in how)


@pytest.mark.rgw
def test_ceph_start_with_stdin_from_dev_null_stays_up(tmp_path: Path) -> None:
    """As a background job (``bash scripts/ceph.sh start DIR </dev/null &``) it read EOF and stopped
    right after its READY line."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"Ceph RGW is not installed (no {', '.join(missing)}): bash scripts/ceph.sh install")
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "ceph.sh"), "start", str(tmp_path / "ceph")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()  # bounded: the cluster starts within its own step timeouts, or fails
        assert ready.startswith("GUPPER-RGW-READY "), proc.communicate(timeout=TIMEOUT)[1][-2000:]
        exports = [proc.stdout.readline() for _ in range(5)]  # AWS_ENDPOINT_URL, keys, region, AWS_CA_BUNDLE
        endpoint = next(line.split("=", 1)[1].strip() for line in exports if "AWS_ENDPOINT_URL=" in line)
        ca = next(line.split("=", 1)[1].strip() for line in exports if "AWS_CA_BUNDLE=" in line)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)  # the old one was gone by now; this one waits for a signal
        assert requests.get(endpoint, verify=ca, timeout=10).status_code in (200, 403)  # RGW answers
        start = time.monotonic()
        proc.terminate()  # SIGTERM to bash's exec'd python: a clean stop
        assert proc.wait(timeout=60) == 0
        print(f"\nceph.sh start, stdin from /dev/null: up until SIGTERM, stopped in {time.monotonic() - start:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

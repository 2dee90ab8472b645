"""The pre-flight proves more than a start: that the new version could update itself later.

A start that only confirms a trial loads neither the transport nor libsodium (gupper.transfer), so a
release frozen without them would start, confirm, and never update again. Its self-test loads both,
and the CA bundle its checks will trust, before it answers; if one does not load, the self-test
fails with the reason and the release is not installed.

The "binaries" here are shell scripts that exec this interpreter on a small app whose missing parts
are blocked in ``sys.modules`` (what a build that left them out does); the same proof on real
PyInstaller builds, one of them made without PyNaCl, is in tests/test_pyinstaller_hooks.py.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from gupper.errors import PreflightFailedError
from gupper.selftest import NOT_READY_EXIT, SELF_TEST_ENV, preflight

pytestmark = pytest.mark.posix  # the stand-in binaries are shell scripts

ROOT = Path(__file__).resolve().parent.parent
KEY = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="

APP = """
import sys
for name in filter(None, sys.argv[1].split(",")):
    sys.modules[name] = None  # a build that left it out
from gupper import Updater, UpdaterConfig, answer_self_test

config = UpdaterConfig(
    app="proof",
    current_version="2.0.0",
    manifest_url="https://127.0.0.1:9/proof/stable/latest.json",
    public_keys=(sys.argv[5],),
    ca_bundle=sys.argv[2] or None,
    state_dir=sys.argv[3],
)
if sys.argv[4] == "answer-first":  # an app that creates its updater later answers first thing in main()
    answer_self_test("2.0.0")
elif sys.argv[4] == "answer-first-with-config":
    answer_self_test("2.0.0", config=config)
Updater(config)
print("the app ran; loaded:", ",".join(m for m in ("requests", "urllib3", "nacl._sodium") if sys.modules.get(m)))
"""


def binary(tmp_path: Path, *, blocked: str = "", ca: str = "", mode: str = "updater") -> Path:
    script = tmp_path / "app.py"
    script.write_text(APP)
    exe = tmp_path / "app"
    args = [sys.executable, str(script), blocked, ca, str(tmp_path / "state"), mode, KEY]
    exe.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in args) + "\n")
    exe.chmod(0o755)
    return exe


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", SELF_TEST_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(str(ROOT / p) for p in ("updater", "publisher", "infra"))
    return env | extra


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize("ca", ["configured", "certifi"])
def test_a_version_whose_update_path_loads_passes(tmp_path: Path, ca_file: str, ca: str) -> None:
    preflight(binary(tmp_path, ca=ca_file if ca == "configured" else ""), "2.0.0", clean_env(), 60)


@pytest.mark.parametrize(
    ("blocked", "named"),
    [
        ("requests", "requests"),
        ("urllib3", "urllib3"),
        ("nacl._sodium,nacl.signing", "nacl"),
    ],
    ids=["no-requests", "no-urllib3", "no-libsodium"],
)
@pytest.mark.parametrize("mode", ["updater", "answer-first"])
def test_a_version_built_without_its_transport_or_libsodium_is_not_installed(
    tmp_path: Path, blocked: str, named: str, mode: str
) -> None:
    with pytest.raises(PreflightFailedError) as e:
        preflight(binary(tmp_path, blocked=blocked, mode=mode), "2.0.0", clean_env(), 60)
    message = str(e.value)
    assert message.startswith("the new version 2.0.0 cannot update itself later: "), message
    assert named in message and "not installed" in message and "\n" not in message


def test_a_ca_bundle_that_does_not_load_fails_the_self_test_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(PreflightFailedError, match=f"cannot load the CA bundle {missing}"):
        preflight(binary(tmp_path, ca=str(missing)), "2.0.0", clean_env(), 60)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(PreflightFailedError, match=f"cannot load the CA bundle {garbage}"):
        preflight(binary(tmp_path, ca=str(garbage)), "2.0.0", clean_env(), 60)


def test_answer_self_test_given_the_config_proves_the_app_s_own_ca_bundle(tmp_path: Path) -> None:
    """README: an app that answers through answer_self_test passes its UpdaterConfig to have its
    own CA bundle checked; without it the default one (certifi's here) is the one proved."""
    missing = tmp_path / "missing.pem"
    exe = binary(tmp_path, ca=str(missing), mode="answer-first-with-config")
    with pytest.raises(PreflightFailedError, match=f"cannot load the CA bundle {missing}"):
        preflight(exe, "2.0.0", clean_env(), 60)
    preflight(binary(tmp_path, ca=str(missing), mode="answer-first"), "2.0.0", clean_env(), 60)


def test_the_ca_bundle_of_the_environment_is_the_one_proved_when_the_app_sets_none(tmp_path: Path) -> None:
    missing = tmp_path / "env-bundle.pem"
    with pytest.raises(PreflightFailedError, match=f"cannot load the CA bundle {missing}"):
        preflight(binary(tmp_path), "2.0.0", clean_env(REQUESTS_CA_BUNDLE=str(missing)), 60)


def test_the_failed_proof_is_one_line_on_stderr_and_its_own_exit_code(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(binary(tmp_path, blocked="requests"))],
        env=clean_env(**{SELF_TEST_ENV: "n0nce"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == NOT_READY_EXIT
    assert proc.stdout == ""  # no answer, and the app did not run
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gupper-self-test-failed: 2.0.0 cannot update itself later: ")


def test_outside_a_self_test_the_app_starts_without_loading_the_update_path(tmp_path: Path) -> None:
    """Creating the updater needs none of it: a start that only confirms a trial never pays for it."""
    for blocked in ("", "requests,urllib3,nacl._sodium,nacl.signing"):
        exe = binary(tmp_path, blocked=blocked)
        proc = subprocess.run([str(exe)], env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "the app ran; loaded: \n"

"""The GitHub Actions release workflow (.github/workflows/release.yml): its shape, and its own
build and publish steps run here as a runner would run them (bash, GITHUB_ENV, the step's env
with its ``${{ }}`` expressions filled in), against the local S3 store: two tagged releases of
the demo app, the second published with a patch, and an installed first release updating to it.
Only Linux runs here; the other two OSes of the matrix run in GitHub Actions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from gupper.keys import TrustedKeys
from gupper.manifest import verify_manifest
from gupper.platforms import current_platform
from gupper_infra.client import LocalStore as RunningStore
from gupper_infra.client import start_local_store
from gupper_publish import keygen

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
TIMEOUT = 600
HTTP_TIMEOUT = 10


def workflow() -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return doc


def test_builds_for_every_os_and_cpu_then_one_publish_job_with_the_key_from_a_secret() -> None:
    doc = workflow()
    on = doc.get("on") or doc.get(True)  # YAML 1.1 reads a bare 'on' as true
    assert on == {"push": {"tags": ["v*"]}} and doc["permissions"] == {"contents": "read"}
    build, publish = doc["jobs"]["build"], doc["jobs"]["publish"]
    # Intel Macs get builds too (issue 21, item 5): darwin-amd64 on GitHub's Intel image, darwin-arm64 on Apple silicon
    assert build["strategy"]["matrix"]["include"] == [
        {"os": "ubuntu-latest", "platform": "linux-amd64"},
        {"os": "windows-latest", "platform": "windows-amd64"},
        {"os": "macos-15-intel", "platform": "darwin-amd64"},
        {"os": "macos-14", "platform": "darwin-arm64"},
    ]
    assert build["runs-on"] == "${{ matrix.os }}"
    runs = [s.get("run", "") for s in build["steps"]]
    assert any(r.startswith("gupper-publish build ") for r in runs)  # PYTHONHASHSEED=0, fixed work paths, named output
    assert 'test "$(python -m gupper platform)" = "${{ matrix.platform }}"' in runs  # a build named for its own CPU
    assert publish["needs"] == "build" and publish["runs-on"] == "ubuntu-latest" and publish["environment"] == "release"
    (step,) = [s for s in publish["steps"] if "gupper-publish publish" in s.get("run", "")]
    assert step["env"]["GUPPER_SIGNING_KEY"] == "${{ secrets.GUPPER_SIGNING_KEY }}"
    assert (
        "--key" not in step["run"] and "GUPPER_SIGNING_KEY" not in step["run"]
    )  # never on a command line, never echoed
    with_secrets = [s for job in doc["jobs"].values() for s in job["steps"] if "secrets." in json.dumps(s)]
    assert [s["name"] for s in with_secrets] == [
        "signing identity (macOS, with MACOS_CERTIFICATE set)",
        "notarise (macOS, with a signing identity and APPLE_ID set)",
        step["name"],
    ]
    for s in with_secrets:  # secrets reach a step through its environment only, never its command line
        assert "secrets." not in s["run"] and all(
            v.startswith("${{ secrets.") or "secrets." not in v for v in s["env"].values()
        )


def test_macos_builds_can_be_signed_with_a_developer_id_and_notarised() -> None:
    """Documented steps the user's CI turns on with its secrets (issue 21, item 5); off, nothing runs."""
    steps = {s.get("name"): s for s in workflow()["jobs"]["build"]["steps"]}
    identity, notarise, build = (
        steps["signing identity (macOS, with MACOS_CERTIFICATE set)"],
        steps["notarise (macOS, with a signing identity and APPLE_ID set)"],
        steps["build"],
    )
    assert identity["if"] == notarise["if"] == "runner.os == 'macOS'"
    assert identity["run"].startswith('if [ -z "$MACOS_CERTIFICATE" ]; then')  # no secret: an ad-hoc build, said so
    assert "security import" in identity["run"] and 'echo "CODESIGN_IDENTITY=' in identity["run"]
    assert '${CODESIGN_IDENTITY:+-- --codesign-identity "$CODESIGN_IDENTITY"}' in build["run"]
    assert "xcrun notarytool submit" in notarise["run"] and "xcrun stapler staple" in notarise["run"]
    assert "privacy permissions" in WORKFLOW.read_text()  # why ad-hoc signatures cost users their grants


EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def expand(text: str, context: Mapping[str, Mapping[str, str]]) -> str:
    """``${{ vars.X }}``, ``${{ secrets.X }}``, ``${{ matrix.X }}`` and ``${{ a || 'default' }}``, as GitHub evaluates
    them."""

    def one(match: re.Match[str]) -> str:
        for alternative in match.group(1).split("||"):
            term = alternative.strip()
            if term.startswith("'") and term.endswith("'"):
                return term[1:-1]
            scope, _, name = term.partition(".")
            value = context[scope].get(name, "")
            if value:
                return value
        return ""

    return EXPRESSION.sub(one, text)


def runs_here(condition: str | None, context: Mapping[str, Mapping[str, str]]) -> bool:
    """A step's ``if``, as GitHub evaluates the one form the workflow uses: ``runner.os == 'X'``."""
    if condition is None:
        return True
    match = re.fullmatch(r"runner\.os == '(\w+)'", condition.strip())
    assert match is not None, f"a condition this test does not evaluate: {condition}"
    return context["runner"]["os"] == match.group(1)


def run_steps(
    job: str, workspace: Path, context: Mapping[str, Mapping[str, str]], github: Mapping[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """The job's ``run`` steps but 'install' (this venv has what it installs), with bash -eo pipefail as on a runner."""
    env_file = workspace / "github_env"
    env_file.touch()
    done = []
    for step in workflow()["jobs"][job]["steps"]:
        if "run" not in step or step.get("name") == "install" or not runs_here(step.get("if"), context):
            continue
        added = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        step_env = {k: expand(str(v), context) for k, v in (step.get("env") or {}).items()}
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GUPPER_", "AWS_"))},
            **github,
            "GITHUB_ENV": str(env_file),
            **added,
            **step_env,
        }
        script = expand(step["run"], context)
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert proc.returncode == 0, (job, step.get("name"), proc.stdout, proc.stderr)
        done.append(proc)
    return done


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStore]:
    with start_local_store(tmp_path_factory.mktemp("s3-workflow")) as store:
        yield store


@pytest.mark.e2e
def test_the_workflows_steps_release_the_demo_app_and_an_install_updates(tmp_path: Path, running: RunningStore) -> None:
    if current_platform().os != "linux":
        pytest.skip("the build job's Linux leg runs here; the others run in GitHub Actions")
    key_path, _, public = keygen(tmp_path / "keys" / "release")
    workspace = tmp_path / "checkout"
    (workspace / "app").mkdir(parents=True)
    for name in ("main.py", "build.py"):
        shutil.copyfile(ROOT / "app" / name, workspace / "app" / name)
    s3 = running.s3_env()
    context = {
        "vars": {
            "GUPPER_STORE": f"s3://{running.bucket}/ci",
            "GUPPER_MANIFEST_URL": running.url("ci/app/stable/latest.json"),
            "GUPPER_PUBLIC_KEY": public.to_text(),
        }
        | {"AWS_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"], "AWS_REGION": s3["AWS_DEFAULT_REGION"]},
        "secrets": {
            "GUPPER_SIGNING_KEY": key_path.read_text(),
            "AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"],
        },
        "matrix": {"os": "ubuntu-latest", "platform": "linux-amd64"},
        "runner": {"os": "Linux"},
    }
    transport = {
        "AWS_CA_BUNDLE": s3["AWS_CA_BUNDLE"],
        "NO_PROXY": s3["NO_PROXY"],
        "no_proxy": s3["no_proxy"],
    }  # the local store's test CA
    outputs = []
    for version in ("1.0.0", "1.1.0"):
        (workspace / "github_env").unlink(missing_ok=True)
        # This venv has gupper as an editable install (an import hook PyInstaller does not follow), where the
        # runner's 'pip install .' puts a plain copy in site-packages: 'gupper-publish build' finds it either way.
        run_steps("build", workspace, context, {"GITHUB_REF_NAME": f"v{version}"})
        outputs += run_steps("publish", workspace, context, {"GITHUB_REF_NAME": f"v{version}", **transport})
        shutil.copyfile(workspace / "dist" / f"app-{version}-linux-amd64", tmp_path / f"app-{version}")
    said = "".join(p.stdout + p.stderr for p in outputs)
    assert key_path.read_text().splitlines()[1] not in said
    patch_lines = [line for line in outputs[-1].stdout.splitlines() if line.startswith("patch")]
    assert len(patch_lines) == 1 and "from 1.0.0" in patch_lines[0], outputs[-1].stdout
    size = int(re.search(r"\((\d+) bytes", patch_lines[0]).group(1))  # type: ignore[union-attr]
    print(f"\nworkflow release 1.1.0: {(tmp_path / 'app-1.1.0').stat().st_size} bytes, patch from 1.0.0: {size} bytes")
    assert size < 5_000  # reproducible builds: the two versions differ where their code does (667 bytes measured)
    body = requests.get(running.url("ci/app/stable/latest.json"), verify=running.ca, timeout=HTTP_TIMEOUT).content
    manifest = verify_manifest(
        body, TrustedKeys.from_texts([public.to_text()]), app="app", channel="stable", now=datetime.now(UTC)
    )
    assert str(manifest.entries["linux-amd64"].version) == "1.1.0"
    # An install of the first release, run as a user would: it finds 1.1.0, patches itself, restarts.
    install = tmp_path / "install"
    install.mkdir()
    exe = install / "app"
    shutil.copyfile(tmp_path / "app-1.0.0", exe)
    exe.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_PYI_", "PYINSTALLER_", "GUPPER_", "AWS_"))}
    env |= {
        "REQUESTS_CA_BUNDLE": running.ca,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    proc = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("version 1.1.0") and exe.read_bytes() == (tmp_path / "app-1.1.0").read_bytes()
    assert f"applied a {size}-byte patch" in proc.stderr

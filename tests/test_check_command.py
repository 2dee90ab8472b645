"""``python -m gupper check``: what this machine would do with a channel's manifest, run as a real
process against the local S3 store's HTTPS front (moto behind TLS with a test CA), for releases
published by ``gupper-publish``: the entry picked, the rollout bucket, the decision (an update, a
staged rollout missed, a yank's way back), the trial, where state and logs live. It installs and
writes nothing. README "Use it in your app" shows its output: compared here line by line."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper.state import ClientState, StateFile, Trial
from gupper.trust import ChannelRecord
from gupper_infra.client import LocalStore as RunningStore
from gupper_infra.client import start_local_store
from gupper_publish import PublishOptions, S3Store, publish, yank

from .exe_stubs import exe_stub
from .test_readme_adoption import readme_blocks

KeyPair = tuple[Path, Ed25519PrivateKey, str]
TIMEOUT = 60


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStore]:
    with start_local_store(tmp_path_factory.mktemp("s3-check")) as store:
        yield store


@pytest.fixture(scope="module")
def released(running: RunningStore, keypair: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> S3Store:
    """tally on beta: 1.2.0 complete, 1.3.0 staged for 10 % of installs (1.2.0 for the others)."""
    store = S3Store(running.bucket, "check", client=boto3.client("s3", **running.boto3_kwargs()))
    dist = tmp_path_factory.mktemp("dist")
    options = PublishOptions(keys=[keypair[1]], channel="beta", expires_in=timedelta(days=30))
    for version, rollout in (("1.2.0", None), ("1.3.0", 10)):
        build = dist / f"tally-{version}-linux-amd64"
        build.write_bytes(exe_stub("linux-amd64", f"tally {version}\n".encode() * 500))
        publish(store, [build], options, rollout=rollout)
    return store


def check(running: RunningStore, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUPPER_", "REQUESTS_CA"))}
    return subprocess.run(
        [sys.executable, "-m", "gupper", "check", *args, "--ca-bundle", running.ca],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def install_state(folder: Path, ident: str, **changes: object) -> Path:
    """The state an install of tally keeps, with install id ``ident``."""
    StateFile(folder).save(replace(ClientState(install_id=ident), **changes))  # type: ignore[arg-type]
    return folder


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def bucket_of(install_id: str, app: str, release: str) -> int:
    """The rollout bucket as docs/schema-extensions.md defines the cohort (sha256 of id:app:release, first 32 bits,
    mod 10000)."""
    return int(hashlib.sha256(f"{install_id}:{app}:{release}".encode()).hexdigest()[:8], 16) % 10000


def install_id(inside: bool) -> str:
    """The first of a fixed sequence of install ids that is (or is not) in tally 1.3.0's 10 % rollout."""
    return next(f"{i:032x}" for i in range(10_000) if (bucket_of(f"{i:032x}", "tally", "1.3.0") < 1000) == inside)


@pytest.mark.parametrize("inside", [False, True], ids=["outside-the-rollout", "inside-the-rollout"])
def test_the_diagnosis_of_an_install_during_a_staged_rollout(
    tmp_path: Path, running: RunningStore, released: S3Store, keypair: KeyPair, inside: bool
) -> None:
    url, ident = running.url("check/tally/beta/latest.json"), install_id(inside)
    state = install_state(
        tmp_path / "state",
        ident,
        trial=Trial("1.2.0", "1.1.0", "/apps/tally", "/apps/.tally.backup", starts=1),
        bad_versions={"1.1.5": "its self-test failed"},
    )
    before = files_under(state)
    proc = check(
        running, url, "--key", keypair[2], "--current", "1.2.0", "--platform", "linux-amd64", "--state-dir", str(state)
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    size = released.head("tally/1.3.0/tally-1.3.0-linux-amd64").size  # type: ignore[union-attr]
    assert lines[0] == f"manifest   {url}"
    assert re.fullmatch(
        r"           app tally, channel beta \(from the URL\), serial 2, expires \S+Z \(in 30 days\); signature "
        "verified",
        lines[1],
    ), lines[1]
    assert lines[2:5] == [
        "platform   linux-amd64 (this machine runs: linux-amd64)",
        f"entry      1.3.0, binary, {size} bytes, ../1.3.0/tally-1.3.0-linux-amd64; patches from 1.2.0",
        "rollout    1.3.0 to 10% of installs (others get 1.2.0)",
    ]
    bucket = bucket_of(ident, "tally", "1.3.0")
    assert lines[5] == (
        f"           this install's bucket: {bucket / 100:.2f} of 100 (install id {ident}): "
        + ("in it" if inside else "not in it")
    )
    assert lines[6] == (
        f"decision   from 1.2.0: updating tally 1.2.0 -> 1.3.0 ({size} bytes)"
        if inside
        else "decision   from 1.2.0: stays: up to date (1.2.0; latest for linux-amd64 is 1.2.0 (not in the 10% "
        "rollout of 1.3.0; offered 1.2.0))"
    )
    assert lines[7:] == [
        f"state      {state / 'state.json'}",
        "trial      1.2.0 on trial (from 1.1.0), started 1 time(s) without confirm()",
        "bad        1.1.5: its self-test failed",
        f"cache      {state / 'beta.manifest-cache'} (the last accepted manifest, for If-None-Match)",
        "logs       no log file: one line per check on the app's 'gupper' logger (its stderr, or its logging handlers)",
        "nothing was installed or saved: a check only",
    ]
    assert files_under(state) == before  # read only: no serial saved, no manifest cached


def test_after_a_yank_the_diagnosis_is_the_way_back(tmp_path: Path, running: RunningStore, keypair: KeyPair) -> None:
    store = S3Store(running.bucket, "yank", client=boto3.client("s3", **running.boto3_kwargs()))
    options = PublishOptions(keys=[keypair[1]])
    for version in ("1.2.0", "1.3.0"):
        build = tmp_path / f"tally-{version}-linux-amd64"
        build.write_bytes(exe_stub("linux-amd64", f"tally {version}\n".encode() * 500))
        publish(store, [build], options)
    yank(store, "tally", "1.3.0", options)
    size = store.head("tally/1.2.0/tally-1.2.0-linux-amd64").size  # type: ignore[union-attr]
    state = install_state(tmp_path / "state", install_id(True))
    url = running.url("yank/tally/stable/latest.json")
    proc = check(
        running, url, "--key", keypair[2], "--current", "1.3.0", "--platform", "linux-amd64", "--state-dir", str(state)
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        f"decision   from 1.3.0: tally 1.3.0 was withdrawn by the publisher; going back to 1.2.0 ({size} bytes)"
        in proc.stdout.splitlines()
    )
    assert "(from the URL), serial 3," in proc.stdout and "rollout " not in proc.stdout


def test_a_machine_that_never_checked_gets_a_diagnosis_and_keeps_no_trace(
    tmp_path: Path, running: RunningStore, released: S3Store, keypair: KeyPair
) -> None:
    state = tmp_path / "never-checked"
    pub = tmp_path / "release.pub"
    pub.write_text(keypair[2] + "\n")
    url = running.url("check/tally/beta/latest.json")
    proc = check(running, url, "--key", str(pub), "--current", "1.2.0", "--state-dir", str(state))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "           this install has no id yet (no state file): its first check draws one" in lines
    assert "decision   from 1.2.0: depends on the install id its first check draws (see rollout)" in lines
    assert f"state      {state / 'state.json'}: none yet (the app writes it at its first check)" in lines
    assert not any(line.startswith(("trial ", "bad ")) for line in lines)
    assert not state.exists()  # nothing created, not even the folder
    # Without --current there is no decision to give, and it says what to pass.
    proc = check(running, url, "--key", keypair[2], "--state-dir", str(state))
    assert "decision   give --current VERSION (the installed app's) to see whether it would update" in proc.stdout


def test_a_manifest_this_install_would_refuse_is_named_with_the_reason(
    tmp_path: Path, running: RunningStore, released: S3Store, keypair: KeyPair
) -> None:
    from gupper_publish.signing import keygen

    _, _, stranger = keygen(tmp_path / "stranger")
    url = running.url("check/tally/beta/latest.json")
    proc = check(running, url, "--key", stranger.to_text(), "--current", "1.2.0", "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 1 and proc.stderr == ""
    assert proc.stdout.splitlines()[1] == (
        "           refused: manifest has 0 valid signature(s) from trusted keys, 1 needed: it was not signed "
        "with this app's key (or was altered); re-publish with the right key"
    )
    # A state that has seen a newer serial refuses this one as a replay, and says so.
    state = install_state(tmp_path / "state", install_id(False), channels={"beta": ChannelRecord(9, "0" * 64)})
    proc = check(running, url, "--key", keypair[2], "--state-dir", str(state))
    assert proc.returncode == 1 and "refused: manifest serial 2 is older than serial 9 already seen" in proc.stdout
    missing = check(running, running.url("check/tally/gamma/latest.json"), "--key", keypair[2])
    assert missing.returncode == 1 and "cannot be fetched: " in missing.stdout and "404" in missing.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["http://example.com/tally/beta/latest.json", "--key", "ed25519:x"], "https"),
        (["https://example.com/feeds/tally.json", "--key", "ed25519:x"], "pass --app"),
        (["https://example.com/tally/beta/latest.json", "--key", "ed25519:x", "--channel", "stable"], "leave channel"),
        (["https://example.com/tally/beta/latest.json", "--key", "no-such.pub"], "--key no-such.pub: not"),
        (["https://example.com/tally/beta/latest.json", "--key", "ed25519:x", "--platform", "beos"], "--platform"),
        (["https://example.com/tally/beta/latest.json", "--key", "ed25519:x", "--current", "one"], "--current 'one'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], said: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gupper", "check", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("gupper check: ") and said in proc.stderr, proc.stderr


def test_platform_and_version_still_answer() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gupper", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )

    from gupper import __version__
    from gupper.platforms import current_platform

    assert run("platform").stdout == f"{current_platform().key}\n"
    assert run("--version").stdout == f"{__version__}\n"
    usage = run()
    assert usage.returncode == 2 and usage.stderr == "usage: python -m gupper {platform,check,--version}\n"


def test_the_readmes_diagnosis_is_what_the_command_prints(
    tmp_path: Path, running: RunningStore, keypair: KeyPair
) -> None:
    (shown,) = [code for kind, arg, code in readme_blocks() if (kind, arg) == ("output", "gupper-check")]
    command, *printed = shown.splitlines()
    # The README's releases: Notely 1.0.0 and 1.1.0, then 1.2.0 staged for 10 % of installs.
    store = S3Store(running.bucket, "readme", client=boto3.client("s3", **running.boto3_kwargs()))
    for version, rollout in (("1.0.0", None), ("1.1.0", None), ("1.2.0", 10)):
        build = tmp_path / f"notely-{version}-linux-amd64"
        build.write_bytes(exe_stub("linux-amd64", f"notely {version}\n".encode() * 500))
        publish(store, [build], PublishOptions(keys=[keypair[1]]), rollout=rollout)
    ident = next(f"{i:032x}" for i in range(10_000) if bucket_of(f"{i:032x}", "notely", "1.2.0") >= 1000)
    state = install_state(tmp_path / "home" / ".local" / "state" / "gupper" / "notely", ident)
    pub = tmp_path / "keys" / "release.pub"
    pub.parent.mkdir()
    pub.write_text(keypair[2] + "\n")
    readme_url = "https://downloads.example.com/notely/stable/latest.json"
    url = running.url("readme/notely/stable/latest.json")
    words = shlex.split(command.removeprefix("$ "))
    assert words[:4] == ["python", "-m", "gupper", "check"]
    args = [url if w == readme_url else str(pub) if w == "keys/release.pub" else w for w in words[4:]]
    # Added for the test: this machine's state folder, its platform as the README's, the store's test CA.
    proc = check(running, *args, "--state-dir", str(state), "--platform", "linux-amd64")
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout.replace(url, readme_url).replace(str(tmp_path / "home"), "/home/you")

    def normalised(lines: list[str]) -> list[str]:
        text = "\n".join(lines)
        text = re.sub(r"\b[0-9a-f]{32}\b", "<id>", text)
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>", text)
        text = re.sub(r"\d+ bytes", "<n> bytes", text)
        text = re.sub(r"bucket: \d+\.\d\d of 100", "bucket: <b> of 100", text)
        return text.splitlines()

    assert normalised(said.splitlines()) == normalised(printed)

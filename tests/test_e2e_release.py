"""Release management end to end against the S3 server process and its HTTPS front: rollouts,
promote, many apps per bucket, 304 polling, and yank bringing real binaries back."""

from __future__ import annotations

import json
import math
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from packaging.version import Version

from gupper import Platform, Status, Updater, UpdaterConfig, WrongTargetError
from gupper.keys import TrustedKeys
from gupper.manifest import verify_manifest
from gupper.policy import choose_update
from gupper.wire.manifest import Manifest

from .conftest import fake_app
from .e2e_support import E2E, gupper_lines, sha256

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(e2e: E2E) -> E2E:
    e2e.clear()
    return e2e


def artifacts(tmp: Path, app: str, *versions: str) -> list[Path]:
    out = []
    for v in versions:
        path = tmp / f"{app}-{v}-linux-amd64"
        path.write_bytes(fake_app(v))
        out.append(path)
    return out


def fetch(env: E2E, app: str = "app", channel: str = "stable") -> Manifest:
    body = requests.get(env.store.url(f"{app}/{channel}/latest.json"), verify=env.store.ca, timeout=10).content
    return verify_manifest(
        body, TrustedKeys.from_texts([env.key.public]), app=app, channel=channel, now=datetime.now(UTC)
    )


def near_share(count: int, n: int, share: float) -> bool:
    """Whether ``count`` of ``n`` random installs is within 5 standard deviations of ``share``.

    The rollout id is random per release, so the cohort is a binomial sample: a fixed band of
    3 points (2.7 sigma at 50%) failed about one run in 150; 5 sigma fails about one in 1.7 million,
    and still refuses a rollout off by a quarter of its share.
    """
    return abs(count - share * n) <= 5 * math.sqrt(n * share * (1 - share))


def test_staged_rollout_reaches_its_share_and_raising_it_only_adds_installs(env: E2E, tmp_path: Path) -> None:
    v1, v2 = artifacts(tmp_path, "app", "1.0.0", "2.0.0")
    env.publish(v1, extra=["--force"])  # --force: these stand-in apps are shell scripts, not ELF builds
    env.publish(v2, extra=["--rollout", "10", "--force"])
    ids = [secrets.token_hex(16) for _ in range(2000)]

    def cohort() -> set[str]:
        manifest = fetch(env)
        return {
            i
            for i in ids
            if (d := choose_update(manifest, "linux-amd64", Version("1.0.0"), i).entry) and str(d.version) == "2.0.0"
        }

    at10 = cohort()
    print(f"\n10% rollout: {len(at10)} of {len(ids)} installs ({len(at10) / len(ids):.1%})")
    assert near_share(len(at10), len(ids), 0.10)
    env.cli("rollout", "app", "2.0.0", "--percent", "50")
    at50 = cohort()
    print(f"50% rollout: {len(at50)} of {len(ids)} installs ({len(at50) / len(ids):.1%})")
    assert at10 <= at50 and near_share(len(at50), len(ids), 0.50)
    env.cli("rollout", "app", "2.0.0", "--halt")
    assert cohort() == set()  # halted: nobody new moves; others keep the fallback
    env.cli("rollout", "app", "2.0.0", "--complete")
    assert cohort() == set(ids)


def test_promote_beta_to_stable_without_reupload(env: E2E, tmp_path: Path) -> None:
    v1, v2 = artifacts(tmp_path, "app", "1.0.0", "2.0.0")
    env.publish(v1, extra=["--force"])
    env.publish(v2, extra=["--channel", "beta", "--force"])
    assert str(fetch(env).entries["linux-amd64"].version) == "1.0.0"
    assert str(fetch(env, channel="beta").entries["linux-amd64"].version) == "2.0.0"
    keys_before = sorted(
        o["Key"] for o in env.s3().list_objects_v2(Bucket=env.store.bucket)["Contents"] if "/2.0.0/" in o["Key"]
    )
    env.cli("promote", "app", "2.0.0", "--from", "beta", "--to", "stable")
    stable = fetch(env)
    assert str(stable.entries["linux-amd64"].version) == "2.0.0" and stable.channel == "stable"
    keys_after = sorted(
        o["Key"] for o in env.s3().list_objects_v2(Bucket=env.store.bucket)["Contents"] if "/2.0.0/" in o["Key"]
    )
    assert keys_after == keys_before == ["app/2.0.0/app-2.0.0-linux-amd64"]


def test_two_apps_in_one_bucket_never_see_each_others_manifests(env: E2E, tmp_path: Path) -> None:
    env.publish(*artifacts(tmp_path, "app", "1.0.0"), extra=["--force"])
    env.publish(*artifacts(tmp_path, "other", "7.0.0"), extra=["--force"])
    assert {str(e.version) for e in fetch(env).entries.values()} == {"1.0.0"}
    assert {str(e.version) for e in fetch(env, "other").entries.values()} == {"7.0.0"}
    exe = tmp_path / "install" / "app"
    exe.parent.mkdir()
    exe.write_bytes(fake_app("0.1.0"))
    exe.chmod(0o755)
    crossed = Updater(
        UpdaterConfig(
            app="app",
            current_version="0.1.0",
            manifest_url=env.store.url("other/stable/latest.json"),
            public_keys=(env.key.public,),
            ca_bundle=env.store.ca,
            executable=str(exe),
            platform=Platform("linux", "amd64"),
            state_dir=str(tmp_path / "state"),
        ),
        environ={},
        argv=["app"],
    ).run(restart=False)
    assert (
        crossed.status is Status.FAILED
        and isinstance(crossed.error, WrongTargetError)
        and exe.read_bytes() == fake_app("0.1.0")
    )


def test_second_check_is_a_304_with_no_manifest_body(env: E2E, tmp_path: Path) -> None:
    env.publish(*artifacts(tmp_path, "app", "1.0.0"), extra=["--force"])
    exe = tmp_path / "app"
    exe.write_bytes(fake_app("1.0.0"))
    cfg = UpdaterConfig(
        app="app",
        current_version="1.0.0",
        manifest_url=env.manifest_url,
        public_keys=(env.key.public,),
        ca_bundle=env.store.ca,
        executable=str(exe),
        platform=Platform("linux", "amd64"),
        state_dir=str(tmp_path / "state"),
    )
    for _ in range(2):
        assert Updater(cfg, environ={}, argv=["app"]).run(restart=False).status is Status.UP_TO_DATE
    first, second = [r for r in env.served() if r["path"].endswith("latest.json")]
    print(
        f"\nfirst check: {first['status']} {first['bytes_sent']} bytes; second: "
        f"{second['status']} {second['bytes_sent']} bytes"
    )
    assert first["status"] == 200 and second["status"] == 304 and second["if_none_match"]
    manifest_size = len(env.s3().get_object(Bucket=env.store.bucket, Key="app/stable/latest.json")["Body"].read())
    assert second["bytes_sent"] < manifest_size  # headers only, no body


def test_yank_brings_an_install_on_the_yanked_version_back(env: E2E, tmp_path: Path) -> None:
    v1, v2 = env.build("1.0.0", "2.0.0")
    env.publish(v1, v2)
    exe = env.install(tmp_path, "2.0.0")
    assert env.run_app(exe, tmp_path).stdout.strip().endswith("2.0.0")  # up to date on 2.0.0
    yank = env.cli("yank", "app", "2.0.0", "--json")
    assert json.loads(yank.stdout)
    proc = env.run_app(exe, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Hello from the Gupper demo app, version 1.0.0"]
    assert gupper_lines(proc.stderr)[0] == (
        f"gupper: app 2.0.0 was withdrawn by the publisher; going back to 1.0.0 ({v1.stat().st_size} bytes)"
    )
    assert sha256(exe) == sha256(v1)
    again = env.run_app(exe, tmp_path)
    assert again.stdout.strip().endswith("1.0.0") and gupper_lines(again.stderr) == []  # no loop: 1.0.0 is not yanked

"""Release management on the folder store: channels, promote, rollouts, yank, list, prune, key rotation."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper.keys import TrustedKeys
from gupper.manifest import verify_manifest
from gupper.wire.canonical import format_time
from gupper.wire.manifest import Manifest
from gupper_publish import LocalStore, PublishOptions, publish, regenerate_manifest
from gupper_publish.cli import main, terminal_progress
from gupper_publish.errors import NotFoundError, PreconditionFailedError, PublishError, SigningKeyError
from gupper_publish.release import promote, prune, rotate_keys, set_rollout, yank
from gupper_publish.signing import keygen, load_signing_key
from gupper_publish.status import status
from gupper_publish.stores import Progress

from .conftest import NOW
from .exe_stubs import exe_stub

KeyPair = tuple[Path, Ed25519PrivateKey, str]
LIFETIME = timedelta(days=3650)


@pytest.fixture
def env(tmp_path: Path, keypair: KeyPair) -> Env:
    return Env(tmp_path, keypair)


class Env:
    """A folder store, a dist folder and the session key; helpers that build and read releases."""

    def __init__(self, tmp: Path, keypair: KeyPair) -> None:
        self.root, self.dist = tmp / "store", tmp / "dist"
        self.dist.mkdir()
        self.key_path, self.key, self.public = keypair
        self.store = LocalStore(self.root)
        # Long-lived manifests: list reports expiry against the real clock.
        self.opts = PublishOptions(keys=[self.key], clock=lambda: NOW, expires_in=LIFETIME)

    def build(self, version: str, platform: str = "linux-amd64") -> Path:
        path = self.dist / f"app-{version}-{platform}{'.exe' if platform.startswith('windows') else ''}"
        path.write_bytes(exe_stub(platform, f"{version} {platform}\n".encode() * 40))
        return path

    def publish(
        self, version: str, platform: str = "linux-amd64", *, channel: str = "stable", rollout: int | None = None
    ) -> Any:
        return publish(
            self.store, [self.build(version, platform)], replace(self.opts, channel=channel), rollout=rollout
        )

    def raw(self, channel: str = "stable") -> dict[str, Any]:
        signed: dict[str, Any] = json.loads((self.root / "app" / channel / "latest.json").read_bytes())["signed"]
        return signed

    def manifest(self, channel: str = "stable", trusted: TrustedKeys | None = None) -> Manifest:
        data = (self.root / "app" / channel / "latest.json").read_bytes()
        return verify_manifest(
            data, trusted or TrustedKeys.from_texts([self.public]), app="app", channel=channel, now=NOW
        )

    def cli(self, *argv: str) -> int:
        return main([*argv[:1], "--store", str(self.root), *argv[1:]])


def served(m: Manifest) -> dict[str, str]:
    return {p: str(e.version) for p, e in m.entries.items()}


def test_publish_to_beta_then_promote_to_stable_uploads_nothing_again(env: Env) -> None:
    env.publish("1.0.0")
    env.publish("2.0.0", channel="beta")
    env.publish("2.0.0", "windows-amd64", channel="beta")
    assert served(env.manifest("stable")) == {"linux-amd64": "1.0.0"}  # beta's release stays out of stable
    assert served(env.manifest("beta")) == {"linux-amd64": "2.0.0", "windows-amd64": "2.0.0"}
    artifact = env.root / "app/2.0.0/app-2.0.0-linux-amd64"
    before = artifact.stat()
    result = promote(env.store, "app", "2.0.0", to_channel="stable", from_channel="beta", options=env.opts)
    assert result.changed and result.serial == 2
    stable = env.manifest("stable")
    assert served(stable) == {"linux-amd64": "2.0.0", "windows-amd64": "2.0.0"} and stable.channel == "stable"
    assert stable.entries["linux-amd64"].url == "../2.0.0/app-2.0.0-linux-amd64"
    after = artifact.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not written again
    # The other manifest cannot pass for this one: channel is in the signed bytes.
    beta_bytes = (env.root / "app/beta/latest.json").read_bytes()
    with pytest.raises(Exception, match="channel 'beta'"):
        verify_manifest(beta_bytes, TrustedKeys.from_texts([env.public]), app="app", channel="stable", now=NOW)


def test_promote_without_from_takes_the_files_from_the_store_and_refuses_what_is_not_there(env: Env) -> None:
    env.publish("1.0.0", channel="nightly")
    promote(env.store, "app", "1.0.0", to_channel="stable", options=env.opts)
    assert served(env.manifest("stable")) == {"linux-amd64": "1.0.0"}
    with pytest.raises(NotFoundError, match=r"no files of app 3\.0\.0"):
        promote(env.store, "app", "3.0.0", to_channel="stable", options=env.opts)
    with pytest.raises(NotFoundError, match="not in app/nightly"):
        promote(env.store, "app", "3.0.0", to_channel="stable", from_channel="nightly", options=env.opts)


def test_pre_releases_are_refused_for_stable_before_anything_is_uploaded(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.publish("1.0.0")
    before = sorted(p.relative_to(env.root) for p in env.root.rglob("*"))
    assert env.cli("publish", "--key", str(env.key_path), str(env.build("2.0.0rc1"))) == 1
    err = capsys.readouterr().err
    assert "pre-release" in err and "--channel beta" in err and err.count("\n") == 1
    assert sorted(p.relative_to(env.root) for p in env.root.rglob("*")) == before
    env.publish("2.0.0rc1", channel="beta")
    with pytest.raises(PublishError, match="pre-release"):
        promote(env.store, "app", "2.0.0rc1", to_channel="stable", from_channel="beta", options=env.opts)


def test_staged_rollout_raise_halt_complete(env: Env) -> None:
    env.publish("1.0.0")
    env.publish("1.0.0", "windows-amd64")
    first = env.publish("2.0.0", rollout=10).manifests[0]
    assert first.platforms == {"linux-amd64": "2.0.0 at 10% (others 1.0.0)", "windows-amd64": "1.0.0"}
    entry = env.raw()["platforms"]["linux-amd64"]
    assert entry["rollout"] == {"percent": 10, "id": "2.0.0"} and entry["version"] == "2.0.0"
    old = env.build("1.0.0")
    fallback = {
        "version": "1.0.0",
        "type": "binary",
        "url": "../1.0.0/app-1.0.0-linux-amd64",
        "size": old.stat().st_size,
        "sha256": hashlib.sha256(old.read_bytes()).hexdigest(),
    }
    assert entry["fallback"] == fallback
    extra = dict(env.manifest().entries["linux-amd64"].extra)
    assert extra.pop("patches")[0]["from_version"] == "1.0.0"  # a delta from the release it replaces
    assert extra == {"rollout": {"percent": 10, "id": "2.0.0"}, "fallback": fallback}  # signed, as the client reads it
    serial = env.raw()["serial"]
    raised = set_rollout(env.store, "app", "2.0.0", 50, env.opts)
    assert raised.serial == serial + 1 and env.raw()["platforms"]["linux-amd64"]["rollout"] == {
        "percent": 50,
        "id": "2.0.0",
    }  # same id: earlier cohort stays in
    assert env.cli("rollout", "app", "2.0.0", "--halt", "--key", str(env.key_path)) == 0
    halted = env.raw()["platforms"]["linux-amd64"]
    assert halted["rollout"]["percent"] == 0 and halted["fallback"]["version"] == "1.0.0"
    assert env.cli("rollout", "app", "2.0.0", "--complete", "--key", str(env.key_path)) == 0
    done = env.raw()
    assert (
        done["platforms"]["linux-amd64"].keys() - {"patches"} == {"version", "type", "url", "size", "sha256"}
        and done["serial"] == serial + 3
    )
    assert done["platforms"]["linux-amd64"]["version"] == "2.0.0"
    assert (
        set_rollout(env.store, "app", "2.0.0", 100, env.opts).changed is False
    )  # completing again: same manifest, same serial


def test_yank_regenerates_every_channel_carrying_it_and_keeps_earlier_yanks(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.publish("1.0.0")
    env.publish("1.1.0")
    promote(env.store, "app", "1.1.0", to_channel="beta", from_channel="stable", options=env.opts)
    results = yank(env.store, "app", "1.1.0", env.opts)
    assert [r.key for r in results] == ["app/stable/latest.json", "app/beta/latest.json"]
    stable = env.manifest()
    assert served(stable) == {"linux-amd64": "1.0.0"} and env.raw()["yanked"] == ["1.1.0"]
    assert env.raw("beta")["yanked"] == ["1.1.0"] and env.raw("beta")["platforms"] == {}
    env.publish("1.2.0")
    assert env.raw()["yanked"] == ["1.1.0"]  # carried forward by every later regeneration
    assert env.cli("yank", "app", "1.2.0", "--channel", "stable", "--key", str(env.key_path), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["manifests"][0]["serial"] == env.raw()["serial"]
    assert env.raw()["yanked"] == ["1.1.0", "1.2.0"] and served(env.manifest()) == {"linux-amd64": "1.0.0"}
    with pytest.raises(PublishError, match="stays withdrawn"):
        env.publish("1.1.0")
    assert env.cli("yank", "app", "7.0.0", "--key", str(env.key_path)) == 1
    assert "7.0.0 is in no channel of app" in capsys.readouterr().err


def test_list_json_has_the_documented_shape(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.publish("1.0.0")
    env.publish("2.0.0", rollout=10)
    env.publish("2.1.0b1", channel="beta")
    yank(env.store, "app", "2.1.0b1", env.opts)
    regenerate_manifest(
        env.store,
        "app",
        replace(env.opts, channel="beta", clock=lambda: NOW - timedelta(days=60), expires_in=timedelta(days=30)),
        force=True,
    )
    (env.root / "app/0.9.0").mkdir()
    (env.root / "app/0.9.0/app-0.9.0-linux-amd64").write_bytes(exe_stub("linux-amd64", b"old build, in no channel"))
    assert env.cli("list", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc.keys() == {"schema", "store", "apps"} and doc["schema"] == 1 and doc["store"] == str(env.root.resolve())
    app = doc["apps"]["app"]
    assert list(app["channels"]) == ["stable", "beta"]  # stable first
    stable = app["channels"]["stable"]
    assert stable.keys() == {"manifest", "state", "in_sync", "platforms", "releases", "yanked", "keys"}
    expires = format_time(NOW + LIFETIME)
    assert stable["manifest"] == {
        "key": "app/stable/latest.json",
        "serial": 2,
        "created": "2026-11-28T12:00:00Z",
        "expires": expires,
        "expired": False,
    }
    assert (
        stable["state"] == {"key": "app/stable/channel.json", "serial": 2, "stored": True} and stable["in_sync"] is True
    )
    assert stable["platforms"] == {
        "linux-amd64": {"version": "2.0.0", "rollout": {"percent": 10, "id": "2.0.0"}, "fallback": "1.0.0"}
    }
    assert stable["releases"] == [
        {
            "version": "2.0.0",
            "status": "rollout",
            "rollout": 10,
            "added": "2026-11-28T12:00:00Z",
            "platforms": ["linux-amd64"],
        },
        {
            "version": "1.0.0",
            "status": "complete",
            "rollout": None,
            "added": "2026-11-28T12:00:00Z",
            "platforms": ["linux-amd64"],
        },
    ]
    assert stable["yanked"] == [] and stable["keys"] is None
    beta = app["channels"]["beta"]
    assert (
        beta["releases"][0]["status"] == "yanked"
        and beta["yanked"] == ["2.1.0b1"]
        and beta["manifest"]["expired"] is True
    )
    assert [(r["version"], r["channels"], r["referenced"]) for r in app["releases"]] == [
        ("2.1.0b1", ["beta"], False),
        ("2.0.0", ["stable"], True),
        ("1.0.0", ["stable"], True),
        ("0.9.0", [], False),
    ]
    assert app["releases"][1]["platforms"] == {
        "linux-amd64": {"key": "app/2.0.0/app-2.0.0-linux-amd64", "size": env.build("2.0.0").stat().st_size}
    }
    # The table says the same for people.
    assert env.cli("status", "app") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["APP", "CHANNEL", "PLATFORM", "VERSION", "STATE", "SERVED"]
    assert "app  stable   linux-amd64  2.0.0    rollout 10%    entry" in table
    assert "app  stable   linux-amd64  1.0.0    complete       fallback" in table
    assert "app  -        linux-amd64  0.9.0    in no channel  -" in table
    assert f"app/stable/latest.json  2       {expires}" in table
    assert any(line.startswith("app/beta/latest.json    3") and "EXPIRED" in line for line in table)


def test_list_of_an_unknown_app_or_channel_says_what_exists(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.publish("1.0.0")
    assert env.cli("list", "nope") == 1 and "no app 'nope'" in capsys.readouterr().err
    assert env.cli("list", "app", "--channel", "beta") == 1 and "it has stable" in capsys.readouterr().err


def test_prune_deletes_only_old_releases_no_manifest_references(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    for v in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
        env.publish(v)
    env.publish("1.0.0", "windows-amd64")  # the only windows build: served, however old
    env.publish("2.0.0", rollout=20)  # staged: 1.3.0 is its fallback
    env.publish("2.1.0", channel="beta")
    manifests = {c: (env.root / f"app/{c}/latest.json").read_bytes() for c in ("stable", "beta")}
    assert env.cli("prune", "app", "--keep", "2", "--dry-run", "--json") == 0
    dry = json.loads(capsys.readouterr().out)
    assert [k for k in dry["deleted"] if "/patches/" not in k] == [
        "app/1.1.0/app-1.1.0-linux-amd64",
        "app/1.2.0/app-1.2.0-linux-amd64",
    ]
    assert all(
        k.startswith(("app/1.1.0/patches/", "app/1.2.0/patches/")) for k in dry["deleted"] if "/patches/" in k
    )  # their patches go too
    assert dry["dry_run"] is True
    assert (env.root / "app/1.1.0/app-1.1.0-linux-amd64").exists()
    report = prune(env.store, "app", 2)
    assert report.kept == ["2.1.0", "2.0.0"] and report.referenced == ["2.1.0", "2.0.0", "1.3.0", "1.0.0"]
    assert not (env.root / "app/1.1.0").exists() and not (env.root / "app/1.2.0").exists()
    for kept in (
        "1.0.0/app-1.0.0-linux-amd64",
        "1.0.0/app-1.0.0-windows-amd64.exe",
        "1.3.0/app-1.3.0-linux-amd64",
        "2.0.0/app-2.0.0-linux-amd64",
    ):
        assert (env.root / "app" / kept).exists()
    assert {c: (env.root / f"app/{c}/latest.json").read_bytes() for c in manifests} == manifests  # nothing re-signed
    assert set(json.loads((env.root / "app/stable/channel.json").read_bytes())["releases"]) == {
        "1.0.0",
        "1.3.0",
        "2.0.0",
    }
    # With the pruned releases gone from the state, completing 2.0.0 then yanking it falls back to 1.3.0, never to a
    # deleted file.
    set_rollout(env.store, "app", "2.0.0", 100, env.opts)
    yank(env.store, "app", "2.0.0", env.opts)
    assert served(env.manifest()) == {"linux-amd64": "1.3.0", "windows-amd64": "1.0.0"}
    assert env.cli("prune", "app", "--keep", "0") == 1 and "at least 1" in capsys.readouterr().err


def test_rotate_keys_announces_the_new_set_signed_by_old_and_new_and_later_publishes_carry_it(
    env: Env, tmp_path: Path
) -> None:
    env.publish("1.0.0")
    new_path, new_pub, new_public = keygen(tmp_path / "keys" / "new")
    new_key = load_signing_key(new_path)
    with pytest.raises(SigningKeyError, match="threshold 1, and only 0"):
        rotate_keys(env.store, "app", [new_public.to_text()], 1, env.opts)  # not signed by the new set
    assert (
        env.cli(
            "rotate-keys",
            "app",
            "--new-key",
            str(new_pub),
            "--threshold",
            "1",
            "--key",
            str(env.key_path),
            "--key",
            str(new_path),
        )
        == 0
    )
    both = TrustedKeys.from_texts([env.public, new_public.to_text()], 2)
    rotated = env.manifest(trusted=both)  # both signatures are there
    assert env.raw()["keys"] == {"keys": [new_public.to_text()], "threshold": 1} and rotated.serial == 2
    publish(env.store, [env.build("1.1.0")], replace(env.opts, keys=[env.key, new_key]))
    assert (
        env.raw()["keys"] == {"keys": [new_public.to_text()], "threshold": 1} and env.raw()["serial"] == 3
    )  # copied forward
    with pytest.raises(SigningKeyError, match="rotate-keys"):
        env.publish("1.2.0")  # the old key alone no longer satisfies the announced set
    assert not (env.root / "app/1.2.0").exists()  # refused before the upload
    publish(env.store, [env.build("1.2.0")], replace(env.opts, keys=[new_key]))
    assert served(env.manifest(trusted=TrustedKeys.from_texts([new_public.to_text()]))) == {"linux-amd64": "1.2.0"}
    # A further rotation needs the threshold of the announced set as well as of the next one.
    with pytest.raises(SigningKeyError):
        rotate_keys(env.store, "app", [env.public], 1, env.opts)


def test_a_manifest_written_before_channel_state_is_carried_over(env: Env) -> None:
    env.publish("1.0.0")
    env.publish("1.0.0", "windows-amd64")
    (env.root / "app/stable/channel.json").unlink()  # as a store published by the previous version looks
    result = env.publish("1.1.0")
    assert result.manifests[0].serial == 3
    assert served(env.manifest()) == {"linux-amd64": "1.1.0", "windows-amd64": "1.0.0"}


def test_a_hand_edited_manifest_is_replaced_with_the_next_serial(env: Env) -> None:
    env.publish("1.0.0")
    path = env.root / "app/stable/latest.json"
    doc = json.loads(path.read_bytes())
    doc["signed"]["platforms"]["linux-amd64"]["size"] = 1
    path.write_text(json.dumps(doc))
    result = env.publish("1.0.0")  # identical re-publish: nothing new, but the manifest no longer matches the state
    assert result.manifests[0].changed and result.manifests[0].serial == 2
    assert env.manifest().entries["linux-amd64"].size == env.build("1.0.0").stat().st_size


class RacingStore(LocalStore):
    """Lets another publish land between this publisher's read of the channel state and its write."""

    def __init__(self, root: Path, other: Any) -> None:
        super().__init__(root)
        self.other, self.lost = other, 0

    def swap(self, key: str, data: bytes, *, expect_etag: str | None, content_type: str, cache_control: str) -> str:
        if self.other is not None and key.endswith("channel.json"):
            other, self.other = self.other, None
            other()
        try:
            return super().swap(
                key, data, expect_etag=expect_etag, content_type=content_type, cache_control=cache_control
            )
        except PreconditionFailedError:
            self.lost += 1
            raise


def test_a_publisher_that_loses_the_race_retries_and_both_releases_land_with_one_serial_each(env: Env) -> None:
    env.publish("1.0.0")
    racing = RacingStore(env.root, lambda: env.publish("1.0.0", "windows-amd64"))
    publish(racing, [env.build("1.0.0", "darwin-arm64")], env.opts)
    assert racing.lost == 1
    assert served(env.manifest()) == {"darwin-arm64": "1.0.0", "linux-amd64": "1.0.0", "windows-amd64": "1.0.0"}
    assert env.manifest().serial == 3


def test_resign_renews_every_channel_of_the_app_and_channel_picks_one(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.publish("1.0.0")
    env.publish("1.1.0b1", channel="beta")
    env.publish("1.1.0b2", channel="nightly")
    before = {c: env.raw(c) for c in ("stable", "beta", "nightly")}
    fresh = format_time(datetime.now(UTC) + timedelta(days=29))  # resign's 30 days run from the real clock
    capsys.readouterr()
    assert main(["resign", "app", "--store", str(env.root), "--key", str(env.key_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # stable first, then the others by name: as 'list' orders them.
    assert [line.split(":")[0] for line in lines] == [
        "re-signed app/stable/latest.json",
        "re-signed app/beta/latest.json",
        "re-signed app/nightly/latest.json",
    ]
    for channel, old in before.items():
        new = env.raw(channel)
        assert new["serial"] == old["serial"] + 1 and new["expires"] > fresh, channel
        assert new["platforms"] == old["platforms"]
        assert f"serial {new['serial']}, expires in 30 days" in next(line for line in lines if f"/{channel}/" in line)
    resigned = {c: env.raw(c)["serial"] for c in before}
    assert env.cli("resign", "app", "--channel", "beta", "--key", str(env.key_path), "--json") == 0
    (only,) = json.loads(capsys.readouterr().out)["manifests"]
    assert only["key"] == "app/beta/latest.json" and only["serial"] == resigned["beta"] + 1
    assert {c: env.raw(c)["serial"] for c in before} == {**resigned, "beta": resigned["beta"] + 1}


def test_resign_of_a_channel_with_nothing_published_says_so(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.publish("1.0.0")
    assert env.cli("resign", "app", "--channel", "beta", "--key", str(env.key_path)) == 1
    assert "publish a release to it first" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rollout", "app", "1.0.0", "--percent", "150"], "0..100"),
        (["rollout", "app", "banana", "--halt"], "not a PEP 440 version"),
        (["promote", "app", "1.0.0", "--from", "stable", "--to", "stable"], "--from and --to are both stable"),
        (["publish", "--channel", "2.0"], "looks like a version"),
        (["rotate-keys", "app", "--new-key", "ed25519:AAAA", "--threshold", "1"], "--new-key ed25519:AAAA"),
    ],
)
def test_cli_refusals_are_one_line_with_exit_code_1(
    env: Env, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    env.publish("1.0.0")
    if argv[0] == "publish":
        argv = [*argv, str(env.build("2.0.0"))]
    assert env.cli(*argv, "--key", str(env.key_path)) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("gupper-publish: error:")


def test_progress_bar_only_on_a_terminal() -> None:
    assert terminal_progress(io.StringIO()) is None

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    factory = terminal_progress(stream)
    assert factory is not None
    with factory("app-1.0.0-linux-amd64", 2048) as callback:
        assert callback is not None
        progress: Progress = callback
        progress(1024)
        progress(1024)
    assert (
        "app-1.0.0-linux-amd64:" in stream.getvalue() and "/2.00k" in stream.getvalue()
    )  # name and size; tqdm throttles redraws


def test_status_of_a_store_is_plain_data(env: Env) -> None:
    env.publish("1.0.0")
    doc = status(env.store, NOW + LIFETIME)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["apps"]["app"]["channels"]["stable"]["manifest"]["expired"] is True

"""Pure core of release management: channel state, its mutations, and the manifest it implies."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from gupper_publish import channels as ch
from gupper_publish.errors import ImmutableConflictError, NotFoundError, PublishError

MKEY = "app/stable/latest.json"
SHA = "ab" * 32


def art(version: str, platform: str = "linux-amd64", size: int = 10) -> ch.ArtifactRecord:
    suffix = ".exe" if platform.startswith("windows") else ""
    return ch.ArtifactRecord(f"app-{version}-{platform}{suffix}", size, SHA)


def add(state: ch.ChannelState, version: str, *platforms: str, rollout: int | None = None) -> ch.ChannelState:
    return ch.add_release(
        state,
        Version(version),
        {p: art(version, p) for p in platforms or ("linux-amd64",)},
        rollout=rollout,
        added="2026-11-28T12:00:00Z",
    )


def entry(version: str, platform: str = "linux-amd64") -> dict[str, Any]:
    return {
        "version": version,
        "type": "binary",
        "url": f"../{version}/app-{version}-{platform}",
        "size": 10,
        "sha256": SHA,
    }


def test_a_staged_release_carries_rollout_and_the_best_complete_release_as_fallback() -> None:
    state = add(add(add(ch.ChannelState("app", "stable"), "1.0.0"), "1.1.0"), "2.0.0", rollout=10)
    assert ch.derive(state, MKEY) == {
        "platforms": {
            "linux-amd64": {**entry("2.0.0"), "rollout": {"percent": 10, "id": "2.0.0"}, "fallback": entry("1.1.0")}
        }
    }
    halted = ch.set_rollout(state, Version("2.0.0"), 0)
    assert ch.derive(halted, MKEY)["platforms"]["linux-amd64"]["rollout"] == {"percent": 0, "id": "2.0.0"}
    assert ch.derive(halted, MKEY)["platforms"]["linux-amd64"]["fallback"] == entry("1.1.0")
    done = ch.set_rollout(state, Version("2.0.0"), 100)
    assert ch.derive(done, MKEY) == {"platforms": {"linux-amd64": entry("2.0.0")}}


def test_a_staged_release_without_a_complete_one_has_no_fallback_and_one_below_it_is_ignored() -> None:
    only = add(ch.ChannelState("app", "beta"), "2.0.0", rollout=25)
    assert "fallback" not in ch.derive(only, "app/beta/latest.json")["platforms"]["linux-amd64"]
    below = add(add(ch.ChannelState("app", "stable"), "1.5.0", rollout=25), "2.0.0")
    assert ch.derive(below, MKEY) == {"platforms": {"linux-amd64": entry("2.0.0")}}


def test_yank_leaves_the_manifest_and_joins_the_yanked_list_and_stays_withdrawn() -> None:
    state = add(add(add(ch.ChannelState("app", "stable"), "1.0.0"), "1.1.0"), "1.2.0")
    state = ch.yank(ch.yank(state, Version("1.2.0")), Version("1.1.0"))
    assert ch.derive(state, MKEY) == {"platforms": {"linux-amd64": entry("1.0.0")}, "yanked": ["1.1.0", "1.2.0"]}
    assert ch.yank(state, Version("1.1.0")) == state  # yanking again changes nothing
    with pytest.raises(PublishError, match="stays withdrawn"):
        add(state, "1.1.0")
    with pytest.raises(PublishError, match="yanked"):
        ch.set_rollout(state, Version("1.2.0"), 50)
    with pytest.raises(NotFoundError, match="is not in app/stable"):
        ch.yank(state, Version("9.0.0"))


def test_stable_refuses_pre_releases_other_channels_carry_them() -> None:
    with pytest.raises(PublishError, match="pre-release"):
        add(ch.ChannelState("app", "stable"), "2.0.0rc1")
    beta = add(ch.ChannelState("app", "beta"), "2.0.0rc1")
    assert ch.derive(beta, "app/beta/latest.json")["platforms"]["linux-amd64"]["version"] == "2.0.0rc1"


def test_add_release_merges_platforms_keeps_rollout_and_refuses_another_file() -> None:
    state = add(ch.ChannelState("app", "stable"), "2.0.0", "linux-amd64", rollout=10)
    state = add(state, "2.0.0", "windows-amd64")  # the second platform of the same release, later
    record = state.releases["2.0.0"]
    assert sorted(record.artifacts) == ["linux-amd64", "windows-amd64"] and record.rollout == 10
    assert add(state, "2.0.0", "linux-amd64") == state
    with pytest.raises(ImmutableConflictError):
        ch.add_release(
            state,
            Version("2.0.0"),
            {"linux-amd64": ch.ArtifactRecord("app-2.0.0-linux-amd64", 11, SHA)},
            rollout=None,
            added="",
        )
    with pytest.raises(PublishError, match="same version spelled twice"):
        add(state, "2.0")
    with pytest.raises(PublishError, match=r"0\.\.100"):
        add(state, "3.0.0", rollout=101)


@pytest.mark.parametrize("name", ["1.0", "v2", "../x", "", "a/b"])
def test_channel_names_that_are_versions_or_paths_are_refused(name: str) -> None:
    with pytest.raises(PublishError):
        ch.check_channel_name(name)


def test_keys_are_validated_and_carried_into_the_payload(keypair: tuple[Any, Any, str]) -> None:
    state = ch.set_keys(add(ch.ChannelState("app", "stable"), "1.0.0"), [keypair[2]], 1)
    assert ch.derive(state, MKEY)["keys"] == {"keys": [keypair[2]], "threshold": 1}
    with pytest.raises(PublishError, match="unusable new key set"):
        ch.set_keys(state, [keypair[2]], 2)
    with pytest.raises(PublishError, match="unusable new key set"):
        ch.set_keys(state, ["ed25519:nope"], 1)


def test_state_json_is_refused_when_it_belongs_elsewhere_or_is_damaged() -> None:
    state = add(ch.ChannelState("app", "stable", serial=3), "1.0.0")
    data = ch.state_to_json(state)
    assert ch.state_from_json(data, app="app", channel="stable", where="w") == state
    with pytest.raises(PublishError, match="belongs to app/stable"):
        ch.state_from_json(data, app="app", channel="beta", where="w")
    with pytest.raises(PublishError, match="unreadable"):
        ch.state_from_json(data.replace(b'"size": 10', b'"size": -1'), app="app", channel="stable", where="w")
    with pytest.raises(PublishError, match="unreadable"):
        ch.state_from_json(b"{", app="app", channel="stable", where="w")


def test_seeding_refuses_a_manifest_entry_at_a_foreign_url() -> None:
    signed = {
        "serial": 4,
        "platforms": {"linux-amd64": {**entry("1.0.0"), "url": "https://elsewhere.example/app-1.0.0-linux-amd64"}},
    }
    with pytest.raises(PublishError, match="not its canonical key"):
        ch.seed_from_manifest("app", "stable", signed, "w")


PLATFORMS = ["linux-amd64", "linux-arm64", "windows-amd64"]


@st.composite
def states(draw: st.DrawFn) -> ch.ChannelState:
    state = ch.ChannelState("app", "stable", serial=draw(st.integers(0, 50)))
    versions = draw(st.lists(st.sampled_from([f"1.{i}.0" for i in range(8)]), unique=True, max_size=6))
    for v in versions:
        platforms = draw(st.lists(st.sampled_from(PLATFORMS), unique=True, min_size=1))
        state = add(state, v, *platforms, rollout=draw(st.one_of(st.none(), st.integers(0, 100))))
    for v in draw(st.lists(st.sampled_from(versions), unique=True)) if versions else []:
        state = ch.yank(state, Version(v))
    return state


@settings(max_examples=200, deadline=None)
@given(states())
def test_derived_entries_are_never_yanked_and_a_fallback_is_always_a_lower_complete_release(
    state: ch.ChannelState,
) -> None:
    payload = ch.derive(state, MKEY)
    for platform, e in payload["platforms"].items():
        for served in (e, e.get("fallback")):
            if served is not None:
                assert not state.is_yanked(Version(served["version"]))
                assert platform in state.releases[served["version"]].artifacts
        complete = [
            r.version
            for r in state.releases.values()
            if r.rollout is None and platform in r.artifacts and not state.is_yanked(r.version)
        ]
        if "rollout" in e:
            assert e["rollout"] == {"percent": state.releases[e["version"]].rollout, "id": e["version"]}
            if complete:
                assert e["fallback"]["version"] == str(max(complete)) and Version(e["fallback"]["version"]) < Version(
                    e["version"]
                )
                assert "rollout" not in e["fallback"]
        else:
            assert "fallback" not in e and Version(e["version"]) == max(complete)
    # What a manifest says is enough to rebuild a state that says the same (the legacy path).
    if payload["platforms"]:
        seeded = ch.seed_from_manifest("app", "stable", {"serial": 1, **payload}, "w")
        assert ch.derive(seeded, MKEY) == payload
    assert ch.state_from_json(ch.state_to_json(state), app="app", channel="stable", where="w") == state

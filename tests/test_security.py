"""Adversarial suite: the TUF threat model against the client, on real TLS sockets.

Each attack asserts the error type and message, that nothing beside the installed executable
changed, and that the old binary still runs. Fast: an in-process HTTPS simulator (a real
server thread with a trustme CA) serves signed manifests; docs/security.md maps each row of
the threat model to the tests here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper import (
    BadSignatureError,
    ConfigError,
    DownloadError,
    ExpiredError,
    HTTPStatusError,
    IntegrityError,
    MalformedError,
    Platform,
    Result,
    RollbackError,
    Status,
    TooLargeError,
    TransferTimeoutError,
    Updater,
    UpdaterConfig,
    WrongTargetError,
)
from gupper.state import StateFile
from gupper_publish.signing import build_signed, public_key_of, sign_manifest

from . import httpsim
from .conftest import NOW, fake_app
from .httpsim import Sim

pytestmark = pytest.mark.posix  # the fake installed app is a shell script

MANIFEST = "/app/stable/latest.json"
OLD_SCRIPT = b"#!/bin/sh\necho old\n"


def script(version: str) -> bytes:
    return fake_app(version)


@dataclass
class Lab:
    """One installed app, one simulator, one release key; helpers to publish and to attack."""

    sim: Sim
    root: Path
    exe: Path
    key: Ed25519PrivateKey

    @property
    def public(self) -> str:
        return public_key_of(self.key).to_text()

    def release(
        self, version: str = "2.0.0", *, platform: str = "linux-amd64", content: bytes | None = None
    ) -> dict[str, Any]:
        """Serve an artifact and return its manifest entry."""
        data = content if content is not None else script(version)
        path = f"/app/{version}/app-{version}-{platform}"
        self.sim.routes[path] = data
        return {
            "version": version,
            "type": "binary",
            "url": f"../{version}/app-{version}-{platform}",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    def manifest(
        self,
        *,
        serial: int = 1,
        platforms: dict[str, Any] | None = None,
        signers: list[Ed25519PrivateKey] | None = None,
        now: datetime = NOW,
        app: str = "app",
        channel: str = "stable",
        **extra: Any,
    ) -> bytes:
        signed = build_signed(
            app=app,
            channel=channel,
            serial=serial,
            now=now,
            expires_in=timedelta(days=30),
            platforms=platforms if platforms is not None else {"linux-amd64": self.release()},
        )
        signed.update(extra)
        return sign_manifest(signed, signers if signers is not None else [self.key])

    def serve(self, data: bytes | httpsim.Handler) -> None:
        self.sim.routes[MANIFEST] = data

    def updater(
        self, *, clock: datetime = NOW, public_keys: tuple[str, ...] | None = None, threshold: int = 1, **cfg: Any
    ) -> Updater:
        config = UpdaterConfig(
            app="app",
            current_version="1.0.0",
            manifest_url=self.sim.url(MANIFEST),
            public_keys=public_keys or (self.public,),
            threshold=threshold,
            ca_bundle=self.sim.ca_path,
            executable=str(self.exe),
            platform=Platform("linux", "amd64"),
            state_dir=str(self.root / "state"),
            retries=0,
            connect_timeout=2,
            read_timeout=2,
            manifest_timeout=3,
            download_timeout=3,
            download_attempts=1,
        )
        return Updater(replace(config, **cfg), clock=lambda: clock, environ={}, argv=["app"])

    def run(self, **kw: Any) -> Result:
        return self.updater(**kw).run(restart=False)

    def snapshot(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.exe.parent.iterdir()}

    def runs_old(self) -> bool:
        return (
            subprocess.run([str(self.exe)], capture_output=True, text=True, timeout=10, check=False).stdout == "old\n"
        )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    install = tmp_path / "install"
    install.mkdir()
    exe = install / "app"
    exe.write_bytes(OLD_SCRIPT)
    exe.chmod(0o755)
    with httpsim.serve(tmp_path) as sim:
        yield Lab(sim, tmp_path, exe, Ed25519PrivateKey.generate())


def refused(lab: Lab, error: type[Exception], message: str, **kw: Any) -> Result:
    """Run the updater; assert it failed with ``error``/``message`` and changed nothing."""
    before = lab.snapshot()
    result = lab.run(**kw)
    assert result.status is Status.FAILED, result
    assert isinstance(result.error, error), repr(result.error)
    assert message in result.message, result.message
    assert "\n" not in result.message
    unchanged_or_resumable(before, lab.snapshot())
    assert lab.runs_old()
    return result


PARTIAL = ".app.gupper-partial"


def unchanged_or_resumable(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """Nothing that was there changed; the only new file allowed is the resumable partial download."""
    assert {k: v for k, v in after.items() if k != PARTIAL} == before
    assert set(after) - set(before) <= {PARTIAL}


def not_installed(lab: Lab, **kw: Any) -> Result:
    before = lab.snapshot()
    result = lab.run(**kw)
    assert result.status is Status.UP_TO_DATE, result
    assert lab.snapshot() == before and lab.runs_old()
    return result


def artifact_requests(lab: Lab) -> list[str]:
    return [path for _, path, _ in lab.sim.requests if path != MANIFEST]


# --- Arbitrary software: signatures ---------------------------------------------------------


def test_tampered_payload_fails_the_signature(lab: Lab) -> None:
    doc = json.loads(lab.manifest())
    doc["signed"]["platforms"]["linux-amd64"]["sha256"] = "0" * 64
    lab.serve(json.dumps(doc).encode())
    refused(lab, BadSignatureError, "0 valid signature(s)")
    assert artifact_requests(lab) == []


def test_missing_signatures(lab: Lab) -> None:
    doc = json.loads(lab.manifest())
    doc["signatures"] = []
    lab.serve(json.dumps(doc).encode())
    refused(lab, BadSignatureError, "0 valid signature(s) from trusted keys, 1 needed")


def test_unknown_key(lab: Lab) -> None:
    lab.serve(lab.manifest(signers=[Ed25519PrivateKey.generate()]))
    refused(lab, BadSignatureError, "not signed with this app's key")


def test_signature_claiming_a_trusted_keyid_but_made_by_another_key(lab: Lab) -> None:
    forged = json.loads(lab.manifest(signers=[Ed25519PrivateKey.generate()]))
    forged["signatures"][0]["keyid"] = public_key_of(lab.key).keyid
    lab.serve(json.dumps(forged).encode())
    refused(lab, BadSignatureError, "0 valid signature(s)")


def test_threshold_padding_with_repeated_signatures(lab: Lab) -> None:
    second = Ed25519PrivateKey.generate()
    doc = json.loads(lab.manifest())
    doc["signatures"] = doc["signatures"] * 5
    lab.serve(json.dumps(doc).encode())
    refused(
        lab,
        BadSignatureError,
        "1 valid signature(s) from trusted keys, 2 needed",
        public_keys=(lab.public, public_key_of(second).to_text()),
        threshold=2,
    )


def test_threshold_met_by_two_distinct_keys_installs(lab: Lab) -> None:
    second = Ed25519PrivateKey.generate()
    lab.serve(lab.manifest(signers=[lab.key, second]))
    result = lab.run(public_keys=(lab.public, public_key_of(second).to_text()), threshold=2)
    assert result.status is Status.INSTALLED and lab.exe.read_bytes() == script("2.0.0")


def test_garbage_signature_values_are_ignored_not_crashing(lab: Lab) -> None:
    doc = json.loads(lab.manifest())
    doc["signatures"] = [
        {"keyid": public_key_of(lab.key).keyid, "sig": "!!notbase64"},
        7,
        None,
        {"keyid": 1, "sig": []},
    ]
    lab.serve(json.dumps(doc).encode())
    refused(lab, BadSignatureError, "0 valid signature(s)")


# --- Rollback, equivocation, downgrade, freeze ---------------------------------------------


def test_rollback_publish_3_replay_2(lab: Lab) -> None:
    old = lab.manifest(serial=2, platforms={"linux-amd64": lab.release("1.5.0")})
    lab.serve(lab.manifest(serial=3, platforms={"linux-amd64": lab.release("1.0.0")}))
    assert lab.run().status is Status.UP_TO_DATE
    lab.serve(old)
    refused(lab, RollbackError, "serial 2 is older than serial 3 already seen")
    assert StateFile(lab.root / "state").load().channels["stable"].serial == 3


def test_equal_serial_with_different_content_is_equivocation(lab: Lab) -> None:
    lab.serve(lab.manifest(serial=5, platforms={"linux-amd64": lab.release("1.0.0")}))
    assert lab.run().status is Status.UP_TO_DATE
    lab.serve(lab.manifest(serial=5, platforms={"linux-amd64": lab.release("2.0.0")}))
    refused(lab, RollbackError, "two different manifests with one serial")


def test_same_manifest_again_is_fine(lab: Lab) -> None:
    lab.serve(lab.manifest(serial=5, platforms={"linux-amd64": lab.release("1.0.0")}))
    assert lab.run().status is Status.UP_TO_DATE
    assert lab.run().status is Status.UP_TO_DATE


def test_downgrade_is_never_installed_without_a_signed_yank(lab: Lab) -> None:
    lab.serve(lab.manifest(platforms={"linux-amd64": lab.release("0.9.0")}))
    result = not_installed(lab)
    assert "up to date" in result.message and artifact_requests(lab) == []


def test_signed_yank_is_the_only_way_down(lab: Lab) -> None:
    lab.serve(lab.manifest(platforms={"linux-amd64": lab.release("0.9.0")}, yanked=["1.0.0"]))
    result = lab.run()
    assert result.status is Status.INSTALLED and result.version == "0.9.0" and lab.exe.read_bytes() == script("0.9.0")


def test_going_back_from_a_yanked_version_says_the_publisher_withdrew_it(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    lab.serve(lab.manifest(platforms={"linux-amd64": lab.release("0.9.0")}, yanked=["1.0.0"]))
    update = lab.updater().check()
    assert update is not None and update.withdrawn and update.version == "0.9.0"
    caplog.set_level(logging.INFO, logger="gupper")
    assert lab.run().status is Status.INSTALLED
    size = len(script("0.9.0"))
    lines = [r.getMessage() for r in caplog.records if r.name == "gupper"]
    assert f"gupper: app 1.0.0 was withdrawn by the publisher; going back to 0.9.0 ({size} bytes)" in lines
    assert not [line for line in lines if "updating" in line]
    lab.serve(lab.manifest(serial=2, platforms={"linux-amd64": lab.release("2.0.0")}))
    forward = lab.updater(current_version="0.9.0").check()
    assert forward is not None and not forward.withdrawn


def test_freeze_expired_manifest_with_a_frozen_clock(lab: Lab) -> None:
    lab.serve(lab.manifest(now=NOW - timedelta(days=31)))
    refused(lab, ExpiredError, "expired at 2026-11-27T12:00:00Z (now 2026-11-28T12:00:00Z)")


def test_clock_skew_ahead_is_refused_with_a_hint_and_behind_is_accepted(lab: Lab) -> None:
    lab.serve(lab.manifest())
    refused(lab, ExpiredError, "check this machine's clock", clock=NOW + timedelta(days=40))
    assert lab.run(clock=NOW - timedelta(days=2)).status is Status.INSTALLED


# --- Wrong software, mix-and-match -----------------------------------------------------------


def test_cross_app_replay(lab: Lab) -> None:
    lab.serve(lab.manifest(app="other"))
    refused(lab, WrongTargetError, "for app 'other' channel 'stable', not 'app' channel 'stable'")


def test_cross_channel_replay(lab: Lab) -> None:
    lab.serve(lab.manifest(channel="beta"))
    refused(lab, WrongTargetError, "channel 'beta'")


def test_missing_platform_entry_never_takes_another_platforms_file(lab: Lab) -> None:
    lab.serve(
        lab.manifest(
            platforms={
                "windows-amd64": lab.release(platform="windows-amd64"),
                "linux-arm64": lab.release(platform="linux-arm64"),
            }
        )
    )
    result = not_installed(lab)
    assert "no release for linux-amd64" in result.message and artifact_requests(lab) == []


@pytest.mark.parametrize("swap", ["other-binary", "other-arch", "html-error-page"])
def test_wrong_content_at_the_artifact_url(lab: Lab, swap: str) -> None:
    lab.serve(lab.manifest())
    good = script("2.0.0")
    evil = {
        "other-binary": script("6.6.6"),
        "other-arch": b"\x7fELF" + b"\xb7" * (len(good) - 4),
        "html-error-page": b"<html>Oops</html>",
    }[swap]
    lab.sim.routes["/app/2.0.0/app-2.0.0-linux-amd64"] = evil
    error, message = (
        (IntegrityError, "ended after 17 of")
        if swap == "html-error-page"
        else (IntegrityError, "does not match the signed sha256")
    )
    refused(lab, error, message)


def test_absolute_http_artifact_url_in_a_signed_manifest_is_refused(lab: Lab) -> None:
    entry = lab.release()
    entry["url"] = "http://127.0.0.1:1/app"
    lab.serve(lab.manifest(platforms={"linux-amd64": entry}))
    refused(lab, ConfigError, "https only")


# --- Endless data, slow retrieval, broken transfers ----------------------------------------


def test_endless_manifest(lab: Lab) -> None:
    lab.serve(httpsim.endless())
    refused(lab, TooLargeError, "sent more than 1048576 bytes")


def test_manifest_declaring_a_huge_length_is_refused_before_reading(lab: Lab) -> None:
    lab.serve(httpsim.lying_length(b"{}", 10**12))
    refused(lab, TooLargeError, "is 1000000000000 bytes, over the 1048576 byte limit")


def test_endless_artifact_stops_at_the_signed_size(lab: Lab) -> None:
    lab.serve(lab.manifest())
    lab.sim.routes["/app/2.0.0/app-2.0.0-linux-amd64"] = httpsim.endless(b"#" * 1000)
    refused(lab, TooLargeError, f"more than the {len(script('2.0.0'))} bytes the manifest signed for")


def test_artifact_lying_about_its_length(lab: Lab) -> None:
    lab.serve(lab.manifest())
    lab.sim.routes["/app/2.0.0/app-2.0.0-linux-amd64"] = httpsim.lying_length(
        script("2.0.0")[:500], len(script("2.0.0"))
    )
    refused(lab, DownloadError, "broke mid-transfer")


def test_truncated_artifact(lab: Lab) -> None:
    lab.serve(lab.manifest())
    lab.sim.routes["/app/2.0.0/app-2.0.0-linux-amd64"] = script("2.0.0")[:1000]
    refused(lab, IntegrityError, f"ended after 1000 of {len(script('2.0.0'))} bytes")


def test_connection_reset_mid_artifact(lab: Lab) -> None:
    lab.serve(lab.manifest())
    lab.sim.routes["/app/2.0.0/app-2.0.0-linux-amd64"] = httpsim.reset_after(script("2.0.0"), 700)
    refused(lab, DownloadError, "it will be retried next time")


def test_slow_retrieval_of_the_manifest_hits_the_total_deadline(lab: Lab) -> None:
    lab.serve(httpsim.trickle(lab.manifest(), delay=0.25))  # each byte well inside the read timeout
    refused(lab, TransferTimeoutError, "exceeded its deadline", manifest_timeout=1.0)


def test_slow_retrieval_of_the_artifact_hits_the_total_deadline(lab: Lab) -> None:
    lab.serve(lab.manifest())
    lab.sim.routes["/app/2.0.0/app-2.0.0-linux-amd64"] = httpsim.trickle(script("2.0.0"), delay=0.25)
    refused(lab, TransferTimeoutError, "exceeded its deadline", download_timeout=1.0)


# --- Transport -------------------------------------------------------------------------------


def test_https_to_http_redirect(lab: Lab) -> None:
    lab.serve(httpsim.redirect("http://127.0.0.1:9/latest.json"))
    refused(lab, ConfigError, "refusing http URL")


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x"])
def test_redirect_to_another_scheme(lab: Lab, target: str) -> None:
    lab.serve(httpsim.redirect(target))
    refused(lab, ConfigError, "updates are fetched over https only")


def test_redirect_loop(lab: Lab) -> None:
    lab.serve(httpsim.redirect(MANIFEST))
    refused(lab, HTTPStatusError, "more than 5 redirects")


def test_redirect_within_https_is_followed(lab: Lab) -> None:
    lab.sim.routes["/mirror/latest.json"] = lab.manifest(platforms={"linux-amd64": lab.release("1.0.0")})
    lab.serve(httpsim.redirect("/mirror/latest.json", 301))
    assert lab.run().status is Status.UP_TO_DATE


def test_self_signed_certificate(lab: Lab, tmp_path: Path) -> None:
    lab.serve(lab.manifest())
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    refused(lab, DownloadError, "certificate is not trusted", ca_bundle=str(other_ca))


@pytest.mark.parametrize("code", [404, 500, 429, 403])
def test_error_statuses(lab: Lab, code: int) -> None:
    lab.serve(httpsim.status(code))
    refused(lab, HTTPStatusError, f"answered HTTP {code}")


def test_transient_503_is_retried_with_backoff(lab: Lab) -> None:
    answers = [httpsim.status(503), httpsim.status(503)]
    good = lab.manifest(platforms={"linux-amd64": lab.release("1.0.0")})

    def flaky(h: Any) -> None:
        if answers:
            answers.pop()(h)
        else:
            h.send_response(200)
            h.send_header("Content-Length", str(len(good)))
            h.end_headers()
            h.wfile.write(good)

    lab.serve(flaky)
    assert lab.run(retries=2).status is Status.UP_TO_DATE
    assert [p for _, p, _ in lab.sim.requests].count(MANIFEST) == 3


def test_standard_proxy_variables_are_honoured(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.serve(lab.manifest())
    with httpsim.connect_proxy() as (proxy, seen):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert lab.run().status is Status.INSTALLED
    port = lab.sim.base.rsplit(":", 1)[1]
    assert seen and all(t == f"127.0.0.1:{port}" for t in seen)


def test_custom_ca_bundle_from_the_environment(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.serve(lab.manifest())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", lab.sim.ca_path)
    assert lab.run(ca_bundle=None).status is Status.INSTALLED


# --- Malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"), [(b"{not json", "not valid JSON"), (b'{"signed": 1, "signatures": []}', "must be an object")]
)
def test_malformed_json(lab: Lab, body: bytes, message: str) -> None:
    lab.serve(body)
    refused(lab, MalformedError, message)


def test_huge_numbers(lab: Lab) -> None:
    doc = json.loads(lab.manifest())
    doc["signed"]["serial"] = 10**30
    lab.serve(json.dumps(doc).encode())
    refused(lab, MalformedError, "integer out of range")
    lab.serve(b'{"signed": {"serial": ' + b"9" * 5000 + b'}, "signatures": []}')
    refused(lab, MalformedError, "not valid JSON")


def test_corrupt_state_file_falls_back_to_a_fresh_state_and_still_verifies(lab: Lab) -> None:
    (lab.root / "state").mkdir()
    (lab.root / "state" / "state.json").write_text("{garbage")
    lab.serve(lab.manifest(signers=[Ed25519PrivateKey.generate()]))
    refused(lab, BadSignatureError, "not signed with this app's key")


# --- Key rotation and revocation -------------------------------------------------------------


def _keys(*keys: Ed25519PrivateKey, threshold: int = 1) -> dict[str, Any]:
    return {"keys": [public_key_of(k).to_text() for k in keys], "threshold": threshold}


def test_key_rotation_chain_and_revocation(lab: Lab) -> None:
    k1, k2, k3 = lab.key, Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    v1 = {"linux-amd64": lab.release("1.0.0")}
    # Serial 2: signed by old and new keys, announces {k2}: clients move to k2.
    lab.serve(lab.manifest(serial=2, platforms=v1, signers=[k1, k2], keys=_keys(k2)))
    assert lab.run().status is Status.UP_TO_DATE
    # Serial 3: k2 alone now suffices; k1 is revoked.
    lab.serve(lab.manifest(serial=3, platforms=v1, signers=[k2], keys=_keys(k2)))
    assert lab.run().status is Status.UP_TO_DATE
    lab.serve(lab.manifest(serial=4, platforms={"linux-amd64": lab.release("2.0.0")}, signers=[k1]))
    refused(lab, BadSignatureError, "not signed with this app's key")
    # Serial 4: k2 → k3, then a release signed by k3 alone installs.
    lab.serve(lab.manifest(serial=4, platforms=v1, signers=[k2, k3], keys=_keys(k3)))
    assert lab.run().status is Status.UP_TO_DATE
    lab.serve(lab.manifest(serial=5, platforms={"linux-amd64": lab.release("2.0.0")}, signers=[k3], keys=_keys(k3)))
    assert lab.run().status is Status.INSTALLED
    state = StateFile(lab.root / "state").load()
    assert state.trusted_keys == [public_key_of(k3).to_text()]


def test_rotation_not_signed_by_the_new_keys_is_refused(lab: Lab) -> None:
    attacker = Ed25519PrivateKey.generate()
    # A holder of the old key alone cannot hand trust to a key it does not hold... nor announce one it does not sign
    # with.
    lab.serve(lab.manifest(serial=2, signers=[lab.key], keys=_keys(attacker)))
    refused(lab, BadSignatureError, "sign the rotation with both the old and the new keys")
    assert StateFile(lab.root / "state").load().trusted_keys is None


def test_a_new_build_with_other_builtin_keys_overrides_an_adopted_set(lab: Lab) -> None:
    k2, k9 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    lab.serve(
        lab.manifest(serial=2, platforms={"linux-amd64": lab.release("1.0.0")}, signers=[lab.key, k2], keys=_keys(k2))
    )
    assert lab.run().status is Status.UP_TO_DATE
    lab.serve(lab.manifest(serial=3, platforms={"linux-amd64": lab.release("1.0.0")}, signers=[k9]))
    assert lab.run(public_keys=(public_key_of(k9).to_text(),)).status is Status.UP_TO_DATE


def test_no_request_carries_the_users_netrc_credentials(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests adds ~/.netrc credentials for a matching host unless the session has an auth of its
    own: a user's netrc entry for the download host must never reach it with an update check."""
    from gupper.fetch import Fetcher
    from gupper.transfer import FetchConfig

    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    sim.routes["/app/stable/latest.json"] = b"{}"
    with Fetcher(FetchConfig(ca_bundle=sim.ca_path, retries=0)) as fetcher:
        fetcher.get_small(sim.url("/app/stable/latest.json"), max_bytes=1000, timeout=10)
    ((_method, _path, headers),) = sim.requests
    assert "Authorization" not in headers and "authorization" not in {k.lower() for k in headers}


def test_a_ca_bundle_that_does_not_exist_is_one_line_naming_the_file(tmp_path: Path) -> None:
    from gupper import ConfigError
    from gupper.fetch import Fetcher
    from gupper.transfer import FetchConfig

    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(ConfigError) as caught, Fetcher(FetchConfig(ca_bundle=str(missing), retries=0)) as fetcher:
        fetcher.get_small("https://127.0.0.1:9/app/stable/latest.json", max_bytes=100, timeout=5)
    assert str(caught.value) == (
        f"the CA bundle {missing} does not exist; fix UpdaterConfig.ca_bundle (or REQUESTS_CA_BUNDLE, "
        "CURL_CA_BUNDLE in the environment)"
    )

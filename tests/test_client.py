"""The client against the in-process HTTPS simulator: check, download, install, refusals."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper import (
    BadSignatureError,
    ConfigError,
    DownloadError,
    ExpiredError,
    HTTPStatusError,
    IntegrityError,
    Platform,
    Status,
    TooLargeError,
    Updater,
    UpdaterConfig,
)
from gupper.config import channel_in_url, channel_of

from .conftest import NOW, MakeManifest, entry, fake_app
from .httpsim import Sim, serve

NEW = fake_app("2.0.0")
OLD = b"#!/bin/sh\necho old\n"
MANIFEST = "/app/stable/latest.json"
ARTIFACT = "/app/2.0.0/app-2.0.0-linux-amd64"


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    d = tmp_path / "install"
    d.mkdir()
    exe = d / "app"
    exe.write_bytes(OLD)
    exe.chmod(0o755)
    return exe


def make_updater(sim: Sim, exe: Path, public_key: str, **kw: object) -> Updater:
    cfg = UpdaterConfig(
        app="app",
        current_version="1.0.0",
        manifest_url=sim.url(MANIFEST),
        public_keys=(public_key,),
        ca_bundle=sim.ca_path,
        executable=str(exe),
        platform=Platform("linux", "amd64"),
        retries=0,
        download_attempts=1,
        read_timeout=2,
        state_dir=str(exe.parent.parent / "state"),
    )
    return Updater(replace(cfg, **kw), clock=lambda: NOW, environ={}, argv=["app"])  # type: ignore[arg-type]


def publish_release(sim: Sim, make_manifest: MakeManifest, content: bytes = NEW, **kw: object) -> None:
    sim.routes[ARTIFACT] = content
    platforms = {"linux-amd64": entry("2.0.0", size=len(NEW), sha=hashlib.sha256(NEW).hexdigest())}
    sim.routes[MANIFEST] = make_manifest(platforms=platforms, **kw)


def beside(exe: Path) -> list[str]:
    return sorted(p.name for p in exe.parent.iterdir())


@pytest.mark.posix
def test_update_is_downloaded_verified_and_installed(
    sim: Sim, installed: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    publish_release(sim, make_manifest)
    seen: list[tuple[int, int]] = []
    result = make_updater(sim, installed, keypair[2]).run(restart=False, progress=lambda d, t: seen.append((d, t)))
    assert result.status is Status.INSTALLED and result.version == "2.0.0"
    assert installed.read_bytes() == NEW and installed.stat().st_mode & 0o777 == 0o755
    backup, app = beside(installed)  # the old version, kept until the new one confirms
    assert backup.startswith(".app.gupper-previous-") and app == "app"
    assert (installed.parent / backup).read_bytes() == OLD
    assert seen[-1] == (len(NEW), len(NEW))
    make_updater(sim, installed, keypair[2], current_version="2.0.0").confirm()
    assert beside(installed) == ["app"]


def test_up_to_date_downloads_nothing(
    sim: Sim, installed: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    publish_release(sim, make_manifest)
    result = make_updater(sim, installed, keypair[2], current_version="2.0.0").run(restart=False)
    assert result.status is Status.UP_TO_DATE
    assert [r[1] for r in sim.requests] == [MANIFEST]


def test_platform_without_entry_means_no_update(
    sim: Sim, installed: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    publish_release(sim, make_manifest)
    result = make_updater(sim, installed, keypair[2], platform=Platform("darwin", "arm64")).run(restart=False)
    assert result.status is Status.UP_TO_DATE and installed.read_bytes() == OLD


@pytest.mark.parametrize(
    ("tamper", "error", "message"),
    [
        ("artifact", IntegrityError, "does not match the signed sha256"),
        ("truncated", IntegrityError, "ended after"),
        ("longer", TooLargeError, "more than the"),
        ("manifest", BadSignatureError, "valid signature"),
        ("other-key", BadSignatureError, "not signed with this app's key"),
        ("expired", ExpiredError, "re-sign"),
        ("404", HTTPStatusError, "HTTP 404"),
    ],
)
def test_bad_releases_are_refused_and_the_installed_binary_is_untouched(
    sim: Sim,
    installed: Path,
    make_manifest: MakeManifest,
    keypair: tuple[Path, object, str],
    caplog: pytest.LogCaptureFixture,
    tamper: str,
    error: type[Exception],
    message: str,
) -> None:
    publish_release(sim, make_manifest)
    if tamper == "artifact":
        sim.routes[ARTIFACT] = NEW[:-1] + b"X"
    elif tamper == "truncated":
        sim.routes[ARTIFACT] = NEW[:100]
    elif tamper == "longer":
        sim.routes[ARTIFACT] = NEW + b"more"
    elif tamper == "manifest":
        doc = json.loads(sim.routes[MANIFEST])  # type: ignore[arg-type]
        doc["signed"]["platforms"]["linux-amd64"]["url"] = "https://evil.example/x"
        sim.routes[MANIFEST] = json.dumps(doc).encode()
    elif tamper == "other-key":
        publish_release(sim, make_manifest, keys=[Ed25519PrivateKey.generate()])
    elif tamper == "expired":
        publish_release(sim, make_manifest, now=NOW - timedelta(days=40))
    elif tamper == "404":
        del sim.routes[ARTIFACT]
    with caplog.at_level(logging.WARNING, logger="gupper"):
        result = make_updater(sim, installed, keypair[2]).run(restart=False)
    assert result.status is Status.FAILED and isinstance(result.error, error)
    assert message in result.message
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (
        len(warnings) == 1
        and "\n" not in warnings[0].getMessage()
        and "carrying on with 1.0.0" in warnings[0].getMessage()
    )
    assert installed.read_bytes() == OLD and beside(installed) == ["app"]


def test_store_down_is_one_warning_and_no_change(
    tmp_path: Path, installed: Path, keypair: tuple[Path, object, str]
) -> None:
    with serve(tmp_path) as sim:
        pass  # stopped: nothing listens on its port any more
    result = make_updater(sim, installed, keypair[2]).run(restart=False)
    assert result.status is Status.FAILED and isinstance(result.error, DownloadError)
    assert "connection refused" in result.message and installed.read_bytes() == OLD


def test_untrusted_certificate_is_refused(
    sim: Sim, installed: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    publish_release(sim, make_manifest)
    result = make_updater(sim, installed, keypair[2], ca_bundle=None).run(restart=False)
    assert isinstance(result.error, DownloadError) and "certificate is not trusted" in result.message


def test_redirect_to_http_is_refused(
    sim: Sim, installed: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    publish_release(sim, make_manifest)

    def to_http(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", "http://127.0.0.1:1/x")
        h.send_header("Content-Length", "0")
        h.end_headers()

    sim.routes[ARTIFACT] = to_http
    result = make_updater(sim, installed, keypair[2]).run(restart=False)
    assert isinstance(result.error, ConfigError) and "https only" in result.message
    assert installed.read_bytes() == OLD and beside(installed) == ["app"]


def test_plain_http_manifest_url_is_a_config_error(installed: Path, keypair: tuple[Path, object, str]) -> None:
    with pytest.raises(ConfigError, match="https only"):
        Updater(
            UpdaterConfig(
                app="app", current_version="1", manifest_url="http://example.com/latest.json", public_keys=(keypair[2],)
            )
        )


def test_not_frozen_and_no_executable_means_updates_off(sim: Sim, keypair: tuple[Path, object, str]) -> None:
    cfg = UpdaterConfig(app="app", current_version="1.0.0", manifest_url=sim.url(MANIFEST), public_keys=(keypair[2],))
    assert Updater(cfg).run(restart=False).status is Status.DISABLED
    assert sim.requests == []


def test_restarted_process_skips_the_check_and_flags_a_version_mismatch(
    sim: Sim, installed: Path, keypair: tuple[Path, object, str]
) -> None:
    config = make_updater(sim, installed, keypair[2]).config
    environ = {"_GUPPER_RESTARTED": "1.0.0"}
    u = Updater(config, clock=lambda: NOW, environ=environ, argv=["app"])
    assert u.started is not None and u.started.status is Status.JUST_UPDATED and "_GUPPER_RESTARTED" not in environ
    assert u.run().status is Status.JUST_UPDATED  # reported by the first run, which checks nothing
    mismatched = Updater(config, clock=lambda: NOW, environ={"_GUPPER_RESTARTED": "2.0.0"}, argv=["app"])
    result = mismatched.run()
    assert result.status is Status.FAILED and "reports version 1.0.0" in result.message
    assert sim.requests == []
    mismatched.run()  # once: the next run checks
    assert len(sim.requests) == 1


# --- The channel, named once: by the manifest URL ------------------------------------------------


def test_the_channel_is_read_from_the_manifest_url_in_the_publishers_layout() -> None:
    def named(url: str) -> str | None:
        return channel_in_url(url, "app")

    assert named("https://h/app/beta/latest.json") == "beta"
    assert named("https://h/releases/app/nightly/latest.json?x=1") == "nightly"  # a store prefix, a query
    assert named("https://h/app/be%74a/latest.json") == "beta"
    assert named("https://h/other/beta/latest.json") is None  # another app's folder: not this layout
    assert named("https://h/app/beta/manifest.json") is None and named("https://h/latest.json") is None
    assert named("https://h/app/be ta/latest.json") is None  # not a channel name
    config = UpdaterConfig(
        app="app", current_version="1.0", manifest_url="https://h/app/beta/latest.json", public_keys=()
    )
    assert channel_of(config) == "beta" and channel_of(replace(config, channel="beta")) == "beta"
    elsewhere = replace(config, manifest_url="https://cdn.example/feeds/app.json")
    assert channel_of(elsewhere) == "stable" and channel_of(replace(elsewhere, channel="beta")) == "beta"


@pytest.mark.posix
def test_a_beta_manifest_url_alone_follows_beta(
    sim: Sim, installed: Path, keypair: tuple[Path, Ed25519PrivateKey, str], make_manifest: MakeManifest
) -> None:
    publish_release(sim, make_manifest, channel="beta")
    sim.routes["/app/beta/latest.json"] = sim.routes.pop(MANIFEST)
    updater = make_updater(sim, installed, keypair[2], manifest_url=sim.url("/app/beta/latest.json"))
    result = updater.run(restart=False)
    assert result.status is Status.INSTALLED and installed.read_bytes() == NEW, result.message
    state = json.loads((installed.parent.parent / "state" / "state.json").read_text())
    assert list(state["channels"]) == ["beta"]


def test_a_channel_setting_the_url_contradicts_is_one_line_naming_the_setting(
    sim: Sim, installed: Path, keypair: tuple[Path, Ed25519PrivateKey, str]
) -> None:
    url = sim.url("/app/beta/latest.json")
    with pytest.raises(ConfigError) as refused:
        make_updater(sim, installed, keypair[2], manifest_url=url, channel="stable")
    assert str(refused.value) == (
        f"UpdaterConfig.channel is 'stable', but manifest_url names channel 'beta' ({url}); leave channel unset "
        "(the URL names it), or point manifest_url at .../app/stable/latest.json"
    )


@pytest.mark.posix
def test_a_url_in_another_layout_serving_another_channel_says_which_setting_names_it(
    sim: Sim, installed: Path, keypair: tuple[Path, Ed25519PrivateKey, str], make_manifest: MakeManifest
) -> None:
    publish_release(sim, make_manifest, channel="beta")
    sim.routes["/feeds/app.json"] = sim.routes.pop(MANIFEST)
    result = make_updater(sim, installed, keypair[2], manifest_url=sim.url("/feeds/app.json")).run(restart=False)
    assert result.status is Status.FAILED and installed.read_bytes() == OLD
    assert result.message.endswith(
        "not 'app' channel 'stable'; check the manifest URL (or UpdaterConfig.channel ('beta' serves it))"
    )

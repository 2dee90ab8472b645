"""Shared fixtures: signing keys in tmp dirs, manifest factories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper.keys import TrustedKeys
from gupper_publish.signing import build_signed, keygen, load_signing_key, public_key_of, sign_manifest

from . import httpsim, rawhttp
from .desktop_support import screen  # noqa: F401  (an Xvfb screen for the desktop tests)
from .e2e_support import e2e  # noqa: F401  (the session fixture, shared by the e2e modules)
from .tiers import (  # noqa: F401  (tiers and workers: see tests/tiers.py)
    pyinstaller_config_dir,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_report_header,
    pytest_terminal_summary,
    pytest_xdist_auto_num_workers,
    pytest_xdist_make_scheduler,
    temp_dir_of_this_worker,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ed25519PrivateKey, str]:
    """A signing key written by keygen (path, key, public text); lives in a tmp dir."""
    key_path, _pub, public = keygen(tmp_path_factory.mktemp("keys") / "signing")
    return key_path, load_signing_key(key_path), public.to_text()


@pytest.fixture
def trusted(keypair: tuple[Path, Ed25519PrivateKey, str]) -> TrustedKeys:
    return TrustedKeys.from_texts([keypair[2]])


def fake_app(version: str, *, pad: int = 2000, self_test_version: str | None = None) -> bytes:
    """A shell script standing in for an app binary: answers the updater's self-test, prints its version."""
    answer = self_test_version or version
    return (
        '#!/bin/sh\nif [ -n "$GUPPER_SELF_TEST" ]; then echo "gupper-self-test '
        f'$GUPPER_SELF_TEST {answer}"; exit 0; fi\necho {version}\n'.encode()
        + b"#" * pad
        + b"\n"
    )


def entry(
    version: str = "2.0.0", *, size: int = 10, sha: str = "ab" * 32, url: str = "../2.0.0/app-2.0.0-linux-amd64"
) -> dict[str, Any]:
    return {"version": version, "type": "binary", "url": url, "size": size, "sha256": sha}


MakeManifest = Callable[..., bytes]


@pytest.fixture
def make_manifest(keypair: tuple[Path, Ed25519PrivateKey, str]) -> MakeManifest:
    """Build and sign a manifest; keyword overrides for any payload field."""

    def make(
        *,
        keys: list[Ed25519PrivateKey] | None = None,
        serial: int = 1,
        now: datetime = NOW,
        expires_in: timedelta = timedelta(days=30),
        platforms: dict[str, Any] | None = None,
        app: str = "app",
        channel: str = "stable",
        **overrides: Any,
    ) -> bytes:
        signed = build_signed(
            app=app,
            channel=channel,
            serial=serial,
            now=now,
            expires_in=expires_in,
            platforms=platforms if platforms is not None else {"linux-amd64": entry()},
        )
        signed.update(overrides)
        return sign_manifest(signed, keys if keys is not None else [keypair[1]])

    return make


__all__ = ["NOW", "MakeManifest", "entry", "fake_app", "public_key_of"]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[httpsim.Sim]:
    """The in-process HTTPS simulator (tests/httpsim.py), serving what a test puts in its routes."""
    with httpsim.serve(tmp_path) as s:
        yield s


@pytest.fixture
def raw(tmp_path: Path) -> Iterator[rawhttp.RawServer]:
    """The raw TLS server that controls every byte (tests/rawhttp.py)."""
    with rawhttp.serve(tmp_path) as server:
        yield server


@pytest.fixture
def exe(tmp_path: Path) -> Path:
    """An installed one-file app of version 1.0.0 (:func:`fake_app`) at ``<tmp>/install/app``."""
    (tmp_path / "install").mkdir()
    path = tmp_path / "install" / "app"
    path.write_bytes(fake_app("1.0.0"))
    path.chmod(0o755)
    return path

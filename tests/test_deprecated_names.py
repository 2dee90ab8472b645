"""The error contracts: names end in Error and shadow nothing, transfer failures and content
mismatches are separate branches, the public steps say what they raise, checkpoints are an enum
that old string hooks still understand, and the previous release's names still import (with a
DeprecationWarning) for one more release."""

from __future__ import annotations

import builtins
import inspect
import warnings

import pytest
import requests

import gupper
import gupper.errors
import gupper_publish
import gupper_publish.errors
from gupper import Checkpoint, DownloadError, IntegrityError, ManifestError, UpdateError

OLD_CLIENT = {
    "BadSignature": "BadSignatureError",
    "Expired": "ExpiredError",
    "HTTPError": "HTTPStatusError",
    "Malformed": "MalformedError",
    "PreflightFailed": "PreflightFailedError",
    "PreflightInterrupted": "PreflightInterruptedError",
    "Rollback": "RollbackError",
    "Timeout": "TransferTimeoutError",
    "TooLarge": "TooLargeError",
    "WrongTarget": "WrongTargetError",
}
OLD_PUBLISHER = [
    "AlreadyExists",
    "BadArtifactName",
    "BuildFailed",
    "ImmutableConflict",
    "MissingExtra",
    "NotAnExecutable",
    "NotFound",
    "PreconditionFailed",
    "StoreBusy",
    "StoreUnsupported",
    "UntrustedKey",
]


def exceptions_of(module: object) -> dict[str, type[BaseException]]:
    return {name: obj for name, obj in vars(module).items() if inspect.isclass(obj) and issubclass(obj, Exception)}


@pytest.mark.parametrize("module", [gupper.errors, gupper_publish.errors])
def test_every_error_ends_in_error_and_shadows_no_builtin_or_requests_name(module: object) -> None:
    names = exceptions_of(module)
    assert names and all(name.endswith("Error") for name in names), sorted(names)
    assert not {n for n in names if hasattr(builtins, n) or hasattr(requests.exceptions, n)}


def test_transfer_failures_and_content_mismatches_are_separate_branches() -> None:
    errors = gupper.errors
    assert not issubclass(IntegrityError, DownloadError) and not issubclass(DownloadError, IntegrityError)
    assert {e for e in (errors.HTTPStatusError, errors.TransferTimeoutError) if issubclass(e, DownloadError)} == {
        errors.HTTPStatusError,
        errors.TransferTimeoutError,
    }
    assert all(issubclass(e, IntegrityError) for e in (errors.TooLargeError, errors.PatchError))
    branches = [ManifestError, DownloadError, IntegrityError, errors.InstallError, errors.ConfigError]
    for cls in exceptions_of(errors).values():  # each error under exactly one branch: except order cannot matter
        if cls is not UpdateError:
            assert sum(issubclass(cls, b) for b in branches) == 1, cls


@pytest.mark.parametrize(("old", "new"), sorted(OLD_CLIENT.items()))
def test_the_previous_client_names_still_import_with_a_warning(old: str, new: str) -> None:
    for module in (gupper, gupper.errors):
        with pytest.warns(
            DeprecationWarning, match=f"{module.__name__}.{old} is deprecated.*use {module.__name__}.{new}"
        ):
            assert getattr(module, old) is getattr(gupper.errors, new)
    assert old not in gupper.__all__ and new in gupper.__all__


@pytest.mark.parametrize("old", OLD_PUBLISHER)
def test_the_previous_publisher_names_still_import_with_a_warning(old: str) -> None:
    for module in (gupper_publish, gupper_publish.errors):
        with pytest.warns(DeprecationWarning, match=f"use {module.__name__}.{old}Error"):
            assert getattr(module, old) is getattr(gupper_publish.errors, old + "Error")
    assert old + "Error" in gupper_publish.errors.__all__


def test_new_names_and_a_star_import_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec("from gupper import *\nfrom gupper_publish import *", {})
        assert gupper.TransferTimeoutError is gupper.errors.TransferTimeoutError
    with pytest.raises(AttributeError, match="no attribute 'Nonsense'"):
        _ = gupper.Nonsense


def test_the_public_steps_say_what_they_raise() -> None:
    steps = {"check", "download", "install", "restart", "check_periodically"}
    for name in steps:
        assert "Raises:" in (inspect.getdoc(getattr(gupper.Updater, name)) or ""), name
    for name in ("run", "confirm"):  # the start-up path
        assert "Never raises" in (inspect.getdoc(getattr(gupper.Updater, name)) or ""), name
    for fn in (gupper.verify_manifest, gupper.TrustedKeys.from_texts, gupper.PublicKey.parse, gupper.current_platform):
        assert "Raises:" in (inspect.getdoc(fn) or ""), fn


def test_checkpoints_are_an_enum_that_string_hooks_still_understand() -> None:
    seen: list[str] = []

    def old_hook(step: str) -> None:  # written before the enum: compares with plain strings
        if step == "swapped":
            seen.append(step)

    old_hook(Checkpoint.SWAPPED)
    assert seen == ["swapped"] and f"{Checkpoint.DOWNLOAD_HALF}" == "download-half"
    assert [c.value for c in Checkpoint][:3] == ["checked", "download-started", "download-half"]

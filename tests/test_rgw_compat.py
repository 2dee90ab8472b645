"""Fast tests of the store-kind layer (no server): detection, ETag forms, and the refusals that need
no request. What the profiles claim about RGW is proven against a real one in tests/test_rgw.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from gupper_publish import S3Store
from gupper_publish.cli import main
from gupper_publish.errors import StoreError, StoreUnsupportedError
from gupper_publish.s3compat import PROFILES, S3Compat, bare, by_endpoint, by_headers, profile, quoted


@pytest.mark.parametrize(
    ("endpoint", "kind"),
    [
        (None, "aws"),
        ("https://s3.eu-west-1.amazonaws.com", "aws"),
        ("https://0123abcd.r2.cloudflarestorage.com", "r2"),
        ("https://0123abcd.eu.r2.cloudflarestorage.com", "r2"),
        ("https://s3.us-west-004.backblazeb2.com", "b2"),
        ("https://evil-amazonaws.com.example.org", None),
        ("https://127.0.0.1:9000", None),
    ],
)
def test_hosted_stores_are_known_by_their_endpoint(endpoint: str | None, kind: str | None) -> None:
    found = by_endpoint(endpoint)
    assert (found.name if found else None) == kind


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({"x-rgw-object-count": "6", "x-amz-request-id": "tx0-default"}, "ceph"),
        ({"Server": "MinIO"}, "minio"),
        ({"server": "AmazonS3"}, "aws"),
        ({"server": "Werkzeug/3.1.9 Python/3.11.7"}, "moto"),
        ({"server": "SomethingElse"}, "generic"),
        ({}, "generic"),
    ],
)
def test_self_hosted_stores_are_known_by_their_headers(headers: dict[str, str], kind: str) -> None:
    assert by_headers(headers).name == kind


def test_etag_forms() -> None:
    assert quoted("abc") == quoted('"abc"') == '"abc"'
    assert bare('"abc"') == bare("abc") == bare('W/"abc"') == "abc"


def test_only_stores_that_honour_the_condition_on_completion_get_multipart_uploads() -> None:
    assert {name for name, p in PROFILES.items() if p.conditional_complete} == {"aws", "minio", "r2", "moto"}
    assert not PROFILES["b2"].conditional_writes and PROFILES["ceph"].if_match_quoted is False
    with pytest.raises(StoreError, match=r"unknown S3 store kind 'seaweed'; choose one of auto, aws"):
        profile("seaweed")


def stubbed(compat: str | S3Compat, **kw: Any) -> tuple[S3Store, Stubber]:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="https://127.0.0.1:1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    return S3Store("bucket", "p", client=client, compat=compat, **kw), Stubber(client)


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("NotImplemented", 501, "A header you provided implies functionality that is not implemented"),
        ("InvalidArgument", 400, "Unsupported header 'If-None-Match' received"),
    ],
)
def test_a_store_refusing_the_condition_headers_gets_a_clear_error_not_busy(
    code: str, status: int, message: str
) -> None:
    store, stub = stubbed("generic")
    stub.add_client_error("put_object", service_error_code=code, service_message=message, http_status_code=status)
    with (
        stub,
        pytest.raises(
            StoreUnsupportedError,
            match=r"write app/stable/channel.json: s3://bucket/p does not support conditional writes",
        ),
    ):
        store.swap("app/stable/channel.json", b"{}", expect_etag=None, content_type="x", cache_control="x")


def test_another_bad_request_on_a_conditional_write_is_not_blamed_on_conditions() -> None:
    store, stub = stubbed("generic")
    stub.add_client_error(
        "put_object", service_error_code="InvalidArgument", service_message="Metadata too large", http_status_code=400
    )
    with stub, pytest.raises(StoreError, match="S3 error InvalidArgument") as raised:
        store.swap("app/stable/channel.json", b"{}", expect_etag=None, content_type="x", cache_control="x")
    assert not isinstance(raised.value, StoreUnsupportedError)


def test_an_artifact_too_big_for_one_put_on_a_store_without_conditional_completion_is_refused_before_upload(
    tmp_path: Path,
) -> None:
    store, stub = stubbed("generic", max_single_put=100, multipart_threshold=50)
    path = tmp_path / "app-1.0.0-linux-amd64"
    path.write_bytes(b"x" * 101)
    with (
        stub,
        pytest.raises(StoreUnsupportedError, match=r"one PUT takes at most 100 bytes"),
    ):  # no request stubbed: none is made
        store.create_file(
            "app/1.0.0/app-1.0.0-linux-amd64", path, sha256="00" * 32, content_type="x", cache_control="x"
        )


def test_cli_rejects_an_unknown_store_kind_and_a_negative_min_serial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", "--store", "s3://b", "--s3-compat", "seaweed", "--key", "k", "f"]) == 2
    assert "invalid choice: 'seaweed'" in capsys.readouterr().err
    key = tmp_path / "k"
    assert main(["keygen", str(key)]) == 0
    assert main(["publish", "--store", str(tmp_path / "s"), "--key", f"{key}.key", "--min-serial", "-1", "f"]) == 1
    assert capsys.readouterr().err.strip() == "gupper-publish: error: --min-serial must be 0 or more"


@pytest.mark.parametrize("kind", ["aws", "minio", "moto", "generic"])
def test_only_a_store_whose_conditions_fail_under_versioning_is_asked_about_it(kind: str) -> None:
    store, stub = stubbed(kind)
    stub.add_response("put_object", {"ETag": '"e1"'})
    with stub:  # one PUT and nothing before it
        store.swap("app/stable/channel.json", b"{}", expect_etag=None, content_type="x", cache_control="x")


def test_rgw_with_versioning_enabled_is_refused_before_the_first_write(tmp_path: Path) -> None:
    """Issue 22 item 10 (proven against a real RGW in tests/test_rgw.py); once asked, never again."""
    store, stub = stubbed("ceph")
    stub.add_response("get_bucket_versioning", {"Status": "Enabled"}, {"Bucket": "bucket"})
    path = tmp_path / "app-1.0.0-linux-amd64"
    path.write_bytes(b"x" * 10)
    with stub, pytest.raises(StoreUnsupportedError, match=r"^upload app/1.0.0/app-1.0.0-linux-amd64: bucket bucket"):
        store.create_file(
            "app/1.0.0/app-1.0.0-linux-amd64", path, sha256="00" * 32, content_type="x", cache_control="x"
        )


@pytest.mark.parametrize(
    "answer", [{"Status": "Suspended"}, {}, "AccessDenied"], ids=["suspended", "never-enabled", "not-allowed-to-ask"]
)
def test_rgw_without_versioning_enabled_is_asked_once_then_written(answer: dict[str, str] | str) -> None:
    store, stub = stubbed("ceph")
    if isinstance(answer, str):
        stub.add_client_error("get_bucket_versioning", service_error_code=answer, http_status_code=403)
    else:
        stub.add_response("get_bucket_versioning", answer, {"Bucket": "bucket"})
    stub.add_response("put_object", {"ETag": '"e1"'})
    stub.add_response("put_object", {"ETag": '"e2"'})
    with stub:
        store.swap("app/stable/channel.json", b"{}", expect_etag=None, content_type="x", cache_control="x")
        store.swap("app/stable/latest.json", b"{}", expect_etag=None, content_type="x", cache_control="x")
        stub.assert_no_pending_responses()

"""Bucket and IAM policy templates shared by the local store and the publisher.

The JSON files next to this module hold ``${BUCKET}`` and ``${PREFIX}`` placeholders, so one
template serves the local store, MinIO and AWS (``gupper-publish init`` applies the public-read
one for its store prefix).
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parent / "policies"
PUBLIC_READ_POLICY = POLICY_DIR / "public-read-policy.json"
PUBLISHER_IAM_POLICY = POLICY_DIR / "aws-publisher-iam-policy.json"

# S3's rules for new buckets (no upper case, no underscores), which also keeps the
# name safe to splice into an ARN.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def validate_bucket_name(bucket: str) -> str:
    """Return ``bucket`` if it is a valid S3 bucket name, else raise ``ValueError``."""
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"invalid S3 bucket name: {bucket!r}")
    return bucket


def render_policy(template: Path, **values: str) -> str:
    """Fill a policy template's ``${NAME}`` placeholders and return the JSON text.

    Values are JSON-string-escaped before they are spliced in, and the result is
    parsed once, so a bad value can never produce a policy with a different shape.
    """
    escaped = {name: json.dumps(value)[1:-1] for name, value in values.items()}
    rendered = string.Template(template.read_text(encoding="utf-8")).substitute(escaped)
    json.loads(rendered)
    return rendered


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can be spliced into an ARN pattern, else raise ``ValueError``."""
    if any(c in prefix for c in "*?") or any(ord(c) < 0x20 for c in prefix):
        raise ValueError(f"invalid key prefix: {prefix!r}")
    return prefix


def render_public_read_policy(bucket: str, prefix: str = "") -> str:
    """Bucket policy allowing anonymous ``s3:GetObject`` on the keys under ``prefix`` (all of ``bucket`` by default).

    It grants no ``s3:ListBucket``: the public can fetch a key it knows, not list keys. The
    prefix is a folder (``releases`` covers ``releases/...``, never ``releases-old/...``).
    """
    folder = validate_prefix(prefix).strip("/")
    return render_policy(PUBLIC_READ_POLICY, BUCKET=validate_bucket_name(bucket), PREFIX=f"{folder}/" if folder else "")


def render_publisher_iam_policy(bucket: str, prefix: str = "") -> str:
    """IAM policy for the publisher: read, write, delete and list under ``prefix``."""
    return render_policy(PUBLISHER_IAM_POLICY, BUCKET=validate_bucket_name(bucket), PREFIX=validate_prefix(prefix))


def main(argv: list[str] | None = None) -> int:
    """``python -m gupper_publish.policy {public-read,publisher-iam} BUCKET [--prefix P]``: print a rendered policy."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m gupper_publish.policy", description="Print a Gupper policy rendered for a bucket."
    )
    parser.add_argument("kind", choices=["public-read", "publisher-iam"])
    parser.add_argument("bucket")
    parser.add_argument(
        "--prefix",
        default="",
        help="key prefix: the folder anyone may read (public-read) or the publisher may write (publisher-iam)",
    )
    args = parser.parse_args(argv)
    try:
        text = (
            render_public_read_policy(args.bucket, args.prefix)
            if args.kind == "public-read"
            else render_publisher_iam_policy(args.bucket, args.prefix)
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Bucket and IAM policy templates shared by the local store and the publisher.

The JSON files next to this module hold ``${BUCKET}`` (and, for the IAM policy,
``${PREFIX}``) placeholders, so one template serves the local store, MinIO and AWS.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parent
PUBLIC_READ_POLICY = POLICY_DIR / "public-read-policy.json"
PUBLISHER_IAM_POLICY = POLICY_DIR / "aws-publisher-iam-policy.json"

# S3's rules for new buckets (no upper case, no underscores), which also keeps the
# name safe to splice into an ARN.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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


def render_public_read_policy(bucket: str) -> str:
    """Bucket policy allowing anonymous ``s3:GetObject`` on every key of ``bucket``.

    It grants no ``s3:ListBucket``: the public can fetch a key it knows, not list keys.
    """
    return render_policy(PUBLIC_READ_POLICY, BUCKET=validate_bucket_name(bucket))


def render_publisher_iam_policy(bucket: str, prefix: str = "") -> str:
    """IAM policy for the publisher: read, write, delete and list under ``prefix``."""
    if any(c in prefix for c in "*?") or any(ord(c) < 0x20 for c in prefix):
        raise ValueError(f"invalid key prefix: {prefix!r}")
    return render_policy(PUBLISHER_IAM_POLICY, BUCKET=validate_bucket_name(bucket), PREFIX=prefix)


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.policy {public-read,publisher-iam} BUCKET [--prefix P]``: print a rendered policy."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m infra.policy", description="Print a Gupper policy rendered for a bucket.")
    parser.add_argument("kind", choices=["public-read", "publisher-iam"])
    parser.add_argument("bucket")
    parser.add_argument("--prefix", default="", help="key prefix the publisher may write (publisher-iam only)")
    args = parser.parse_args(argv)
    try:
        text = render_public_read_policy(args.bucket) if args.kind == "public-read" else render_publisher_iam_policy(args.bucket, args.prefix)
    except ValueError as exc:
        parser.error(str(exc))
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

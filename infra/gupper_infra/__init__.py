"""Local infrastructure for Gupper: an S3-compatible store for the demo and tests.

Importing this package is cheap: the moto/werkzeug server lives in
:mod:`gupper_infra.localstore` and is only imported by the store's own process.
"""

from __future__ import annotations

DEFAULT_BUCKET = "gupper"
REGION = "us-east-1"

# Fixed dummy credentials. moto accepts any credentials, so these guard nothing;
# they are fixed only so that every tool and test sees the same, obviously fake,
# values. They are NOT secrets and must never be used against a real store.
ACCESS_KEY = "gupper-local"
SECRET_KEY = "gupper-local-secret"

# The one line the store prints on stdout once both ports accept requests.
READY_PREFIX = "GUPPER-STORE-READY "

STORE_INFO_FILE = "store.json"
CA_CERT_FILE = "ca.pem"

__all__ = [
    "ACCESS_KEY",
    "CA_CERT_FILE",
    "DEFAULT_BUCKET",
    "READY_PREFIX",
    "REGION",
    "SECRET_KEY",
    "STORE_INFO_FILE",
]

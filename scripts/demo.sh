#!/usr/bin/env bash
# The demo, end to end: local S3 store over HTTPS, build v1 and v2, publish both, watch v1 become v2.
source "$(dirname "$0")/_venv.sh"
exec python scripts/demo.py "$@"

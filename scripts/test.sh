#!/usr/bin/env bash
# Run Gupper's checks and tests: lint, types, then pytest (extra args go to pytest).
# The rgw tests need Debian's Ceph packages, the fleet test Debian's nginx-light, the desktop tests
# Xvfb and xdotool: installed here where apt can run without asking (root or passwordless sudo);
# elsewhere those tests skip and say why.
source "$(dirname "$0")/_venv.sh"
bash scripts/ceph.sh install || echo "test.sh: Ceph not installed; the rgw tests will be skipped" >&2
bash scripts/nginx.sh install || echo "test.sh: nginx not installed; the nginx fleet test will be skipped" >&2
bash scripts/desktop.sh install || echo "test.sh: no virtual screen; the desktop tests will be skipped" >&2
ruff check .
ruff format --check .
mypy
python -m pytest --tier all "$@"

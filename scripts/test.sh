#!/usr/bin/env bash
# Run Gupper's checks and tests: lint, types, then pytest (extra args go to pytest).
source "$(dirname "$0")/_venv.sh"
ruff check .
ruff format --check .
mypy
python -m pytest "$@"

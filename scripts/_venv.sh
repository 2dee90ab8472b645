# Sourced by the scripts: make .venv with the project and its dev extras, once per pyproject change.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Gupper needs Python 3.11 or newer as '$PY' (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
VENV="$ROOT/.venv"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
STAMP="$VENV/.gupper-installed"
WANT=$(cat pyproject.toml | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "setting up .venv (first run takes about a minute)..." >&2
  # Chained, not left to set -e: sourced inside `&&` or `||`, bash ignores set -e, and a failed pip
  # went on to write the stamp, so no later run repaired the venv.
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip >&2 && "$VENV/bin/python" -m pip install -q -e '.[dev]' >&2; }; then
    echo "error: pip could not set up .venv (see above); fix that and run again: nothing was marked installed" >&2
    return 1 2>/dev/null || exit 1
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"

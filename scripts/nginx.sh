#!/usr/bin/env bash
# nginx for Gupper's tests and bench (tests/test_fleet.py, bench items 11 and 12): Debian's nginx-light.
#
#   bash scripts/nginx.sh install    # apt: nginx-light (as root, or through sudo)
#   bash scripts/nginx.sh check      # exit 0 if installed, else say what is missing (exit 1)
#
# The tests start their own nginx with its own prefix in a temp folder (infra/gupper_infra/nginx.py);
# the system's nginx service is not used (installing the package may start it: it is stopped).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"
PACKAGES=(nginx-light)

have() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }

install() {
  if have; then
    echo "nginx: already installed ($(/usr/sbin/nginx -v 2>&1 | cut -d' ' -f3))"
    return 0
  fi
  local start=$SECONDS
  apt_install nginx "${PACKAGES[@]}" || return 1
  # The package's own service is not what the tests use: leave port 80 alone.
  "${SUDO[@]}" sh -c 'command -v systemctl >/dev/null 2>&1 && systemctl stop nginx 2>/dev/null || true'
  echo "nginx: installed $(/usr/sbin/nginx -v 2>&1 | cut -d' ' -f3) in $((SECONDS - start)) s"
}

case "${1:-}" in
  install) install ;;
  check)
    if ! have; then echo "nginx: missing; run: bash scripts/nginx.sh install" >&2; exit 1; fi
    echo "nginx: $(/usr/sbin/nginx -v 2>&1 | cut -d' ' -f3)"
    ;;
  *)
    echo "usage: bash scripts/nginx.sh install | check" >&2
    exit 2
    ;;
esac

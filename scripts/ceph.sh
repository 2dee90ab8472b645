#!/usr/bin/env bash
# Ceph RGW for Gupper's tests and for trying the publisher against a real S3 server.
#
#   bash scripts/ceph.sh install      # apt: radosgw ceph-mon ceph-osd ceph-common (as root, or through sudo)
#   bash scripts/ceph.sh check        # exit 0 if installed, else say what is missing (exit 1)
#   bash scripts/ceph.sh start DIR    # a throwaway single-node cluster + RGW on https://127.0.0.1 (Ctrl-C stops it)
#
# The tests start their own cluster (tests/rgw_support.py); `start` runs the same code by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/_apt.sh"
PACKAGES=(radosgw ceph-mon ceph-osd ceph-common)
BINARIES=(ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool setpriv)

missing() { missing_commands "${BINARIES[@]}"; }

install() {
  if [ -z "$(missing)" ]; then
    echo "ceph: already installed ($(ceph --version 2>/dev/null | cut -d' ' -f1-3))"
    return 0
  fi
  local start=$SECONDS
  apt_install ceph "${PACKAGES[@]}" || return 1
  echo "ceph: installed $(ceph --version | cut -d' ' -f1-3) in $((SECONDS - start)) s"
}

case "${1:-}" in
  install) install ;;
  check)
    m=$(missing)
    if [ -n "$m" ]; then echo "ceph: missing $m; run: bash scripts/ceph.sh install" >&2; exit 1; fi
    echo "ceph: $(ceph --version | cut -d' ' -f1-3)"
    ;;
  start)
    [ -n "${2:-}" ] || { echo "usage: bash scripts/ceph.sh start DIR" >&2; exit 2; }
    source "$ROOT/scripts/_venv.sh"
    cd "$ROOT"
    exec python -m tests.rgw_support --state-dir "$2"
    ;;
  *)
    echo "usage: bash scripts/ceph.sh install | check | start DIR" >&2
    exit 2
    ;;
esac

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
PACKAGES=(radosgw ceph-mon ceph-osd ceph-common)
BINARIES=(ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool setpriv)

missing() {
  local out=() b
  for b in "${BINARIES[@]}"; do command -v "$b" >/dev/null 2>&1 || out+=("$b"); done
  echo "${out[*]-}"
}

install() {
  if [ -z "$(missing)" ]; then
    echo "ceph: already installed ($(ceph --version 2>/dev/null | cut -d' ' -f1-3))"
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "ceph: cannot install: not root and no passwordless sudo; run as root: apt-get install ${PACKAGES[*]}" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ceph: cannot install: no apt-get on this system; install Ceph's ${PACKAGES[*]} (16.2 or newer) with its package manager" >&2
    return 1
  fi
  local start=$SECONDS
  "${sudo[@]}" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >&2
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

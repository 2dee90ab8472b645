#!/usr/bin/env bash
# A virtual screen for Gupper's desktop tests: real windowed apps (Tk, Qt) under Xvfb, driven by xdotool.
#
#   bash scripts/desktop.sh install   # apt: xvfb xdotool imagemagick and the X libraries Qt's xcb plugin loads
#   bash scripts/desktop.sh check     # exit 0 if installed, else say what is missing (exit 1)
#
# tests/test_e2e_desktop.py starts its own Xvfb; without these packages those tests skip and say why.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"
PACKAGES=(xvfb xdotool imagemagick x11-utils
  libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libxcb-image0 libxcb-render-util0
  libxcb-xkb1 libxcb-randr0 libxcb-shape0 libxcb-xinerama0 libegl1 libgl1 libfontconfig1 libdbus-1-3)
BINARIES=(Xvfb xdotool import)

missing() {
  local out
  read -ra out <<<"$(missing_commands "${BINARIES[@]}")"
  if command -v ldconfig >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libxcb-cursor.so.0; then
    out+=(libxcb-cursor0)
  fi
  echo "${out[*]-}"
}

install() {
  if [ -z "$(missing)" ]; then
    echo "desktop: already installed"
    return 0
  fi
  local start=$SECONDS
  apt_install desktop "${PACKAGES[@]}" || return 1
  echo "desktop: installed Xvfb, xdotool, ImageMagick and Qt's X libraries in $((SECONDS - start)) s"
}

case "${1:-}" in
  install) install ;;
  check)
    m=$(missing)
    if [ -n "$m" ]; then echo "desktop: missing $m; run: bash scripts/desktop.sh install" >&2; exit 1; fi
    echo "desktop: Xvfb, xdotool and ImageMagick are installed"
    ;;
  *)
    echo "usage: bash scripts/desktop.sh install | check" >&2
    exit 2
    ;;
esac

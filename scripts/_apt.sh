# Shared by scripts/ceph.sh, scripts/nginx.sh and scripts/desktop.sh (source it): install Debian packages where apt can
# run without asking.
#
#   apt_install WHAT PACKAGE...   # as root, or through passwordless sudo; otherwise say what to run (return 1)
#   missing_commands CMD...       # prints those of CMD... not on PATH, space-separated (nothing if all are)
SUDO=()

apt_install() {
  local what=$1
  shift
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      echo "$what: cannot install: not root and no passwordless sudo; run as root: apt-get install $*" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$what: cannot install: no apt-get on this system; install $* with its package manager" >&2
    return 1
  fi
  "${SUDO[@]}" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@" >&2
}

missing_commands() {
  local out=() c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || out+=("$c"); done
  echo "${out[*]-}"
}

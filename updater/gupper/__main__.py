"""``python -m gupper``: small commands for people.

- ``platform``: this machine's platform key as Gupper spells it (``linux-amd64``), for naming builds
  ``<app>-<version>-<os>-<arch>``;
- ``check MANIFEST_URL --key KEY [--current VERSION] ...``: what this machine would do with that
  channel's manifest (the entry it picks, its rollout bucket, the decision, its trial state, where
  its state and logs live), without installing or saving anything (:mod:`gupper.diagnose`);
- ``--version``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = "usage: python -m gupper {platform,check,--version}"


def main(argv: Sequence[str] | None = None) -> int:
    """Print what was asked; 1 when it cannot be answered, 2 on a usage error."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["platform"]:
        from .platforms import current_platform

        try:
            print(current_platform().key)
        except ValueError as e:
            print(f"gupper: {e}", file=sys.stderr)
            return 1
        return 0
    if args[:1] == ["check"]:
        from .check_command import check

        return check(args[1:])
    if args == ["--version"]:
        from . import __version__

        print(__version__)
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

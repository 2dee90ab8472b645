"""``python -m gupper platform``: this machine's platform key as Gupper spells it (``linux-amd64``),
for naming builds ``<app>-<version>-<os>-<arch>``; ``python -m gupper --version``."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Print what was asked; 2 on a usage error."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["platform"]:
        from .platforms import current_platform

        try:
            print(current_platform().key)
        except ValueError as e:
            print(f"gupper: {e}", file=sys.stderr)
            return 1
        return 0
    if args == ["--version"]:
        from . import __version__

        print(__version__)
        return 0
    print("usage: python -m gupper {platform,--version}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""Optional parts of the ``gupper`` distribution and the pip command that installs each.

``pip install gupper`` installs the client alone (what an app freezes). The publisher's own
dependencies come with ``gupper[publisher]``, PyInstaller with ``gupper[build]``; a command that
needs a missing one says which line to run rather than failing on an import.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from .errors import MissingExtraError

PUBLISHER_MODULES = ("boto3", "botocore", "bsdiff4", "cryptography", "filelock")
BUILD_MODULES = ("PyInstaller",)
EXTRAS = {"publisher": PUBLISHER_MODULES, "build": BUILD_MODULES}


def install_command(extra: str) -> str:
    """The exact command that installs ``extra``."""
    return f"pip install 'gupper[{extra}]'"


def missing(modules: Sequence[str]) -> list[str]:
    """The modules in ``modules`` that cannot be imported here (found without importing them)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken parent package counts as missing
            found = False
        if not found:
            out.append(name)
    return out


def require(extra: str, what: str = "this") -> None:
    """Raise MissingExtraError, naming the pip command, unless every module of ``extra`` is importable."""
    gone = missing(EXTRAS[extra])
    if gone:
        raise MissingExtraError(
            f"{what} needs the {extra} extra ({', '.join(gone)} not installed); run: {install_command(extra)}"
        )

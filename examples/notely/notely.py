"""Notely: notes from the command line."""

import logging
import sys

from gupper import Updater, UpdaterConfig

import updater  # Notely's own module: no clash, Gupper is imported as "gupper"

__version__ = "1.0.0"

UPDATES = UpdaterConfig(
    app="notely",
    current_version=__version__,
    manifest_url="https://downloads.example.com/notely/stable/latest.json",
    public_keys=("ed25519:PASTE-THE-LINE-OF-keys/release.pub",),
)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # Gupper logs to the "gupper" logger
    gupper = Updater(UPDATES)  # a pre-flight of a new version answers here and exits
    gupper.run()  # never raises; when it installed an update it restarts into it and does not return
    print(updater.banner(__version__))
    gupper.confirm()  # this version started fine: end its trial
    return 0


if __name__ == "__main__":
    sys.exit(main())

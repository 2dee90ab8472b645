"""Bench app: README "Use it in your app" as it stands, with hello world as the app's own work.

The start-up call is the README's: ``logging.basicConfig`` at INFO, ``Updater(UPDATES)``, ``run()``,
the app's output, ``confirm()``. ``_bench_config`` (written by bench/freeze.py) bakes in the
version, the manifest URL and the key; the local store's CA comes in through
``REQUESTS_CA_BUNDLE``, as a user's private CA would. No marks, no options: what a user's app
pays at every start.
"""

import logging
import sys

import _bench_config as build

from gupper import Updater, UpdaterConfig

UPDATES = UpdaterConfig(
    app=build.APP,
    current_version=build.VERSION,
    manifest_url=build.MANIFEST_URL,
    public_keys=tuple(build.PUBLIC_KEYS),
)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # Gupper logs to the "gupper" logger
    gupper = Updater(UPDATES)  # a pre-flight of a new version answers here and exits
    gupper.run()  # never raises; when it installed an update it restarts into it and does not return
    print(f"hello from version {build.VERSION}")
    gupper.confirm()  # this version started fine: end its trial
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The tufup 0.10 side of the benchmark; runs in its own venv (``.gupper/bench/tufup-venv``).

Imports only the standard library and tufup (never Gupper's code). ``bench/run.py`` calls it:

- ``repo WORK BUNDLE_V1 BUNDLE_V2``: make a tufup repository (keys, root, the v1 archive), copy
  it to ``WORK/state-v1``, add v2 (full archive only: no patch, delta comes later) and copy it
  to ``WORK/state-v2``. Prints ``{"v1": dir, "v2": dir}``.
- ``check META_URL TARGETS_URL ROOT CLIENT_DIR VERSION REPS``: one check with a fresh client
  dir (cold), then ``REPS`` checks each with a new ``Client`` on the kept metadata (warm: what an
  installed app does at every start). Prints JSON with wall times and epoch stamps, which the
  driver matches against the store's access log to count requests and bytes.
- ``update META_URL TARGETS_URL CLIENT_DIR INSTALL_DIR VERSION``: act as app v1 does at start-up:
  check, download the full archive, extract, move the new binary over the installed one
  (``os.replace``, as Gupper does) and exec it with ``--no-update``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

APP = "app"


def make_repo(work: Path, bundle_v1: Path, bundle_v2: Path) -> dict[str, str]:
    from tufup.repo import Repository  # type: ignore[import-not-found,unused-ignore]

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    os.chdir(work)  # tufup writes its config file into the working directory
    repo = Repository(app_name=APP, repo_dir=work / "repo", keys_dir=work / "keys")
    repo.initialize()
    states = {}
    for version, bundle in (("1.0.0", bundle_v1), ("2.0.0", bundle_v2)):
        repo.add_bundle(new_bundle_dir=bundle, new_version=version, skip_patch=True)
        repo.publish_changes(private_key_dirs=[work / "keys"])
        state = work / f"state-v{version[0]}"
        shutil.copytree(work / "repo", state)
        states[f"v{version[0]}"] = str(state)
    return states


def _client(meta_url: str, targets_url: str, client_dir: Path, version: str, install_dir: Path | None = None) -> Any:
    from tufup.client import Client  # type: ignore[import-not-found,unused-ignore]

    return Client(
        app_name=APP,
        app_install_dir=install_dir or client_dir / "install",
        current_version=version,
        metadata_dir=client_dir / "metadata",
        metadata_base_url=meta_url,
        target_dir=client_dir / "targets",
        target_base_url=targets_url,
        extract_dir=client_dir / "extract",
    )


def check(meta_url: str, targets_url: str, root: Path, client_dir: Path, version: str, reps: int) -> dict[str, Any]:
    shutil.rmtree(client_dir, ignore_errors=True)
    for sub in ("metadata", "targets", "extract"):
        (client_dir / sub).mkdir(parents=True)
    shutil.copyfile(root, client_dir / "metadata" / "root.json")  # what an installer ships
    runs = []
    found = None
    for _ in range(reps + 1):  # the first is the cold one
        start = time.time()
        t0 = time.perf_counter()
        meta = _client(meta_url, targets_url, client_dir, version).check_for_updates()
        ms = (time.perf_counter() - t0) * 1000
        runs.append({"start": start, "end": time.time(), "ms": ms})
        found = str(meta.version) if meta is not None else None
        time.sleep(0.15)  # a gap, so the driver can tell the checks apart in the access log
    return {"cold": runs[0], "warm": runs[1:], "found": found}


def update(meta_url: str, targets_url: str, client_dir: Path, install_dir: Path, version: str) -> int:
    client = _client(meta_url, targets_url, client_dir, version, install_dir)
    meta = client.check_for_updates(patch=False)
    if meta is None:
        print("tufup: no update", file=sys.stderr)
        return 1

    def install(src_dir: Path, dst_dir: Path, **_: Any) -> None:
        # tufup's own installer refuses Linux; this does what Gupper's apply does.
        new, target = Path(src_dir) / APP, Path(dst_dir) / APP
        new.chmod(0o755)
        os.replace(new, target)
        sys.stdout.flush()
        os.execv(target, [str(target), "--no-update"])

    client.download_and_apply_update(skip_confirmation=True, install=install)
    print("tufup: update did not install", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    cmd, *rest = argv
    if cmd == "repo":
        print(json.dumps(make_repo(Path(rest[0]).resolve(), Path(rest[1]), Path(rest[2]))))
        return 0
    if cmd == "check":
        meta_url, targets_url, root, client_dir, version, reps = rest
        print(json.dumps(check(meta_url, targets_url, Path(root), Path(client_dir), version, int(reps))))
        return 0
    if cmd == "update":
        meta_url, targets_url, client_dir, install_dir, version = rest
        return update(meta_url, targets_url, Path(client_dir), Path(install_dir), version)
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The tufup 0.10 side of the benchmark; runs in its own venv (``.gupper/bench/tufup-venv``).

Imports only the standard library and tufup (never Gupper's code). ``bench/run.py`` calls it:

- ``repo WORK BUNDLE_V1 BUNDLE_V2``: make a tufup repository (keys, root, the v1 archive) and
  copy it to ``WORK/state-v1``; add v2 as a full archive only (``skip_patch=True``) and copy it to
  ``WORK/state-v2``; then start again from ``state-v1`` (same keys) and add v2 the way tufup does
  by default, archive **and** bsdiff4 patch, into ``WORK/state-v2p``. Prints JSON with the three
  dirs, the wall time of each v2 ``add_bundle`` + ``publish_changes`` and the patch's size.
- ``check META_URL TARGETS_URL ROOT CLIENT_DIR VERSION COLD WARM``: ``COLD`` checks each with a
  fresh client dir (a new install: only the shipped root.json), then ``WARM`` checks each with a
  new ``Client`` on the metadata the last one kept (what an installed app does at every start).
  tufup is imported before the first timed check (as the driver warms Gupper's imports). Prints
  JSON with wall times and epoch stamps, which the driver matches against the store's access log
  to count requests and bytes.
- ``update META_URL TARGETS_URL CLIENT_DIR INSTALL_DIR VERSION full|patch [file|folder]``: act as
  app v1 does at start-up: check, download the full archive (``full``) or the patch (``patch``:
  tufup then needs the current archive in its targets dir, which the driver puts there, and
  rebuilds the new .tar.gz from it), extract, then install and exec the new ``app`` with
  ``--no-update``. ``file`` (the default, a one-file bundle): move the new binary over the
  installed one (``os.replace``, as Gupper does). ``folder`` (a one-folder bundle): what tufup's
  own installer does on macOS (``_install_update_mac``; it refuses Linux): copy the extracted
  bundle over the install dir (``shutil.copytree(..., dirs_exist_ok=True)``: file by file, not
  atomic), then empty the extract dir.
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


def make_repo(work: Path, bundle_v1: Path, bundle_v2: Path) -> dict[str, Any]:
    from tufup.repo import Repository  # type: ignore[import-not-found,unused-ignore]

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    os.chdir(work)  # tufup writes its config file into the working directory
    keys = work / "keys"

    def add(repo: Any, version: str, bundle: Path, *, skip_patch: bool, state: str) -> float:
        t0 = time.perf_counter()
        repo.add_bundle(new_bundle_dir=bundle, new_version=version, skip_patch=skip_patch)
        repo.publish_changes(private_key_dirs=[keys])
        seconds = time.perf_counter() - t0
        shutil.copytree(work / "repo", work / state)
        return seconds

    repo = Repository(app_name=APP, repo_dir=work / "repo", keys_dir=keys)
    repo.initialize()
    add(repo, "1.0.0", bundle_v1, skip_patch=True, state="state-v1")
    full_s = add(repo, "2.0.0", bundle_v2, skip_patch=True, state="state-v2")
    # Back to the v1 state with the same keys, then v2 as tufup adds it by default: archive + patch.
    shutil.rmtree(work / "repo")
    shutil.copytree(work / "state-v1", work / "repo")
    repo = Repository(app_name=APP, repo_dir=work / "repo", keys_dir=keys)
    repo._load_keys_and_roles()  # initialize() would ask on stdin whether to overwrite the existing keys
    patch_s = add(repo, "2.0.0", bundle_v2, skip_patch=False, state="state-v2p")
    patches = sorted((work / "state-v2p" / "targets").glob("*.patch"))
    return {
        "v1": str(work / "state-v1"),
        "v2": str(work / "state-v2"),
        "v2p": str(work / "state-v2p"),
        "publish_full_s": full_s,
        "publish_patch_s": patch_s,
        "patch_bytes": sum(p.stat().st_size for p in patches),
        "patches": [p.name for p in patches],
    }


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


def fresh_client_dir(client_dir: Path, root: Path) -> None:
    """A new install: empty dirs and the root.json an installer ships."""
    shutil.rmtree(client_dir, ignore_errors=True)
    for sub in ("metadata", "targets", "extract"):
        (client_dir / sub).mkdir(parents=True)
    shutil.copyfile(root, client_dir / "metadata" / "root.json")


def check(
    meta_url: str, targets_url: str, root: Path, client_dir: Path, version: str, cold: int, warm: int
) -> dict[str, Any]:
    import tufup.client  # type: ignore[import-not-found,unused-ignore]  # noqa: F401  # imports are not part of a check

    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    found: set[str | None] = set()
    for kind in ["cold"] * cold + ["warm"] * warm:
        if kind == "cold":
            fresh_client_dir(client_dir, root)
        start = time.time()
        t0 = time.perf_counter()
        meta = _client(meta_url, targets_url, client_dir, version).check_for_updates()
        ms = (time.perf_counter() - t0) * 1000
        runs[kind].append({"start": start, "end": time.time(), "ms": ms})
        found.add(str(meta.version) if meta is not None else None)
        time.sleep(0.15)  # a gap, so the driver can tell the checks apart in the access log
    return {**runs, "found": sorted(found, key=str)}


def update(
    meta_url: str, targets_url: str, client_dir: Path, install_dir: Path, version: str, mode: str, layout: str = "file"
) -> int:
    client = _client(meta_url, targets_url, client_dir, version, install_dir)
    meta = client.check_for_updates(patch=mode == "patch")
    if meta is None:
        print("tufup: no update", file=sys.stderr)
        return 1
    kinds = sorted({"patch" if t.is_patch else "archive" for t in client.new_targets})
    print(
        f"tufup: downloading {'+'.join(kinds)} ({sum(f.length for f in client.new_targets.values())} bytes)",
        file=sys.stderr,
        flush=True,
    )

    def install(src_dir: Path, dst_dir: Path, **_: Any) -> None:
        # tufup's own installer refuses Linux; this does what Gupper's apply does.
        new, target = Path(src_dir) / APP, Path(dst_dir) / APP
        new.chmod(0o755)
        os.replace(new, target)
        sys.stdout.flush()
        os.execv(target, [str(target), "--no-update"])

    def install_folder(src_dir: Path, dst_dir: Path, **_: Any) -> None:
        # tufup's macOS installer (purge_dst_dir=False): copy over the install dir, empty the source.
        shutil.copytree(src_dir, dst_dir, dirs_exist_ok=True, symlinks=True)
        for path in Path(src_dir).iterdir():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        target = Path(dst_dir) / APP
        sys.stdout.flush()
        os.execv(target, [str(target), "--no-update"])

    client.download_and_apply_update(skip_confirmation=True, install=install_folder if layout == "folder" else install)
    print("tufup: update did not install", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    cmd, *rest = argv
    if cmd == "repo":
        print(json.dumps(make_repo(Path(rest[0]).resolve(), Path(rest[1]), Path(rest[2]))))
        return 0
    if cmd == "check":
        meta_url, targets_url, root, client_dir, version, cold, warm = rest
        print(json.dumps(check(meta_url, targets_url, Path(root), Path(client_dir), version, int(cold), int(warm))))
        return 0
    if cmd == "update":
        meta_url, targets_url, client_dir, install_dir, version, mode, *layout = rest
        return update(meta_url, targets_url, Path(client_dir), Path(install_dir), version, mode, *layout)
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

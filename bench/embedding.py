"""Item 9: what embedding the updater costs a one-file app, on every start, before any update.

Six one-file PyInstaller builds of tiny apps (bench/apps/, built by bench/freeze.py with the same
settings), started in turn, round after round (so drift on a shared machine hits them alike):

- hello world (the floor of any one-file app);
- hello + ``import requests``, as PyInstaller builds it in a venv that has cryptography installed
  (requests names it for its SNI fallback, so it is bundled) and with ``--exclude-module`` for
  cryptography and pyOpenSSL (requests' own floor);
- hello + Gupper's start-up hook: ``Updater(...).run()``, a warm no-update check (304) against the
  local store, then ``confirm()``; built in a venv that also has cryptography installed (Gupper's
  PyInstaller hook keeps it out), and the same binary started with ``--no-update`` (the cost of
  carrying Gupper without checking) and with ``--check-later`` (creating the updater and
  confirming, the check left for later: what a windowed app pays before its window);
- hello + tufup 0.10's client doing its warm no-update check against the same store;
- README "Use it in your app" as a user builds it: its start-up call (bench/apps/readme_app.py)
  frozen from the README's venv (``gupper[publisher]`` beside PyInstaller), with Gupper installed
  editable and as a wheel, PyInstaller run without ``--paths``; the CA bundle through
  ``REQUESTS_CA_BUNDLE``. Both against the same hello world.

Every app trusts one CA bundle: certifi's public roots with the local store's CA added, as an app
on a public CDN (or with a private CA added to the public roots) loads about 120 certificates. The
Gupper app is also started with its state folder unable to remember the store's root
(``tls-anchors.json`` a folder: gupper.anchors), so every start loads the whole bundle, as before
that memory.

Start to exit is the wall time of the whole process, as a user waits for it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench import freeze
from bench.common import ROOT, median
from bench.harness import RUN, Bench, Row, app_env, run_timed
from gupper.transfer import ANCHOR_MEMO_NAME

EXCLUDE_CRYPTO = ("--exclude-module", "cryptography", "--exclude-module", "OpenSSL")
MB = 1e6


def tufup_client_dir(where: Path, root_json: Path) -> Path:
    """A new tufup install's metadata dir: only the root.json an installer ships."""
    shutil.rmtree(where, ignore_errors=True)
    for sub in ("metadata", "targets", "extract"):
        (where / sub).mkdir(parents=True)
    shutil.copyfile(root_json, where / "metadata" / "root.json")
    return where


UNREMEMBERED = "gupper, store's root not remembered"


def public_bundle(out: Path, store_ca: str) -> Path:
    """certifi's roots with the local store's CA added: the bundle every item-9 app trusts."""
    import certifi

    path = out / "public-bundle.pem"
    path.write_bytes(Path(certifi.where()).read_bytes() + Path(store_ca).read_bytes())
    return path


def start_times(b: Bench, cmds: dict[str, list[str]], envs: dict[str, dict[str, str]]) -> dict[str, list[float]]:
    """Start to exit of each command, in turn round after round, after two warm-up rounds."""
    # Warm the page cache; the first checks keep the manifest + ETag (Gupper) and metadata (tufup).
    for name, cmd in cmds.items():
        for _ in range(2):
            _, proc = run_timed(cmd, envs[name])
            if proc.returncode != 0 or "hello" not in proc.stdout:
                raise RuntimeError(f"{cmd[0]} did not run: {proc.stdout}{proc.stderr[-2000:]}")
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(max(15, b.reps * 4)):
        for name, cmd in cmds.items():
            elapsed, proc = run_timed(cmd, envs[name])
            if proc.returncode != 0:
                raise RuntimeError(f"{name} failed: {proc.stderr[-2000:]}")
            times[name].append(elapsed)
            time.sleep(0.02)
    return times


def commands(
    b: Bench, apps: dict[str, Path], out: Path, tufup_urls: tuple[str, str, Path] | None
) -> tuple[dict[str, list[str]], dict[str, dict[str, str]], Path]:
    """What item 9 starts, each command's environment, and the CA bundle they trust (tufup's app is
    frozen here and added to ``apps``)."""
    env = app_env(b.store, out / "tmp")
    bundle = public_bundle(out, b.store.ca)
    env.update(XDG_STATE_HOME=str(out / "state"), GUPPER_BENCH_CA=str(bundle), REQUESTS_CA_BUNDLE=str(bundle))
    cmds: dict[str, list[str]] = {name: [str(exe)] for name, exe in apps.items()}
    cmds["gupper --no-update"] = [str(apps["gupper"]), "--no-update"]
    cmds["gupper --check-later"] = [str(apps["gupper"]), "--check-later"]
    cmds[UNREMEMBERED] = [str(apps["gupper"])]
    unremembered = out / "state-unremembered"
    shutil.rmtree(unremembered, ignore_errors=True)
    (unremembered / "gupper" / "app" / ANCHOR_MEMO_NAME).mkdir(parents=True)  # nothing can be remembered there
    if tufup_urls is not None:
        meta_url, targets_url, root = tufup_urls
        tcfg = {"APP": "app", "VERSION": "1.0.0", "META_URL": meta_url, "TARGETS_URL": targets_url}
        apps["tufup"] = freeze.freeze(freeze.tufup_venv(), "tufup_app", "tufup-app", out, config=tcfg)
        cmds["tufup"] = [str(apps["tufup"])]
        env["GUPPER_BENCH_TUFUP_DIR"] = str(tufup_client_dir(out / "tufup-client", root))
    envs = {name: env for name in cmds} | {UNREMEMBERED: env | {"XDG_STATE_HOME": str(unremembered)}}
    return cmds, envs, bundle


def item9_embedding(b: Bench, tufup_urls: tuple[str, str, Path] | None) -> None:
    out = RUN / "embed"
    floor_py, gupper_py = freeze.floor_venv(), freeze.gupper_venv()
    cfg = {"APP": "app", "VERSION": "1.0.0", "MANIFEST_URL": b.manifest_url, "PUBLIC_KEYS": [b.public_key]}
    apps: dict[str, Path] = {
        "hello": freeze.freeze(floor_py, "hello", "hello", out),
        "requests+crypto": freeze.freeze(floor_py, "hello_requests", "hello-requests", out),
        "requests": freeze.freeze(floor_py, "hello_requests", "hello-requests-nocrypto", out, flags=EXCLUDE_CRYPTO),
        "gupper": freeze.freeze(gupper_py, "gupper_app", "gupper-app", out, config=cfg, paths=[ROOT / "updater"]),
    }
    # Size only, never started: what --strip saves (PyInstaller strips the symbols of every binary;
    # libsodium's debug info Gupper's own hook already leaves out).
    sized = {
        "hello --strip": freeze.freeze(floor_py, "hello", "hello-strip", out, flags=["--strip"]),
        "gupper --strip": freeze.freeze(
            gupper_py, "gupper_app", "gupper-app-strip", out, config=cfg, paths=[ROOT / "updater"], flags=["--strip"]
        ),
    }
    for kind in freeze.README_KINDS:
        python = freeze.readme_venv(kind)
        apps[f"readme-{kind}"] = freeze.freeze(python, "readme_app", f"readme-{kind}", out, config=cfg)
        if "gupper" not in freeze.bundled_modules(apps[f"readme-{kind}"]):
            raise RuntimeError(f"the README build ({kind} install) does not bundle gupper")
    bundled = freeze.bundled_modules(apps["gupper"])
    if "cryptography" in bundled or "OpenSSL" in bundled:
        raise RuntimeError(
            "the Gupper app bundles cryptography: is gupper's pyinstaller40 hook registered in the freeze-gupper venv?"
        )
    cmds, envs, bundle = commands(b, apps, out, tufup_urls)
    times = start_times(b, cmds, envs)
    ms = {name: median(v) for name, v in times.items()}
    # Over hello world, round by round (each round starts every app once, in turn), then the median:
    # drift on a shared machine moves both sides of a round alike.
    over = {name: median([t - h for t, h in zip(v, times["hello"], strict=True)]) for name, v in times.items()}
    b.metrics.update({f"embed_over_ms_{k}": v for k, v in over.items()})
    bundle_certs = bundle.read_bytes().count(b"-----BEGIN CERTIFICATE-----")
    b.metrics["embed_bundle_certs"] = float(bundle_certs)
    size = {name: exe.stat().st_size / MB for name, exe in apps.items()}
    b.metrics.update({f"embed_ms_{k}": v for k, v in ms.items()} | {f"embed_mb_{k}": v for k, v in size.items()})
    t_size = size.get("tufup")
    t_ms = ms.get("tufup")
    floor = "a floor, not a Gupper figure"
    b.add(Row("9", "one-file hello world: size", "MB", size["hello"], note=floor))
    b.add(Row("9", "one-file hello world: start to exit", "ms", ms["hello"], note=floor))
    b.add(
        Row(
            "9",
            "hello + requests, cryptography bundled (PyInstaller's default in a venv that has it): size / start",
            "MB",
            size["requests+crypto"],
            note=f"{ms['requests+crypto']:,.0f} ms start to exit; {floor}",
        )
    )
    b.add(
        Row(
            "9",
            "hello + requests without cryptography (requests' floor): size / start",
            "MB",
            size["requests"],
            note=f"{ms['requests']:,.0f} ms; {floor}",
        )
    )
    b.add(
        Row(
            "9",
            "embedding cost: size over hello world",
            "MB",
            size["gupper"] - size["hello"],
            None if t_size is None else t_size - size["hello"],
            note=f"Gupper app {size['gupper']:.2f} MB (no cryptography bundled: its PyInstaller "
            "hook), target <= +4 MB; requests alone: "
            f"+{size['requests'] - size['hello']:.2f} MB" + ("" if t_size is None else f"; tufup app {t_size:.2f} MB"),
        )
    )
    sz = {name: exe.stat().st_size / MB for name, exe in sized.items()}
    b.metrics.update({f"embed_mb_{k}": v for k, v in sz.items()})
    b.add(
        Row(
            "9",
            "embedding cost: size over hello world, both built with --strip",
            "MB",
            sz["gupper --strip"] - sz["hello --strip"],
            note=f"{sz['gupper --strip']:.2f} vs {sz['hello --strip']:.2f} MB: PyInstaller's "
            "--strip removes every bundled library's symbols (libsodium's debug info Gupper's hook leaves out "
            "in any Linux build)",
        )
    )
    add_start_row(b, ms, over, len(times["hello"]), bundle_certs, t_ms is not None)
    same = apps["readme-editable"].read_bytes() == apps["readme-wheel"].read_bytes()
    b.metrics["embed_readme_identical"] = float(same)
    add_readme_rows(b, size, ms, over, same)


def add_start_row(
    b: Bench, ms: dict[str, float], over: dict[str, float], rounds: int, bundle_certs: int, tufup: bool
) -> None:
    """Item 9's start-up row: the Gupper app's start over hello world, with what each variant costs."""
    b.add(
        Row(
            "9",
            "embedding cost: start to exit over hello world, with a warm no-update check (304), certifi's roots + "
            "the store's CA trusted",
            "ms",
            over["gupper"],
            over["tufup"] if tufup else None,
            note=f"Gupper app {ms['gupper']:,.0f} ms vs hello {ms['hello']:,.0f} ms (medians; the figure is the "
            f"median of {rounds} per-round differences), target <= +150 "
            f"ms; requests alone: +{over['requests']:,.0f} ms; "
            f"Gupper app with --no-update (carried, not run): +{over['gupper --no-update']:,.0f} ms; "
            f"the store's root not remembered (the whole bundle of {bundle_certs} certificates loaded at every start): "
            f"+{over[UNREMEMBERED]:,.0f} ms; "
            "creating the Updater and confirming, the check left for later (a windowed app before its window): "
            f"+{over['gupper --check-later']:,.0f} ms"
            + (
                ""
                if not tufup
                else f"; tufup app {ms['tufup']:,.0f} ms (its warm check: root N+1 404 + timestamp.json)"
            ),
        )
    )


def add_readme_rows(b: Bench, size: dict[str, float], ms: dict[str, float], over: dict[str, float], same: bool) -> None:
    """Item 9's rows for README's builds: size and start over hello world, each against its goal."""
    for kind in freeze.README_KINDS:
        name = f"readme-{kind}"
        install = "pip install -e" if kind == "editable" else "a wheel of this tree"
        b.add(
            Row(
                "9",
                f"embedding cost, README set-up ({kind} install): size over hello world",
                "MB",
                size[name] - size["hello"],
                note=f"{size[name]:.2f} MB; README's venv (gupper[publisher] + PyInstaller, Gupper from {install}), "
                f"README's start-up call, built without --paths; target <= +4 MB; the clean build above: "
                f"+{size['gupper'] - size['hello']:.2f} MB",
            )
        )
        b.add(
            Row(
                "9",
                f"embedding cost, README set-up ({kind} install): start to exit over hello world, warm check (304)",
                "ms",
                over[name],
                note=f"{ms[name]:,.0f} vs {ms['hello']:,.0f} ms; target <= +150 ms; the clean build above: "
                f"+{over['gupper']:,.0f} ms"
                + (
                    "; the editable and the wheel builds are byte-identical: the two medians differ by this run's noise"
                    if same
                    else ""
                ),
            )
        )

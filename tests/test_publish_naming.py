"""Publishing a build whatever it is called: ``--app``, ``--version`` and ``--platform`` name plain
``pyinstaller --name app`` output (a file or a folder), and a build whose name says nothing is
refused with one line that says both ways out. Real processes of the command, a folder store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper.keys import TrustedKeys
from gupper.manifest import verify_manifest
from gupper.platforms import current_platform
from gupper_publish import LocalStore, Naming, NotAnExecutableError, PublishOptions, publish

from .conftest import NOW
from .exe_stubs import exe_stub
from .test_publisher_cli import cli

KeyPair = tuple[Path, Ed25519PrivateKey, str]
HERE = current_platform()


def plain_onefile(dist: Path, name: str, platform: str = HERE.key) -> Path:
    """What ``pyinstaller --onefile --name NAME`` leaves in dist/: the bare name."""
    dist.mkdir(parents=True, exist_ok=True)
    path = dist / name
    path.write_bytes(exe_stub(platform, b"a one-file build\n" * 100))
    path.chmod(0o755)
    return path


def plain_onedir(dist: Path, name: str, entry: bytes | None = None, app: str | None = None) -> Path:
    """What ``pyinstaller --onedir --name NAME`` leaves in dist/: NAME/NAME and NAME/_internal/ (the
    folder renamed to ``name`` when ``app`` names the entry point)."""
    folder, app = dist / name, app or name
    (folder / "_internal").mkdir(parents=True)
    (folder / "_internal" / "lib.so").write_bytes(b"library\n" * 100)
    (folder / app).write_bytes(entry if entry is not None else exe_stub(HERE.key, b"entry point\n"))
    (folder / app).chmod(0o755)
    return folder


def served(store: Path, app: str, keypair: KeyPair) -> dict[str, tuple[str, str]]:
    manifest = verify_manifest(
        (store / app / "stable" / "latest.json").read_bytes(),
        TrustedKeys.from_texts([keypair[2]]),
        app=app,
        channel="stable",
        now=NOW,
    )
    return {p: (str(e.version), e.url) for p, e in manifest.entries.items()}


def test_plain_pyinstaller_output_publishes_with_app_version_and_platform(tmp_path: Path, keypair: KeyPair) -> None:
    store, key = tmp_path / "store", str(keypair[0])
    plain_onefile(tmp_path / "dist", "tally")
    # --version first: a build's version, not a request for gupper-publish's own.
    proc = cli("--version", "1.2.0", "--app", "tally", "--store", str(store), "--key", key, "dist/tally", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"uploaded  {store}/tally/1.2.0/tally-1.2.0-{HERE.key} (")
    assert (store / "tally" / "1.2.0" / f"tally-1.2.0-{HERE.key}").read_bytes() == (
        tmp_path / "dist/tally"
    ).read_bytes()
    # Another platform's build, named by --platform (aliases are spelled canonically).
    plain_onefile(tmp_path / "win", "tally.exe", "windows-amd64")
    proc = cli(
        "publish",
        "win/tally.exe",
        "--app",
        "tally",
        "--version",
        "1.2.0",
        "--platform",
        "windows-x86_64",
        "--store",
        str(store),
        "--key",
        key,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    # A one-folder build, its entry point named after the app as 'pyinstaller --name' writes it.
    plain_onedir(tmp_path / "onedir", "notely")
    proc = cli(
        "publish",
        "onedir/notely",
        "--app",
        "notely",
        "--version",
        "2.0",
        "--store",
        str(store),
        "--key",
        key,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert served(store, "tally", keypair) == {
        HERE.key: ("1.2.0", f"../1.2.0/tally-1.2.0-{HERE.key}"),
        "windows-amd64": ("1.2.0", "../1.2.0/tally-1.2.0-windows-amd64.exe"),
    }
    assert served(store, "notely", keypair) == {HERE.key: ("2.0", f"../2.0/notely-2.0-{HERE.key}.tar.gz")}


def test_the_naming_options_are_checked_before_anything_is_written(tmp_path: Path, keypair: KeyPair) -> None:
    store, key = tmp_path / "store", str(keypair[0])
    plain_onefile(tmp_path / "dist", "tally", "linux-amd64")
    plain_onefile(tmp_path / "dist", "other", "linux-amd64")
    cases = {
        ("--app", "tally"): "--app and --version go together",
        ("--app", "tally", "--version", "one"): "'one' is not a PEP 440 version",
        ("--app", "tally", "--version", "1.0", "--platform", "beos-m68k"): "unknown platform 'beos-m68k'; give <os>-",
        ("--app", "tally", "--version", "1.0", "dist/other"): "name one build, and 2 were given",
        ("--app", "tally", "--version", "1.0", "--platform", "darwin-arm64"): (
            "tally is an ELF 64-bit executable (a Linux program), not a Mach-O executable; "
            "it is published for darwin-arm64:"
        ),
    }
    for extra, message in cases.items():
        proc = cli("publish", *extra, "dist/tally", "--store", str(store), "--key", key, cwd=tmp_path)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, (extra, proc.stderr)
        assert proc.stderr.startswith("gupper-publish: error: ") and message in proc.stderr, (extra, proc.stderr)
    assert not store.exists()


def test_a_build_whose_name_says_nothing_is_refused_with_both_ways_out(tmp_path: Path, keypair: KeyPair) -> None:
    store = tmp_path / "store"
    plain_onedir(tmp_path / "dist", "notely")
    plain_onefile(tmp_path / "dist", "tally")
    for given, what in (("dist/notely", "one-folder build"), ("dist/tally", "build")):
        proc = cli("publish", given, "--store", str(store), "--key", str(keypair[0]), cwd=tmp_path)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert "expected <app>-<version>-<os>-<arch>" in proc.stderr
        assert proc.stderr.rstrip().endswith(
            f"; rename the {what}, or keep its name and say what it is with --app NAME --version V "
            "[--platform OS-ARCH] (default: this machine's)"
        )
    assert not store.exists()


def test_a_folder_whose_entry_point_is_wrong_says_so_in_plain_words(tmp_path: Path, keypair: KeyPair) -> None:
    # The clause for a folder has its own verb: "<folder> has an entry point ...", never "is has".
    folder = plain_onedir(tmp_path / "dist", f"notely-1.0.0-{HERE.key}", entry=b"hello\n", app="notely")
    options = PublishOptions(keys=[keypair[1]], clock=lambda: NOW)
    with pytest.raises(NotAnExecutableError) as refused:
        publish(LocalStore(tmp_path / "store"), [folder], options)
    said = str(refused.value)
    assert said.startswith(f"{folder.name} has an entry point notely that is a text file of 6 bytes, not an ELF")
    assert " is has " not in said and f"its name says {HERE.key}" in said
    plain = plain_onedir(tmp_path / "plain", "notely", entry=b"hello\n")
    with pytest.raises(NotAnExecutableError) as refused:
        publish(LocalStore(tmp_path / "store"), [plain], options, naming=Naming("notely", "1.0.0"))
    said = str(refused.value)
    assert said.startswith("notely has an entry point notely that is a text file") and "it is published for" in said
    assert not (tmp_path / "store").exists()


def test_the_json_report_names_the_canonical_keys(tmp_path: Path, keypair: KeyPair) -> None:
    store = tmp_path / "store"
    plain_onefile(tmp_path / "dist", "tally")
    proc = cli(
        "publish",
        "dist/tally",
        "--app",
        "tally",
        "--version",
        "01.2",
        "--json",
        "--store",
        str(store),
        "--key",
        str(keypair[0]),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (uploaded,) = json.loads(proc.stdout)["artifacts"]
    assert uploaded["key"] == f"tally/1.2/tally-1.2-{HERE.key}" and uploaded["status"] == "uploaded"

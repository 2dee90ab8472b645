"""The command line's rough edges, through real processes: --version, a closed pipe, help for
every argument, progress on a real terminal (a pty) and nothing on a pipe, patches reported."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper_publish import LocalStore, PublishOptions, publish
from gupper_publish.cli import _parser, version

from .conftest import NOW
from .exe_stubs import exe_stub

KeyPair = tuple[Path, Ed25519PrivateKey, str]
TIMEOUT = 60


def cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUPPER_")}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "gupper_publish", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        **kwargs,
    )


def build(dist: Path, version: str, size: int = 200_000) -> Path:
    """A stand-in build: one changed constant between versions, like two reproducible builds."""
    dist.mkdir(parents=True, exist_ok=True)
    body = bytearray(i * 7919 % 251 for i in range(size))
    body[size // 2 : size // 2 + len(version)] = version.encode()
    path = dist / f"app-{version}-linux-amd64"
    path.write_bytes(exe_stub("linux-amd64", bytes(body)))
    return path


def test_version_is_answered_and_matches_the_distribution() -> None:
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout == f"gupper-publish {version()}\n" and proc.stderr == ""
    assert version()[0].isdigit()  # the installed distribution's, not "unknown"


def many_releases(root: Path, keypair: KeyPair, count: int) -> None:
    dist = root.parent / "many"
    dist.mkdir()
    files = []
    for i in range(count):
        path = dist / f"app-1.{i}.0-linux-amd64"
        path.write_bytes(exe_stub("linux-amd64", b"%d" % i))
        files.append(path)
    publish(LocalStore(root), files, PublishOptions(keys=[keypair[1]], clock=lambda: NOW), patches=0)


def test_a_reader_that_went_away_ends_the_command_quietly(tmp_path: Path, keypair: KeyPair) -> None:
    store = tmp_path / "store"
    many_releases(store, keypair, 400)
    # Deterministic: the pipe's read end is closed before the command starts, so its first write fails.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gupper_publish", "list", "--json", "--store", str(store)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")
    # As people write it: more output than a pipe holds, and 'head -1' stops reading after one line.
    shell = subprocess.run(
        [
            "bash",
            "-c",
            f'set -o pipefail; "{sys.executable}" -m gupper_publish list --json --store '
            f'"{store}" | head -1; echo "status ${{PIPESTATUS[0]}}" >&2',
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert shell.stdout == "{\n" and shell.stderr == "status 141\n"  # no traceback, no "Exception ignored"
    listing = cli("list", "--json", "--store", str(store))
    assert len(listing.stdout) > 3 * 64 * 1024  # the listing really is larger than a pipe holds (64 KiB on Linux)


def all_actions(parser: argparse.ArgumentParser, path: str = "gupper-publish") -> list[tuple[str, argparse.Action]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += all_actions(sub, f"{path} {name}")
        out.append((path, action))
    return out


def test_every_argument_has_help_and_list_and_status_say_different_things() -> None:
    missing = [f"{where}: {a.dest}" for where, a in all_actions(_parser()) if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []
    positionals = [
        (where, a.dest)
        for where, a in all_actions(_parser())
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
    ]
    assert ("gupper-publish promote", "version") in positionals and ("gupper-publish build", "script") in positionals
    helps = {a.dest: a for _, a in all_actions(_parser()) if isinstance(a, argparse._SubParsersAction)}[
        "command"
    ]._choices_actions
    by_name = {c.dest: c.help for c in helps}
    assert by_name["list"] != by_name["status"] and "alias of 'list'" in str(by_name["status"])
    top = cli("--help").stdout
    assert "--version" in top and "build" in top and "keygen" in top


def read_tty(master: int, proc: subprocess.Popen[bytes]) -> bytes:
    """Everything written to the terminal until the process exits (bounded by TIMEOUT)."""
    out = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed, the process is gone
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_a_terminal_sees_hashing_and_patching_and_a_pipe_sees_neither(tmp_path: Path, keypair: KeyPair) -> None:
    store = tmp_path / "store"
    base = ["--store", str(store), "--key", str(keypair[0])]
    assert cli("publish", *base, str(build(tmp_path / "dist", "1.0.0"))).returncode == 0
    master, slave = pty.openpty()
    fcntl.ioctl(
        slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0)
    )  # a new pty is 0x0; tqdm draws to the width
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUPPER_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "gupper_publish", "publish", *base, str(build(tmp_path / "dist", "2.0.0"))],
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
        )
        os.close(slave)
        terminal = read_tty(master, proc).decode("utf-8", "replace")
        stdout = proc.communicate(timeout=TIMEOUT)[0].decode()
    finally:
        os.close(master)
    assert proc.returncode == 0, terminal
    assert "hashing app-2.0.0-linux-amd64" in terminal
    assert "making patches for app-2.0.0-linux-amd64 from 1.0.0 ..." in terminal
    assert "making patches for app-2.0.0-linux-amd64 from 1.0.0: done in" in terminal
    assert "uploading app-2.0.0-linux-amd64" in terminal
    assert (
        "patch     " in stdout and "hashing app-" not in stdout
    )  # the report stays on stdout, the display on the terminal
    piped = cli("publish", *base, str(build(tmp_path / "dist", "3.0.0")))
    assert piped.returncode == 0 and piped.stderr == ""  # no progress in logs or pipes


def test_the_patches_made_are_listed_in_text_and_json(tmp_path: Path, keypair: KeyPair) -> None:
    store = tmp_path / "store"
    base = ["--store", str(store), "--key", str(keypair[0])]
    for v in ("1.0.0", "1.1.0"):
        assert cli("publish", *base, str(build(tmp_path / "dist", v))).returncode == 0
    text = cli("publish", *base, str(build(tmp_path / "dist", "2.0.0")))
    lines = [line for line in text.stdout.splitlines() if line.startswith("patch")]
    assert len(lines) == 2, text.stdout
    for old in ("1.1.0", "1.0.0"):
        key = f"app/2.0.0/patches/app-2.0.0-linux-amd64.from-{old}.bsdiff4"
        size = (store / key).stat().st_size
        assert f"patch     {store}/{key} ({size} bytes, from {old})" in lines
        assert size < 2000  # a reproducible pair differs in a few bytes: so does the patch
    doc = json.loads(cli("publish", "--json", *base, str(build(tmp_path / "dist", "3.0.0"))).stdout)
    assert [(p["from_version"], p["key"]) for p in doc["patches"]] == [
        (old, f"app/3.0.0/patches/app-3.0.0-linux-amd64.from-{old}.bsdiff4") for old in ("2.0.0", "1.1.0", "1.0.0")
    ]
    for p in doc["patches"]:
        assert p["size"] == (store / p["key"]).stat().st_size and len(p["sha256"]) == 64
    manifest = json.loads((store / "app/stable/latest.json").read_text())["signed"]["platforms"]["linux-amd64"]
    assert [p["size"] for p in manifest["patches"]] == [p["size"] for p in doc["patches"]]


@pytest.mark.parametrize("command", ["publish", "list", "rotate-keys", "yank"])
def test_subcommand_help_works_without_a_store_or_key(command: str) -> None:
    proc = cli(command, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: gupper-publish {command}") and proc.stderr == ""


def test_a_channel_name_with_a_trailing_newline_is_refused_and_nothing_is_written(
    tmp_path: Path, keypair: KeyPair
) -> None:
    """Issue 22 item 7: ``--channel $'beta\\n'`` wrote ``app/beta⏎/latest.json``."""
    store = tmp_path / "store"
    proc = cli(
        "publish",
        "--store",
        str(store),
        "--key",
        str(keypair[0]),
        "--channel",
        "beta\n",
        str(build(tmp_path / "dist", "1.0.0")),
    )
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "invalid channel 'beta\\n'" in proc.stderr, proc.stderr
    written = [p.relative_to(store).as_posix() for p in store.rglob("*")] if store.exists() else []
    assert not any("\n" in name for name in written), written
    assert not any(name.endswith("latest.json") for name in written), written

"""A build must be an executable for the platform in its name before anything is uploaded.

Real files where this machine has them: this interpreter (ELF), pip's own Windows launchers
(PE for amd64, arm64 and i386), gcc's object files; Mach-O headers are written here by their
layout (no macOS toolchain is to be had). The refusals run against the local S3 server process:
nothing is uploaded and the version stays free for the right file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper.platforms import current_platform
from gupper_infra.client import LocalStore as RunningStore
from gupper_infra.client import start_local_store
from gupper_publish import LocalStore, NotAnExecutableError, PublishOptions, S3Store, publish
from gupper_publish.exe_check import check, identify
from gupper_publish.publish import Naming

from .conftest import NOW
from .exe_stubs import MACHO_CPU, elf_header, macho_header

KeyPair = tuple[Path, Ed25519PrivateKey, str]
HERE = current_platform()
OTHER_ARCH = "arm64" if HERE.arch == "amd64" else "amd64"
PYTHON = Path(os.path.realpath(sys.executable))  # a real ELF executable for this machine


def reader(data: bytes) -> Any:
    return lambda offset, size: data[offset : offset + size]


def verdict(data: bytes, os_name: str, arch: str) -> str | None:
    return check(reader(data), os_name, arch)


def launchers() -> Path:
    spec = importlib.util.find_spec("pip._vendor.distlib")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pip's vendored distlib (Windows launchers) is not here")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / "t64.exe").exists():
        pytest.skip("pip ships no Windows launchers here")
    return folder


# --- pure: headers in, verdict out ---


def test_this_interpreter_is_an_elf_executable_for_this_machine_only() -> None:
    data = PYTHON.read_bytes()
    if HERE.os != "linux":
        pytest.skip("the interpreter is ELF on Linux only")
    assert verdict(data, "linux", HERE.arch) is None
    assert verdict(data, "linux", OTHER_ARCH) == f"an ELF 64-bit executable for {HERE.arch}, not for {OTHER_ARCH}"
    assert (
        verdict(data, "windows", HERE.arch) == "an ELF 64-bit executable (a Linux program), not a PE executable (.exe)"
    )
    assert verdict(data, "darwin", HERE.arch) == "an ELF 64-bit executable (a Linux program), not a Mach-O executable"


def test_pips_windows_launchers_are_pe_executables_of_their_cpu() -> None:
    folder = launchers()
    amd64, arm64, i386 = ((folder / n).read_bytes() for n in ("t64.exe", "t64-arm.exe", "t32.exe"))
    assert verdict(amd64, "windows", "amd64") is None and verdict(arm64, "windows", "arm64") is None
    assert verdict(amd64, "windows", "arm64") == "a Windows PE executable for amd64, not for arm64"
    assert verdict(i386, "windows", "amd64") == "a Windows PE executable for i386, not for amd64"
    assert verdict(amd64, "linux", "amd64") == "a Windows PE executable (a Windows program), not an ELF executable"
    dll = bytearray(amd64)
    at = struct.unpack_from("<I", dll, 0x3C)[0] + 22  # COFF Characteristics
    struct.pack_into("<H", dll, at, struct.unpack_from("<H", dll, at)[0] | 0x2000)
    assert verdict(bytes(dll), "windows", "amd64") == "a Windows DLL, but a DLL is a library, not a program"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_an_object_file_from_gcc_is_not_a_program(tmp_path: Path) -> None:
    (tmp_path / "m.c").write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc", "-c", "m.c", "-o", "m.o"], cwd=tmp_path, check=True, timeout=60)
    subprocess.run(["gcc", "m.c", "-o", "m"], cwd=tmp_path, check=True, timeout=60)
    subprocess.run(["gcc", "-shared", "-fPIC", "m.c", "-o", "libm.so"], cwd=tmp_path, check=True, timeout=60)
    assert verdict((tmp_path / "m").read_bytes(), "linux", HERE.arch) is None
    assert (
        verdict((tmp_path / "libm.so").read_bytes(), "linux", HERE.arch) is None
    )  # documented: a shared library is not told from a PIE
    assert (
        verdict((tmp_path / "m.o").read_bytes(), "linux", HERE.arch)
        == "an ELF 64-bit file, but it is an object file (.o), not a linked program"
    )


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"hello\n", "a text file of 6 bytes, not an ELF executable"),
        (b"", "an empty file, not an ELF executable"),
        (b"#!/bin/sh\necho hi\n", "a script for /bin/sh, not an ELF executable"),
        (
            b"PK\x03\x04" + bytes(40),
            "a zip archive (a one-folder build? name it <app>-<version>-<os>-<arch>.zip), not an ELF executable",
        ),
        (
            b"\x1f\x8b\x08" + bytes(40),
            "a gzip file (a one-folder build? name it <app>-<version>-<os>-<arch>.tar.gz), not an ELF executable",
        ),
        (bytes(range(256)) * 4, "a file of an unknown kind (no ELF, PE or Mach-O header), not an ELF executable"),
        (b"MZ" + bytes(100), "a DOS MZ file without a Windows PE header, not an ELF executable"),
        (
            elf_header("amd64")[:7] + b"\x09" + elf_header("amd64")[8:],
            "an ELF 64-bit file for FreeBSD, not an ELF executable",
        ),
        (elf_header("amd64", e_type=4), "an ELF 64-bit file, but it is a core dump"),
    ],
)
def test_what_is_not_a_linux_executable_is_named(data: bytes, said: str) -> None:
    assert verdict(data, "linux", "amd64") == said


def fat(slices: list[tuple[str, bytes]], magic: int = 0xCAFEBABE) -> bytes:
    """A universal binary by <mach-o/fat.h>: big-endian header, fat_arch entries, slices at 4 KiB."""
    out = bytearray(struct.pack(">II", magic, len(slices)))
    offsets = []
    for i, (_, body) in enumerate(slices):
        offsets.append(4096 * (i + 1))
        out += struct.pack(">iiIII", MACHO_CPU.get(_, 7), 0, offsets[-1], len(body), 12)
    for offset, (_, body) in zip(offsets, slices, strict=True):
        out += bytes(offset - len(out)) + body
    return bytes(out)


def test_mach_o_thin_and_universal_binaries_are_read_slice_by_slice() -> None:
    arm, x86 = macho_header("arm64") + bytes(64), macho_header("amd64") + bytes(64)
    assert verdict(arm, "darwin", "arm64") is None
    assert verdict(arm, "darwin", "amd64") == "a Mach-O 64-bit executable for arm64, not for amd64"
    assert (
        verdict(macho_header("arm64", filetype=6), "darwin", "arm64")
        == "a Mach-O 64-bit file, but it is a dynamic library (.dylib), not a program"
    )
    universal = fat([("amd64", x86), ("arm64", arm)])
    assert identify(reader(universal)).archs == ("amd64", "arm64")
    assert verdict(universal, "darwin", "arm64") is None and verdict(universal, "darwin", "amd64") is None
    assert (
        verdict(universal, "linux", "amd64") == "a Mach-O universal executable (a macOS program), not an ELF executable"
    )
    intel_only = fat([("amd64", x86)])
    assert verdict(intel_only, "darwin", "arm64") == "a Mach-O universal executable for amd64, not for arm64"
    lying = fat([("arm64", x86)])  # the table says arm64, the slice holds x86_64 code
    assert (
        verdict(lying, "darwin", "arm64") == "a Mach-O universal executable, but its arm64 slice holds code for amd64"
    )
    assert verdict(fat([("arm64", macho_header("arm64", filetype=6))]), "darwin", "arm64") == (
        "a Mach-O universal executable, but its arm64 slice: it is a dynamic library (.dylib), not a program"
    )
    java = struct.pack(">IHH", 0xCAFEBABE, 0, 52) + bytes(64)  # same magic: a class file, major version 52
    assert verdict(java, "darwin", "arm64") == "a Java class file, not a Mach-O executable"


# --- publish refuses before uploading, against the real S3 server process ---


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStore]:
    with start_local_store(tmp_path_factory.mktemp("s3-exe-check")) as store:
        yield store


@pytest.fixture
def s3(running: RunningStore, request: pytest.FixtureRequest) -> tuple[S3Store, Any]:
    client = boto3.client("s3", **running.boto3_kwargs())
    prefix = request.node.name.replace("[", "-").replace("]", "")[:60]
    return S3Store(running.bucket, prefix, client=client), client


def keys_under(client: Any, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])]


def test_a_six_byte_text_file_is_refused_and_the_version_stays_free(
    tmp_path: Path, s3: tuple[S3Store, Any], keypair: KeyPair
) -> None:
    store, client = s3
    name = f"app-1.0.0-{HERE.key}"
    bad = tmp_path / "bad" / name
    bad.parent.mkdir()
    bad.write_text("hello\n")
    options = PublishOptions(keys=[keypair[1]], clock=lambda: NOW)
    with pytest.raises(NotAnExecutableError) as refused:
        publish(store, [bad], options)
    message = str(refused.value)
    assert (
        message.startswith(f"{name} is a text file of 6 bytes, not an ELF executable; its name says {HERE.key}")
        and "--force" in message
    )
    assert "\n" not in message
    assert keys_under(client, store.bucket, store.prefix) == []  # nothing uploaded: no artifact, no state, no manifest
    good = tmp_path / "good" / name
    good.parent.mkdir()
    shutil.copyfile(PYTHON, good)
    report = publish(store, [good], options)  # the same version, now the real build
    assert [a.status for a in report.artifacts] == ["uploaded"] and report.manifests[0].platforms == {HERE.key: "1.0.0"}
    body = client.get_object(Bucket=store.bucket, Key=f"{store.prefix}/app/1.0.0/{name}")["Body"].read()
    assert body == PYTHON.read_bytes()


def test_a_linux_binary_named_exe_is_refused_and_the_windows_build_then_publishes(
    tmp_path: Path, s3: tuple[S3Store, Any], keypair: KeyPair
) -> None:
    store, client = s3
    (tmp_path / "wrong").mkdir()
    (tmp_path / "right").mkdir()
    wrong = tmp_path / "wrong" / "app-2.0.0-windows-amd64.exe"
    shutil.copyfile(PYTHON, wrong)
    options = PublishOptions(keys=[keypair[1]], clock=lambda: NOW)
    with pytest.raises(
        NotAnExecutableError,
        match=r"^app-2.0.0-windows-amd64.exe is an ELF 64-bit executable \(a Linux program\), "
        r"not a PE executable \(.exe\)",
    ):
        publish(store, [wrong], options)
    assert keys_under(client, store.bucket, store.prefix) == []
    right = tmp_path / "right" / "app-2.0.0-windows-amd64.exe"
    shutil.copyfile(launchers() / "t64.exe", right)
    assert publish(store, [right], options).artifacts[0].status == "uploaded"


def test_one_bad_file_among_several_stops_the_whole_publish_before_any_upload(
    tmp_path: Path, s3: tuple[S3Store, Any], keypair: KeyPair
) -> None:
    store, client = s3
    good, bad = tmp_path / f"app-3.0.0-{HERE.key}", tmp_path / f"app-3.0.0-darwin-{HERE.arch}"
    shutil.copyfile(PYTHON, good)
    shutil.copyfile(PYTHON, bad)  # an ELF named for macOS
    with pytest.raises(NotAnExecutableError, match="not a Mach-O executable"):
        publish(store, [good, bad], PublishOptions(keys=[keypair[1]], clock=lambda: NOW))
    assert keys_under(client, store.bucket, store.prefix) == []


def folder_build(base: Path, entry: bytes | None, name: str = f"app-1.0.0-{HERE.key}") -> Path:
    folder = base / name
    (folder / "_internal").mkdir(parents=True)
    (folder / "_internal" / "lib.so").write_bytes(b"library\n" * 100)
    if entry is not None:
        (folder / "app").write_bytes(entry)
        (folder / "app").chmod(0o755)
    return folder


def test_a_one_folder_build_is_checked_by_its_entry_point(
    tmp_path: Path, s3: tuple[S3Store, Any], keypair: KeyPair
) -> None:
    store, client = s3
    options = PublishOptions(keys=[keypair[1]], clock=lambda: NOW)
    with pytest.raises(
        NotAnExecutableError,
        match=r"has an entry point app that is a text file of 6 bytes, not an ELF executable; .* --force",
    ):
        publish(store, [folder_build(tmp_path / "text", b"hello\n")], options)
    with pytest.raises(
        NotAnExecutableError,
        match=r"has no entry point app \(the executable is named after the app, as 'pyinstaller --name app' does\)",
    ):
        publish(store, [folder_build(tmp_path / "none", None)], options)
    zipped = folder_build(tmp_path / "zip", b"hello\n")
    archive = shutil.make_archive(str(tmp_path / "zip" / zipped.name), "zip", zipped.parent, zipped.name)
    with pytest.raises(NotAnExecutableError, match="has an entry point app that is a text file"):
        publish(store, [Path(archive)], options)
    assert keys_under(client, store.bucket, store.prefix) == []
    linked = folder_build(tmp_path / "linked", None)
    shutil.copyfile(PYTHON, linked / "_internal" / "app-bin")
    (linked / "app").symlink_to("_internal/app-bin")  # an entry point that is a link inside the folder is followed
    assert publish(store, [linked], options).artifacts[0].status == "uploaded"


def test_force_publishes_the_exotic_and_the_cli_says_how(
    tmp_path: Path, keypair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    from gupper_publish.cli import main

    script = tmp_path / f"tool-1.0.0-{HERE.key}"
    script.write_text("#!/bin/sh\necho a shell script is an exotic build\n")
    base = ["publish", "--store", str(tmp_path / "store"), "--key", str(keypair[0]), "--patches", "0"]
    assert main([*base, str(script)]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith(f"gupper-publish: error: {script.name} is a script for /bin/sh, not an ELF executable")
        and err.count("\n") == 1
    )
    assert not (tmp_path / "store").exists()
    assert main([*base, "--force", "--json", str(script)]) == 0
    assert json.loads(capsys.readouterr().out)["artifacts"][0]["status"] == "uploaded"
    assert LocalStore(tmp_path / "store").head(f"tool/1.0.0/{script.name}") is not None


def info_plist(program: str) -> bytes:
    import plistlib

    return plistlib.dumps({"CFBundleExecutable": program, "CFBundleIdentifier": "com.example.app"})


def app_bundle(folder: Path, program: bytes, named: str = "app") -> Path:
    """A macOS app bundle as PyInstaller lays it out: Contents/Info.plist, Contents/MacOS/<program>."""
    (folder / "Contents" / "MacOS").mkdir(parents=True)
    (folder / "Contents" / "Frameworks").mkdir()
    (folder / "Contents" / "Info.plist").write_bytes(info_plist(named))
    (folder / "Contents" / "MacOS" / "app").write_bytes(program)
    return folder


def test_the_publisher_takes_the_folders_and_bundles_clients_take_and_nothing_else(
    tmp_path: Path, keypair: KeyPair
) -> None:
    """Issue 21, item 2: a folder holding app.app was published as a one-folder build every client refused."""
    store, options = LocalStore(tmp_path / "store"), PublishOptions(keys=[keypair[1]], clock=lambda: NOW)
    windows = tmp_path / "w" / "app-1.0.0-windows-arm64"
    (windows / "_internal").mkdir(parents=True)
    (windows / "_internal" / "python311.dll").write_bytes(b"MZ" + bytes(200))
    shutil.copyfile(launchers() / "t64-arm.exe", windows / "app.exe")
    assert publish(store, [windows], options).artifacts[0].status == "uploaded"
    universal = fat([("amd64", macho_header("amd64")), ("arm64", macho_header("arm64"))])
    wrapped = tmp_path / "m" / "app-1.0.0-darwin-arm64"  # the whole of PyInstaller's dist/, bundle inside
    app_bundle(wrapped / "app.app", universal)
    with pytest.raises(
        NotAnExecutableError, match=r"holds the app bundle app\.app, which no install takes from inside"
    ):
        publish(store, [wrapped], options)
    # the bundle itself: by its .app name, or with --app/--version, or by its Contents/Info.plist
    published = publish(store, [wrapped / "app.app"], options, naming=Naming("app", "1.0.0", "darwin-arm64"))
    (done,) = published.artifacts
    assert done.status == "uploaded" and done.key == "app/1.0.0/app-1.0.0-darwin-arm64.app.tar.gz"
    signed = json.loads((tmp_path / "store" / "app" / "stable" / "latest.json").read_bytes())["signed"]
    assert signed["platforms"]["darwin-arm64"]["type"] == "app" and signed["platforms"]["darwin-arm64"]["format"] == (
        "tar.gz"
    )
    intel = app_bundle(tmp_path / "i" / "app-1.0.0-darwin-amd64", macho_header("arm64") + bytes(64))
    with pytest.raises(
        NotAnExecutableError,
        match="has a program Contents/MacOS/app that is a Mach-O 64-bit executable for arm64, not for amd64",
    ):
        publish(store, [intel], options)
    other = app_bundle(tmp_path / "o" / "app-1.0.0-darwin-arm64.app", universal, named="Other")
    with pytest.raises(NotAnExecutableError, match="naming the program 'Other', and installs run Contents/MacOS/app"):
        publish(store, [other], options)
    on_windows = app_bundle(tmp_path / "x" / "app-1.0.0-windows-amd64.app", universal)
    with pytest.raises(NotAnExecutableError, match="is a macOS app bundle, which Windows installs cannot take"):
        publish(store, [on_windows], options)
    no_plist = tmp_path / "n" / "app-1.0.0-darwin-arm64.app"
    (no_plist / "Contents" / "MacOS").mkdir(parents=True)
    (no_plist / "Contents" / "MacOS" / "app").write_bytes(universal)
    with pytest.raises(NotAnExecutableError, match=r"named as an app bundle but has no Contents/Info\.plist"):
        publish(store, [no_plist], options)

"""Which manifest key an install asks for: the binary's own CPU and the machine's native one.

Rosetta and Windows on ARM are injected as the strings and numbers those systems report
(``platform.machine()``, ``sysconfig.get_platform()``, sysctl values, ``IsWow64Process2``'s
machine codes); the real detectors run on each OS of the CI workflow and are checked there
against an independent source (the ``sysctl`` command, ``PROCESSOR_ARCHITECTURE``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gupper.client
from gupper import Status, Updater, UpdaterConfig
from gupper.platforms import (
    Platform,
    current_platform,
    darwin_native_arch,
    pick_key,
    platform_candidates,
    read_sysctl_int,
    windows_native_arch,
)

from .conftest import NOW, MakeManifest, entry, fake_app
from .httpsim import Sim

ARM64, AMD64 = 0xAA64, 0x8664


def sysctls(values: dict[str, int]) -> Callable[[str], int | None]:
    return values.get


def darwin(values: dict[str, int]) -> Callable[[str], str | None]:
    return lambda os_name: darwin_native_arch(sysctls(values)) if os_name == "darwin" else None


def windows(native_machine: int | None) -> Callable[[str], str | None]:
    return lambda os_name: windows_native_arch(lambda: None if native_machine is None else (0, native_machine))


@pytest.mark.parametrize(
    ("machine", "values", "expected"),
    [
        (
            "x86_64",
            {"sysctl.proc_translated": 1, "hw.optional.arm64": 1},
            ["darwin-arm64", "darwin-amd64"],
        ),  # x86_64 app under Rosetta
        (
            "x86_64",
            {"sysctl.proc_translated": 1},
            ["darwin-arm64", "darwin-amd64"],
        ),  # older macOS without hw.optional.arm64
        ("arm64", {"sysctl.proc_translated": 0, "hw.optional.arm64": 1}, ["darwin-arm64"]),  # native on Apple silicon
        ("x86_64", {"sysctl.proc_translated": 0, "hw.optional.arm64": 0}, ["darwin-amd64"]),  # an Intel Mac (macOS 11+)
        ("x86_64", {}, ["darwin-amd64"]),  # an Intel Mac before macOS 11: neither name exists
    ],
    ids=["rosetta", "rosetta-old-macos", "apple-silicon", "intel", "intel-old-macos"],
)
def test_macos_prefers_the_native_build_under_rosetta(
    machine: str, values: dict[str, int], expected: list[str]
) -> None:
    assert [p.key for p in platform_candidates("darwin", machine, native_arch=darwin(values))] == expected
    assert current_platform("darwin", machine).key == expected[-1]  # builds are named after the binary's own CPU


@pytest.mark.parametrize(
    ("machine", "interpreter", "native", "expected"),
    [
        (
            "ARM64",
            "win-amd64",
            ARM64,
            ["windows-arm64", "windows-amd64"],
        ),  # x64 app on Windows on ARM, Python 3.12+ reports the host
        ("AMD64", "win-amd64", ARM64, ["windows-arm64", "windows-amd64"]),  # same, Python 3.11 reports the emulated CPU
        ("ARM64", "win-arm64", ARM64, ["windows-arm64"]),  # native ARM64 build
        ("AMD64", "win-amd64", AMD64, ["windows-amd64"]),  # x64 on x64
        ("AMD64", "win-amd64", None, ["windows-amd64"]),  # Windows before 10 1709: no IsWow64Process2
    ],
    ids=["woa-x64-py312", "woa-x64-py311", "woa-native", "x64", "no-iswow64process2"],
)
def test_windows_on_arm_is_told_apart_from_the_binarys_own_cpu(
    machine: str, interpreter: str, native: int | None, expected: list[str]
) -> None:
    candidates = platform_candidates("win32", machine, interpreter, native_arch=windows(native))
    assert [p.key for p in candidates] == expected
    # The binary's own CPU comes from the interpreter's build, not platform.machine(): an x64 build
    # that Python 3.12 reports as "ARM64" is still named (and published) windows-amd64.
    assert current_platform("win32", machine, interpreter).key == expected[-1]


def test_a_32_bit_or_unknown_build_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unsupported platform win32/x86"):
        current_platform("win32", "AMD64", "win32")
    with pytest.raises(ValueError, match="unsupported platform linux/riscv64"):
        platform_candidates("linux", "riscv64")


def test_the_manifest_key_falls_back_to_the_binarys_own_build() -> None:
    rosetta = (Platform("darwin", "arm64"), Platform("darwin", "amd64"))
    assert pick_key({"darwin-arm64", "darwin-amd64"}, rosetta) == "darwin-arm64"
    assert pick_key({"darwin-amd64", "linux-amd64"}, rosetta) == "darwin-amd64"  # only x86_64 published: still updated
    assert pick_key({"linux-amd64"}, rosetta) == "darwin-arm64"  # neither: reported as no release for the native key


def test_sysctl_values_are_read_through_the_c_call() -> None:
    table = {b"sysctl.proc_translated": 1, b"hw.optional.arm64": 1}

    def sysctlbyname(name: bytes, value: Any, size: Any, new: None, new_size: int) -> int:
        if name not in table:
            return -1  # ENOENT: an unknown name (Intel Macs before macOS 11)
        assert size.contents.value >= 4 and new is None and new_size == 0
        ctypes.memmove(value, ctypes.byref(ctypes.c_int32(table[name])), 4)  # the kernel writes a 4-byte int
        size.contents.value = 4
        return 0

    assert read_sysctl_int(sysctlbyname, "sysctl.proc_translated") == 1
    assert read_sysctl_int(sysctlbyname, "hw.optional.arm64") == 1
    assert read_sysctl_int(sysctlbyname, "hw.optional.nothing") is None


@pytest.mark.skipif(sys.platform != "darwin", reason="the sysctl command exists on macOS only")
def test_the_real_macos_detector_agrees_with_the_sysctl_command() -> None:
    proc = subprocess.run(["sysctl", "-n", "hw.optional.arm64"], capture_output=True, text=True, check=False)
    apple_silicon = proc.returncode == 0 and proc.stdout.strip() == "1"
    assert darwin_native_arch() == ("arm64" if apple_silicon else None)
    assert platform_candidates()[0].arch == ("arm64" if apple_silicon else current_platform().arch)


@pytest.mark.skipif(sys.platform != "win32", reason="IsWow64Process2 exists on Windows only")
def test_the_real_windows_detector_agrees_with_the_os() -> None:
    # On a native (non-emulated) Python the process's architecture is the machine's.
    host = os.environ.get("PROCESSOR_ARCHITEW6432") or os.environ["PROCESSOR_ARCHITECTURE"]
    assert windows_native_arch() == {"AMD64": "amd64", "ARM64": "arm64"}[host.upper()]
    assert platform_candidates()[-1] == current_platform()


def test_on_this_machine_the_binarys_own_platform_is_the_last_candidate() -> None:
    candidates = platform_candidates()
    assert candidates[-1] == current_platform() and 1 <= len(candidates) <= 2


# --- the client asks for the native build under emulation, and falls back to its own ---

NEW = fake_app("2.0.0")


def _rosetta_updater(
    sim: Sim, tmp_path: Path, public_key: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Updater, Path]:
    rosetta = platform_candidates(
        "darwin", "x86_64", native_arch=darwin({"sysctl.proc_translated": 1, "hw.optional.arm64": 1})
    )
    monkeypatch.setattr(gupper.client, "platform_candidates", lambda: rosetta)  # what the detector says on that Mac
    exe = tmp_path / "install" / "app"
    exe.parent.mkdir()
    exe.write_bytes(b"#!/bin/sh\necho old\n")
    exe.chmod(0o755)
    cfg = UpdaterConfig(
        app="app",
        current_version="1.0.0",
        manifest_url=sim.url("/app/stable/latest.json"),
        public_keys=(public_key,),
        ca_bundle=sim.ca_path,
        executable=str(exe),
        retries=0,
        download_attempts=1,
        state_dir=str(tmp_path / "state"),
    )
    return Updater(cfg, clock=lambda: NOW, environ={}, argv=["app"]), exe


@pytest.mark.parametrize(
    "published", [("darwin-arm64", "darwin-amd64"), ("darwin-amd64",)], ids=["both", "x86_64-only"]
)
def test_an_x86_64_app_under_rosetta_takes_the_native_build_when_there_is_one(
    sim: Sim,
    tmp_path: Path,
    make_manifest: MakeManifest,
    keypair: tuple[Path, object, str],
    monkeypatch: pytest.MonkeyPatch,
    published: tuple[str, ...],
) -> None:
    platforms = {}
    for key in published:
        url = f"/app/2.0.0/app-2.0.0-{key}"
        sim.routes[url] = NEW
        platforms[key] = entry(
            "2.0.0", size=len(NEW), sha=hashlib.sha256(NEW).hexdigest(), url=f"../2.0.0/app-2.0.0-{key}"
        )
    sim.routes["/app/stable/latest.json"] = make_manifest(platforms=platforms)
    updater, _exe = _rosetta_updater(sim, tmp_path, keypair[2], monkeypatch)
    update = updater.check()
    assert update is not None and update.entry.platform == published[0]
    assert update.url.endswith(f"/app-2.0.0-{published[0]}")
    assert f"; {'darwin-arm64'})" in updater.fetch_config.user_agent


def test_no_build_for_either_cpu_is_no_update(
    sim: Sim,
    tmp_path: Path,
    make_manifest: MakeManifest,
    keypair: tuple[Path, object, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim.routes["/app/stable/latest.json"] = make_manifest(platforms={"linux-amd64": entry()})
    updater, exe = _rosetta_updater(sim, tmp_path, keypair[2], monkeypatch)
    result = updater.run(restart=False)
    assert result.status is Status.UP_TO_DATE and "no release for darwin-arm64" in result.message
    assert exe.read_bytes() == b"#!/bin/sh\necho old\n"

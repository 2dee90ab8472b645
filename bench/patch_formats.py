"""Choose the delta-patch format by measurement on real PyInstaller builds of the demo app.

``python bench/patch_formats.py`` builds the demo app as v1.0.0 and v2.0.0 (a one-line change:
the version constant) in two flavours, *reproducible* (``app/build.py``: ``PYTHONHASHSEED=0``)
and *default* (hash seed left random, as a plain ``pyinstaller`` call gives), then for each
patch format makes a v1→v2 patch and applies it, each in a fresh child process of the bench
tools venv (``.gupper/bench/tools-venv``, from ``bench/requirements.txt``), which reports its
own wall time and peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``). Prints a Markdown table and
rewrites the table block in ``docs/delta.md``.

Options: ``--repeat N`` (applies per cell, median; default 3), ``--rebuild-default`` (draw new
random-seed builds), ``--no-doc`` (print only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1 << 20
ZSTD_WINDOW_LOG = 26  # 64 MiB: covers old (the dictionary) + new for apps up to ~32 MiB

# --- worker side: runs in the tools venv; stdlib + the format's own library only -------------


def _rss_kib() -> int:
    """Peak RSS of this process in KiB: VmHWM (per address space, so it starts afresh at exec).

    Not ``getrusage().ru_maxrss``: Linux carries the parent's high-water mark across
    fork + exec, so a child of a big driver would report the driver's RSS.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _zstd_params(level: int, size: int) -> Any:
    import zstandard  # type: ignore[import-not-found,unused-ignore]

    if level >= 19:
        return zstandard.ZstdCompressionParameters.from_level(
            level, window_log=ZSTD_WINDOW_LOG, enable_ldm=True, source_size=size
        )
    # Lower levels size their match tables for the input only and miss most of a 25 MB
    # dictionary; tables as large as the window (what `zstd --patch-from` does) fix that.
    return zstandard.ZstdCompressionParameters.from_level(
        level,
        window_log=ZSTD_WINDOW_LOG,
        hash_log=ZSTD_WINDOW_LOG - 1,
        chain_log=ZSTD_WINDOW_LOG - 1,
        enable_ldm=True,
        source_size=size,
    )


def _make_zstd(level: int) -> Callable[[bytes, bytes], bytes]:
    def make(old: bytes, new: bytes) -> bytes:
        import zstandard  # type: ignore[import-not-found,unused-ignore]

        d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        return bytes(
            zstandard.ZstdCompressor(dict_data=d, compression_params=_zstd_params(level, len(new))).compress(new)
        )

    return make


def _make_bsdiff4(old: bytes, new: bytes) -> bytes:
    import bsdiff4  # type: ignore[import-not-found,unused-ignore]

    return bytes(bsdiff4.diff(old, new))


def _make_hdiff(compression: str) -> Callable[[bytes, bytes], bytes]:
    def make(old: bytes, new: bytes) -> bytes:
        import hdiffpatch  # type: ignore[import-not-found,unused-ignore]

        return bytes(hdiffpatch.diff(old, new, compression, validate=False))

    return make


def _apply_whole(fn_name: str) -> Callable[[Path, Path, Path], str]:
    """Apply with a bytes -> bytes API: old, patch and new are all in memory at once."""

    def apply(old_path: Path, patch_path: Path, out_path: Path) -> str:
        old, patch = old_path.read_bytes(), patch_path.read_bytes()
        if fn_name == "bsdiff4":
            import bsdiff4  # type: ignore[import-not-found,unused-ignore]

            new = bsdiff4.patch(old, patch)
        else:
            import hdiffpatch  # type: ignore[import-not-found,unused-ignore]

            new = hdiffpatch.apply(old, patch)
        out_path.write_bytes(new)
        return hashlib.sha256(new).hexdigest()

    return apply


def _apply_zstd_stream(old_path: Path, patch_path: Path, out_path: Path) -> str:
    """Streaming apply: the old file (the dictionary) in memory, patch and output in 1 MiB pieces."""
    import zstandard  # type: ignore[import-not-found,unused-ignore]

    d = zstandard.ZstdCompressionDict(old_path.read_bytes(), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    digest = hashlib.sha256()
    dctx = zstandard.ZstdDecompressor(dict_data=d, max_window_size=1 << ZSTD_WINDOW_LOG)
    with patch_path.open("rb") as src, out_path.open("wb") as out, dctx.stream_reader(src, read_size=CHUNK) as reader:
        for _ in range(1 << 20):  # bounded: 1 TiB of output at most
            chunk = reader.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _apply_bsdiff4_stream(old_path: Path, patch_path: Path, out_path: Path) -> str:
    """The client's own applier (updater/bspatch.py: standard library, 1 MiB pieces)."""
    sys.path.insert(0, str(ROOT))  # the worker runs in the tools venv, where the project is not installed
    from gupper.bspatch import apply_patch

    with patch_path.open("rb") as f:
        new_size = int.from_bytes(f.read(32)[24:32], "little")
    with out_path.open("wb") as out:
        return apply_patch(old_path, patch_path, out, new_size)


@dataclass(frozen=True)
class Format:
    name: str
    make: Callable[[bytes, bytes], bytes]
    apply: Callable[[Path, Path, Path], str]
    streams: str
    package: str
    same_patch_as: str = ""  # another format whose patch file (and make figures) this one reuses


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("bsdiff4", _make_bsdiff4, _apply_whole("bsdiff4"), "no: old, patch and new whole in memory", "bsdiff4"),
        Format(
            "bsdiff4, stdlib streaming apply",
            _make_bsdiff4,
            _apply_bsdiff4_stream,
            "yes: 1 MiB pieces, pure Python + stdlib bz2 (no client dependency)",
            "bz2",
            same_patch_as="bsdiff4",
        ),
        Format(
            "zstd-19 dict+LDM",
            _make_zstd(19),
            _apply_zstd_stream,
            "output and patch stream; old file (dictionary) in memory",
            "zstandard",
        ),
        Format(
            "zstd-9 dict+LDM",
            _make_zstd(9),
            _apply_zstd_stream,
            "output and patch stream; old file (dictionary) in memory",
            "zstandard",
        ),
        Format(
            "hdiffpatch zstd",
            _make_hdiff("zstd"),
            _apply_whole("hdiffpatch"),
            "no (Python API is bytes -> bytes)",
            "hdiffpatch",
        ),
        Format(
            "hdiffpatch lzma2",
            _make_hdiff("lzma2"),
            _apply_whole("hdiffpatch"),
            "no (Python API is bytes -> bytes)",
            "hdiffpatch",
        ),
    )
}


def worker(argv: list[str]) -> int:
    """``--worker make FORMAT OLD NEW PATCH`` or ``--worker apply FORMAT OLD PATCH OUT``: one JSON line."""
    mode, name, a, b, c = argv
    fmt = FORMATS[name]
    __import__(fmt.package)  # imports count in the baseline, not in the operation
    base = _rss_kib()
    if mode == "make":
        old, new = Path(a).read_bytes(), Path(b).read_bytes()
        t0 = time.perf_counter()
        patch = fmt.make(old, new)
        seconds = time.perf_counter() - t0
        Path(c).write_bytes(patch)
        result: dict[str, Any] = {"seconds": seconds, "size": len(patch)}
    else:
        t0 = time.perf_counter()
        sha = fmt.apply(Path(a), Path(b), Path(c))
        seconds = time.perf_counter() - t0
        result = {"seconds": seconds, "sha256": sha}
    result.update(base_rss_kib=base, peak_rss_kib=_rss_kib())
    print(json.dumps(result))
    return 0


# --- driver side: runs in the project's venv (the one that builds the app) ------------------


@dataclass
class Row:
    flavour: str
    fmt: str
    size: int
    make_s: float
    make_rss_mib: float
    apply_s: float
    apply_rss_mib: float
    base_rss_mib: float
    ok: bool


def _child(python: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--worker", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[:2]} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure(python: Path, flavour: str, old: Path, new: Path, work: Path, repeat: int) -> list[Row]:
    """Make and apply every format for one flavour's v1 -> v2 pair."""
    from bench.common import median

    want = hashlib.sha256(new.read_bytes()).hexdigest()
    rows = []
    made_by: dict[str, dict[str, Any]] = {}
    for fmt in FORMATS.values():
        slug = re.sub(r"[^a-z0-9]+", "-", (fmt.same_patch_as or fmt.name).lower())
        patch, out = work / f"{flavour}-{slug}.patch", work / f"{flavour}-{slug}.out"
        made = (
            made_by[fmt.same_patch_as]
            if fmt.same_patch_as
            else _child(python, "make", fmt.name, str(old), str(new), str(patch))
        )
        made_by[fmt.name] = made
        applies = [_child(python, "apply", fmt.name, str(old), str(patch), str(out)) for _ in range(repeat)]
        out.unlink(missing_ok=True)
        rows.append(
            Row(
                flavour,
                fmt.name,
                int(made["size"]),
                float(made["seconds"]),
                made["peak_rss_kib"] / 1024,
                median([float(a["seconds"]) for a in applies]),
                median([a["peak_rss_kib"] / 1024 for a in applies]),
                median([a["base_rss_kib"] / 1024 for a in applies]),
                all(a["sha256"] == want for a in applies),
            )
        )
        print(
            f"  {flavour:12} {fmt.name:18} {made['size']:>10} B  make {made['seconds']:.2f}s  "
            f"apply {rows[-1].apply_s:.3f}s",
            file=sys.stderr,
            flush=True,
        )
    return rows


def _human(n: int) -> str:
    return f"{n:,} B" if n < 10_000 else f"{n / 1000:,.1f} kB" if n < 10_000_000 else f"{n / 1e6:,.2f} MB"


def table(rows: list[Row], full_sizes: dict[str, int]) -> str:
    lines = [
        "| build flavour | format | patch size | % of full file | make (s) | make peak RSS (MiB) | apply (s, median) "
        "| apply peak RSS (MiB; Python + library alone) | apply streams? | result sha256 ok |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for flavour, full in full_sizes.items():
        lines.append(f"| {flavour} | *(full download)* | {_human(full)} | 100 % | - | - | - | - | - | - |")
        for r in (r for r in rows if r.flavour == flavour):
            pct = 100 * r.size / full
            lines.append(
                f"| {flavour} | {r.fmt} | {_human(r.size)} | {pct:.3f} % | {r.make_s:.2f} | {r.make_rss_mib:.0f} "
                f"| {r.apply_s:.3f} | {r.apply_rss_mib:.0f} ({r.base_rss_mib:.0f}) "
                f"| {FORMATS[r.fmt].streams} | {'yes' if r.ok else 'NO'} |"
            )
    return "\n".join(lines)


def dependency_table(python: Path) -> str:
    """Installed size of each format's package and a zlib estimate of what it adds to a one-file app."""
    code = r"""
import json, zlib
from importlib.metadata import distribution
out = {}
for name in ("bsdiff4", "zstandard", "hdiffpatch"):
    d = distribution(name)
    files = [f for f in d.files or [] if not str(f).endswith((".pyc", ".pyi"))]
    total = sum((f.locate().stat().st_size for f in files if f.locate().is_file()), 0)
    native = [f for f in files if str(f).endswith((".so", ".pyd"))]
    packed = sum(len(zlib.compress(f.locate().read_bytes(), 6)) for f in native)
    reqs = [r for r in (d.requires or []) if "extra ==" not in r]
    out[name] = {"version": d.version, "installed": total, "native": [str(f) for f in native],
                 "packed": packed, "requires": reqs}
print(json.dumps(out))
"""
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, timeout=120)
    info = json.loads(proc.stdout)
    lines = [
        "| package | version | installed size | native modules | zlib-packed native code "
        "(≈ added to a one-file app) | runtime deps |",
        "| --- | --- | ---: | --- | ---: | --- |",
    ]
    for name, i in info.items():
        natives = ", ".join(Path(n).name.split(".")[0] for n in i["native"])
        lines.append(
            f"| {name} | {i['version']} | {i['installed'] / 1e6:.2f} MB | {natives} | "
            f"{i['packed'] / 1e6:.2f} MB | {', '.join(i['requires']) or 'none'} |"
        )
    return "\n".join(lines)


def environment(python: Path) -> str:
    from bench.common import machine_summary, package_version

    versions = subprocess.run(
        [
            str(python),
            "-c",
            "import bsdiff4, zstandard, hdiffpatch; from importlib.metadata import version as v; "
            "print(f\"bsdiff4 {v('bsdiff4')}, zstandard {v('zstandard')} (libzstd "
            "{zstandard.ZSTD_VERSION}), hdiffpatch {v('hdiffpatch')}\")",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return f"{machine_summary()}; PyInstaller {package_version('pyinstaller')}; {versions}"


def replace_block(doc: Path, name: str, text: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``doc``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = doc.read_text()
    if start not in body or end not in body:
        raise SystemExit(f"{doc} has no {start} ... {end} block")
    head, rest = body.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return worker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--repeat", type=int, default=3, help="applies per cell (median); default 3")
    p.add_argument(
        "--rebuild-default", action="store_true", help="draw new random-seed builds instead of the cached ones"
    )
    p.add_argument("--no-doc", action="store_true", help="print only; leave docs/delta.md alone")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.common import CACHE, bench_key, build_default, build_reproducible, tools_python

    python = tools_python()
    _, public = bench_key()
    url = "https://updates.invalid/app/stable/latest.json"  # never fetched: the builds are only diffed
    out = CACHE / "patch-builds"
    work = CACHE / "patches"
    work.mkdir(parents=True, exist_ok=True)
    print(
        "building v1.0.0 and v2.0.0, reproducible and default flavours (cached after the first run)",
        file=sys.stderr,
        flush=True,
    )
    pairs = {
        "reproducible": [build_reproducible(v, url, [public], out / "reproducible") for v in ("1.0.0", "2.0.0")],
        "default": [
            build_default(v, url, [public], out / "default", rebuild=args.rebuild_default) for v in ("1.0.0", "2.0.0")
        ],
    }
    rows: list[Row] = []
    for flavour, (old, new) in pairs.items():
        rows += measure(python, flavour, old, new, work, max(1, args.repeat))
    full = {flavour: new.stat().st_size for flavour, (_, new) in pairs.items()}
    env = environment(python)
    result = (
        f"Machine: {env}.\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"by `python bench/patch_formats.py --repeat {args.repeat}`.\n\n"
    )
    result += (
        table(rows, full) + "\n\nClient dependency weight (same wheels, this platform):\n\n" + dependency_table(python)
    )
    print(result)
    if not args.no_doc:
        replace_block(ROOT / "docs" / "delta.md", "patch-table", result)
        print(f"\nwrote the table into {ROOT / 'docs' / 'delta.md'}", file=sys.stderr)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

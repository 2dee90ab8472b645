"""Fleet health at scale: ``gupper-publish stats`` over 10 million access-log lines, against ``wc -l``.

``python -m bench.scenario_logs`` (``--lines N`` for another count) writes the logs under
``.gupper/bench/logs/`` (never into git; made once, kept for the next run), then measures:

- ``wc -l`` over the same files (the floor: reading the bytes and finding the newlines);
- ``gupper-publish stats app --logs DIR --json``: wall time and peak memory (``/usr/bin/time``),
  over the first file alone (1 M lines) and over all of them, so the memory figure shows it does
  not grow with the logs;
- 1 M lines of each other format (S3 server access log, CloudFront gzip, RGW ops log);
- what a trial outcome report costs the app (``gupper.outcomes.report`` returning, and the wait
  for the GET at exit against a loopback HTTPS server).

It prints a Markdown table and writes it to ``bench/results-logs.md``. Loopback only; every
subprocess has a timeout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / ".gupper" / "bench" / "logs"
OUT = ROOT / "bench" / "results-logs.md"
PER_FILE = 1_000_000
START = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0")
PLATFORMS = ("linux-amd64", "windows-amd64", "darwin-arm64", "darwin-amd64")


def _request(rng: random.Random) -> tuple[str, int, int, str]:
    """One request of a fleet: (path, status, bytes, User-Agent), in the proportions of a quiet week."""
    version, platform = rng.choice(VERSIONS), rng.choice(PLATFORMS)
    ua = f"gupper-updater (app/{version}; {platform})"
    newer = VERSIONS[min(VERSIONS.index(version) + 1, len(VERSIONS) - 1)]
    exe = ".exe" if platform.startswith("windows") else ""
    r = rng.random()
    if r < 0.75:
        return "/releases/app/stable/latest.json", 304, 0, ua
    if r < 0.85:
        return "/releases/app/stable/latest.json", 200, 1448, ua
    if r < 0.88:
        return f"/releases/app/{newer}/app-{newer}-{platform}{exe}", 200, 21_480_000, ua
    if r < 0.93:
        return f"/releases/app/{newer}/patches/app-{newer}-{platform}{exe}.from-{version}.bsdiff4", 200, 612, ua
    if r < 0.97:
        outcome = rng.choices(("confirmed", "rolled-back", "preflight-failed"), (90, 8, 2))[0]
        return f"/releases/app/stable/outcomes/{version}/{platform}/{outcome}", 403, 243, ua
    if r < 0.985:
        return "/releases/other/stable/latest.json", 304, 0, "gupper-updater (other/2.0.0; linux-amd64)"
    return "/favicon.ico", 404, 153, "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0"


def _combined(t: float, path: str, status: int, sent: int, ua: str) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))
    return f'203.0.113.7 - - [{stamp}] "GET {path} HTTP/1.1" {status} {sent} "-" "{ua}"\n'


def _s3(t: float, path: str, status: int, sent: int, ua: str) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))
    key = path.removeprefix("/releases/")
    return (
        f"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be releases [{stamp}] 203.0.113.7 - "
        f'3E57427F3EXAMPLE REST.GET.OBJECT {key} "GET /{key} HTTP/1.1" {status} - {sent} {sent} 7 - "-" "{ua}" - '
        "s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= - "
        "TLS_AES_128_GCM_SHA256 - releases.s3.us-west-1.amazonaws.com TLSv1.3 - -\n"
    )


def _cloudfront(t: float, path: str, status: int, sent: int, ua: str) -> str:
    day, clock = time.strftime("%Y-%m-%d\t%H:%M:%S", time.gmtime(t)).split("\t")
    agent = ua.replace(" ", "%20")
    fields = [day, clock, "SEA19-C1", str(sent), "203.0.113.7", "GET", "d111111abcdef8.cloudfront.net", path]
    fields += [str(status), "-", agent, "-", "-", "Hit", "SOX4xwn4XV6Q4rgb7XiVGOHms==", "downloads.example.com"]
    fields += ["https", "170", "0.001", "-", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "Hit", "HTTP/1.1", "-", "-"]
    fields += ["11040", "0.001", "Hit", "application/json", str(sent), "-", "-"]
    return "\t".join(fields) + "\n"


def _rgw(t: float, path: str, status: int, sent: int, ua: str) -> str:
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc = {
        "bucket": "releases",
        "time": stamp,
        "time_local": stamp.replace("Z", "+0000"),
        "remote_addr": "203.0.113.7",
        "user": "anonymous",
        "operation": "get_obj",
        "uri": f"GET {path} HTTP/1.1",
        "http_status": str(status),
        "error_code": "",
        "bytes_sent": sent,
        "bytes_received": 0,
        "object_size": sent,
        "total_time": 1,
        "user_agent": ua,
        "referrer": "",
        "trans_id": "tx000003451a824e8a642a8-006b15fb9e-100f-default",
        "authentication_type": "Local",
        "temp_url": False,
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"


WRITERS: dict[str, tuple[Callable[[float, str, int, int, str], str], str]] = {
    "combined": (_combined, "access.log"),
    "s3": (_s3, "releases-2026-11-01"),
    "cloudfront": (_cloudfront, "E2EXAMPLE.2026-11-01.gz"),
    "rgw": (_rgw, "ops.log"),
}


def make_logs(fmt: str, lines: int) -> Path:
    """``lines`` lines of ``fmt`` in files of a million, under .gupper/bench/logs/<fmt>-<lines>/ (made once)."""
    folder = LOGS / f"{fmt}-{lines}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    write, name = WRITERS[fmt]
    rng = random.Random(7)
    pool = [_request(rng) for _ in range(20_000)]  # requests repeat, as in a real fleet: pick from a pool
    step = 30 * 86400 / lines  # a month of requests
    for n in range(0, lines, PER_FILE):
        path = folder / f"{name}.{n // PER_FILE:03d}"
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "wt") as out:
            if fmt == "cloudfront":
                out.write(
                    "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) "
                    "cs-uri-stem sc-status cs(Referer) cs(User-Agent)\n"
                )
            batch = []
            for i in range(n, min(n + PER_FILE, lines)):
                batch.append(write(START + i * step, *pool[rng.randrange(len(pool))]))
                if len(batch) == 100_000:
                    out.write("".join(batch))
                    batch.clear()
            out.write("".join(batch))
    done.touch()
    return folder


def timed(cmd: list[str], timeout: float = 1800) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and stdout of ``cmd`` (run under /usr/bin/time for the RSS)."""
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%M", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
        rss = report.read().split()[-1]
    return wall, int(rss), proc.stdout


def stats_cmd(folder: Path | str) -> list[str]:
    return [sys.executable, "-m", "gupper_publish", "stats", "app", "--logs", str(folder), "--json"]


def report_cost(samples: int = 200) -> tuple[float, float]:
    """Median microseconds for gupper.outcomes.report() to return, and milliseconds for the GET to
    finish (what an exiting process waits at most), against a loopback HTTPS server answering 404."""
    import trustme

    from gupper import Platform, UpdaterConfig
    from gupper.outcomes import Outcome, report
    from gupper.transfer import FetchConfig

    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        ca_path = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        cfg = UpdaterConfig(
            "app", "1.1.0", f"https://127.0.0.1:{server.server_address[1]}/app/stable/latest.json", ("x",)
        )
        fetch = FetchConfig(ca_bundle=str(ca_path), user_agent="gupper-updater (app/1.1.0; linux-amd64)")
        returned, finished = [], []
        for _ in range(samples):
            t0 = time.perf_counter()
            thread = report(cfg, fetch, Platform("linux", "amd64"), "1.1.0", Outcome.CONFIRMED)
            t1 = time.perf_counter()
            assert thread is not None
            thread.join(10)
            returned.append((t1 - t0) * 1e6)
            finished.append((time.perf_counter() - t0) * 1e3)
    server.shutdown()
    return statistics.median(returned), statistics.median(finished)


def main(argv: list[str] | None = None) -> int:
    """Make the logs if needed, measure, print and write bench/results-logs.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lines", type=int, default=10_000_000, help="lines of the combined-format logs")
    parser.add_argument("--other", type=int, default=PER_FILE, help="lines of each other format")
    args = parser.parse_args(argv)
    rows = []
    combined = make_logs("combined", args.lines)
    files = sorted(str(p) for p in combined.iterdir() if not p.name.startswith("."))
    size = sum(os.path.getsize(f) for f in files)
    wc = min(timed(["wc", "-l", *files])[0] for _ in range(3))
    wall, rss, out = timed(stats_cmd(combined))
    one_wall, one_rss, _ = timed(stats_cmd(files[0]))
    doc = json.loads(out)
    assert doc["logs"]["lines"] == args.lines, doc["logs"]
    rows.append(
        f"| combined (nginx), {args.lines:,} lines, {size / 2**30:.2f} GiB, {len(files)} files | {wall:.1f} s "
        f"({args.lines / wall / 1e6:.2f} M lines/s) | {rss / 1024:.1f} MiB (1 M lines: {one_rss / 1024:.1f} MiB, "
        f"{one_wall:.1f} s) | {wc:.2f} s | {wall / wc:.0f}x |"
    )
    for fmt in ("s3", "cloudfront", "rgw"):
        folder = make_logs(fmt, args.other)
        fmt_files = [str(p) for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
        reader = (
            ["sh", "-c", "zcat " + " ".join(fmt_files) + " | wc -l"]
            if fmt == "cloudfront"
            else ["wc", "-l", *fmt_files]
        )
        floor = min(timed(reader)[0] for _ in range(3))
        f_wall, f_rss, _ = timed(stats_cmd(folder))
        what = "zcat | wc -l" if fmt == "cloudfront" else "wc -l"
        rows.append(
            f"| {fmt}, {args.other:,} lines | {f_wall:.1f} s ({args.other / f_wall / 1e6:.2f} M lines/s) | "
            f"{f_rss / 1024:.1f} MiB | {floor:.2f} s ({what}) | {f_wall / floor:.0f}x |"
        )
    returned_us, finished_ms = report_cost()
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            "# Fleet health at scale (bench/scenario_logs.py)",
            "",
            f"`python -m bench.scenario_logs` on {os.cpu_count()} CPUs, 1-minute load {load:.1f} at the end; "
            "`gupper-publish stats app --logs DIR --json`, wall time and peak RSS from `/usr/bin/time`.",
            "",
            "| logs | stats | peak memory | floor | stats / floor |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"Trial outcome report: `gupper.outcomes.report()` returns in {returned_us:.0f} us (median of 200; "
            f"it starts a thread); the GET itself, a fresh TLS connection to a loopback HTTPS server answering 404, "
            f"ends {finished_ms:.1f} ms later: what a process exiting right after `confirm()` waits.",
            "",
        ]
    )
    print(text)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Access logs: the four formats parsed line by line, logs read as bounded streams, the app's requests counted.

``tests/data/logs`` holds real lines: ``nginx-combined.log`` written by Debian's nginx 1.22 and
``rgw-ops.log`` by Ceph RGW 16.2 (its ops log) in front of a fleet of Gupper clients
(tests/test_fleet.py). The S3 and CloudFront lines are written from AWS's field lists (there is no
AWS here); the fleet test runs the parsers over whole real logs.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from pathlib import Path

import pytest

from gupper_publish.accesslog import Hit, clf_time, detect, parse_combined, parse_rgw, parse_s3, parser_for, rgw_records
from gupper_publish.cli import main
from gupper_publish.errors import AccessLogError
from gupper_publish.fleet import MAX_BUCKETS, FleetStats, wilson
from gupper_publish.logsource import PIECE, ReadCounts, _pieces, log_objects, read_hits, split_lines

DATA = Path(__file__).parent / "data" / "logs"
UA = "gupper-updater (app/1.0.0; linux-amd64)"

S3_LINE = (
    "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be releases [06/Dec/2026:09:15:02 +0000] "
    "192.0.2.3 - 3E57427F3EXAMPLE REST.GET.OBJECT app/stable/outcomes/2.0.0%2Blocal/windows-amd64/rolled-back "
    '"GET /app/stable/outcomes/2.0.0%2Blocal/windows-amd64/rolled-back HTTP/1.1" 403 AccessDenied 243 - 7 - "-" '
    '"gupper-updater (app/2.0.0+local; windows-amd64)" - s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTP'
    "FvsiP/XV/VLi31234= - ECDHE-RSA-AES128-GCM-SHA256 - releases.s3.us-west-1.amazonaws.com TLSv1.2 - -"
)
CLOUDFRONT = (
    "#Version: 1.0\n"
    "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) "
    "cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol "
    "cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version "
    "fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type "
    "sc-content-len sc-range-start sc-range-end\n"
    + (
        "2026-12-06 09:15:02 SEA19-C1 1856 192.0.2.100 GET d111111abcdef8.cloudfront.net /app/stable/latest.json "
        "304 - gupper-updater%20(app/1.0.0;%20darwin-arm64) - - Hit SOX4xwn4XV6Q4rgb7XiVGOHms== downloads.example.com "
        "https 170 0.000 - TLSv1.3 TLS_AES_128_GCM_SHA256 Hit HTTP/1.1 - - 11040 0.000 Hit application/json 0 - -"
    ).replace(" ", "\t")
    + "\n"
)


def test_real_nginx_lines_parse() -> None:
    lines = (DATA / "nginx-combined.log").read_text().splitlines()
    assert all(detect(line) == "combined" for line in lines)
    first = parse_combined(lines[0])
    assert first == Hit(clf_time("07/Dec/2026:00:34:17 +0000"), "GET", "/gupper/app/stable/latest.json", 200, 1448, UA)
    assert clf_time("07/Dec/2026:00:34:17 +0000") == 1796603657.0
    assert clf_time("07/Dec/2026:01:34:17 +0100") == clf_time("07/Dec/2026:00:34:17 +0000")
    escaped = parse_combined('::1 - - [07/Dec/2026:00:34:17 +0000] "GET /x HTTP/1.1" 200 - "-" "say \\"hi\\x22"')
    assert escaped is not None and escaped.user_agent == 'say "hi"'  # Apache's and nginx's escapes
    assert parse_combined("garbage") is None
    # A tail seen before (request, status, bytes, referrer, agent) is not parsed again: the time still is.
    later = lines[0].replace("00:34:17", "00:35:17")
    assert parse_combined(later) == first._replace(time=first.time + 60) and parse_combined(lines[0]) == first
    with pytest.raises(ValueError, match="not a log time"):
        parse_combined(lines[0].replace("[07/Dec/2026:00:34:17 +0000]", "[yesterday]"))


def test_real_rgw_lines_parse_including_entries_written_back_to_back() -> None:
    lines = (DATA / "rgw-ops.log").read_text().splitlines()
    assert all(detect(line) == "rgw" for line in lines)
    hit = parse_rgw(lines[0])
    assert hit is not None and (hit.method, hit.path, hit.status, hit.user_agent) == (
        "GET",
        "/gupper/app/stable/latest.json",
        200,
        UA,
    )
    joined = lines[-1]  # RGW 16.2 wrote two requests that ended together as one line: {...}{...}
    records = rgw_records(joined)
    assert len(records) == 2 and "".join(records) == joined
    assert [parse_rgw(r) is not None for r in records] == [True, True]
    assert rgw_records('{"a": 1} {"b": 2}junk') == ['{"a": 1}', '{"b": 2}', "junk"]


def test_s3_server_access_log_line() -> None:
    assert detect(S3_LINE) == "s3"
    hit = parse_s3(S3_LINE)
    assert hit == Hit(
        clf_time("06/Dec/2026:09:15:02 +0000"),
        "GET",
        "app/stable/outcomes/2.0.0+local/windows-amd64/rolled-back",  # the key, decoded, without the bucket
        403,
        243,
        "gupper-updater (app/2.0.0+local; windows-amd64)",
    )
    head = S3_LINE.replace("REST.GET.OBJECT", "REST.HEAD.OBJECT")
    assert parse_s3(head) is not None and parse_s3(head).method == "HEAD"  # type: ignore[union-attr]


def test_cloudfront_standard_log_by_its_fields_line() -> None:
    header, fields, row = CLOUDFRONT.splitlines()
    assert detect(header) == "cloudfront"
    parse = parser_for("cloudfront")
    assert parse(header) is None and parse(fields) is None
    assert parse(row) == Hit(
        clf_time("06/Dec/2026:09:15:02 +0000"),
        "GET",
        "/app/stable/latest.json",
        304,
        1856,
        "gupper-updater (app/1.0.0; darwin-arm64)",
    )
    # Another order of columns, and an older log's User-Agent encoded twice.
    parse("#Fields: cs-uri-stem sc-status cs(User-Agent) cs-method sc-bytes time date")
    twice = parse("/a/b\t200\tgupper-updater%2520(app/1.0.0;%2520linux-amd64)\tGET\t12\t01:02:03\t2026-12-06")
    assert twice is not None and twice.user_agent == UA and twice.path == "/a/b"
    with pytest.raises(ValueError, match="without date"):
        parse("#Fields: time cs-uri-stem")


def test_unknown_lines_are_not_a_format() -> None:
    for line in ("hello", "2026/12/07 00:00:00 [warn] 1#1: an nginx error log line", '{"no": "uri"}'):
        assert detect(line) is None


def read(tmp_path: Path, name: str, data: bytes, **kw: object) -> tuple[list[Hit], ReadCounts]:
    path = tmp_path / name
    path.write_bytes(data)
    counts = ReadCounts()
    return [hit for hit in read_hits(log_objects(str(path)), counts, **kw)], counts  # type: ignore[arg-type]


def test_lines_are_split_in_bounded_pieces_and_overlong_ones_dropped() -> None:
    counts = ReadCounts()
    pieces = [b"one\r\ntw", b"o\n" + b"x" * 50, b"y" * 60 + b"\nthree", b"\n" + b"z" * 200]
    assert list(split_lines(iter(pieces), counts, max_line=100)) == [b"one", b"two", b"three"]
    assert counts.too_long == 2


class Trickle(io.RawIOBase):
    """A stream that answers each read with at most 7 bytes, as a network stream may."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        out, self.data = self.data[:7], self.data[7:]
        return out


def test_gzip_is_read_a_piece_at_a_time_member_after_member() -> None:
    bomb = gzip.compress(b"\0" * (8 * PIECE))  # 8 MiB of zeros in 8 kB
    sizes = [len(p) for p in _pieces(io.BytesIO(bomb + gzip.compress(b"tail\n")))]
    assert max(sizes) <= PIECE and sum(sizes) == 8 * PIECE + 5
    with pytest.raises(zlib.error, match="ends inside a member"):
        list(_pieces(io.BytesIO(gzip.compress(b"abc\n" * 1000)[:-12])))
    split = gzip.compress(b"one\n") + gzip.compress(b"two\n") + b"\0"  # a member starts across reads; junk after
    assert b"".join(_pieces(Trickle(split))) == b"one\ntwo\n"  # type: ignore[arg-type]


def test_a_folder_of_logs_gzip_and_a_non_log_beside(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "access.log.1.gz").write_bytes(gzip.compress((DATA / "nginx-combined.log").read_bytes()))
    (folder / "error.log").write_text("2026/12/07 00:00:00 [warn] 1#1: not an access log\n")
    (folder / ".hidden").write_text("ignored\n")
    counts = ReadCounts()
    hits = [h for h in read_hits(log_objects(str(folder)), counts, needle=b"app/")]
    assert len(hits) == 14 and counts.formats == {"combined": 1} and counts.logs == 1
    (skipped,) = counts.skipped
    assert skipped.startswith(f"{folder / 'error.log'}: not an access log of a known format (first line b'2026/12/07")


def test_logs_last_written_before_since_are_not_opened(tmp_path: Path) -> None:
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    for path in (old, new):
        path.write_bytes((DATA / "nginx-combined.log").read_bytes())
    os.utime(old, (1_700_000_000, 1_700_000_000))
    assert [o.name for o in log_objects(str(tmp_path), since=1_750_000_000)] == [str(new)]
    with pytest.raises(AccessLogError, match="no log at"):
        log_objects(str(tmp_path / "missing"))


def test_a_given_format_is_used_and_lines_it_does_not_parse_are_counted(tmp_path: Path) -> None:
    data = (DATA / "nginx-combined.log").read_bytes() + b"this is not a request\n\n"
    hits, counts = read(tmp_path, "a.log", data, fmt="combined")
    assert len(hits) == 14 and counts.unparsed == 1 and counts.formats == {"combined": 1}
    with pytest.raises(AccessLogError, match="unknown log format"):
        read(tmp_path, "b.log", data, fmt="w3c")


def stats_of(name: str) -> FleetStats:
    counts = ReadCounts()
    return FleetStats("app").add_all(read_hits(log_objects(str(DATA / name)), counts))


@pytest.mark.parametrize("name", ["nginx-combined.log", "rgw-ops.log"])
def test_real_lines_counted_per_channel_version_and_platform(name: str) -> None:
    doc = stats_of(name).to_json()
    rgw = name.startswith("rgw")  # its sample holds one more check and patch, in the line written back to back
    stable = doc["channels"]["stable"]
    assert stable["checks_per_day"] == {"2026-12-07": {"200": 3 if rgw else 2, "304": 2, "other": 0}}
    assert stable["versions"]["1.0.0"]["checks"] == {"200": 3 if rgw else 2, "304": 0, "other": 0}
    v = stable["versions"]["1.1.0"]
    assert (v["confirmed"], v["rolled-back"], v["preflight-failed"], v["trials"]) == (2, 2, 1, 5)
    low, high = wilson(2, 5)
    assert v["rollback_rate"] == {"rate": 0.4, "low": low, "high": high, "confidence": 0.95}
    assert v["platforms"]["linux-amd64"]["trials"] == 5
    assert stable["versions"]["1.2.0"]["confirmed"] == 1
    downloads = doc["downloads"]
    assert downloads["1.2.0"]["linux-amd64"] == {
        "full": 2,
        "resumed": 0,
        "full_bytes": 2 * 32946,
        "patches": 1,
        "patch_bytes": 168,
        "size": 32946,
        "bytes_saved": 32946 - 168,
    }
    assert downloads["1.1.0"]["linux-amd64"]["patches"] == (2 if rgw else 1)
    assert downloads["1.1.0"]["linux-amd64"]["bytes_saved"] is None  # no whole 1.1.0 seen: its size is unknown


def test_wilson_interval() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(12, 60)
    assert round(low, 4) == 0.1183 and round(high, 4) == 0.3178  # 20 % of 60
    assert wilson(0, 50)[0] == 0.0 and round(wilson(0, 50)[1], 4) == 0.0713


def hit(path: str, *, t: float = 1_796_600_000.0, status: int = 200, ua: str = UA, sent: int = 10) -> Hit:
    return Hit(t, "GET", path, status, sent, ua)


def test_what_counts_and_what_does_not() -> None:
    stats = FleetStats("app")
    stats.add(hit("/b/app/stable/latest.json", ua="Mozilla/5.0"))  # the app's path, not its updater
    stats.add(hit("/b/other/stable/latest.json", ua="gupper-updater (other/1.0.0; linux-amd64)"))
    stats.add(Hit(1.0, "HEAD", "/app/stable/latest.json", 200, 0, UA))
    stats.add(hit("/app/1.0.0/not-a-release"))
    stats.add(hit("/app/stable/outcomes/1.0.0/linux-amd64/exploded"))
    stats.add(hit("/app/2.0.0/app-2.0.0-windows-amd64.exe", status=206, sent=5))
    stats.add(hit("/app/2.0.0/patches/app-2.0.0-linux-amd64.from-1.0.0.files.json", sent=7))
    stats.add(hit("/app/2.0.0/patches/files/aa-bb.bsdiff4", sent=3))
    stats.add(hit("/app/2.0.0/files/sha256/cc", sent=4))
    stats.add(hit("/app/2.0.0/files/app-2.0.0-linux-amd64.json.gz", sent=6))
    stats.add(hit("/app/beta/latest.json", status=503))
    doc = stats.to_json()
    assert doc["ignored"] == 1 and doc["requests"] == 6
    assert doc["downloads"]["2.0.0"]["windows-amd64"]["resumed"] == 1
    assert doc["downloads"]["2.0.0"]["linux-amd64"]["patches"] == 1
    assert doc["downloads"]["2.0.0"]["linux-amd64"]["patch_bytes"] == 7 + 3 + 4 + 6
    assert doc["channels"]["beta"]["checks_per_day"] == {"2026-12-06": {"200": 0, "304": 0, "other": 1}}
    since = FleetStats("app", since=1_796_600_000.5)
    since.add(hit("/app/stable/latest.json"))
    assert since.counted == 0


def test_the_time_series_stays_bounded() -> None:
    stats = FleetStats("app")
    for i in range(0, 40 * 86400, 97):  # 40 days, a check every 97 s
        stats.add(hit("/app/stable/latest.json", t=1_796_600_000.0 + i))
    assert len(stats._buckets) <= MAX_BUCKETS and stats.step == 3600
    assert sum(stats.check_series.values()) == len(range(0, 40 * 86400, 97))


def test_stats_command_prints_tables_json_and_pictures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = str(DATA / "nginx-combined.log")
    assert (
        main(["stats", "app", "--logs", logs, "--svg", str(tmp_path / "r.svg"), "--html", str(tmp_path / "r.html")])
        == 0
    )
    out = capsys.readouterr().out
    assert "stable   1.1.0" in out and "40.0% (11.8%-76.9%)" in out
    assert (tmp_path / "r.svg").read_text().startswith("<svg") and "<svg" in (tmp_path / "r.html").read_text()
    assert main(["stats", "app", "--logs", logs, "--json", "--since", "2026-12-07T00:34:30Z"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["since"] == "2026-12-07T00:34:30Z" and list(doc["downloads"]) == ["1.2.0"]
    assert main(["stats", "app"]) == 1
    assert "no access logs: pass --logs" in capsys.readouterr().err
    assert main(["stats", "app", "--logs", str(tmp_path / "r.svg")]) == 1
    assert "no access log among the logs given" in capsys.readouterr().err
    assert main(["stats", "app", "--logs", logs, "--since", "yesterday"]) == 1
    assert "--since 'yesterday': give a UTC date" in capsys.readouterr().err

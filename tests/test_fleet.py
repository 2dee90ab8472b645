"""A fleet of 200 installs updating through nginx in front of the local store, and through Ceph RGW with
its ops log on: a release that crashes on a quarter of them is halted by ``gupper-publish advance``
from the server's access log alone; a good release then advances to 100 %.

Every start of every install is a real process running the Gupper client (tests/fleet.py), on
127.0.0.1 only. What each start did is written down by the start itself (``starts.jsonl``), and the
statistics read from the logs must say exactly that: checks, downloads and patches, trial
outcomes. The parsers meet real lines here, written by nginx (combined format, set by the test),
and by RGW (its ops log), read from a file, a folder with gzip and a non-log beside, and from
``s3://``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gupper_infra.client import start_local_store
from gupper_infra.tls import TLSFiles
from gupper_publish.signing import keygen

from .fleet import Spec, release_script
from .nginx_support import INSTALL_HINT, nginx_binary, reverse_proxy
from .rgw_support import CephRGW, rgw_cluster

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
INSTALLS = 200
CRASH, NO_SELF_TEST = "crash", "noself"
PLAN = ["--plan", "30%,100%", "--every", "0s", "--halt-if", "rollback-rate>5%", "--min-trials", "20"]


def trait(i: int) -> str:
    """A quarter of the machines have what 1.1.0 crashes on, one in ten what its self-test fails on
    (20 machines: at 30 %, none of them in the cohort has a chance of 0.7 ** 20, under 0.1 %)."""
    return CRASH if i % 20 < 5 else NO_SELF_TEST if i % 10 == 5 else ""


@dataclass
class Server:
    """Where the fleet gets its updates and where the publisher writes, and the server's access log."""

    manifest_url: str
    ca: str
    store: str
    env: dict[str, str]
    log: Path
    key: Path
    work: Path
    public_key: str
    cli_runs: list[str] = field(default_factory=list)

    def cli(self, *args: str) -> str:
        """``gupper-publish`` as a user or a cron job runs it; its stdout."""
        proc = subprocess.run(
            [sys.executable, "-m", "gupper_publish", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=self.work,
        )
        assert proc.returncode == 0, f"gupper-publish {' '.join(args)}: {proc.stderr}"
        self.cli_runs.append(proc.stdout)
        return proc.stdout

    def publish(self, version: str, script: bytes, *extra: str) -> None:
        path = self.work / f"app-{version}-linux-amd64"
        path.write_bytes(script)
        path.chmod(0o755)
        self.cli("publish", str(path), "--store", self.store, "--key", str(self.key), "--force", *extra)

    def stats(self, *args: str, logs: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(
            self.cli("stats", "app", "--logs", logs or str(self.log), "--store", self.store, "--json", *args)
        )
        return doc

    def advance(self) -> str:
        return self.cli("advance", "app", "--logs", str(self.log), "--store", self.store, "--key", str(self.key))


class Fleet:
    """The installs (folders) and their starts, run by tests/fleet.py."""

    def __init__(self, base: Path, server: Server) -> None:
        self.base, self.server = base, server
        self.installs = [(str(base / f"install-{i:03d}"), trait(i)) for i in range(INSTALLS)]

    def install(self, script: bytes) -> None:
        for folder, _ in self.installs:
            (Path(folder) / "state").mkdir(parents=True)
            (Path(folder) / "app").write_bytes(script)
            (Path(folder) / "app").chmod(0o755)

    def round(self) -> dict[str, int]:
        """Start every install until it settles; the tally of how starts ended."""
        spec = Spec("app", self.server.manifest_url, self.server.public_key, self.server.ca, self.installs)
        spec_file = self.base / "spec.json"
        spec_file.write_text(json.dumps(spec.__dict__))
        proc = subprocess.run(
            [sys.executable, "-m", "tests.fleet", str(spec_file)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        tally: dict[str, int] = json.loads(proc.stdout)
        return tally

    def starts(self, after: dict[int, int] | None = None) -> list[tuple[int, dict[str, Any]]]:
        """Every start so far (after the first ``after[i]`` of install ``i``), as the start recorded
        it: (install number, record)."""
        out = []
        for i, (folder, _) in enumerate(self.installs):
            path = Path(folder) / "starts.jsonl"
            if path.exists():
                lines = path.read_text().splitlines()[(after or {}).get(i, 0) :]
                out += [(i, json.loads(line)) for line in lines]
        return out

    def versions(self) -> list[str]:
        """The version each install has now."""
        return [subprocess.check_output([f"{f}/app", "--version"], text=True).strip() for f, _ in self.installs]


def truth(starts: list[tuple[int, dict[str, Any]]], version: str) -> dict[str, int]:
    """What the starts themselves say happened to ``version``'s trials."""
    ran_fine = {i for i, s in starts if s["version"] == version and s["status"] == "up-to-date" and not s["crashed"]}
    return {
        "confirmed": len(ran_fine),
        "rolled-back": sum(1 for _, s in starts if s["version"] == version and s["status"] == "rolled-back"),
        "preflight-failed": sum(
            1
            for _, s in starts
            if s["status"] == "failed" and f"new version {version} failed its self-test" in s["message"]
        ),
        "installed": sum(
            1 for _, s in starts if s["status"] == "installed" and f"installed {version};" in s["message"]
        ),
    }


def checks(starts: list[tuple[int, dict[str, Any]]]) -> int:
    """Starts that fetched the manifest: all but those that rolled back (they restart instead)."""
    return sum(1 for _, s in starts if s["status"] in ("up-to-date", "installed", "failed"))


def wait_for(log: Path, needle: str, count: int) -> None:
    """Until ``log`` holds ``count`` lines with ``needle`` (a server writes its line after it answered)."""
    deadline = time.monotonic() + 20
    while (found := log.read_text().count(needle) if log.exists() else 0) < count:
        assert time.monotonic() < deadline, f"{log} has {found} lines with {needle!r}, expected {count}"
        time.sleep(0.05)  # the server's own writes: nothing to wait on but the file


def outcome_counts(doc: dict[str, Any], version: str) -> dict[str, int]:
    v = doc["channels"]["stable"]["versions"][version]
    return {k: v[k] for k in ("confirmed", "rolled-back", "preflight-failed")}


def the_story(server: Server, fleet: Fleet) -> dict[str, Any]:
    """1.0.0 everywhere; 1.1.0 crashes on a quarter of the machines and is halted; 1.2.0 advances to 100 %."""
    v1, bad, good = (
        release_script("1.0.0"),
        release_script("1.1.0", crash_on=CRASH, refuse_self_test_on=NO_SELF_TEST),
        release_script("1.2.0"),
    )
    server.publish("1.0.0", v1)
    fleet.install(v1)
    server.publish("1.1.0", bad, "--rollout", "0", "--patches", "1")
    server.cli("rollout", "app", "1.1.0", *PLAN, "--store", server.store, "--key", str(server.key))
    assert " wait app/stable 1.1.0 at 30%: 0 trial(s) since " in server.advance()

    first = fleet.round()
    starts = fleet.starts()
    want = truth(starts, "1.1.0")
    assert want["rolled-back"] >= 5 and want["confirmed"] >= 20, want
    reports = want["confirmed"] + want["rolled-back"] + want["preflight-failed"]
    wait_for(server.log, "/outcomes/1.1.0/", reports)
    halted = server.advance()
    m = re.search(
        r" halt app/stable 1\.1\.0 at 30%: rollback-rate [\d.]+% \(95% CI [\d.]+%-[\d.]+%\) > 5%; (\d+) trial\(s\) "
        r"since \S+ \(confirmed (\d+), rolled back (\d+), pre-flight failed (\d+)\)",
        halted,
    )
    assert m is not None, halted
    trials, confirmed, rolled, refused = map(int, m.groups())
    assert (confirmed, rolled, refused) == (want["confirmed"], want["rolled-back"], want["preflight-failed"])
    assert trials == confirmed + rolled + refused
    listing = json.loads(server.cli("list", "app", "--store", server.store, "--json"))
    stable = listing["apps"]["app"]["channels"]["stable"]
    assert stable["platforms"]["linux-amd64"]["rollout"]["percent"] == 0
    after_bad = fleet.versions()
    assert after_bad.count("1.1.0") == want["confirmed"]
    assert all(v == "1.0.0" for v, (_, t) in zip(after_bad, fleet.installs, strict=True) if t == CRASH)

    server.publish("1.2.0", good, "--rollout", "0", "--patches", "1")
    server.cli("rollout", "app", "1.2.0", *PLAN, "--store", server.store, "--key", str(server.key))
    seen = {i: sum(1 for j, _ in starts if j == i) for i in range(INSTALLS)}
    fleet.round()
    starts = fleet.starts()
    assert truth(fleet.starts(after=seen), "1.1.0")["installed"] == 0, "a halted release reached new installs"
    cohort = truth(starts, "1.2.0")
    wait_for(server.log, "/outcomes/1.2.0/", cohort["confirmed"])
    assert " advance app/stable 1.2.0 30% -> 100%: " in server.advance()
    fleet.round()
    assert "nothing to advance" in server.advance()
    assert fleet.versions() == ["1.2.0"] * INSTALLS
    starts = fleet.starts()
    assert not [s for _, s in starts if s["status"] in ("error", "unsettled")], [s for _, s in starts if s["status"]]
    wait_for(server.log, "/outcomes/1.2.0/", INSTALLS)
    return {"first": first, "starts": starts, "after_bad": after_bad}


def check_stats(server: Server, story: dict[str, Any], doc: dict[str, Any]) -> None:
    """The statistics from the log alone say what the starts themselves recorded."""
    starts = story["starts"]
    assert outcome_counts(doc, "1.1.0") == {
        k: truth(starts, "1.1.0")[k] for k in ("confirmed", "rolled-back", "preflight-failed")
    }
    assert outcome_counts(doc, "1.2.0") == {"confirmed": INSTALLS, "rolled-back": 0, "preflight-failed": 0}
    total_checks = sum(sum(day.values()) for day in doc["channels"]["stable"]["checks_per_day"].values())
    assert total_checks == checks(starts)
    assert doc["channels"]["stable"]["versions"]["1.1.0"]["rollout"]["status"] == "halted"
    assert doc["channels"]["stable"]["versions"]["1.2.0"]["rollout"]["plan"]["state"] == "done"
    # 1.2.0 came as a patch to those on 1.1.0 (patches from the previous release only), whole to the others.
    d = doc["downloads"]["1.2.0"]["linux-amd64"]
    on_bad = story["after_bad"].count("1.1.0")
    assert (d["patches"], d["full"]) == (on_bad, INSTALLS - on_bad)
    assert d["size"] == len(release_script("1.2.0")) and d["bytes_saved"] > on_bad * d["size"] * 0.9
    d = doc["downloads"]["1.1.0"]["linux-amd64"]
    assert d["patches"] == truth(starts, "1.1.0")["installed"] + truth(starts, "1.1.0")["preflight-failed"]
    for version in ("1.0.0", "1.1.0", "1.2.0"):  # the User-Agent's version: the one checking
        by_version = sum(doc["channels"]["stable"]["versions"][version]["checks"].values())
        assert by_version == checks([(i, s) for i, s in starts if s["version"] == version])


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    key_path, _pub, public = keygen(tmp_path / "keys" / "release")
    return key_path, public.to_text()


def test_a_fleet_through_nginx_halts_a_crashing_release_and_completes_a_good_one(
    tmp_path: Path, key: tuple[Path, str]
) -> None:
    if nginx_binary() is None:
        pytest.skip(f"nginx is not installed: {INSTALL_HINT}")
    with start_local_store(tmp_path / "store") as store:
        tls = TLSFiles.in_dir(store.state_dir)
        upstream = store.public_base.rsplit("/", 1)[0]
        with reverse_proxy(
            tmp_path / "nginx", upstream, ca=store.ca, cert=str(tls.server_cert), key=str(tls.server_key)
        ) as nginx:
            server = Server(
                manifest_url=f"{nginx.base}/{store.bucket}/app/stable/latest.json",
                ca=store.ca,
                store=f"s3://{store.bucket}",
                env=store.s3_env(),
                log=nginx.access_log,
                key=key[0],
                work=tmp_path,
                public_key=key[1],
            )
            story = the_story(server, Fleet(tmp_path / "fleet", server))
            doc = server.stats(
                "--svg", str(tmp_path / "fleet-report.svg"), "--html", str(tmp_path / "fleet-report.html")
            )
            table = server.cli("stats", "app", "--logs", str(server.log), "--store", server.store)
        check_stats(server, story, doc)
        (tmp_path / "fleet-report.txt").write_text(table)  # README "Fleet health" shows these
        (tmp_path / "fleet-report.json").write_text(json.dumps(doc, indent=2))
        assert re.search(r"stable +1\.1\.0 +halted \(plan 30%,100%: halted\)", table), table
        # The same log gzipped, in a folder beside nginx's error log (not an access log: skipped, named).
        logs = tmp_path / "logs"
        logs.mkdir()
        with gzip.open(logs / "access.log.1.gz", "wb") as out:
            out.write(nginx.access_log.read_bytes())
        shutil.copy(tmp_path / "nginx" / "error.log", logs / "error.log")
        with (logs / "error.log").open("a") as f:
            f.write("2026/12/07 00:00:00 [warn] 1#1: a line so that it is not empty\n")
        again = server.stats(logs=str(logs))
        assert {k: v for k, v in again.items() if k != "logs"} == {k: v for k, v in doc.items() if k != "logs"}
        assert again["logs"]["formats"] == {"combined": 1} and again["logs"]["skipped"][0].startswith(
            str(logs / "error.log")
        )


@pytest.fixture
def rgw(tmp_path: Path) -> Iterator[CephRGW]:
    yield from rgw_cluster(tmp_path / "rgw", ops_log=True)


@pytest.mark.rgw
def test_a_fleet_through_ceph_rgw_halts_a_crashing_release_and_completes_a_good_one(
    tmp_path: Path, key: tuple[Path, str], rgw: CephRGW
) -> None:
    assert rgw.ops_log is not None
    server = Server(
        manifest_url=rgw.url("app/stable/latest.json"),
        ca=rgw.ca,
        store=f"s3://{rgw.bucket}",
        env=rgw.s3_env(),
        log=rgw.ops_log,
        key=key[0],
        work=tmp_path,
        public_key=key[1],
    )
    server.cli("init", server.store)
    story = the_story(server, Fleet(tmp_path / "fleet", server))
    doc = server.stats()
    check_stats(server, story, doc)
    # The ops log uploaded under a prefix of the bucket, read back from there.
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", config=Config(request_checksum_calculation="when_required"), **rgw.boto3_kwargs())
    s3.put_object(Bucket=rgw.bucket, Key="logs/2026-12-07-ops.log", Body=rgw.ops_log.read_bytes())
    from_s3 = server.stats(logs=f"s3://{rgw.bucket}/logs/")
    assert from_s3["channels"] == doc["channels"] and from_s3["downloads"] == doc["downloads"]

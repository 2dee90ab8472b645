"""Fleet statistics for one app from its requests in the access logs. Pure: hits in, counts out.

Every request an install makes names the app, its running version and its platform in the
User-Agent (``gupper-updater (app/1.0.0; linux-amd64)``) and says by its path what it was:

- ``…/<app>/<channel>/latest.json``: a manifest check (200: first or changed, 304: nothing new);
- ``…/<app>/<version>/<app>-<version>-<os>-<arch>[…]``: a full download (206: a resumed piece);
- ``…/<app>/<version>/patches/…``: a binary patch or a one-folder patch index, and the per-file
  patches and file contents a folder delta fetches (``patches/files/…``, ``files/…``);
- ``…/<app>/<channel>/outcomes/<version>/<os>-<arch>/<outcome>``: how a trial ended
  (:mod:`gupper.outcomes`).

Memory is bounded by what is counted, not by the lines read: counts per channel, version,
platform and day, and a time series for the charts whose step widens (1 s up to a week) so it
never holds more than :data:`MAX_BUCKETS` points. Requests with another User-Agent (a browser, a
crawler) are not counted. Nothing here can tell installs apart: "checks" are requests, and an
install that starts ten times a day checks ten times.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .accesslog import Hit

OUTCOMES = ("confirmed", "rolled-back", "preflight-failed", "preflight-interrupted")
STEPS = (1, 10, 60, 600, 3600, 21600, 86400, 7 * 86400)
"""Widths (seconds) the time series may use, narrowest first."""
MAX_BUCKETS = 1500
_CACHE = 50_000  # distinct paths and User-Agents remembered (a log has few; a hostile one may have many)
_AGENT = re.compile(r"gupper-updater \(([^/;()\s]+)/([^;()\s]+); ([a-z0-9]+-[a-z0-9]+)\)")
_MISSING: Any = object()
Z = 1.959963984540054
"""The normal quantile of a two-sided 95 % interval."""


def wilson(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95 % by default); (0, 1) for none."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


@dataclass
class TrialCounts:
    """How trials of one version ended: confirmed, rolled back, pre-flight failed or interrupted."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def add(self, other: TrialCounts) -> None:
        """Add ``other``'s counts to these."""
        for k, v in other.counts.items():
            self.counts[k] += v

    @property
    def trials(self) -> int:
        """Trials that ended for good: confirmed, rolled back or refused by the pre-flight (an
        interrupted pre-flight is tried again, so it is no verdict)."""
        return self.counts["confirmed"] + self.counts["rolled-back"] + self.counts["preflight-failed"]

    def rate(self, *outcomes: str) -> float | None:
        """The share of :attr:`trials` that ended in one of ``outcomes`` (None without trials)."""
        return sum(self.counts[o] for o in outcomes) / self.trials if self.trials else None

    def to_json(self) -> dict[str, Any]:
        """Counts, trials and the rollback rate with its 95 % Wilson interval."""
        rolled = self.counts["rolled-back"]
        low, high = wilson(rolled, self.trials)
        rate = self.rate("rolled-back")
        return {
            **self.counts,
            "trials": self.trials,
            "rollback_rate": None if rate is None else {"rate": rate, "low": low, "high": high, "confidence": 0.95},
        }


@dataclass
class Downloads:
    """What installs fetched of one version for one platform."""

    full: int = 0  # 200 answers for the whole file
    resumed: int = 0  # 206 answers (a download resumed, or a piece of one)
    full_bytes: int = 0
    patches: int = 0  # binary patches and one-folder patch indexes
    patch_bytes: int = 0  # those, plus the per-file patches and files a folder delta fetched
    largest_full: int = 0  # the largest whole-file answer: the file's size, when one arrived whole

    def to_json(self, size: int | None) -> dict[str, Any]:
        """Counts and bytes, with the bytes patches saved when the full file's ``size`` is known."""
        size = size or self.largest_full or None
        saved = None if size is None else max(0, self.patches * size - self.patch_bytes)
        return {
            "full": self.full,
            "resumed": self.resumed,
            "full_bytes": self.full_bytes,
            "patches": self.patches,
            "patch_bytes": self.patch_bytes,
            "size": size,
            "bytes_saved": saved,
        }


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def iso(t: float) -> str:
    """Seconds since the epoch as an ISO time in UTC, to the second."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FleetStats:
    """Counts of one app's requests, fed one :class:`~gupper_publish.accesslog.Hit` at a time.

    ``since`` (seconds since the epoch) leaves out earlier requests: ``advance`` counts only what
    happened since its rollout's last step.
    """

    def __init__(self, app: str, since: float | None = None) -> None:
        self.app, self.since = app, since
        self.checks: dict[tuple[str, str, str, int], list[int]] = {}  # channel, version, platform, day -> 200/304/other
        self.outcomes: dict[tuple[str, str, str], TrialCounts] = {}  # channel, version, platform
        self.downloads: dict[tuple[str, str], Downloads] = {}  # version, platform
        self.step = STEPS[0]
        self.check_series: dict[tuple[int, str, str], int] = {}  # bucket, channel, version -> checks
        self.outcome_series: dict[tuple[int, str, str, str], int] = {}  # bucket, channel, version, outcome
        self._buckets: set[int] = set()
        self.first: float | None = None
        self.last: float | None = None
        self.counted = 0
        self.ignored = 0  # the app's paths asked by something that is not its updater, or not understood
        self._paths: dict[str, tuple[str, ...] | None] = {}
        self._agents: dict[str, tuple[str, str] | None] = {}

    # --- classifying --------------------------------------------------------------------------

    def agent(self, text: str) -> tuple[str, str] | None:
        """(version, platform) from the updater's User-Agent for this app, else None."""
        if text in self._agents:
            return self._agents[text]
        m = _AGENT.search(text)
        result = (m[2], m[3]) if m is not None and m[1] == self.app else None
        if len(self._agents) < _CACHE:
            self._agents[text] = result
        return result

    def kind(self, path: str) -> tuple[str, ...] | None:
        """What a request path is for this app: ``("check", channel)``, ``("outcome", channel, version,
        platform, outcome)``, ``("full", version, platform)``, ``("patch", version, platform)``,
        ``("delta", version)`` or None."""
        if path in self._paths:
            return self._paths[path]
        result = self._classify(path.split("/"))
        if len(self._paths) < _CACHE:
            self._paths[path] = result
        return result

    def _classify(self, s: list[str]) -> tuple[str, ...] | None:
        app, n = self.app, len(s)
        if n >= 3 and s[-1] == "latest.json" and s[-3] == app:
            return ("check", s[-2])
        if n >= 6 and s[-6] == app and s[-4] == "outcomes" and s[-1] in OUTCOMES:
            return ("outcome", s[-5], s[-3], s[-2], s[-1])
        if n >= 3 and s[-3] == app:
            platform = _platform_of(s[-1], app, s[-2])
            return ("full", s[-2], platform) if platform else None
        if n >= 4 and s[-4] == app and s[-2] == "patches":
            name = s[-1]
            if ".from-" not in name or not name.endswith((".bsdiff4", ".files.json")):
                return None
            base = name[: name.rindex(".from-")]  # a file name, or a one-folder build's stem
            platform = _platform_of(base, app, s[-3]) or _platform_of(base + ".tar.gz", app, s[-3])
            return ("patch", s[-3], platform) if platform else None
        if n >= 5 and s[-5] == app and s[-3] == "patches" and s[-2] == "files":
            return ("delta", s[-4])
        if n >= 4 and s[-4] == app and s[-2] == "files":
            return ("delta", s[-3])
        if n >= 5 and s[-5] == app and s[-3] == "files" and s[-2] == "sha256":
            return ("delta", s[-4])
        return None

    # --- counting -----------------------------------------------------------------------------

    def add(self, hit: Hit) -> None:
        """Count one request (anything that is not one of this app's updater requests is ignored).

        Called once per log line: written for speed (a cache lookup before each method call, no
        object made for a count that already exists)."""
        t, method, path, status, sent, agent = hit
        if method != "GET" or (self.since is not None and t < self.since):
            return
        what = self._paths.get(path, _MISSING)
        if what is _MISSING:
            what = self.kind(path)
        if what is None:
            return
        who = self._agents.get(agent, _MISSING)
        if who is _MISSING:
            who = self.agent(agent)
        if who is None:
            self.ignored += 1
            return
        version, platform = who
        self.counted += 1
        if self.first is None or t < self.first:
            self.first = t
        if self.last is None or t > self.last:
            self.last = t
        kind = what[0]
        if kind == "check":
            channel = what[1]
            key = (channel, version, platform, int(t // 86400))
            tally = self.checks.get(key)
            if tally is None:
                tally = self.checks[key] = [0, 0, 0]
            tally[0 if status == 200 else 1 if status == 304 else 2] += 1
            skey = (self._bucket(t), channel, version)
            self.check_series[skey] = self.check_series.get(skey, 0) + 1
        elif kind == "outcome":
            _, channel, about, on, outcome = what
            trials = self.outcomes.get((channel, about, on))
            if trials is None:
                trials = self.outcomes[(channel, about, on)] = TrialCounts()
            trials.counts[outcome] += 1
            okey = (self._bucket(t), channel, about, outcome)
            self.outcome_series[okey] = self.outcome_series.get(okey, 0) + 1
        elif status in {200, 206}:
            self._download(kind, what[1], what[2] if kind != "delta" else platform, status, sent)

    def _download(self, kind: str, version: str, platform: str, status: int, sent: int) -> None:
        key = (version, platform)
        d = self.downloads.get(key)
        if d is None:
            d = self.downloads[key] = Downloads()
        if kind == "full" and status == 200:
            d.full += 1
            d.full_bytes += sent
            d.largest_full = max(d.largest_full, sent)
        elif kind == "full":
            d.resumed += 1
            d.full_bytes += sent
        else:
            d.patches += kind == "patch"
            d.patch_bytes += sent

    def add_all(self, hits: Iterable[Hit]) -> FleetStats:
        """Count every hit; returns self."""
        for hit in hits:
            self.add(hit)
        return self

    def _bucket(self, t: float) -> int:
        bucket = int(t)
        bucket -= bucket % self.step
        if bucket not in self._buckets:
            self._buckets.add(bucket)
            while len(self._buckets) > MAX_BUCKETS and self.step != STEPS[-1]:
                self._widen()
            bucket = int(t) - int(t) % self.step
        return bucket

    def _widen(self) -> None:
        """Use the next wider step for the time series, folding what it holds."""
        step = self.step = STEPS[STEPS.index(self.step) + 1]
        checks: dict[tuple[int, str, str], int] = {}
        for (b, *rest), n in self.check_series.items():
            key = (b - b % step, rest[0], rest[1])
            checks[key] = checks.get(key, 0) + n
        outcomes: dict[tuple[int, str, str, str], int] = {}
        for (b, *rest), n in self.outcome_series.items():
            okey = (b - b % step, rest[0], rest[1], rest[2])
            outcomes[okey] = outcomes.get(okey, 0) + n
        self.check_series, self.outcome_series = checks, outcomes
        self._buckets = {b - b % step for b in self._buckets}

    # --- reading the counts -------------------------------------------------------------------

    def trials(self, channel: str, version: str) -> dict[str, TrialCounts]:
        """How trials of ``version`` in ``channel`` ended, per platform."""
        return {p: c for (ch, v, p), c in self.outcomes.items() if ch == channel and v == version}

    def channels(self) -> list[str]:
        """Every channel seen, by name."""
        return sorted({k[0] for k in self.checks} | {k[0] for k in self.outcomes})

    def to_json(self, rollouts: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Everything counted, as plain data (``stats --json``); ``rollouts`` adds, per channel and
        version, what the store says of its rollout."""
        rollouts = rollouts or {}
        channels: dict[str, Any] = {}
        for channel in sorted(set(self.channels()) | set(rollouts)):
            channels[channel] = self._channel_json(channel, rollouts.get(channel, {}))
        sizes: dict[tuple[str, str], int] = {}
        for info in rollouts.values():
            for version, r in info.items():
                for platform, size in (r.get("sizes") or {}).items():
                    sizes[(version, platform)] = size
        downloads: dict[str, dict[str, Any]] = {}
        for (version, platform), d in sorted(self.downloads.items()):
            downloads.setdefault(version, {})[platform] = d.to_json(sizes.get((version, platform)))
        return {
            "schema": 1,
            "app": self.app,
            "since": None if self.since is None else iso(self.since),
            "first": None if self.first is None else iso(self.first),
            "last": None if self.last is None else iso(self.last),
            "requests": self.counted,
            "ignored": self.ignored,
            "channels": channels,
            "downloads": downloads,
            "series": self._series_json(),
        }

    def _channel_json(self, channel: str, rollouts: Mapping[str, Any]) -> dict[str, Any]:
        per_day: dict[str, list[int]] = {}
        versions: dict[str, dict[str, Any]] = {}
        last_day = max((d for (ch, _v, _p, d) in self.checks if ch == channel), default=None)
        on_last_day: dict[str, int] = {}
        for (ch, version, platform, day), (ok, same, other) in sorted(self.checks.items()):
            if ch != channel:
                continue
            total = per_day.setdefault(_day(day * 86400), [0, 0, 0])
            total[0], total[1], total[2] = total[0] + ok, total[1] + same, total[2] + other
            v = _version_entry(versions, version)
            p = v["platforms"].setdefault(platform, {"checks_per_day": {}, "trials": TrialCounts()})
            p["checks_per_day"][_day(day * 86400)] = {"200": ok, "304": same, "other": other}
            for i, name in enumerate(("200", "304", "other")):
                v["checks"][name] += (ok, same, other)[i]
            if day == last_day:
                on_last_day[version] = on_last_day.get(version, 0) + ok + same + other
        for (ch, version, platform), counts in sorted(self.outcomes.items()):
            if ch != channel:
                continue
            v = _version_entry(versions, version)
            v["platforms"].setdefault(platform, {"checks_per_day": {}, "trials": TrialCounts()})["trials"].add(counts)
            v["trials"].add(counts)
        for version in rollouts:
            _version_entry(versions, version)
        everyone = sum(on_last_day.values())
        out: dict[str, Any] = {}
        for version in sorted(versions, key=version_order, reverse=True):
            v = versions[version]
            took = [d for (ver, _p), d in self.downloads.items() if ver == version]
            out[version] = {
                "checks": v["checks"],
                **v["trials"].to_json(),
                "adoption": {
                    "day": None if last_day is None else _day(last_day * 86400),
                    "checks": on_last_day.get(version, 0),
                    "share": on_last_day.get(version, 0) / everyone if everyone else None,
                },
                "downloads": {"full": sum(d.full for d in took), "patches": sum(d.patches for d in took)},
                "rollout": {k: val for k, val in rollouts.get(version, {}).items() if k != "sizes"} or None,
                "platforms": {
                    p: {"checks_per_day": e["checks_per_day"], **e["trials"].to_json()}
                    for p, e in sorted(v["platforms"].items())
                },
            }
        return {
            "checks_per_day": {d: {"200": a, "304": b, "other": c} for d, (a, b, c) in sorted(per_day.items())},
            "versions": out,
        }

    def _series_json(self) -> dict[str, Any]:
        checks: dict[str, dict[str, dict[str, int]]] = {}
        for (bucket, channel, version), n in sorted(self.check_series.items()):
            checks.setdefault(channel, {}).setdefault(version, {})[iso(bucket)] = n
        outcomes: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
        for (bucket, channel, version, outcome), n in sorted(self.outcome_series.items()):
            outcomes.setdefault(channel, {}).setdefault(version, {}).setdefault(outcome, {})[iso(bucket)] = n
        return {"step": self.step, "checks": checks, "outcomes": outcomes}


def _version_entry(versions: dict[str, dict[str, Any]], version: str) -> dict[str, Any]:
    return versions.setdefault(
        version, {"checks": {"200": 0, "304": 0, "other": 0}, "trials": TrialCounts(), "platforms": {}}
    )


def version_order(text: str) -> tuple[int, Any]:
    """A sort key: PEP 440 versions in their order, after any text that is none."""
    from packaging.version import InvalidVersion, Version

    try:
        return 1, Version(text)
    except InvalidVersion:
        return 0, text


def _platform_of(file: str, app: str, version: str) -> str | None:
    """The platform a release file of ``app`` ``version`` is for (``app-1.2.0-linux-amd64[.exe|.tar.gz]``)."""
    from .artifacts import parse_artifact_name
    from .errors import BadArtifactNameError

    try:
        name = parse_artifact_name(file)
    except BadArtifactNameError:
        return None
    if name.app != app or str(name.version) != version:
        return None
    return name.platform.key

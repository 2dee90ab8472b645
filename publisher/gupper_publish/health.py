"""Fleet health over the store and its access logs: ``stats``, ``rollout --plan`` and ``advance``.

The edges of :mod:`gupper_publish.fleet` (counting) and :mod:`gupper_publish.plans` (deciding):
logs are read here (:mod:`gupper_publish.logsource`), the channel state is changed here, through
the same compare-and-swap every command uses (:func:`gupper_publish.publish.update_channel`). So
``advance`` can run from cron on two machines at once: both decide from the same plan, the first
write wins, and the other finds the plan already moved and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from packaging.version import Version

from gupper.wire.canonical import format_time

from . import channels as ch
from .accesslog import AUTO
from .errors import PublishError
from .fleet import FleetStats
from .logsource import LogObject, ReadCounts, log_objects, read_hits
from .plans import RUNNING, Decision, RolloutPlan, after, decide, describe
from .publish import ManifestResult, PublishOptions, load_channel, update_channel
from .release import discover, parse_version
from .stores import Store


@dataclass(frozen=True)
class LogOptions:
    """Where the access logs are and how to read them."""

    sources: Sequence[str]
    fmt: str = AUTO
    endpoint_url: str | None = None  # for s3:// sources


def _logs(options: LogOptions, since: float | None) -> list[LogObject]:
    if not options.sources:
        raise PublishError("no access logs: pass --logs with a log file, a folder of logs or s3://bucket/prefix")
    return [
        obj for source in options.sources for obj in log_objects(source, endpoint_url=options.endpoint_url, since=since)
    ]


def count(app: str, logs: LogOptions, *, since: float | None = None) -> tuple[FleetStats, ReadCounts]:
    """Read every log once and count ``app``'s requests (those at or after ``since``, if given)."""
    stats, counts = FleetStats(app, since), ReadCounts()
    # A line without "<app>/" cannot be one of the app's requests: skip it before decoding it.
    for hit in read_hits(_logs(logs, since), counts, needle=f"{app}/".encode(), fmt=logs.fmt):
        stats.add(hit)
    return stats, counts


def channel_states(store: Store, app: str) -> dict[str, ch.ChannelState]:
    """Every channel state of ``app`` in the store."""
    found = discover(store, app).get(app)
    return {channel: load_channel(store, app, channel).state for channel in (found.channels if found else [])}


def rollouts_in(states: dict[str, ch.ChannelState]) -> dict[str, dict[str, dict[str, Any]]]:
    """What channel states say of each release: status, rollout percent, plan, file sizes."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for channel, state in states.items():
        out[channel] = {
            key: {
                "status": "yanked" if state.is_yanked(r.version) else r.status,
                "percent": 100 if r.rollout is None else r.rollout,
                "plan": r.plan.to_json() if r.plan is not None else None,
                "sizes": {p: a.size for p, a in r.artifacts.items()},
            }
            for key, r in state.releases.items()
        }
    return out


def stats(
    app: str, logs: LogOptions, *, store: Store | None = None, since: float | None = None
) -> tuple[dict[str, Any], ReadCounts]:
    """``gupper-publish stats``: the counts as plain data (and what reading the logs met)."""
    fleet, counts = count(app, logs, since=since)
    states = channel_states(store, app) if store is not None else {}
    doc = fleet.to_json(rollouts_in(states))
    for channel, state in states.items():
        doc["channels"][channel]["history"] = list(state.history)
    doc["logs"] = counts.to_json()
    return doc, counts


def plan_rollout(
    store: Store, app: str, version_text: str, plan: RolloutPlan, options: PublishOptions
) -> ManifestResult:
    """``rollout APP VERSION --plan …``: store the plan with the release and set its first step now."""
    version = parse_version(version_text)
    now = options.clock().replace(microsecond=0)
    started = replace(plan, step=0, since=now, state=RUNNING)
    if started.percent == 100:
        started = replace(started, state="done")
    line = f"{format_time(now)} plan {app}/{options.channel} {version} at {started.percent}%: {describe(started)}"

    def mutate(state: ch.ChannelState) -> ch.ChannelState:
        return ch.record_history(ch.set_plan(state, version, started), line)

    return update_channel(store, app, options.channel, mutate, options)


@dataclass(frozen=True)
class Advanced:
    """What ``advance`` did with one plan: the decision, its line, and whether this run carried it out."""

    decision: Decision
    line: str
    applied: bool  # False: a dry run, or another advance moved the plan first
    manifest: ManifestResult | None = None

    def to_json(self, now: datetime) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {**self.decision.to_json(now), "applied": self.applied}


def running_plans(state: ch.ChannelState) -> list[tuple[ch.ReleaseRecord, RolloutPlan]]:
    """The channel's releases with a plan still running (yanked ones aside), oldest version first."""
    return sorted(
        (
            (r, r.plan)
            for r in state.releases.values()
            if r.plan is not None and r.plan.state == RUNNING and not state.is_yanked(r.version)
        ),
        key=lambda pair: pair[0].version,
    )


def advance(
    store: Store, app: str, logs: LogOptions, options: PublishOptions, *, now: datetime, dry_run: bool = False
) -> list[Advanced]:
    """``gupper-publish advance``: decide each running plan of ``options.channel`` from the logs, and carry it out.

    Idempotent: a plan is moved only if it is still the one decided on (compare-and-swap on the
    channel state); a wait writes its line to the history in place of the previous wait of the same
    step, so cron adds one line per step, not one per run. Returns nothing when no plan runs.
    """
    now = now.replace(microsecond=0)
    snap = load_channel(store, app, options.channel)
    plans = running_plans(snap.state)
    if not plans:
        return []
    since = {str(r.version): (p.since.timestamp() if p.since is not None else None) for r, p in plans}
    earliest = min((s for s in since.values() if s is not None), default=None)
    per_version = {v: FleetStats(app, s) for v, s in since.items()}
    counts = ReadCounts()
    for hit in read_hits(_logs(logs, earliest), counts, needle=f"{app}/".encode(), fmt=logs.fmt):
        for fleet in per_version.values():
            fleet.add(hit)
    done = []
    for record, plan in plans:
        version = str(record.version)
        decision = decide(
            plan, app, options.channel, version, per_version[version].trials(options.channel, version), now
        )
        line = decision.line(now)
        if dry_run:
            done.append(Advanced(decision, line, applied=False))
            continue
        done.append(_carry_out(store, app, record.version, plan, decision, line, options, now))
    return done


def _carry_out(
    store: Store,
    app: str,
    version: Version,
    plan: RolloutPlan,
    decision: Decision,
    line: str,
    options: PublishOptions,
    now: datetime,
) -> Advanced:
    applied: list[bool] = []

    def mutate(state: ch.ChannelState) -> ch.ChannelState:
        applied.clear()
        record = state.find(version)
        if record is None or record.plan != plan or state.is_yanked(version):
            return state  # another advance (or a person) moved it since we read it: nothing to do
        applied.append(True)
        if decision.action == "wait":
            return ch.record_history(state, line, replaces=decision.key)
        state = ch.with_plan(state, version, after(plan, decision, now))
        if decision.yank:
            state = ch.yank(state, version)
        return ch.record_history(state, line)

    manifest = update_channel(store, app, options.channel, mutate, options)
    return Advanced(decision, line, applied=bool(applied), manifest=manifest)

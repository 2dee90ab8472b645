"""``python -m gupper check``: what this machine would do with a channel's manifest, without doing it.

The client's own pure core decides: :func:`gupper.trust.accept_manifest` (verify, fresh, key
rotation), :func:`gupper.platforms.pick_key` (which platform's entry), :func:`gupper.policy.choose_update`
(rollout, yank, up to date). :func:`diagnose` gathers what they say for one manifest and one
machine's state, and :func:`render` writes it for people. Pure: the caller fetches the manifest and
reads the state; nothing is installed, saved or cached.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from packaging.version import Version

from .errors import ManifestError
from .keys import TrustedKeys
from .platforms import Platform, pick_key
from .policy import ROLLOUT_BUCKETS, Decision, choose_update, move_line, rollout_bucket
from .records import record
from .state import ClientState
from .trust import ChannelRecord, accept_manifest
from .wire.canonical import format_time
from .wire.manifest import Entry, Manifest


@record(frozen=True)
class Machine:
    """What one install brings to a check: its app and channel, its version, its keys and state, its platforms."""

    url: str
    app: str
    channel: str
    channel_from: str  # where the channel came from: "the URL", "--channel", "the default"
    current: Version | None  # None: not given, so no decision
    trusted: TrustedKeys
    state: ClientState | None  # None: no state file yet (this install never checked)
    state_dir: Path
    platforms: tuple[Platform, ...]
    kind: str  # the release type this install takes: binary (one file) or archive (one folder)
    now: datetime


@record(frozen=True)
class Diagnosis:
    """What the client's core says about one manifest on one machine (see :func:`diagnose`)."""

    machine: Machine
    manifest: Manifest | None
    refused: str | None  # why the manifest would be refused, when it would
    seen: ChannelRecord
    platform: str
    entry: Entry | None  # the manifest's entry for ``platform``
    bucket: int | None  # this install's place in the entry's staged rollout (0..9999)
    decision: Decision | None
    bad: str | None  # why the version decided on is marked bad here, if it is

    @property
    def install_id(self) -> str | None:
        """This install's id, from its state file (None: it has none yet)."""
        return self.machine.state.install_id if self.machine.state is not None else None


def diagnose(body: bytes, machine: Machine) -> Diagnosis:
    """What this install would do with manifest ``body``: accept it or not, the entry it picks, its
    rollout bucket, and whether it would move to that entry."""
    state = machine.state
    seen = state.channels.get(machine.channel, ChannelRecord()) if state is not None else ChannelRecord()
    trusted = state.trusted(machine.trusted) if state is not None else machine.trusted
    platform = machine.platforms[0].key
    try:
        accepted = accept_manifest(body, trusted, seen, app=machine.app, channel=machine.channel, now=machine.now)
    except ManifestError as e:
        return Diagnosis(machine, None, str(e), seen, platform, None, None, None, None)
    manifest = accepted.manifest
    platform = pick_key(manifest.entries, machine.platforms)
    entry = manifest.entry_for(platform)
    install_id = state.install_id if state is not None else None
    rollout = entry.rollout if entry is not None else None
    bucket = rollout_bucket(install_id, machine.app, rollout.id) if rollout and install_id is not None else None
    decision = None
    if machine.current is not None and (rollout is None or install_id is not None):
        decision = choose_update(manifest, platform, machine.current, install_id or "", (machine.kind,))
    bad = None
    if decision is not None and decision.entry is not None and state is not None:
        bad = state.bad_versions.get(str(decision.entry.version))
    return Diagnosis(machine, manifest, None, seen, platform, entry, bucket, decision, bad)


def render(d: Diagnosis) -> list[str]:
    """The diagnosis as lines for people: ``label  text``."""
    m = d.machine
    out = [f"manifest   {m.url}"]
    if d.manifest is None:
        out.append(f"           refused: {d.refused}")
    else:
        days = (d.manifest.expires - m.now).total_seconds() / 86400
        out.append(
            f"           app {m.app}, channel {m.channel} (from {m.channel_from}), serial {d.manifest.serial}, "
            f"expires {format_time(d.manifest.expires)} (in {days:.0f} days); signature verified"
        )
        if d.seen.serial:
            out.append(f"           this install has seen serial {d.seen.serial} of this channel")
    out.append(f"platform   {d.platform} (this machine runs: {', '.join(p.key for p in m.platforms)})")
    if d.manifest is not None:
        out.append(f"entry      {_entry(d.entry) if d.entry is not None else f'none: no release for {d.platform}'}")
        out.extend(_rollout(d))
        out.append(f"decision   {_decision(d)}")
    out.extend(_here(d))
    return out


def _entry(e: Entry) -> str:
    patches = f"; patches from {', '.join(p.from_version or '?' for p in e.patches)}" if e.patches else ""
    return f"{e.version}, {e.type}, {e.size} bytes, {e.url}{patches}"


def _rollout(d: Diagnosis) -> list[str]:
    entry = d.entry
    if entry is None or entry.rollout is None:
        return []
    r = entry.rollout
    others = f"others get {entry.fallback.version}" if entry.fallback is not None else "others stay where they are"
    head = f"rollout    {entry.version} to {r.percent}% of installs ({others})"
    if d.bucket is None:
        return [head, "           this install has no id yet (no state file): its first check draws one"]
    place = "in it" if d.bucket < r.percent * ROLLOUT_BUCKETS // 100 else "not in it"
    return [head, f"           this install's bucket: {d.bucket / 100:.2f} of 100 (install id {d.install_id}): {place}"]


def _decision(d: Diagnosis) -> str:
    m = d.machine
    if m.current is None:
        return "give --current VERSION (the installed app's) to see whether it would update"
    if d.decision is None:
        return f"from {m.current}: depends on the install id its first check draws (see rollout)"
    entry = d.decision.entry
    if entry is None:
        return f"from {m.current}: stays: {d.decision.reason}"
    if d.bad is not None:
        return f"from {m.current}: skips {entry.version}, marked bad on this machine ({d.bad})"
    return f"from {m.current}: {move_line(m.app, m.current, entry)}"


def _here(d: Diagnosis) -> list[str]:
    m, state = d.machine, d.machine.state
    path = m.state_dir / "state.json"
    if state is None:
        lines = [f"state      {path}: none yet (the app writes it at its first check)"]
    else:
        lines = [f"state      {path}"]
        trial = state.trial
        lines.append(
            f"trial      {trial.version} on trial (from {trial.previous_version}), started {trial.starts} time(s) "
            "without confirm()"
            if trial is not None
            else "trial      none: no new version waiting for confirm()"
        )
        for version, reason in sorted(state.bad_versions.items()):
            lines.append(f"bad        {version}: {reason}")
        if state.partial is not None:
            lines.append(
                f"partial    {state.partial.path} ({state.partial.size} bytes when complete): resumed next time"
            )
    lines.append(
        f"cache      {m.state_dir / f'{m.channel}.manifest-cache'} (the last accepted manifest, for If-None-Match)"
    )
    lines.append(
        "logs       no log file: one line per check on the app's 'gupper' logger (its stderr, or its logging handlers)"
    )
    lines.append("nothing was installed or saved: a check only")
    return lines

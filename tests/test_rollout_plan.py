"""Rollouts that run themselves: ``rollout --plan``, the pure decision (plan + outcomes + clock), and
``advance`` on the folder store with an injected clock: waits, advances, halts (and yanks), one
history line per decision, idempotent and safe from several places at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.version import Version

from gupper_publish import LocalStore, PublishOptions, publish
from gupper_publish import channels as ch
from gupper_publish.cli import main
from gupper_publish.errors import PublishError
from gupper_publish.fleet import TrialCounts
from gupper_publish.health import LogOptions, advance, plan_rollout
from gupper_publish.plans import (
    HaltRule,
    RolloutPlan,
    after,
    decide,
    format_span,
    parse_every,
    parse_halt_if,
    parse_steps,
)
from gupper_publish.publish import load_channel
from gupper_publish.release import set_rollout

from .conftest import NOW
from .exe_stubs import exe_stub

KeyPair = tuple[Path, Ed25519PrivateKey, str]
DAY = timedelta(days=1)
PLAN = RolloutPlan((1, 10, 50, 100), DAY, (HaltRule("rollback-rate", 0.02),), min_trials=50, since=NOW)
UA = "gupper-updater (app/{v}; {p})"


def counts(confirmed: int = 0, rolled: int = 0, refused: int = 0, interrupted: int = 0) -> TrialCounts:
    c = TrialCounts()
    c.counts.update(
        {
            "confirmed": confirmed,
            "rolled-back": rolled,
            "preflight-failed": refused,
            "preflight-interrupted": interrupted,
        }
    )
    return c


def test_arguments_parse_or_say_what_to_give() -> None:
    assert parse_steps("1%,10%, 50%,100%") == (1, 10, 50, 100)
    assert parse_every("1d12h") == timedelta(hours=36) and parse_every("0s") == timedelta(0)
    assert parse_halt_if("rollback-rate>2%") == HaltRule("rollback-rate", 0.02)
    assert parse_halt_if(" failure-rate > 0.5 % ") == HaltRule("failure-rate", 0.005)
    assert format_span(timedelta(hours=36, seconds=5)) == "1d12h5s"
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: parse_steps("10%,1%,100%"), "must increase from 1 to 100 and end at 100%"),
        (lambda: parse_steps("1%,10%"), "end at 100%"),
        (lambda: parse_steps("one,two"), "whole percents"),
        (lambda: parse_every("a day"), "give a duration such as 24h"),
        (lambda: parse_halt_if("crash-rate>2%"), "METRIC one of rollback-rate"),
        (lambda: parse_halt_if("rollback-rate"), "quote the rule, --halt-if 'rollback-rate>2%'"),
    ]
    for bad, message in cases:
        with pytest.raises(PublishError, match=message.replace("(", r"\(")):
            bad()


def test_a_plan_survives_the_channel_state() -> None:
    plan = replace(PLAN, step=2, halt_if=(*PLAN.halt_if, HaltRule("preflight-failure-rate", 0.1)), yank_on_halt=True)
    assert RolloutPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    with pytest.raises(ValueError, match="inconsistent"):
        RolloutPlan.from_json({**plan.to_json(), "step": 4})


def test_waits_for_trials_then_for_time_then_advances() -> None:
    trials = {"linux-amd64": counts(40, 0)}
    d = decide(PLAN, "app", "stable", "2.0.0", trials, NOW + 2 * DAY)
    assert d.action == "wait" and d.why.endswith("; 50 needed")
    assert "40 trial(s) since 2026-11-28T12:00:00Z (confirmed 40, rolled back 0, pre-flight failed 0)" in d.why
    trials = {"linux-amd64": counts(40, 1), "windows-amd64": counts(30)}
    d = decide(PLAN, "app", "stable", "2.0.0", trials, NOW + timedelta(hours=6))
    assert d.action == "wait" and d.why.endswith("; 6h of 1d at this step")
    assert "rollback-rate 1.4% (95% CI 0.2%-7.6%) <= 2%" in d.why
    d = decide(PLAN, "app", "stable", "2.0.0", trials, NOW + DAY)
    assert (d.action, d.percent, d.to_percent) == ("advance", 1, 10)
    assert d.line(NOW + DAY).startswith("2026-11-29T12:00:00Z advance app/stable 2.0.0 1% -> 10%: 71 trial(s)")
    moved = after(PLAN, d, NOW + DAY)
    assert (moved.step, moved.since, moved.state) == (1, NOW + DAY, "running")
    last = decide(replace(PLAN, step=2), "app", "stable", "2.0.0", trials, NOW + DAY)
    assert after(replace(PLAN, step=2), last, NOW).state == "done" and last.to_percent == 100


def test_halts_over_the_threshold_on_all_platforms_or_on_one() -> None:
    d = decide(PLAN, "app", "stable", "2.0.0", {"linux-amd64": counts(47, 3)}, NOW + DAY)
    assert (d.action, d.to_percent) == ("halt", 0)
    assert d.why.startswith("rollback-rate 6.0% (95% CI 2.1%-16.2%) > 2%; 50 trial(s)")
    # 0.3 % overall, but a fifth of the Windows trials rolled back: that platform halts it.
    trials = {"linux-amd64": counts(3000), "windows-amd64": counts(40, 10)}
    d = decide(replace(PLAN, yank_on_halt=True), "app", "stable", "2.0.0", trials, NOW)
    assert d.action == "halt" and d.yank and " > 2% on windows-amd64; 50 trial(s)" in d.why
    assert d.line(NOW).startswith("2026-11-28T12:00:00Z halt app/stable 2.0.0 at 1%, yanked: rollback-rate 20.0%")


def test_no_verdict_before_min_trials_and_an_interrupted_self_test_is_none() -> None:
    assert decide(PLAN, "app", "stable", "2.0.0", {"linux-amd64": counts(0, 49)}, NOW + DAY).action == "wait"
    plan = replace(PLAN, halt_if=(HaltRule("failure-rate", 0.02),), min_trials=4)
    assert decide(plan, "app", "stable", "2.0.0", {"linux-amd64": counts(0, 0, 4)}, NOW).action == "halt"
    assert decide(plan, "app", "stable", "2.0.0", {"linux-amd64": counts(0, 0, 0, 9)}, NOW).action == "wait"
    assert decide(replace(plan, min_trials=0), "app", "stable", "2.0.0", {}, NOW + DAY).action == "advance"


class Env:
    """A folder store with 1.0.0 complete and 2.0.0 staged at 0 %, and a log folder."""

    def __init__(self, tmp: Path, keypair: KeyPair) -> None:
        self.root, self.logs = tmp / "store", tmp / "logs"
        self.logs.mkdir()
        self.store = LocalStore(self.root)
        self.key_path = keypair[0]
        self.opts = PublishOptions(keys=[keypair[1]], clock=lambda: NOW, expires_in=timedelta(days=3650))
        for version, rollout in (("1.0.0", None), ("2.0.0", 0)):
            path = tmp / f"app-{version}-linux-amd64"
            path.write_bytes(exe_stub("linux-amd64", version.encode() * 100))
            publish(self.store, [path], self.opts, rollout=rollout, patches=0)
        self.lines = 0

    def log(self, when: datetime, outcome: str, n: int = 1, platform: str = "linux-amd64") -> None:
        stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
        text = "".join(
            f'10.0.0.{i % 250} - - [{stamp}] "GET /b/app/stable/outcomes/2.0.0/{platform}/{outcome} HTTP/1.1" 404 0 '
            f'"-" "{UA.format(v="2.0.0", p=platform)}"\n'
            for i in range(n)
        )
        self.lines += 1
        (self.logs / f"access-{self.lines:03d}.log").write_text(text)

    def advance(self, now: datetime, **kw: Any) -> list[Any]:
        return advance(
            self.store, "app", LogOptions([str(self.logs)]), replace(self.opts, clock=lambda: now), now=now, **kw
        )

    def state(self) -> ch.ChannelState:
        return load_channel(self.store, "app", "stable").state


@pytest.fixture
def env(tmp_path: Path, keypair: KeyPair) -> Env:
    return Env(tmp_path, keypair)


def test_advance_runs_a_plan_to_100_percent_with_one_history_line_per_step(env: Env) -> None:
    assert env.advance(NOW) == []  # no plan: nothing to do
    plan_rollout(env.store, "app", "2.0.0", replace(PLAN, since=None), env.opts)
    record = env.state().find(Version("2.0.0"))
    assert record is not None and record.rollout == 1 and record.plan is not None and record.plan.since == NOW
    assert env.state().history[-1].startswith("2026-11-28T12:00:00Z plan app/stable 2.0.0 at 1%: steps 1%,10%,50%,100%")
    (first,) = env.advance(NOW + timedelta(hours=1))
    (again,) = env.advance(NOW + timedelta(hours=2))  # cron again: the wait line replaces the last one
    assert first.applied and again.applied and first.decision.action == again.decision.action == "wait"
    assert [line.split(" ", 2)[1] for line in env.state().history] == ["plan", "wait"]
    assert env.state().history[-1].startswith("2026-11-28T14:00:00Z wait app/stable 2.0.0 at 1%: 0 trial(s)")
    env.log(NOW + timedelta(hours=3), "confirmed", 60)
    env.log(NOW - timedelta(hours=1), "rolled-back", 60)  # before the step began: not counted
    (step,) = env.advance(NOW + DAY)
    assert step.decision.action == "advance" and step.line.startswith(
        "2026-11-29T12:00:00Z advance app/stable 2.0.0 1% -> 10%: 60 trial(s) since 2026-11-28T12:00:00Z (confirmed 60,"
    )
    assert env.state().find(Version("2.0.0")).rollout == 10  # type: ignore[union-attr]
    (waiting,) = env.advance(NOW + 2 * DAY)  # the last step's 60 trials are before this step: counted afresh
    assert waiting.decision.action == "wait" and " 0 trial(s) since 2026-11-29T12:00:00Z" in waiting.line
    for day in (2, 3):
        env.log(NOW + day * DAY + timedelta(hours=1), "confirmed", 55)
        (step,) = env.advance(NOW + (day + 1) * DAY)
        assert step.decision.action == "advance"
    record = env.state().find(Version("2.0.0"))
    assert record is not None and record.rollout is None and record.plan is not None and record.plan.state == "done"
    assert [line.split(" ", 2)[1] for line in env.state().history] == [
        "plan",
        "wait",
        "advance",
        "wait",
        "advance",
        "advance",
    ]
    assert env.advance(NOW + 9 * DAY) == []  # done: nothing more to do


def test_advance_halts_and_yanks_and_a_dry_run_changes_nothing(env: Env) -> None:
    plan_rollout(env.store, "app", "2.0.0", replace(PLAN, yank_on_halt=True), env.opts)
    env.log(NOW + timedelta(hours=1), "rolled-back", 60)
    before = (env.root / "app" / "stable" / "channel.json").read_bytes()
    (dry,) = env.advance(NOW + timedelta(hours=2), dry_run=True)
    assert dry.decision.action == "halt" and not dry.applied
    assert (env.root / "app" / "stable" / "channel.json").read_bytes() == before
    (halt,) = env.advance(NOW + timedelta(hours=2))
    assert halt.applied and halt.line.startswith(
        "2026-11-28T14:00:00Z halt app/stable 2.0.0 at 1%, yanked: rollback-rate"
    )
    state = env.state()
    assert state.is_yanked(Version("2.0.0")) and state.history[-1] == halt.line
    manifest = json.loads((env.root / "app" / "stable" / "latest.json").read_bytes())["signed"]
    assert manifest["yanked"] == ["2.0.0"] and manifest["platforms"]["linux-amd64"]["version"] == "1.0.0"
    assert env.advance(NOW + DAY) == []


def test_a_rollout_set_by_hand_ends_the_plan(env: Env, tmp_path: Path) -> None:
    plan_rollout(env.store, "app", "2.0.0", PLAN, env.opts)
    set_rollout(env.store, "app", "2.0.0", 30, env.opts)
    record = env.state().find(Version("2.0.0"))
    assert record is not None and record.plan is None and record.rollout == 30
    plan_rollout(env.store, "app", "2.0.0", PLAN, env.opts)
    publish(env.store, [tmp_path / "app-2.0.0-linux-amd64"], env.opts, rollout=20, patches=0)  # the same file again
    record = env.state().find(Version("2.0.0"))
    assert record is not None and record.plan is None and record.rollout == 20
    set_rollout(env.store, "app", "2.0.0", 100, env.opts)
    with pytest.raises(PublishError, match="already offered to every install"):
        plan_rollout(env.store, "app", "2.0.0", PLAN, env.opts)


class GatedStore(LocalStore):
    """A folder store whose first write from each thread waits until ``parties`` threads are there: every one of
    them has read the channel state and decided before any writes, which is "at once" on a machine of any speed."""

    def __init__(self, root: Path, parties: int) -> None:
        super().__init__(root)
        self.gate = threading.Barrier(parties)
        self.passed: set[int] = set()

    def swap(self, key: str, data: bytes, **kw: Any) -> str:
        if threading.get_ident() not in self.passed:
            self.passed.add(threading.get_ident())
            self.gate.wait(60)  # bounded; a thread that never comes breaks the barrier and fails the test
        return super().swap(key, data, **kw)


def test_two_advances_at_once_move_the_plan_once(env: Env) -> None:
    plan_rollout(env.store, "app", "2.0.0", PLAN, env.opts)
    env.log(NOW + timedelta(hours=1), "confirmed", 60)
    env.store = GatedStore(env.root, 4)
    results, errors = [], []

    def one() -> None:
        try:
            results.extend(env.advance(NOW + DAY))
        except BaseException as e:  # shown below rather than lost with the thread
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(r.applied for r in results) == [False, False, False, True]
    assert all(r.decision.action == "advance" for r in results)
    state = env.state()
    assert state.find(Version("2.0.0")).rollout == 10  # type: ignore[union-attr]
    assert [line.split(" ", 2)[1] for line in state.history] == ["plan", "advance"]


def test_an_advance_after_another_moved_the_plan_waits_for_the_next_step(env: Env) -> None:
    # What a second cron line that reads the state just after the first one wrote it does.
    plan_rollout(env.store, "app", "2.0.0", PLAN, env.opts)
    env.log(NOW + timedelta(hours=1), "confirmed", 60)
    (first,) = env.advance(NOW + DAY)
    assert first.applied and first.decision.action == "advance"
    for _ in range(2):
        (later,) = env.advance(NOW + DAY)
        assert later.decision.action == "wait"
    state = env.state()
    assert state.find(Version("2.0.0")).rollout == 10  # type: ignore[union-attr]
    assert [line.split(" ", 2)[1] for line in state.history] == ["plan", "advance", "wait"]  # one line per step


def test_the_commands(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    def cli(*argv: str) -> int:
        return main([*argv, "--store", str(env.root)])

    key = ["--key", str(env.key_path)]
    assert cli("rollout", "app", "2.0.0", "--percent", "5", "--every", "1h", *key) == 1
    assert "--every, --halt-if, --min-trials and --yank-on-halt go with --plan" in capsys.readouterr().err
    assert cli("rollout", "app", "2.0.0", "--plan", "5%,100%", "--halt-if", "rollback-rate", *key) == 1
    assert "quote the rule" in capsys.readouterr().err
    assert cli("rollout", "app", "2.0.0", "--plan", "5%,100%", "--every", "0s", "--min-trials", "3", *key) == 0
    assert "2.0.0 at 5% (others 1.0.0)" in capsys.readouterr().out
    assert cli("advance", "app", "--logs", str(env.logs), "--dry-run") == 0
    out = capsys.readouterr().out
    assert " wait app/stable 2.0.0 at 5%: 0 trial(s) since " in out and out.rstrip().endswith("(dry run)")
    env.log(datetime.now(NOW.tzinfo), "confirmed", 3)
    assert cli("advance", "app", "--logs", str(env.logs), "--json", *key) == 0
    (decision,) = json.loads(capsys.readouterr().out)["decisions"]
    assert (decision["action"], decision["to_percent"], decision["applied"]) == ("advance", 100, True)
    assert cli("advance", "app", "--logs", str(env.logs), *key) == 0
    assert capsys.readouterr().out == "nothing to advance: no rollout plan runs in app/stable\n"
    assert cli("advance", "app", "--logs", str(env.logs)) == 1
    assert "no signing key" in capsys.readouterr().err

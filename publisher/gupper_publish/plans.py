"""Rollout plans that run themselves: the plan, its arguments, and the decision a step takes. Pure.

A plan (``gupper-publish rollout APP VERSION --plan 1%,10%,50%,100% --every 24h --halt-if
rollback-rate>2% --min-trials 50``) lives in the channel state beside the release's rollout
percent. :func:`decide` is what ``gupper-publish advance`` does with it: given the plan, the trial
outcomes counted in the access logs since its current step began, and the time, it halts,
waits or advances, and says why in one line with the figures. The clock is an argument, so the
whole schedule is tested without waiting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from gupper.wire.canonical import format_time, parse_time

from .errors import PublishError
from .fleet import TrialCounts, Z, wilson

RUNNING, HALTED, DONE = "running", "halted", "done"
METRICS = {
    "rollback-rate": ("rolled-back",),
    "preflight-failure-rate": ("preflight-failed",),
    "failure-rate": ("rolled-back", "preflight-failed"),
}
"""What each ``--halt-if`` metric counts, as a share of finished trials (:attr:`TrialCounts.trials`)."""
DEFAULT_EVERY = timedelta(hours=24)
DEFAULT_MIN_TRIALS = 50
DEFAULT_HALT_IF = "rollback-rate>2%"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class HaltRule:
    """Halt when ``metric`` (a key of :data:`METRICS`) is above ``above`` (a fraction)."""

    metric: str
    above: float

    def __str__(self) -> str:
        return f"{self.metric}>{_percent(self.above)}"

    def bad(self, counts: TrialCounts) -> int:
        """How many of ``counts``' trials this rule counts against the release."""
        return sum(counts.counts[o] for o in METRICS[self.metric])


@dataclass(frozen=True)
class RolloutPlan:
    """A staged rollout's schedule and where it stands: ``steps[step]`` percent since ``since``."""

    steps: tuple[int, ...]
    every: timedelta
    halt_if: tuple[HaltRule, ...]
    min_trials: int
    yank_on_halt: bool = False
    step: int = 0
    since: datetime | None = None
    state: str = RUNNING

    @property
    def percent(self) -> int:
        """The rollout percent of the current step."""
        return self.steps[self.step]

    def to_json(self) -> dict[str, Any]:
        """The stored form (in the channel state)."""
        return {
            "steps": list(self.steps),
            "every": int(self.every.total_seconds()),
            "halt_if": [str(r) for r in self.halt_if],
            "min_trials": self.min_trials,
            "yank_on_halt": self.yank_on_halt,
            "step": self.step,
            "since": format_time(self.since) if self.since is not None else None,
            "state": self.state,
        }

    @classmethod
    def from_json(cls, raw: Any) -> RolloutPlan:
        """Parse the stored form; ValueError (or KeyError, TypeError) for anything unexpected."""
        plan = cls(
            steps=parse_steps(",".join(f"{int(s)}%" for s in raw["steps"])),
            every=timedelta(seconds=int(raw["every"])),
            halt_if=tuple(parse_halt_if(str(r)) for r in raw["halt_if"]),
            min_trials=int(raw["min_trials"]),
            yank_on_halt=raw["yank_on_halt"] is True,
            step=int(raw["step"]),
            since=parse_time(raw["since"], "the plan's since") if raw.get("since") is not None else None,
            state=str(raw["state"]),
        )
        if not 0 <= plan.step < len(plan.steps) or plan.state not in (RUNNING, HALTED, DONE) or plan.min_trials < 0:
            raise ValueError(f"an inconsistent rollout plan ({raw!r})")
        return plan


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.10g}%"


def parse_steps(text: str) -> tuple[int, ...]:
    """``1%,10%,50%,100%``: increasing whole percents, 1 to 100, ending at 100."""
    try:
        steps = tuple(int(part.strip().removesuffix("%")) for part in text.split(","))
    except ValueError as e:
        raise PublishError(f"--plan {text!r}: give whole percents separated by commas, e.g. 1%,10%,50%,100%") from e
    if any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)) or steps[-1] != 100:
        raise PublishError(
            f"--plan {text!r}: percents must increase from 1 to 100 and end at 100%, e.g. 1%,10%,50%,100%"
        )
    return steps


def parse_every(text: str) -> timedelta:
    """``24h``, ``30m``, ``2d``, ``1d12h``, ``0s``: how long each step lasts at least."""
    parts = re.fullmatch(r"(?:\d+[smhdw])+", text.strip())
    if parts is None:
        raise PublishError(f"--every {text!r}: give a duration such as 24h, 30m, 2d or 1d12h (s, m, h, d, w)")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", text)))


def parse_halt_if(text: str) -> HaltRule:
    """``rollback-rate>2%`` (also ``failure-rate``, ``preflight-failure-rate``)."""
    m = re.fullmatch(r"\s*([a-z-]+)\s*>\s*(\d+(?:\.\d+)?)\s*%\s*", text)
    if text.strip() in METRICS:  # what a shell leaves of an unquoted rollback-rate>2% (it redirected to "2%")
        raise PublishError(f"--halt-if {text!r} names no threshold: quote the rule, --halt-if '{text.strip()}>2%'")
    if m is None or m[1] not in METRICS or float(m[2]) >= 100:
        raise PublishError(
            f"--halt-if {text!r}: give METRIC>N% with METRIC one of {', '.join(METRICS)} and N below 100, "
            "e.g. rollback-rate>2%"
        )
    return HaltRule(m[1], float(m[2]) / 100)


def format_span(span: timedelta) -> str:
    """A duration the way ``--every`` takes it: ``1d12h``, ``45m``, ``0s``."""
    seconds = max(0, int(span.total_seconds()))
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def describe(plan: RolloutPlan) -> str:
    """The plan in words, as its history line gives it."""
    rules = ", ".join(str(r) for r in plan.halt_if) or "nothing"
    return (
        f"steps {','.join(f'{s}%' for s in plan.steps)} every {format_span(plan.every)}, halt if {rules} "
        f"(from {plan.min_trials} trials)" + (", yank on halt" if plan.yank_on_halt else "")
    )


@dataclass(frozen=True)
class Decision:
    """What ``advance`` does with one plan, and why: one line of text carries the figures."""

    action: str  # "advance", "wait" or "halt"
    app: str
    channel: str
    version: str
    percent: int
    to_percent: int
    why: str
    yank: bool = False

    def line(self, now: datetime) -> str:
        """The decision as one line for people and for the channel's history."""
        where = f"{self.app}/{self.channel} {self.version}"
        if self.action == "advance":
            what = f"advance {where} {self.percent}% -> {self.to_percent}%"
        elif self.action == "halt":
            what = f"halt {where} at {self.percent}%" + (", yanked" if self.yank else "")
        else:
            what = f"wait {where} at {self.percent}%"
        return f"{format_time(now)} {what}: {self.why}"

    @property
    def key(self) -> str:
        """What a repeated wait shares with the one before it (the history keeps only the newest)."""
        return f"{self.action} {self.app}/{self.channel} {self.version} at {self.percent}%"

    def to_json(self, now: datetime) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {**self.__dict__, "line": self.line(now)}


def _figures(counts: TrialCounts, since: datetime | None) -> str:
    c = counts.counts
    return (
        f"{counts.trials} trial(s) since {format_time(since) if since else 'the start'} (confirmed "
        f"{c['confirmed']}, rolled back {c['rolled-back']}, pre-flight failed {c['preflight-failed']})"
    )


def _rate(rule: HaltRule, counts: TrialCounts) -> tuple[float, float, float]:
    k, n = rule.bad(counts), counts.trials
    low, high = wilson(k, n, Z)
    return k / n, low, high


def _tripped(rule: HaltRule, counts: TrialCounts, min_trials: int) -> bool:
    """Above the threshold over at least ``min_trials`` trials (and at least one)."""
    return counts.trials >= max(1, min_trials) and _rate(rule, counts)[0] > rule.above


def _rule_text(rule: HaltRule, counts: TrialCounts) -> str:
    rate, low, high = _rate(rule, counts)
    return f"{rule.metric} {rate:.1%} (95% CI {low:.1%}-{high:.1%})"


def decide(
    plan: RolloutPlan, app: str, channel: str, version: str, trials: Mapping[str, TrialCounts], now: datetime
) -> Decision:
    """Halt, wait or advance, from the outcomes of the trials counted since the current step began.

    Halts when a rule's metric is above its threshold over at least ``min_trials`` trials, of all
    platforms together or of one platform; otherwise waits for ``min_trials`` trials and for
    ``every`` to pass since the step began; otherwise advances to the next step. The 95 % Wilson
    interval of each rate is in the line, to judge by; the rule compares the rate itself.
    """
    total = TrialCounts()
    for counts in trials.values():
        total.add(counts)
    scopes: Sequence[tuple[str, TrialCounts]] = [("", total), *sorted((f" on {p}", c) for p, c in trials.items())]
    base = Decision("wait", app, channel, version, plan.percent, plan.percent, "")
    for rule in plan.halt_if:
        for scope, counts in scopes:
            if _tripped(rule, counts, plan.min_trials):
                why = f"{_rule_text(rule, counts)} > {_percent(rule.above)}{scope}; {_figures(counts, plan.since)}"
                return replace(base, action="halt", to_percent=0, why=why, yank=plan.yank_on_halt)
    rules = "; ".join(f"{_rule_text(r, total)} <= {_percent(r.above)}" for r in plan.halt_if) if total.trials else ""
    figures = _figures(total, plan.since) + (f"; {rules}" if rules else "")
    if total.trials < plan.min_trials:
        return replace(base, why=f"{figures}; {plan.min_trials} needed")
    elapsed = now - plan.since if plan.since is not None else plan.every
    if elapsed < plan.every:
        return replace(base, why=f"{figures}; {format_span(elapsed)} of {format_span(plan.every)} at this step")
    nxt = plan.steps[plan.step + 1]
    return replace(base, action="advance", to_percent=nxt, why=f"{figures}; {format_span(elapsed)} at this step")


def after(plan: RolloutPlan, decision: Decision, now: datetime) -> RolloutPlan:
    """The plan once ``decision`` is carried out."""
    if decision.action == "halt":
        return replace(plan, state=HALTED, since=now)
    if decision.action == "advance":
        step = plan.steps.index(decision.to_percent)
        return replace(plan, step=step, since=now, state=DONE if decision.to_percent == 100 else RUNNING)
    return plan

"""``stats`` for people: a text table, an SVG picture and an HTML page, from ``stats --json``'s data. Pure.

The picture has two panels: adoption over time (each version's share of the manifest checks, per
time step, stacked) and how trials ended per version (confirmed, rolled back, pre-flight failed
or interrupted, with the rollback rate and its 95 % interval). Hand-written SVG: no plotting
library in the publisher's dependencies, and the HTML page embeds it as it is.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from .fleet import iso, version_order
from .status import table

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#bab0ac", "#e15759")
OUTCOME_COLOURS = {
    "confirmed": "#59a14f",
    "rolled-back": "#e15759",
    "preflight-failed": "#f28e2b",
    "preflight-interrupted": "#bab0ac",
}
WIDTH, HEIGHT = 1040, 400


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _rate(v: dict[str, Any]) -> str:
    r = v.get("rollback_rate")
    return "-" if r is None else f"{r['rate']:.1%} ({r['low']:.1%}-{r['high']:.1%})"


def _rollout(v: dict[str, Any]) -> str:
    r = v.get("rollout")
    if r is None:
        return "-"
    text = "yanked" if r["status"] == "yanked" else "complete" if r["status"] == "complete" else f"{r['percent']}%"
    if r["status"] == "halted":
        text = "halted"
    plan = r.get("plan")
    if plan is not None:
        steps = ",".join(f"{s}%" for s in plan["steps"])
        text += f" (plan {steps}: {plan['state']}" + (
            f", step {plan['step'] + 1})" if plan["state"] == "running" else ")"
        )
    return text


def render_text(doc: dict[str, Any]) -> str:
    """The tables ``stats`` prints: per channel and version, downloads per version and platform, checks per day."""
    head = (
        f"{doc['app']}: {doc['requests']} requests from its updater"
        + (f", {doc['first']} to {doc['last']}" if doc["first"] else "")
        + (f" (since {doc['since']})" if doc["since"] else "")
        + (f"; {doc['ignored']} of its paths asked by something else" if doc["ignored"] else "")
    )
    rows = []
    for channel, c in doc["channels"].items():
        for version, v in c["versions"].items():
            o = v
            rows.append(
                [
                    channel,
                    version,
                    _rollout(v),
                    f"{v['checks']['200']}/{v['checks']['304']}",
                    _pct(v["adoption"]["share"]),
                    f"{v['downloads']['full']}/{v['downloads']['patches']}",
                    str(o["confirmed"]),
                    str(o["rolled-back"]),
                    str(o["preflight-failed"]),
                    str(o["preflight-interrupted"]),
                    _rate(v),
                ]
            )
    lines = [head, ""]
    lines += table(
        [
            "CHANNEL",
            "VERSION",
            "ROLLOUT",
            "CHECKS 200/304",
            "ADOPTION",
            "FULL/PATCH",
            "CONFIRMED",
            "ROLLED BACK",
            "PF FAILED",
            "PF KILLED",
            "ROLLBACK RATE (95% CI)",
        ],
        rows,
    )
    downloads = [
        [
            version,
            platform,
            str(d["full"]),
            str(d["resumed"]),
            str(d["patches"]),
            str(d["full_bytes"]),
            str(d["patch_bytes"]),
            "-" if d["bytes_saved"] is None else str(d["bytes_saved"]),
        ]
        for version, platforms in doc["downloads"].items()
        for platform, d in platforms.items()
    ]
    if downloads:
        lines += [
            "",
            *table(
                ["VERSION", "PLATFORM", "FULL", "RESUMED", "PATCHES", "FULL BYTES", "PATCH BYTES", "BYTES SAVED"],
                downloads,
            ),
        ]
    days = [
        [channel, day, str(t["200"]), str(t["304"]), str(t["other"])]
        for channel, c in doc["channels"].items()
        for day, t in c["checks_per_day"].items()
    ]
    if days:
        lines += ["", *table(["CHANNEL", "DAY", "CHECKS 200", "304", "OTHER"], days)]
    return "\n".join(lines)


def _when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _busiest(doc: dict[str, Any]) -> str | None:
    checks = doc["series"]["checks"]
    totals = {ch: sum(sum(s.values()) for s in vs.values()) for ch, vs in checks.items()}
    return max(totals, key=lambda ch: totals[ch]) if totals else None


def _decisions(doc: dict[str, Any], channel: str) -> list[tuple[float, str]]:
    """The plan, advance and halt lines of the channel's history, as (time, short label)."""
    out = []
    for line in doc["channels"].get(channel, {}).get("history", []):
        when, _, rest = line.partition(" ")
        words = rest.split(" ")
        if len(words) < 5 or words[0] not in ("plan", "advance", "halt"):
            continue
        label = {
            "plan": f"{words[2]} at {words[4].rstrip(':')}",
            "advance": f"{words[2]} -> {words[5].rstrip(':')}" if len(words) > 5 else words[2],
            "halt": f"halt {words[2]}",
        }[words[0]]
        out.append((_when(when), label))
    return out


def _adoption_panel(doc: dict[str, Any], x0: float, y0: float, w: float, h: float) -> list[str]:
    channel = _busiest(doc)
    step = doc["series"]["step"]
    title = "Adoption: share of the manifest checks per version" + (f", {escape(channel)}" if channel else "")
    out = [f'<text x="{x0}" y="{y0 - 12}" class="title">{title}</text>']
    out.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" class="frame"/>')
    if channel is None:
        return [*out, f'<text x="{x0 + w / 2}" y="{y0 + h / 2}" class="note">no checks in the logs</text>']
    series = doc["series"]["checks"][channel]
    versions = sorted(series, key=version_order)
    buckets = sorted({b for s in series.values() for b in s})
    t0, t1 = _when(buckets[0]), _when(buckets[-1]) + step
    # A plan set shortly before the first check still shows: the time axis starts at it.
    t0 = min([t0, *(when for when, _ in _decisions(doc, channel) if t0 - (t1 - t0) / 4 <= when < t0)])
    scale = w / max(t1 - t0, 1.0)
    for b in buckets:  # one stacked bar per time step; a step without checks stays blank
        x, total, base = x0 + (_when(b) - t0) * scale, sum(series[v].get(b, 0) for v in versions), 0.0
        for i, version in enumerate(versions):
            share = series[version].get(b, 0) / total
            if share:
                out.append(
                    f'<rect x="{x:.1f}" y="{y0 + h * (1 - base - share):.1f}" width="{max(step * scale, 1):.1f}" '
                    f'height="{h * share:.1f}" fill="{PALETTE[i % len(PALETTE)]}"/>'
                )
            base += share
    marks = [(when, label) for when, label in _decisions(doc, channel) if t0 <= when <= t1]
    for i, (when, label) in enumerate(marks):
        x = x0 + (when - t0) * scale
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + h}" class="mark"/>')
        out.append(f'<text x="{x + 3:.1f}" y="{y0 + 12 + 12 * (i % 2)}" class="mark">{escape(label)}</text>')
    for i, version in enumerate(versions):
        out.append(
            f'<rect x="{x0 + 90 * i}" y="{y0 + h + 28}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>'
        )
        out.append(f'<text x="{x0 + 16 + 90 * i}" y="{y0 + h + 38}" class="label">{escape(version)}</text>')
    for frac in (0.0, 0.5, 1.0):
        out.append(f'<text x="{x0 - 6}" y="{y0 + h * (1 - frac) + 4}" class="axis" text-anchor="end">{frac:.0%}</text>')
    out.append(f'<text x="{x0}" y="{y0 + h + 16}" class="axis">{iso(t0)}</text>')
    out.append(f'<text x="{x0 + w}" y="{y0 + h + 16}" class="axis" text-anchor="end">{escape(buckets[-1])}</text>')
    return out


def _outcome_panel(doc: dict[str, Any], x0: float, y0: float, w: float, h: float) -> list[str]:
    out = [f'<text x="{x0}" y="{y0 - 12}" class="title">Trials per version: how they ended</text>']
    rows = [
        (channel, version, v)
        for channel, c in doc["channels"].items()
        for version, v in c["versions"].items()
        if v["trials"] or v["preflight-interrupted"]
    ]
    if not rows:
        return [*out, f'<text x="{x0 + w / 2}" y="{y0 + h / 2}" class="note">no trial outcomes in the logs</text>']
    most = max(v["trials"] + v["preflight-interrupted"] for _, _, v in rows)
    bar = min(30.0, h / len(rows) - 26)
    label_w = 90.0
    for i, (channel, version, v) in enumerate(rows):
        y = y0 + i * (bar + 26)
        name = version if len(doc["channels"]) == 1 else f"{channel} {version}"
        out.append(f'<text x="{x0}" y="{y + bar / 2 + 4}" class="label">{escape(name)}</text>')
        status = _rollout(v)
        if status != "-":
            out.append(f'<text x="{x0}" y="{y + bar / 2 + 17}" class="axis">{escape(status.split(" (")[0])}</text>')
        x = x0 + label_w
        for outcome, colour in OUTCOME_COLOURS.items():
            n = v[outcome]
            if not n:
                continue
            bw = (w - label_w) * n / most
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bar:.1f}" fill="{colour}">'
                f"<title>{escape(outcome)}: {n}</title></rect>"
            )
            x += bw
        r = v["rollback_rate"]
        rate = "-" if r is None else f"{r['rate']:.1%} (95% CI {r['low']:.1%}-{r['high']:.1%})"
        out.append(
            f'<text x="{x0 + label_w}" y="{y + bar + 13}" class="axis">{v["trials"]} trials, rolled back {rate}</text>'
        )
    legend_y, x = y0 + h + 28, x0
    for outcome, colour in OUTCOME_COLOURS.items():
        out.append(f'<rect x="{x}" y="{legend_y}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 16}" y="{legend_y + 10}" class="label">{outcome}</text>')
        x += 28 + 6.5 * len(outcome)
    return out


def render_svg(doc: dict[str, Any]) -> str:
    """The picture: adoption over time per version, and trial outcomes per version."""
    style = (
        "text{font-family:sans-serif;fill:#222}.title{font-size:14px;font-weight:bold}.label{font-size:12px}"
        ".axis{font-size:10px;fill:#555}.note{font-size:12px;fill:#777;text-anchor:middle}"
        ".frame{fill:none;stroke:#999}line.mark{stroke:#222;stroke-dasharray:4 3}text.mark{font-size:10px}"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        f"<style>{style}</style>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="20" y="24" class="title">{escape(doc["app"])}: fleet health from the access logs'
        + (f", {escape(doc['first'])} to {escape(doc['last'])}" if doc["first"] else "")
        + "</text>",
        *_adoption_panel(doc, 50, 70, 440, 250),
        *_outcome_panel(doc, 560, 70, 450, 250),
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def render_html(doc: dict[str, Any]) -> str:
    """A page to open in a browser: the picture, then the tables."""
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{escape(doc['app'])}: fleet health</title>"
        "<style>body{font-family:sans-serif;margin:2em}pre{font-size:12px}</style></head><body>\n"
        f"<h1>{escape(doc['app'])}: fleet health</h1>\n{render_svg(doc)}\n<pre>{escape(render_text(doc))}</pre>\n"
        "</body></html>\n"
    )

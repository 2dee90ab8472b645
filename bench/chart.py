"""Render bench/results.png from the rows bench/run.py wrote (runs in the bench tools venv)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib  # type: ignore[import-not-found,unused-ignore]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]


def main(data: Path, png: Path) -> int:
    rows = [r for r in json.loads(data.read_text()) if r["gupper"] is not None]
    if not rows:
        return 0
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 0.9 * len(rows) + 1), squeeze=False)
    for ax, r in zip(axes[:, 0], rows, strict=True):
        first = "reference" if r["metric"].startswith("reference:") else "Gupper"
        labels, values, colors = [first], [r["gupper"]], ["#2b7bba" if first == "Gupper" else "#999999"]
        if r["tufup"] is not None:
            labels.append("tufup 0.10")
            values.append(r["tufup"])
            colors.append("#d95f02")
        ax.barh(labels, values, color=colors)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.4g}", va="center", fontsize=7)
        ax.set_title(f"[{r['item']}] {r['metric']} ({r['unit']})", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        ax.set_xlim(0, max(values) * 1.25 if max(values) > 0 else 1)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))

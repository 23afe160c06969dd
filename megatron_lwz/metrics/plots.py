"""PNG plots of logged metrics (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def read_metrics(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def plot_metrics(jsonl: str | Path, out_png: str | Path, keys: Sequence[str], *, title: str = "") -> Path:
    """One subplot per key present in ``jsonl`` (x = step); returns ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(jsonl)
    present = [k for k in keys if any(k in r for r in rows)] or list(keys[:1])
    fig, axes = plt.subplots(len(present), 1, figsize=(7, 2.4 * len(present)), squeeze=False, sharex=True)
    for ax, key in zip(axes[:, 0], present):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="." if len(xs) < 60 else None, linewidth=1.2)
        ax.set_ylabel(key if key.startswith("eval/") else key.split("/", 1)[-1], fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)

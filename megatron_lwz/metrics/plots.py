"""Reading ``metrics.jsonl`` (one row per step, resumes de-duplicated) and PNG plots of it
(matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)


def read_rows(path: str | Path) -> tuple[list[dict], list[str]]:
    """Every well-formed row of a ``metrics.jsonl`` in file order, and ``file:line: why`` for each
    malformed line (skipped: not JSON, not an object, or no integer ``step``)."""
    rows, bad = [], []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            bad.append(f"{path}:{number}: not JSON ({err.msg})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            bad.append(f"{path}:{number}: not an object with an integer 'step'")
            continue
        rows.append(row)
    return rows, bad


def unique_steps(rows: list[dict]) -> list[dict]:
    """One row per step, ordered by step: rows of the same step are merged, a later value of a key
    replacing an earlier one (a resumed run re-logs the steps after its checkpoint)."""
    merged: dict[int, dict] = {}
    for row in rows:
        merged.setdefault(row["step"], {}).update(row)
    return [merged[step] for step in sorted(merged)]


def read_metrics(path: str | Path) -> list[dict]:
    """Unique-step rows of a ``metrics.jsonl`` (see :func:`unique_steps`); malformed lines are
    counted, logged and skipped."""
    rows, bad = read_rows(path)
    if bad:
        log.warning("%s: skipped %d malformed line(s), e.g. %s", path, len(bad), bad[:3])
    return unique_steps(rows)


def plot_metrics(jsonl: str | Path, out_png: str | Path, keys: Sequence[str], *, title: str = "") -> Path:
    """One subplot per key present in ``jsonl`` (x = step, one point per step); returns ``out_png``."""
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

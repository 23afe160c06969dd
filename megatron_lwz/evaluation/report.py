"""Summary tables (stdout) and PNG plots (matplotlib, Agg) of the evaluation commands."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table; floats with 2 decimals, None as '–'."""
    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_elo(names: Sequence[str], elo: dict[str, float], ci: dict[str, tuple[float, float]], path: Path,
             title: str = "Arena Elo (Bradley–Terry MLE, 95% bootstrap CI)") -> Path:
    """Horizontal Elo bars with interval whiskers, best on top."""
    plt = _pyplot()
    order = sorted(names, key=lambda n: elo[n])
    values = np.array([elo[n] for n in order])
    low = np.array([ci[n][0] for n in order])
    high = np.array([ci[n][1] for n in order])
    err = np.nan_to_num(np.vstack([values - low, high - values]), nan=0.0)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(order) + 1.5))
    ax.errorbar(values, range(len(order)), xerr=err, fmt="o", capsize=4)
    ax.set_yticks(range(len(order)), order)
    for y, v in enumerate(values):
        ax.annotate(f"{v:.0f}", (v, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xlabel("Elo")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_win_rate(names: Sequence[str], rate: np.ndarray, path: Path) -> Path:
    """Heat map of the row-beats-column win rate (ties half)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 2.5, 0.9 * len(names) + 1.8))
    image = ax.imshow(np.ma.masked_invalid(rate), vmin=0.0, vmax=1.0, cmap="RdYlGn")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(rate[i, j]):
                ax.text(j, i, f"{rate[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title("win rate of row vs column (ties = 1/2)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

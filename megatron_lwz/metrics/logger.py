"""Rank-0 metric sinks: console, ``metrics.jsonl`` and tensorboard scalars; PNG plots at the end.

Metric names follow ``area/name`` (``train/loss``, ``perf/tokens_per_s``, ``reward/length/mean``).
Non-zero ranks get a logger that does nothing, so callers never branch on rank.

Resuming (``resume_step``) rewrites ``metrics.jsonl`` without the rows logged after the checkpoint
(steps > ``resume_step``: the work that is redone), and tensorboard purges the same steps; a row
that re-logs keys already present at its step (e.g. an evaluation at the checkpoint's step, redone)
replaces the old row. The file then holds every step once.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Mapping

from megatron_lwz.config.schema import LoggingConfig
from megatron_lwz.metrics.plots import read_rows

METRICS_FILE = "metrics.jsonl"


def _rewrite(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def _label(key: str) -> str:
    """Console name of a metric: its last path part, or the one before a statistic ('reward/total/mean' → 'total')."""
    parts = key.split("/")
    return parts[-2] if len(parts) > 1 and parts[-1] in ("mean", "std", "min", "max") else parts[-1]


class MetricLogger:
    """Writes every logged step to JSONL and tensorboard; prints a compact line to the console."""

    def __init__(self, run_dir: str | Path, cfg: LoggingConfig, *, enabled: bool, console_keys: tuple[str, ...] = (),
                 resume_step: int | None = None):
        """``resume_step``: the step of the checkpoint this run starts from (0 = fresh start);
        rows of later steps are dropped. None keeps the file as it is (append only)."""
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.enabled = enabled
        self.console_keys = console_keys
        self._writer = None
        self._jsonl = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._keys: dict[int, set[str]] = {}
            if resume_step is not None:
                self._truncate(resume_step)
            self._jsonl = open(self.path, "a", encoding="utf-8")
            if cfg.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if resume_step is None else resume_step + 1
                self._writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge)

    @property
    def path(self) -> Path:
        return self.run_dir / METRICS_FILE

    def _truncate(self, resume_step: int) -> None:
        """Keep the rows up to ``resume_step`` (malformed lines are dropped and counted)."""
        if not self.path.is_file():
            return
        rows, bad = read_rows(self.path)
        kept = [r for r in rows if r["step"] <= resume_step]
        if len(kept) != len(rows) or bad:
            print(f"{self.path}: resuming at step {resume_step}: dropped {len(rows) - len(kept)} row(s) of later "
                  f"steps and {len(bad)} malformed line(s)", flush=True)
            _rewrite(self.path, kept)
        for row in kept:
            self._keys.setdefault(row["step"], set()).update(k for k in row if k not in ("step", "time"))

    def _replace_overlapping(self, step: int, keys: set[str]) -> None:
        """Remove earlier rows of ``step`` that hold any of ``keys`` (the new row supersedes them)."""
        self._jsonl.close()
        rows, _ = read_rows(self.path)
        kept = [r for r in rows if r["step"] != step or not keys & set(r)]
        _rewrite(self.path, kept)
        self._keys[step] = {k for r in kept if r["step"] == step for k in r if k not in ("step", "time")}
        self._jsonl = open(self.path, "a", encoding="utf-8")

    def log(self, step: int, metrics: Mapping[str, float], *, echo: bool = True) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        if self._keys.get(step, set()) & set(clean):
            self._replace_overlapping(step, set(clean))
        self._keys.setdefault(step, set()).update(clean)
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self._jsonl.flush()
        if self._writer is not None:
            for key, value in clean.items():
                self._writer.add_scalar(key, value, step)
        if echo and self.console_keys:
            shown = " ".join(f"{_label(k)}={clean[k]:.4g}" for k in self.console_keys if k in clean)
            print(f"step {step:5d} | {shown}", flush=True)

    def close(self, plot_groups: Mapping[str, tuple[str, ...]] | None = None) -> list[Path]:
        """Flush sinks; write one PNG per plot group. Returns the PNG paths."""
        if not self.enabled:
            return []
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
        self._jsonl.close()
        if not (self.cfg.plots and plot_groups):
            return []
        from megatron_lwz.metrics.plots import plot_metrics

        return [plot_metrics(self.path, self.run_dir / f"{name}.png", keys, title=name)
                for name, keys in plot_groups.items()]

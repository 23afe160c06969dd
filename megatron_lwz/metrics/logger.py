"""Rank-0 metric sinks: console, ``metrics.jsonl`` and tensorboard scalars; PNG plots at the end.

Metric names follow ``area/name`` (``train/loss``, ``perf/tokens_per_s``, ``reward/length/mean``).
Non-zero ranks get a logger that does nothing, so callers never branch on rank.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Mapping

from megatron_lwz.config.schema import LoggingConfig


def _label(key: str) -> str:
    """Console name of a metric: its last path part, or the one before a statistic ('reward/total/mean' → 'total')."""
    parts = key.split("/")
    return parts[-2] if len(parts) > 1 and parts[-1] in ("mean", "std", "min", "max") else parts[-1]


class MetricLogger:
    """Writes every logged step to JSONL and tensorboard; prints a compact line to the console."""

    def __init__(self, run_dir: str | Path, cfg: LoggingConfig, *, enabled: bool, console_keys: tuple[str, ...] = ()):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.enabled = enabled
        self.console_keys = console_keys
        self._writer = None
        self._jsonl = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
            if cfg.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def log(self, step: int, metrics: Mapping[str, float], *, echo: bool = True) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
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

        return [plot_metrics(self.run_dir / "metrics.jsonl", self.run_dir / f"{name}.png", keys, title=name)
                for name, keys in plot_groups.items()]

"""Reads finished runs back: per-prompt held-out scores at every evaluation, and the training curve.

Source of truth is the per-prompt evaluation dump ``<run_dir>/eval/step_XXXXX.jsonl`` (``rl.eval``,
written by ``rl/evaluate.py``: one line per answer with ``prompt_id``, ``rewards``, ``answer_words``
and ``length_range``). Per prompt (answers of one prompt averaged when ``samples_per_prompt`` > 1):

* ``<component>``: the raw reward of that component (length, writing, format, or any added channel);
* ``total``: Σ_k w_k r_k with the run's Eq. 5 weights (``reward.weight_vector()`` of its resolved
  ``config.yaml``), the same number as the logged ``eval/reward/total/mean``;
* ``in_range``: 1 when L_lower ≤ answer_words ≤ L_upper (``eval/rollout/length_in_range_frac``);
* ``answer_words``: the counted length of the answer.

Malformed dump lines are counted and skipped (``RunData.skipped``), never fatal.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from megatron_lwz.config.base import from_dict
from megatron_lwz.rewards.composite import RewardConfig

TRAIN_KEY = "reward/total/mean"


@dataclass
class RunData:
    """One run's held-out scores: ``evals[step][metric][prompt_id]``, plus its training reward curve."""

    run_dir: Path
    evals: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    train: list[tuple[int, float]] = field(default_factory=list)
    skipped: int = 0

    @property
    def steps(self) -> list[int]:
        return sorted(self.evals)

    def mean(self, step: int, metric: str) -> float | None:
        """Prompt mean of ``metric`` at evaluation ``step`` (None when the metric is absent)."""
        values = self.evals.get(step, {}).get(metric)
        return statistics.fmean(values.values()) if values else None


def _weights(run_dir: Path) -> dict[str, float]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (the resolved config every run writes); is {run_dir} a run dir?")
    cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return from_dict(RewardConfig, cfg.get("reward") or {}, "reward").weight_vector()


def _row_metrics(row: dict, weights: dict[str, float]) -> dict[str, float]:
    rewards = {k: float(v) for k, v in row["rewards"].items()}
    lower, upper = (int(x) for x in row["length_range"])
    words = int(row["answer_words"])
    out = dict(rewards)
    out["total"] = sum(w * rewards.get(name, 0.0) for name, w in weights.items())
    out["in_range"] = float(lower <= words <= upper)
    out["answer_words"] = float(words)
    return out


def _read_eval(path: Path, weights: dict[str, float]) -> tuple[dict[str, dict[str, float]], int]:
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    skipped = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            values = _row_metrics(row, weights)
            pid = str(row["prompt_id"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            skipped += 1
            continue
        for metric, value in values.items():
            sums[metric][pid].append(value)
    return {m: {p: statistics.fmean(v) for p, v in per.items()} for m, per in sums.items()}, skipped


def load_run(run_dir: str | Path) -> RunData:
    """Every evaluation dump and the training reward curve of one run directory."""
    run_dir = Path(run_dir)
    weights = _weights(run_dir)
    data = RunData(run_dir=run_dir)
    for path in sorted((run_dir / "eval").glob("step_*.jsonl")):
        step = int(path.stem.split("_")[1])
        data.evals[step], skipped = _read_eval(path, weights)
        data.skipped += skipped
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                data.skipped += 1
                continue
            if TRAIN_KEY in row:
                data.train.append((int(row["step"]), float(row[TRAIN_KEY])))
    return data

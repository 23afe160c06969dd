"""LongBench-Write length score S_l (``lwz eval length``; LongWriter ``evaluation/eval_length.py``).

For a required length x and an output length y (words by the Length RM's ``count_words``: CJK
characters + English words, of the ``<answer>`` text under ``answer_policy``):

    S(x, y) = 100 · max(0, 1 − (y/x − 1)/3)   if y > x
            = 100 · max(0, 1 − (x/y − 1)/2)   otherwise     (y = 0 → 0)

S_l = mean over prompts. Also reported per required-length bucket of LongBench-Write
([0, 500), [500, 2000), [2000, 4000), [4000, ∞) words) and per generation run (several files =
runs of one system: S_l is the mean of the run means). Prompts come from the benchmark file (id, and the
required length under ``length_key``, LongBench-Write's ``length``); generations are matched by id.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megatron_lwz.evaluation.data import judged_text, read_generation_meta, read_generations, read_prompts
from megatron_lwz.rewards.length import AnswerPolicy, count_words
from megatron_lwz.metrics.run_dir import prepare_run_dir
from megatron_lwz.rewards.records_io import BadRecords, write_jsonl_atomic

BUCKETS = ((0, 500), (500, 2000), (2000, 4000), (4000, None))


@dataclass(kw_only=True)
class LengthEvalConfig:
    """``lwz eval length``."""

    generations: list[str]
    """Generation files (one per run of the same system)."""
    benchmark: str
    """Prompt file with the required length per prompt (LongBench-Write's longbench_write.jsonl)."""
    length_key: str = "length"
    """Field of the required length in words."""
    out_dir: str = "eval/length"
    """Results directory (per-prompt scores, summary)."""
    answer_policy: AnswerPolicy = "whole_text"
    """Which text is counted (the <answer>, else the reply minus <think>)."""


def length_score(required: float, produced: float) -> float:
    """S(x, y) of LongBench-Write (see module doc)."""
    if required <= 0:
        raise ValueError(f"required length must be > 0, got {required}")
    if produced > required:
        return 100.0 * max(0.0, 1.0 - (produced / required - 1.0) / 3.0)
    if produced <= 0:
        return 0.0
    return 100.0 * max(0.0, 1.0 - (required / produced - 1.0) / 2.0)


def bucket_name(required: float) -> str:
    for low, high in BUCKETS:
        if required >= low and (high is None or required < high):
            return f"[{low}, {high})" if high is not None else f"[{low}, inf)"
    raise ValueError(required)


def _required(cfg: LengthEvalConfig, bad: BadRecords) -> dict[str, float]:
    out = {}
    for pid, record in read_prompts(cfg.benchmark, bad):
        value = record.get(cfg.length_key)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            bad.add(f"{cfg.benchmark}:id={pid}", f"'{cfg.length_key}' is not a positive number: {value!r}")
            continue
        out[pid] = float(value)
    return out


def run_length(cfg: LengthEvalConfig) -> dict[str, Any]:
    """Score every generation against its required length; write the results; return the summary."""
    if not Path(cfg.benchmark).is_file():
        raise FileNotFoundError(f"benchmark file not found: {cfg.benchmark}")
    out = prepare_run_dir(cfg.out_dir, cfg, is_rank0=True)  # config.yaml (resolved) + versions.json
    bad = BadRecords()
    required = _required(cfg, bad)
    rows, runs = [], []
    for run, path in enumerate(cfg.generations):
        gens = read_generations(path, bad)
        mine = []
        for pid, x in required.items():
            if pid in gens:
                y = count_words(judged_text(gens[pid].response, cfg.answer_policy))
                mine.append({"run": run, "id": pid, "required": x, "words": y, "score": length_score(x, y),
                             "bucket": bucket_name(x)})
        rows += mine
        runs.append({"generations": path, "S_l": _mean(r["score"] for r in mine), "scored": len(mine),
                     "missing": len(required) - len(mine), "meta": read_generation_meta(path),
                     "by_range": {b: _mean(r["score"] for r in mine if r["bucket"] == b)
                                  for b in sorted({r["bucket"] for r in mine}, key=_bucket_low)}})
    write_jsonl_atomic(out / "length_scores.jsonl", rows)
    values = [r["S_l"] for r in runs if r["S_l"] is not None]
    buckets = sorted({b for r in runs for b in r["by_range"]}, key=_bucket_low)
    summary = {"S_l": _mean(values), "S_l_std": statistics.stdev(values) if len(values) > 1 else 0.0,
               "by_range": {b: _mean(r["by_range"][b] for r in runs if b in r["by_range"]) for b in buckets},
               "scored": sum(r["scored"] for r in runs), "missing": sum(r["missing"] for r in runs),
               "protocol": "longbench-write S_l (count_words of the answer)", "runs": runs,
               "bad_records": bad.count, "bad_examples": bad.examples[:10]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def _bucket_low(name: str) -> int:
    return int(name[1:].split(",")[0])


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None

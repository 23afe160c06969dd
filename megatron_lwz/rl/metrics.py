"""Per-iteration GRPO observability: rollout length statistics, total reward, sample dumps."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Sequence

from megatron_lwz.rewards.length import answer_word_count, count_words
from megatron_lwz.rollout.types import RolloutGroup, Sample

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def total_reward(sample: Sample, weights: dict[str, float]) -> float:
    """Σ_k w_k · r_k of the raw component rewards (the Eq. 5 weights; what the demo reports)."""
    return sum(w * sample.rewards.get(name, 0.0) for name, w in weights.items())


def _stats(prefix: str, values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {f"{prefix}/mean": statistics.fmean(values), f"{prefix}/max": float(max(values)),
            f"{prefix}/min": float(min(values))}


def rollout_metrics(groups: Sequence[RolloutGroup], weights: dict[str, float]) -> dict[str, float]:
    """Answer/think word counts, response tokens, truncation rate, total reward and in-range share."""
    samples = [s for g in groups for s in g.samples]
    if not samples:
        return {}
    answers = [answer_word_count(s.response_text, "well_formed") for s in samples]
    thinks = [count_words(m.group(1)) if (m := _THINK.search(s.response_text)) else 0 for s in samples]
    in_range = [s.prompt.length_lower <= a <= s.prompt.length_upper for s, a in zip(samples, answers)]
    totals = [total_reward(s, weights) for s in samples]
    out = {"reward/total/mean": statistics.fmean(totals), "reward/total/std": statistics.pstdev(totals),
           "rollout/truncated_frac": sum(s.truncated for s in samples) / len(samples),
           "rollout/length_in_range_frac": sum(in_range) / len(samples),
           "rollout/num_samples": float(len(samples))}
    out.update(_stats("rollout/answer_words", answers))
    out.update(_stats("rollout/think_words", thinks))
    out.update(_stats("rollout/response_tokens", [len(s.response_token_ids) for s in samples]))
    return out


def dump_samples(groups: Sequence[RolloutGroup], path: Path, limit: int, step: int) -> None:
    """Write up to ``limit`` samples (−1 = all) as JSONL: prompt, response, rewards, finish reason."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = [s for g in groups for s in g.samples]
    if limit >= 0:
        samples = samples[:limit]
    with open(path, "w", encoding="utf-8") as fh:
        for s in samples:
            fh.write(json.dumps({
                "step": step, "prompt_id": s.prompt.prompt_id, "question": s.prompt.question,
                "length_range": [s.prompt.length_lower, s.prompt.length_upper], "response": s.response_text,
                "finish_reason": s.finish_reason, "response_tokens": len(s.response_token_ids),
                "answer_words": answer_word_count(s.response_text, "well_formed"), "rewards": s.rewards,
                "reward_failures": s.reward_failures,
            }, ensure_ascii=False) + "\n")

"""A rollout workload shaped like LongWriter-Zero's: predicted length ranges and sampled response lengths.

The paper does not publish a histogram of its range predictor's output (paper.md §1.3, §11), so this is
a stand-in built from what the predictor prompt allows and exemplifies (paper.md §1.3): upper bounds are
multiples of 100 and ≤ 12,000 words, widths ≤ 3,000, examples [400, 800] (guidance), [800, 1000]
(essay), [1800, 2200] (explicit 2,000 words), [6000, 10000] (academic paper). Mixture (share, lower
bound range in words, width range): short 35 % [100, 800] × [200, 600]; medium 35 % [800, 2500] ×
[200, 1000]; long 20 % [2500, 6000] × [500, 2000]; very long 10 % [6000, 10000] × [1000, 3000].

A sample's response: think tokens ~ U[1500, 3000] (the paper's think length plateaus at 2–3K tokens,
paper.md §7) + answer words × ``tokens_per_word``, the answer words drawn uniformly inside the range
and scaled by a log-normal factor (σ = 0.3: a policy hits its range only roughly), capped at
``max_tokens`` (a truncated sample). ``scale`` shrinks every token count for CPU runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from megatron_lwz.rollout.types import PromptRecord

_MIXTURE = ((0.35, (100, 800), (200, 600)), (0.35, (800, 2500), (200, 1000)),
            (0.20, (2500, 6000), (500, 2000)), (0.10, (6000, 10000), (1000, 3000)))


@dataclass(kw_only=True)
class Workload:
    """Prompts with predicted ranges and the response length each of their samples will have."""

    prompts: list[PromptRecord]
    """Prompt records with ``length_lower``/``length_upper`` in words."""
    response_tokens: np.ndarray
    """(num_prompts, group_size) int: tokens each sample generates (after the cap)."""
    prompt_tokens: int
    """Prompt length in tokens (template + question), the same for every prompt."""
    max_tokens: int
    """Response cap (``rl.max_tokens`` scaled)."""


def sample_ranges(num_prompts: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``num_prompts`` predicted ``(L_lower, L_upper)`` ranges in words (module docstring)."""
    shares = np.array([m[0] for m in _MIXTURE])
    kinds = rng.choice(len(_MIXTURE), size=num_prompts, p=shares / shares.sum())
    out = []
    for k in kinds:
        _, (lo_a, lo_b), (w_a, w_b) = _MIXTURE[k]
        lower = int(rng.integers(lo_a, lo_b + 1))
        upper = min(12_000, int(np.ceil((lower + rng.integers(w_a, w_b + 1)) / 100.0) * 100))
        out.append((min(lower, upper), upper))
    return out


def make_workload(num_prompts: int, group_size: int, *, seed: int = 0, max_tokens: int = 14_000,
                  tokens_per_word: float = 1.33, prompt_tokens: int = 300, scale: float = 1.0) -> Workload:
    """Prompts and per-sample response lengths (all token counts multiplied by ``scale``)."""
    if num_prompts < 1 or group_size < 1:
        raise ValueError(f"num_prompts={num_prompts} and group_size={group_size} must be >= 1")
    if not 0 < scale <= 1:
        raise ValueError(f"scale={scale} must be in (0, 1]")
    rng = np.random.default_rng(seed)
    ranges = sample_ranges(num_prompts, rng)
    prompts = [PromptRecord(prompt_id=f"w{i}", question=f"Write text number {i}.", length_lower=lo, length_upper=hi)
               for i, (lo, hi) in enumerate(ranges)]
    lo = np.array([r[0] for r in ranges], dtype=float)[:, None]
    hi = np.array([r[1] for r in ranges], dtype=float)[:, None]
    words = rng.uniform(lo, hi, size=(num_prompts, group_size)) * rng.lognormal(0.0, 0.3, (num_prompts, group_size))
    think = rng.uniform(1500, 3000, size=(num_prompts, group_size))
    cap = max(1, int(round(max_tokens * scale)))
    tokens = np.minimum(cap, np.maximum(1, np.round((think + tokens_per_word * words) * scale))).astype(int)
    return Workload(prompts=prompts, response_tokens=tokens, prompt_tokens=max(1, int(round(prompt_tokens * scale))),
                    max_tokens=cap)

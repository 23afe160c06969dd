"""Rollout work → engines: round-robin or length-aware dispatch of prompt groups, per-sample seeds.

Every LongWriter-Zero prompt carries the range predictor's ``[L_lower, L_upper]`` (paper §1.3,
``lwz data predict-length``) before a token is generated, so the long tail can be scheduled:

* **cost** of a sample: the predicted response tokens ``min(max_tokens, think_tokens +
  tokens_per_word × (L_lower + L_upper) / 2)`` (answer words → tokens; the think segment converges to
  ~2–3K tokens in the paper's RL, paper.md §7);
* **length_aware**: longest-processing-time-first (Graham's LPT list scheduling, makespan ≤ 4/3 of the
  optimum for identical machines): shards sorted by cost, descending, each onto the engine with the
  least predicted load. A group whose cost exceeds an engine's fair share (total / engines) is split
  into ``ceil(cost / share)`` near-equal shards of consecutive samples (a group's G samples may sit on
  different engines; the advantage is computed after they are merged back);
* **round_robin**: group ``i`` → engine ``i mod E``, never split (the baseline).

**Per-sample seeds.** Sample ``j`` of prompt ``i`` (its position in the step's prompt batch) always
samples with ``request_seed(seed, i) + j`` (``rollout.sampling.request_seed``; vLLM seeds child ``j``
of a request seeded ``s`` with ``s + j``, v1/engine/parallel_sampling.py:69-81). A shard is sent as
one request with ``n = num_samples`` and ``seed = request_seed(seed, i) + first_sample``, so the
samples are the same whatever the number of engines and whichever engine draws them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Sequence

from megatron_lwz.rollout.sampling import request_seed
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, SamplingParams

DispatchPolicy = Literal["length_aware", "round_robin"]


@dataclass(frozen=True)
class Shard:
    """Consecutive samples ``first_sample .. first_sample + num_samples`` of one prompt."""

    prompt_index: int
    """Position of the prompt in the step's prompt batch (the per-sample seed depends on it)."""
    first_sample: int
    """Index of the first sample within the prompt's group."""
    num_samples: int
    """How many consecutive samples."""
    cost: float
    """Predicted cost: ``num_samples`` × predicted response tokens."""


def predicted_tokens(record: PromptRecord, *, max_tokens: int, tokens_per_word: float = 1.33,
                     think_tokens: int = 2500) -> float:
    """Predicted response tokens of one sample of ``record`` (think + answer, capped at ``max_tokens``)."""
    words = 0.5 * (record.length_lower + record.length_upper)
    return float(min(max_tokens, think_tokens + tokens_per_word * words))


def _split(prompt_index: int, group_size: int, parts: int, per_sample: float) -> list[Shard]:
    parts = max(1, min(group_size, parts))
    base, extra = divmod(group_size, parts)
    shards, first = [], 0
    for k in range(parts):
        n = base + (1 if k < extra else 0)
        shards.append(Shard(prompt_index, first, n, n * per_sample))
        first += n
    return shards


def plan_dispatch(costs: Sequence[float], group_size: int, num_engines: int,
                  policy: DispatchPolicy = "length_aware", *, split: bool = True) -> list[list[Shard]]:
    """Shards of each engine. ``costs[i]``: predicted tokens of one sample of prompt ``i``."""
    if num_engines < 1:
        raise ValueError(f"num_engines={num_engines} must be >= 1")
    if group_size < 1:
        raise ValueError(f"group_size={group_size} must be >= 1")
    plan: list[list[Shard]] = [[] for _ in range(num_engines)]
    if policy == "round_robin":
        for i, c in enumerate(costs):
            plan[i % num_engines].append(Shard(i, 0, group_size, group_size * c))
        return plan
    if policy != "length_aware":
        raise ValueError(f"dispatch policy {policy!r} is not 'length_aware' or 'round_robin'")
    share = sum(costs) * group_size / num_engines
    shards = []
    for i, c in enumerate(costs):
        parts = math.ceil(group_size * c / share - 1e-9) if split and share > 0 else 1
        shards += _split(i, group_size, parts, c)
    shards.sort(key=lambda s: (-s.cost, s.prompt_index, s.first_sample))
    loads = [0.0] * num_engines
    for shard in shards:
        engine = min(range(num_engines), key=lambda e: (loads[e], e))
        plan[engine].append(shard)
        loads[engine] += shard.cost
    for shards_of_engine in plan:
        shards_of_engine.sort(key=lambda s: (s.prompt_index, s.first_sample))
    return plan


def engine_loads(plan: Sequence[Sequence[Shard]]) -> list[float]:
    """Predicted cost per engine."""
    return [sum(s.cost for s in shards) for shards in plan]


def shard_params(params: SamplingParams, shard: Shard) -> SamplingParams:
    """The request of one shard: ``n = num_samples``, seed ``request_seed(seed, i) + first_sample``."""
    seed = None if params.seed is None else request_seed(params.seed, shard.prompt_index) + shard.first_sample
    return dataclasses.replace(params, n=shard.num_samples, seed=seed)


def engine_request(shards: Sequence[Shard], prompts: Sequence[PromptRecord], texts: Sequence[str],
                   params: SamplingParams) -> tuple[list[PromptRecord], list[str], list[SamplingParams]]:
    """Arguments of ``engine.generate`` for one engine's shards (one request per shard)."""
    return ([prompts[s.prompt_index] for s in shards], [texts[s.prompt_index] for s in shards],
            [shard_params(params, s) for s in shards])


def merge_groups(prompts: Sequence[PromptRecord], plan: Sequence[Sequence[Shard]],
                 results: Sequence[Sequence[RolloutGroup]], group_size: int) -> list[RolloutGroup]:
    """One RolloutGroup per prompt, in prompt order, samples in sample order, from every engine's
    results (``results[e][k]`` answers ``plan[e][k]``)."""
    parts: dict[int, list[tuple[int, RolloutGroup]]] = {}
    for e, (shards, groups) in enumerate(zip(plan, results)):
        if len(shards) != len(groups):
            raise RuntimeError(f"engine {e} returned {len(groups)} groups for {len(shards)} shards")
        for shard, group in zip(shards, groups):
            if len(group) != shard.num_samples:
                raise RuntimeError(f"engine {e}: prompt {shard.prompt_index} returned {len(group)} samples, "
                                   f"expected {shard.num_samples}")
            parts.setdefault(shard.prompt_index, []).append((shard.first_sample, group))
    merged = []
    for i, record in enumerate(prompts):
        pieces = sorted(parts.get(i, []), key=lambda p: p[0])
        samples = [s for _, g in pieces for s in g.samples]
        if len(samples) != group_size:
            raise RuntimeError(f"prompt {i} ({record.prompt_id}): {len(samples)} samples after merging, "
                               f"expected {group_size}")
        merged.append(RolloutGroup(prompt=record, samples=samples))
    return merged


def generate_dispatched(engines: Sequence, prompts: Sequence[PromptRecord], texts: Sequence[str],
                        params: SamplingParams, plan: Sequence[Sequence[Shard]]) -> list[RolloutGroup]:
    """Run ``plan`` on in-process ``engines`` one after the other and merge (tests, benchmarks)."""
    results = []
    for engine, shards in zip(engines, plan):
        results.append(engine.generate(*engine_request(shards, prompts, texts, params)) if shards else [])
    return merge_groups(prompts, plan, results, params.n)


__all__ = ["DispatchPolicy", "Shard", "engine_loads", "engine_request", "generate_dispatched", "merge_groups",
           "plan_dispatch", "predicted_tokens", "shard_params"]

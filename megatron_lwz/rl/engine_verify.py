"""Per-engine weight-sync verification for the engine pool: every engine's log-prob gap to the trainer.

The loop's rollout-vs-trainer gap (``rollout/logprob_gap_mean``) averages over all samples, so one
broken engine among eight moves it by only an eighth of its error. After a sync that is due for
verification (``rollout.verify_every``), this takes the first ``rollout.verify_num_samples`` samples
each engine generated (the pool's last dispatch plan), recomputes their log-probs with the trainer
(the same micro-batch path as the old log-probs, rl/step.py) and compares them with the engine's own
``raw_logprobs``: ``rollout/engine{e}/logprob_gap_mean``. Any engine over ``rollout.verify_threshold``
raises :class:`~megatron_lwz.rollout.verify.WeightSyncMismatch` naming it, on every rank.
"""

from __future__ import annotations

import dataclasses

from megatron_lwz.rl.batching import build_train_batch
from megatron_lwz.rl.step import attach_logprobs, check_logprob_gap, logprob_gap, plan_minibatch
from megatron_lwz.rollout.types import RolloutGroup


def probe_groups(groups: list[RolloutGroup], shards, count: int) -> list[RolloutGroup]:
    """Up to ``count`` samples one engine generated (its shards, in order), as groups."""
    out: list[RolloutGroup] = []
    left = count
    for shard in shards:
        if left <= 0:
            break
        group = groups[shard.prompt_index]
        samples = group.samples[shard.first_sample:shard.first_sample + shard.num_samples][:left]
        out.append(RolloutGroup(prompt=group.prompt, samples=samples))
        left -= len(samples)
    return out


def check_engines(policy, pool, groups: list[RolloutGroup], cfg, ctx, pad_token_id: int, step: int) -> dict[str, float]:
    """Per-engine gap metrics; raises WeightSyncMismatch naming the first engine over the threshold."""
    from megatron_lwz.rollout.verify import WeightSyncMismatch

    plan = getattr(pool, "last_plan", None)
    if not plan:
        return {}
    batching = dataclasses.replace(cfg.rl.batching, dynamic_sampling=False)
    metrics: dict[str, float] = {}
    for engine, shards in enumerate(plan):
        probe = probe_groups(groups, shards, cfg.rollout.verify_num_samples)
        if not probe:
            continue
        batch = build_train_batch(probe, [[0.0] * len(g.samples) for g in probe], batching, pad_token_id=pad_token_id)
        mbs = plan_minibatch(batch, cfg, ctx)
        attach_logprobs(policy, mbs, "old_logprobs")
        gap = logprob_gap(mbs, ctx)["rollout/logprob_gap_mean"]
        metrics[f"rollout/engine{engine}/logprob_gap_mean"] = gap
    for key, gap in metrics.items():
        if gap > cfg.rollout.verify_threshold:
            raise WeightSyncMismatch(f"step {step}: {key.split('/')[1]} of the rollout pool: mean |rollout − trainer| "
                                     f"log-prob gap {gap:.3g} > rollout.verify_threshold="
                                     f"{cfg.rollout.verify_threshold} (its weights differ from the trainer's)")
    return metrics


def verify_sync(metrics: dict[str, float], off: dict[str, float], policy, rt, groups: list[RolloutGroup], cfg, step: int,
                *, sync_index: int) -> None:
    """The loop's checks after the old log-probs: the all-sample gap (rl/step.py ``check_logprob_gap``), and
    with an engine pool every engine's own gap. Skipped for a batch one policy old (one-step-off): its gap
    measures the last update, not the sync."""
    if off.get("offpolicy/staleness"):
        return
    check_logprob_gap(metrics, cfg.rollout, step, sync_index=sync_index)
    if hasattr(rt.engine, "last_plan") and cfg.rollout.should_verify(sync_index):
        metrics.update(check_engines(policy, rt.engine, groups, cfg, policy.ctx, rt.tokenizer.pad_id, step))


__all__ = ["check_engines", "probe_groups", "verify_sync"]

"""``lwz grpo``: LongWriter-Zero GRPO (paper §4–6) — the loop, on one screen.

Per iteration: prompts (think template) → G samples each → Length (Eq. 3), Writing (BT RM, Eq. 4)
and Format rewards → per-reward group-normalised advantages averaged (Eq. 5) → old log-probs →
``num_minibatches`` clipped-surrogate updates (ε = 0.2, β = 0 by default) → weight sync into the
rollout engine → metrics, sample dump, checkpoint. Variant details live in rl/loss.py,
rl/advantage.py, rewards/composite.py and rl/step.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from megatron_lwz.engine.session import start_session
from megatron_lwz.metrics.timing import timed
from megatron_lwz.rl.advantage import advantages_for_groups
from megatron_lwz.rl.batching import build_train_batch, minibatches_for_update
from megatron_lwz.rl.engine_verify import verify_sync
from megatron_lwz.rl.job_config import GRPOJobConfig
from megatron_lwz.rl.metrics import dump_samples, rollout_metrics
from megatron_lwz.rl.offpolicy import OneStepOff, finish_pool
from megatron_lwz.rl.prompts import prompt_batch
from megatron_lwz.rl.runtime import build_runtime
from megatron_lwz.rl.step import (
    plan_minibatch, rollout, set_old_logprobs, sync_weights, train_minibatch,
)

PLOTS = {"grpo_rewards": ("reward/total/mean", "reward/length/mean", "reward/format/mean", "reward/writing/mean",
                          "rollout/length_in_range_frac"),
         "grpo_lengths": ("rollout/answer_words/mean", "rollout/think_words/mean", "rollout/response_tokens/mean",
                          "rollout/truncated_frac", "train/clipped_high_frac", "train/entropy_mean")}
EVAL_PLOTS = {"grpo_eval": ("eval/reward/total/mean", "eval/reward/length/mean", "eval/reward/writing/mean",
                            "eval/reward/format/mean", "eval/rollout/length_in_range_frac")}


@dataclass
class GRPOResult:
    run_dir: str
    steps: int
    interrupted: bool


def run(cfg: GRPOJobConfig) -> GRPOResult:
    rl = cfg.rl
    session = start_session(cfg, tokenizer_dir=cfg.tokenizer.path, total_steps=rl.num_steps * rl.batching.num_minibatches,
                            console_keys=("reward/total/mean", "reward/format/mean", "rollout/length_in_range_frac"))
    ctx, policy, state = session.ctx, session.trainer, session.state
    rt = build_runtime(cfg, session)
    sync_weights(policy, rt.engine, cfg.rollout, rt.staging)  # the engine starts from the trainer's weights
    weights = cfg.reward.weight_vector()
    bar = tqdm(total=rl.num_steps, initial=state.step, desc="grpo", disable=not (ctx.is_rank0 and cfg.logging.progress))
    interrupted, first_step = False, state.step
    offp = OneStepOff(cfg, rt, policy, first_step) if rl.off_policy_steps else None  # rl/offpolicy.py
    while state.step < rl.num_steps:
        times: dict[str, float] = {}
        prompts = prompt_batch(rt.prompts, cfg.prompts.shuffle_seed, state.consumed_samples, rl.prompts_per_step)
        held_out = [] if offp else rt.evaluator.generate(state.step)  # [] unless rl.eval is due for the current weights
        with timed(times, "rollout"):  # one-step-off: batch n came from θ_{n−1}; θ_n synced, n+1 submitted (rl/offpolicy.py)
            groups, held_out, off = (offp.next(state.step, state.consumed_samples, rt.evaluator.generate) if offp else
                                     (rollout(rt.engine, rt.engine_kind, prompts, cfg, state.step, ctx), held_out, {}))
        rt.engine.sleep()  # vLLM frees weights + KV cache for scoring and training (HF engine: no-op)
        rt.evaluator.report(held_out, state.step, session.logger, session.run_dir)
        with timed(times, "reward"):
            metrics = rt.scorer.score(groups)
        batch = build_train_batch(groups, advantages_for_groups(groups, cfg.reward), rl.batching,
                                  pad_token_id=rt.tokenizer.pad_id)
        minibatches = minibatches_for_update(batch, rl.batching.num_minibatches, ctx.dp, seed=rl.seed + state.step,
                                             warn=ctx.is_rank0)  # fewer rows than DP × mini-batches: warns
        plans = [plan_minibatch(mb, cfg, ctx) for mb in minibatches]
        with timed(times, "old_logprobs"):
            metrics.update(set_old_logprobs(policy, plans, cfg, rt.reference))
        metrics.update(off)
        verify_sync(metrics, off, policy, rt, groups, cfg, state.step, sync_index=state.step - first_step)
        with timed(times, "train"):
            for minibatch, plan in zip(minibatches, plans):
                result, loss_metrics = train_minibatch(policy, minibatch, plan, cfg)
                metrics.update({f"train/{k}": v for k, v in loss_metrics.items()})
                metrics.update({"train/grad_norm": result.grad_norm, "train/lr": result.lr})
        if offp is None:  # one-step-off syncs inside offp.next(), before submitting the next batch
            with timed(times, "sync"):
                metrics.update(sync_weights(policy, rt.engine, cfg.rollout, rt.staging))
        state.step += 1
        state.consumed_samples += rl.prompts_per_step
        tokens = sum(s.num_tokens for g in groups for s in g.samples)
        metrics.update(rollout_metrics(groups, weights), **times, **{"perf/tokens_per_s": tokens / sum(times.values())},
                       **{"train/rows": float(len(batch)), "train/updates": float(len(minibatches))})
        session.logger.log(state.step, metrics, echo=not cfg.logging.progress)
        if ctx.is_rank0:
            dump_samples(groups, session.run_dir / "rollouts" / f"step_{state.step:05d}.jsonl", rl.dump_samples, state.step)
        bar.update(1)
        bar.set_postfix(reward=f"{metrics['reward/total/mean']:.3f}")
        if session.step_end(rl.num_steps):
            interrupted = True
            break
    bar.close()
    finish_pool(offp, state.step, interrupted)  # one-step-off: the final weights into the engines
    if not interrupted and state.step > first_step:  # the final policy (the engine holds its weights)
        rt.evaluator.report(rt.evaluator.generate(state.step), state.step, session.logger, session.run_dir)
    rt.close()
    session.finish(PLOTS | EVAL_PLOTS if rt.evaluator.prompts else PLOTS)
    return GRPOResult(run_dir=str(session.run_dir), steps=state.step, interrupted=interrupted)

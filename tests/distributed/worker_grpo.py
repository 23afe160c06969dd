"""Worker: one GRPO update on fixed synthetic groups, at the layouts given, from the same init.

Checks made by the test on the output: at the first update with recomputed old log-probs the ratio
is exactly 1 (no clipping) and the k3 KL to a frozen copy of the initial policy is exactly 0;
TP=2 equals TP=1 (loss metrics, grad norm, final weights).
"""

from __future__ import annotations

import torch

from megatron_lwz import parallel
from megatron_lwz.checkpoint.full_state import gather_full_state, load_full_state
from megatron_lwz.config.schema import ModelConfig, OptimConfig, PrecisionConfig, SchedulerConfig
from megatron_lwz.data.tokenizer import TokenizerConfig
from megatron_lwz.engine.trainer import build_inference_model, build_trainer
from megatron_lwz.rewards.composite import RewardConfig
from megatron_lwz.rl.advantage import advantages_for_groups
from megatron_lwz.rl.batching import build_train_batch
from megatron_lwz.rl.config import BatchingConfig, LossConfig
from megatron_lwz.rl.job_config import GRPOConfig, GRPOJobConfig
from megatron_lwz.rl.prompts import PromptDataConfig
from megatron_lwz.rl.step import plan_minibatch, set_old_logprobs, train_minibatch
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, Sample
from tests.distributed.workerlib import parse_layout, run_layouts


def make_groups(vocab: int, num_groups: int = 3, group_size: int = 4) -> list[RolloutGroup]:
    gen = torch.Generator().manual_seed(11)
    groups = []
    for g in range(num_groups):
        prompt = PromptRecord(prompt_id=f"p{g}", question=f"q{g}", length_lower=1, length_upper=5)
        plen = 5 + g
        prompt_ids = torch.randint(3, vocab, (plen,), generator=gen).tolist()
        samples = []
        for j in range(group_size):
            resp = torch.randint(3, vocab, (3 + (j * 2 + g) % 7,), generator=gen).tolist()
            s = Sample(prompt=prompt, prompt_text="", prompt_token_ids=prompt_ids, response_token_ids=resp,
                       response_text="", finish_reason="stop", rollout_logprobs=[-1.0] * len(resp))
            s.rewards = {"length": float((j * 7 + g) % 5) / 4, "format": float(j % 2)}
            samples.append(s)
        groups.append(RolloutGroup(prompt=prompt, samples=samples))
    return groups


def job_config(layout: str) -> GRPOJobConfig:
    return GRPOJobConfig(
        model=ModelConfig(preset="tiny"), tokenizer=TokenizerConfig(path="unused"),
        parallel=parse_layout(layout, seed=5),
        precision=PrecisionConfig(dtype="fp32"), optim=OptimConfig(lr=1e-3, weight_decay=0.0, clip_grad=1.0),
        prompts=PromptDataConfig(path="unused"), reward=RewardConfig(components=["length", "format"]),
        rl=GRPOConfig(loss=LossConfig(kl_coef=0.1), batching=BatchingConfig(micro_token_budget=48)),
    )


def run_layout(layout: str, args) -> dict:
    init_path, write_init = args.init, args.write_init
    cfg = job_config(layout)
    ctx = parallel.init_model_parallel(cfg.parallel)
    common = dict(model=cfg.model, parallel=cfg.parallel, precision=cfg.precision, ctx=ctx)
    trainer = build_trainer(**common, optim=cfg.optim, scheduler=SchedulerConfig(decay_style="constant"), total_steps=2)
    reference = build_inference_model(**common)
    if write_init:
        torch.save(gather_full_state(trainer.unwrapped(), ctx, False), init_path)
    init = torch.load(init_path)
    load_full_state(trainer.unwrapped(), init, ctx, False)
    load_full_state(reference.unwrapped(), init, ctx, False)
    groups = make_groups(trainer.arch.vocab_size)
    batch = build_train_batch(groups, advantages_for_groups(groups, cfg.reward), cfg.rl.batching, pad_token_id=0)
    plan = plan_minibatch(batch, cfg, ctx)
    set_old_logprobs(trainer, [plan], cfg, reference)
    results = []
    for _ in range(2):  # two updates on the same data: the second one sees ratio ≠ 1
        result, metrics = train_minibatch(trainer, batch, plan, cfg)
        results.append({"grad_norm": result.grad_norm, **metrics})
    final = gather_full_state(trainer.unwrapped(), ctx, False)
    parallel.destroy_model_parallel()
    return {"steps": results, "params": {k: v.flatten().tolist() for k, v in final.items()},
            "num_microbatches": len(plan)}


if __name__ == "__main__":
    run_layouts(run_layout)

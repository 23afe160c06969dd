"""Worker: two Bradley–Terry Writing-RM training steps plus a held-out evaluation, through
``rm_train.rm_step`` / ``rm_train.evaluate`` (the loop's code), at the layouts given, from one init.

Reports per-step losses and accuracies, the held-out metrics, and the (rows, length) of every
micro-batch with the longest pair of the step, so the test can check that PP pads to the batch's
longest sequence (not ``data.max_length``) and still equals the single-process run.
"""

from __future__ import annotations

import torch

from megatron_lwz import parallel
from megatron_lwz.checkpoint.full_state import gather_full_state, load_full_state
from megatron_lwz.config.schema import ModelConfig, OptimConfig, PrecisionConfig, SchedulerConfig, TrainLoopConfig
from megatron_lwz.data.tokenizer import TokenizerConfig
from megatron_lwz.engine.trainer import build_trainer
from megatron_lwz.models.presets import resolve
from megatron_lwz.models.reward_head import attach_reward_head
from megatron_lwz.rewards.rm_config import RMJobConfig
from megatron_lwz.rewards.rm_data import PairSet, RMDataConfig, epoch_order
from megatron_lwz.rewards.rm_train import evaluate, rm_step
from tests.distributed.workerlib import parse_layout, run_layouts

MAX_LENGTH = 64  # data.max_length: far above every pair here, so padding to it would show


def make_pairs(vocab: int, count: int, seed: int) -> PairSet:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 24, (count, 2), generator=gen).tolist()
    return PairSet(chosen=[torch.randint(1, vocab, (a,), generator=gen).tolist() for a, _ in lengths],
                   rejected=[torch.randint(1, vocab, (b,), generator=gen).tolist() for _, b in lengths])


def run_layout(layout: str, args) -> dict:
    cfg = RMJobConfig(model=ModelConfig(preset="tiny", tie_word_embeddings=False), parallel=parse_layout(layout, seed=3),
                      precision=PrecisionConfig(dtype="fp32"), optim=OptimConfig(lr=1e-3, weight_decay=0.0, clip_grad=1.0),
                      train=TrainLoopConfig(micro_batch_size=2, global_batch_size=4, train_steps=2),
                      data=RMDataConfig(train_path="unused", tokenizer=TokenizerConfig(path="unused"), max_length=MAX_LENGTH))
    ctx = parallel.init_model_parallel(cfg.parallel)
    arch = resolve(cfg.model)
    trainer = build_trainer(model=cfg.model, parallel=cfg.parallel, precision=cfg.precision, optim=cfg.optim,
                            scheduler=SchedulerConfig(decay_style="constant"), total_steps=2, ctx=ctx,
                            post_build=lambda c: attach_reward_head(c, arch.hidden_size, 0.5))
    if args.write_init:
        torch.save(gather_full_state(trainer.unwrapped(), ctx, False), args.init)
    load_full_state(trainer.unwrapped(), torch.load(args.init), ctx, False)
    train, valid = make_pairs(arch.vocab_size, 10, 1), make_pairs(arch.vocab_size, 6, 2)
    steps = []
    for step in range(2):
        consumed = step * cfg.train.global_batch_size
        result, mbs = rm_step(trainer, train, cfg, consumed, pad_id=0)
        batch = epoch_order(len(train), cfg.data.seed, consumed, cfg.train.global_batch_size)
        steps.append({"loss": result.report["loss"], "correct": result.report["correct"],
                      "margin": result.report["margin"], "grad_norm": result.grad_norm,
                      "shapes": [list(mb["tokens"].shape) for mb in mbs],
                      "batch_longest": max(max(len(train.chosen[i]), len(train.rejected[i])) for i in batch)})
    held = evaluate(trainer, valid, cfg, pad_id=0)
    parallel.destroy_model_parallel()
    return {"steps": steps, "eval": held}


if __name__ == "__main__":
    run_layouts(run_layout)

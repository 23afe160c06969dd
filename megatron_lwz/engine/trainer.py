"""Shared training mechanics for pretraining, Writing-RM training and GRPO.

``build_trainer`` wraps the model chunks in megatron DDP (Float16Module for bf16/fp16), builds the
megatron optimizer (DistributedOptimizer when enabled) and the LR scheduler, and wires the hooks a
schedule needs (``finalize_model_grads`` — without it DP gradients are never reduced — and the
overlap sync functions). ``engine.step`` runs steps on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from megatron_lwz.config.alignment import sequence_multiple
from megatron_lwz.config.megatron import resolve_dtype, to_ddp_config, to_optimizer_config
from megatron_lwz.config.schema import (
    ModelConfig,
    OptimConfig,
    ParallelConfig,
    PrecisionConfig,
    SchedulerConfig,
)
from megatron_lwz.models.gpt import BuiltModel, build_model
from megatron_lwz.models.presets import ModelArch
from megatron_lwz.parallel.state import ParallelContext


@dataclass
class Trainer:
    """Everything a training step needs. ``model`` holds the wrapped chunks (one per VPP stage)."""

    ctx: ParallelContext
    built: BuiltModel
    model: list
    optimizer: Any
    scheduler: Any
    dtype: torch.dtype

    @property
    def arch(self) -> ModelArch:
        return self.built.arch

    @property
    def config(self) -> Any:
        return self.built.transformer_config

    @property
    def seq_multiple(self) -> int:
        """Sequence lengths must be a multiple of this: TP under sequence parallelism × the FP8 GEMM
        alignment (config/alignment.py)."""
        c = self.config
        return sequence_multiple(self.ctx.tp, c.sequence_parallel, c.fp8, c.fp8_recipe)

    def unwrapped(self) -> list:
        from megatron_lwz.checkpoint.full_state import unwrap

        return [unwrap(m) for m in self.model]

    def train(self, mode: bool = True) -> None:
        for chunk in self.model:
            chunk.train(mode)


def _wrap(chunks: list, built: BuiltModel, parallel: ParallelConfig, precision: PrecisionConfig) -> list:
    from megatron.core.distributed import DistributedDataParallel
    from megatron.core.transformer.module import Float16Module

    tconfig = built.transformer_config
    ddp_config = to_ddp_config(parallel, precision)
    wrapped = []
    for i, chunk in enumerate(chunks):
        if tconfig.bf16 or tconfig.fp16:
            chunk = Float16Module(tconfig, chunk)
        # Only the first chunk gets buckets overlapped with backward (Megatron-LM convention).
        wrapped.append(DistributedDataParallel(config=tconfig, ddp_config=ddp_config, module=chunk,
                                               disable_bucketing=i > 0))
    return wrapped


def _wire_schedule_hooks(model: list, built: BuiltModel, parallel: ParallelConfig) -> None:
    from megatron.core.distributed import finalize_model_grads

    tconfig = built.transformer_config
    tconfig.finalize_model_grads_func = finalize_model_grads
    if parallel.overlap_grad_reduce:
        tconfig.no_sync_func = [m.no_sync for m in model] if len(model) > 1 else model[0].no_sync
        tconfig.grad_sync_func = [m.start_grad_sync for m in model] if len(model) > 1 else model[0].start_grad_sync
    if parallel.overlap_param_gather and parallel.distributed_optimizer:
        funcs = [m.start_param_sync for m in model]
        tconfig.param_sync_func = funcs if len(model) > 1 else funcs[0]


def build_scheduler(optimizer: Any, optim: OptimConfig, sched: SchedulerConfig, total_steps: int) -> Any:
    """Linear warmup to optim.lr, then cosine/linear/constant decay to optim.min_lr (per optimizer step)."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    decay_steps = max(sched.decay_steps or total_steps, sched.warmup_steps + 1)
    return OptimizerParamScheduler(
        optimizer, init_lr=0.0, max_lr=optim.lr, min_lr=optim.min_lr,
        lr_warmup_steps=sched.warmup_steps, lr_decay_steps=decay_steps, lr_decay_style=sched.decay_style,
        start_wd=optim.weight_decay, end_wd=optim.weight_decay, wd_incr_steps=decay_steps,
        wd_incr_style="constant",
    )


def build_trainer(*, model: ModelConfig, parallel: ParallelConfig, precision: PrecisionConfig,
                  optim: OptimConfig, scheduler: SchedulerConfig, total_steps: int, ctx: ParallelContext,
                  arch: ModelArch | None = None, post_build=None) -> Trainer:
    """Model chunks → (Float16Module) → DDP → megatron optimizer + LR scheduler.

    ``post_build(chunks)`` may modify the raw chunks before wrapping (e.g. attach a reward head).
    """
    from megatron.core.optimizer import get_megatron_optimizer

    built = build_model(model, parallel, precision, ctx, arch=arch)
    if post_build is not None:
        post_build(built.chunks)
    wrapped = _wrap(built.chunks, built, parallel, precision)
    _wire_schedule_hooks(wrapped, built, parallel)
    optimizer = get_megatron_optimizer(to_optimizer_config(optim, parallel, precision), wrapped)
    sched = build_scheduler(optimizer, optim, scheduler, total_steps)
    return Trainer(ctx=ctx, built=built, model=wrapped, optimizer=optimizer, scheduler=sched,
                   dtype=resolve_dtype(precision))


def build_inference_model(*, model: ModelConfig, parallel: ParallelConfig, precision: PrecisionConfig,
                          ctx: ParallelContext, arch: ModelArch | None = None, post_build=None) -> Trainer:
    """A forward-only model on the same layout (Writing RM, KL reference): no DDP, no optimizer.

    Returned as a :class:`Trainer` with ``optimizer=None`` so ``engine.step.forward_only`` and the
    checkpoint loader accept it unchanged.
    """
    from megatron.core.transformer.module import Float16Module

    built = build_model(model, parallel, precision, ctx, arch=arch)
    if post_build is not None:
        post_build(built.chunks)
    tconfig = built.transformer_config
    chunks = [Float16Module(tconfig, c) if (tconfig.bf16 or tconfig.fp16) else c for c in built.chunks]
    for chunk in chunks:
        chunk.requires_grad_(False)
        chunk.eval()
    return Trainer(ctx=ctx, built=built, model=chunks, optimizer=None, scheduler=None,
                   dtype=resolve_dtype(precision))

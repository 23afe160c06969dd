"""One optimizer step (or one forward-only pass) over a list of micro-batches, any TP/PP/VPP/DP layout.

Loss convention (the same for pretraining, RM and GRPO): ``loss_fn(batch, output)`` returns this
micro-batch's *contribution* to the global mini-batch objective, already divided by the global
normaliser (tokens or sequences over all DP ranks), plus a dict of report *sums*. megatron's
schedule divides each micro-batch loss by the number of micro-batches and DDP averages gradients
over DP, so the engine multiplies by ``num_microbatches × DP`` to undo both: the gradient is then
exactly ∇ Σ contributions, independent of how the batch is split (this is what makes TP/PP/DP
runs equal the single-process run).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from megatron_lwz.engine.trainer import Trainer
from megatron_lwz.parallel.state import ParallelContext

ForwardFn = Callable[[Any, Any], torch.Tensor]
LossFn = Callable[[Any, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class StepResult:
    """Outcome of one optimizer step; ``report`` holds summed values, identical on every rank."""

    report: dict[str, float]
    grad_norm: float | None
    lr: float
    skipped: bool


def _check_pipeline_shapes(ctx: ParallelContext, microbatches: Sequence[Any]) -> None:
    """With PP the p2p buffers have one (B, T): a differently shaped micro-batch would be received
    into the wrong-sized buffer (silently wrong on gloo), so refuse it."""
    if ctx.pp > 1 and microbatches and isinstance(microbatches[0], dict) and "tokens" in microbatches[0]:
        shapes = {tuple(mb["tokens"].shape) for mb in microbatches}
        if len(shapes) > 1:
            raise ValueError(f"pipeline parallelism needs one micro-batch shape, got {sorted(shapes)}; "
                             "pad micro-batches to a common (rows, length)")


def to_device(batch: Any, device: torch.device) -> Any:
    """A micro-batch (tensor, dict/list/tuple of tensors) with every tensor on ``device``.

    Data pipelines build micro-batches on the host; the model lives on ``ctx.device`` (the GPU).
    Called once per micro-batch inside the schedule's ``forward_step``, so the same moved batch
    feeds both the forward and the loss (no host/device mix in the loss either)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _data_iterator(trainer: Trainer, microbatches: Sequence[Any]):
    ctx = trainer.ctx
    _check_pipeline_shapes(ctx, microbatches)
    if ctx.vpp and len(microbatches) < ctx.pp:
        raise ValueError(f"interleaved pipeline (virtual_pipeline_parallel={ctx.vpp}) needs at least "
                         f"PP={ctx.pp} micro-batches per step, got {len(microbatches)}; raise the batch size")
    if len(trainer.model) > 1:
        return [iter(microbatches) for _ in trainer.model]
    return iter(microbatches)


def reduce_reports(reports: list[dict[str, torch.Tensor]], ctx: ParallelContext) -> dict[str, float]:
    """Sum report dicts over micro-batches and DP (last stage), then share them with every PP stage."""
    summed: dict[str, float] = {}
    if ctx.is_last_stage and reports:
        keys = sorted(reports[0])
        # On ctx.device: the DP×CP group is NCCL on GPU, which takes no host tensors.
        flat = torch.stack([sum(r[k].to(ctx.device, torch.float64).sum() for r in reports) for k in keys])
        if ctx.dp * ctx.cp > 1:
            dist.all_reduce(flat, group=ctx.dp_cp_group)
        summed = dict(zip(keys, flat.cpu().tolist()))
    if ctx.pp > 1:
        holder = [summed]
        src = dist.get_global_rank(ctx.pp_group, ctx.pp - 1)
        dist.broadcast_object_list(holder, src=src, group=ctx.pp_group)
        summed = holder[0]
    return summed


def train_step(trainer: Trainer, microbatches: Sequence[Any], forward_fn: ForwardFn, loss_fn: LossFn,
               seq_length: int, micro_batch_size: int) -> StepResult:
    """Forward/backward over ``microbatches`` (this DP rank's share), then clip + optimizer + LR step.

    ``seq_length``/``micro_batch_size`` give the pipeline's p2p tensor shape (every micro-batch must
    have it when PP > 1). Every DP rank must pass the same number of micro-batches.
    """
    from megatron.core.pipeline_parallel import get_forward_backward_func

    for chunk in trainer.model:
        chunk.zero_grad_buffer()
    trainer.optimizer.zero_grad()
    scale = len(microbatches) * trainer.ctx.dp

    def loss_wrapper(batch, output):
        loss, report = loss_fn(batch, output)
        # .clone(): the schedule divides the returned loss in place (mcore_cpu.md pitfall 3).
        return loss * scale, {k: v.detach().clone() for k, v in report.items()}

    def forward_step(data_iterator, model):
        batch = to_device(next(data_iterator), trainer.ctx.device)
        return forward_fn(model, batch), functools.partial(loss_wrapper, batch)

    trainer.train(True)
    reports = get_forward_backward_func()(
        forward_step_func=forward_step, data_iterator=_data_iterator(trainer, microbatches),
        model=trainer.model, num_microbatches=len(microbatches), seq_length=seq_length,
        micro_batch_size=micro_batch_size, forward_only=False,
    )
    ok, grad_norm, _ = trainer.optimizer.step()
    if ok:
        trainer.scheduler.step(increment=1)
    lr = trainer.optimizer.param_groups[0]["lr"]
    return StepResult(report=reduce_reports(reports, trainer.ctx),
                      grad_norm=None if grad_norm is None else float(grad_norm), lr=float(lr), skipped=not ok)


@torch.no_grad()
def forward_only(trainer: Trainer, microbatches: Sequence[Any], forward_fn: ForwardFn,
                 collect_fn: Callable[[Any, torch.Tensor], Any], seq_length: int, micro_batch_size: int) -> list:
    """Run the model without gradients; returns ``collect_fn(batch, output)`` per micro-batch on the
    last pipeline stage (an empty list elsewhere)."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    def collect(batch, output, non_loss_data=True):
        return collect_fn(batch, output)

    def forward_step(data_iterator, model):
        batch = to_device(next(data_iterator), trainer.ctx.device)
        return forward_fn(model, batch), functools.partial(collect, batch)

    trainer.train(False)
    try:
        out = get_forward_backward_func()(
            forward_step_func=forward_step, data_iterator=_data_iterator(trainer, microbatches),
            model=trainer.model, num_microbatches=len(microbatches), seq_length=seq_length,
            micro_batch_size=micro_batch_size, forward_only=True, collect_non_loss_data=True,
        )
    finally:
        trainer.train(True)
    return list(out) if trainer.ctx.is_last_stage else []

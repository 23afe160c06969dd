"""Pieces of the pretraining loop: data, the masked next-token loss, evaluation and perf metrics.

Loss: token-mean cross entropy over the *global* batch — Σ_{ranks, micro-batches, tokens}
mask·CE / Σ mask — so the objective (and every parallel layout) is independent of how the batch is
split into micro-batches and DP ranks. The global token count is one all-reduce per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from megatron_lwz.bench.flops import PEAK_FLOPS, train_flops_per_token
from megatron_lwz.data.blend import GlobalBatchIterator, build_datasets
from megatron_lwz.engine.step import forward_only, reduce_reports
from megatron_lwz.parallel.state import ParallelContext


@dataclass
class PretrainData:
    """Train iterator (resumes at ``consumed_samples``) and a fresh-per-eval validation dataset."""

    train: GlobalBatchIterator
    valid: Any
    source_names: list[str]


def build_data(cfg, ctx: ParallelContext, consumed_samples: int) -> PretrainData:
    t = cfg.train
    num_train = t.train_steps * t.global_batch_size
    num_valid = t.eval_iters * t.global_batch_size if t.eval_interval else 1
    built = build_datasets(cfg.data, num_train, num_valid, is_rank0_builder=True)
    train = GlobalBatchIterator(built.train, global_batch_size=t.global_batch_size, micro_batch_size=t.micro_batch_size,
                                consumed_samples=consumed_samples, dp_rank=ctx.dp_rank, dp_size=ctx.dp)
    return PretrainData(train=train, valid=built.valid, source_names=built.source_names)


def forward_lm(model, batch: dict) -> torch.Tensor:
    """GPTModel with labels → per-token cross entropy (B, T) on the last stage, hidden states elsewhere."""
    return model(batch["tokens"], batch["position_ids"], batch.get("attention_mask"), labels=batch["labels"])


def global_token_count(microbatches: list[dict], ctx: ParallelContext) -> float:
    """Σ loss_mask over the whole global batch (all DP ranks)."""
    # On ctx.device: the DP×CP group is NCCL on GPU, which takes no host tensors.
    local = torch.tensor(float(sum(mb["loss_mask"].sum() for mb in microbatches)), dtype=torch.float64,
                         device=ctx.device)
    if ctx.dp * ctx.cp > 1:
        dist.all_reduce(local, group=ctx.dp_cp_group)
    return float(local)


def make_loss_fn(total_tokens: float):
    """Token-mean CE contribution of one micro-batch; reports the loss and token count."""

    def loss_fn(batch: dict, per_token: torch.Tensor):
        mask = batch["loss_mask"].to(per_token.device).float()  # (B, T)
        summed = (per_token.float() * mask).sum()
        return summed / total_tokens, {"loss": summed / total_tokens, "tokens": mask.sum()}

    return loss_fn


def evaluate(trainer, valid: Any, cfg, ctx: ParallelContext) -> float | None:
    """Mean token loss over the first ``eval_iters`` global batches of the validation split (the
    same batches at every evaluation, so the curve is comparable across steps)."""
    if valid is None:
        return None
    t = cfg.train
    it = GlobalBatchIterator(valid, global_batch_size=t.global_batch_size, micro_batch_size=t.micro_batch_size,
                             consumed_samples=0, dp_rank=ctx.dp_rank, dp_size=ctx.dp)
    reports = []
    for _ in range(t.eval_iters):
        mbs = next(it)
        reports += forward_only(trainer, mbs, forward_lm, _eval_collect, cfg.data.seq_length, t.micro_batch_size)
    summed = reduce_reports(reports, ctx)
    return summed["loss_sum"] / max(summed["tokens"], 1.0) if summed else None


def _eval_collect(batch: dict, per_token: torch.Tensor) -> dict[str, torch.Tensor]:
    mask = batch["loss_mask"].float()
    return {"loss_sum": (per_token.float() * mask).sum(), "tokens": mask.sum()}


def peak_flops(cfg) -> float | None:
    if cfg.peak_tflops_per_device:
        return cfg.peak_tflops_per_device * 1e12
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name().lower()
        for key, value in PEAK_FLOPS.items():
            if key.split("-")[0] in name and key.endswith("bf16"):
                return value
    return None


def perf_metrics(cfg, trainer, tokens: float, seconds: float) -> dict[str, float]:
    """Throughput, MFU (bench.flops formula) and memory of one step."""
    ctx = trainer.ctx
    out = {"perf/step_time_s": seconds, "perf/tokens_per_s": tokens / max(seconds, 1e-9)}
    peak = peak_flops(cfg)
    if peak:
        flops = train_flops_per_token(trainer.arch, cfg.data.seq_length) * tokens / seconds
        out["perf/mfu"] = flops / (ctx.world_size * peak)
    if torch.cuda.is_available():
        out["perf/max_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        import psutil

        out["perf/rss_gb"] = psutil.Process().memory_info().rss / 2**30
    return out

"""Harness overhead of ``engine.step.train_step``: our step vs a bare megatron-core loop.

The baseline is what a megatron-core user writes by hand on the *same* model chunks, optimizer
and micro-batches: ``zero_grad_buffer`` + ``get_forward_backward_func()(...)`` with a token-mean
CE loss + ``optimizer.step()`` + the LR step — none of our wrappers (device moves, loss scaling
closure, report cloning and the DP/PP report reduction, train-mode switch). Steps alternate
(ours, bare, ours, …) so drift hits both; the ratio is median(bare) / median(ours) =
our throughput as a share of the bare loop's (goal ≥ 0.95). Before timing, both run once from the
same weights and must give the same loss (they compute the same thing).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch


def bare_step(trainer: Any, microbatches: list[dict], seq_length: int, micro_batch_size: int,
              total_tokens: float) -> float:
    """One optimizer step written directly against megatron-core; returns the loss (last stage)."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    for chunk in trainer.model:
        chunk.zero_grad_buffer()
    trainer.optimizer.zero_grad()

    def forward_step(data_iterator, model):
        b = next(data_iterator)
        out = model(b["tokens"], b["position_ids"], None, labels=b["labels"])

        def loss_func(per_token):
            loss = (per_token.float() * b["loss_mask"]).sum() / total_tokens
            return loss * len(microbatches), {"loss": loss.detach().clone()}

        return out, loss_func

    losses = get_forward_backward_func()(forward_step_func=forward_step, data_iterator=iter(microbatches),
                                         model=trainer.model, num_microbatches=len(microbatches),
                                         seq_length=seq_length, micro_batch_size=micro_batch_size, forward_only=False)
    trainer.optimizer.step()
    trainer.scheduler.step(increment=1)
    return float(sum(r["loss"] for r in losses)) if losses else float("nan")


def measure(ours: Callable[[], float], bare: Callable[[], float], reset: Callable[[], None], steps: int,
            sync: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Same-weights loss check, then ``steps`` alternating timed steps of each; the ratio."""
    reset()
    loss_ours = ours()
    reset()
    loss_bare = bare()
    ours_s, bare_s = [], []
    for _ in range(steps):
        for fn, out in ((ours, ours_s), (bare, bare_s)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - start)
    ratio = statistics.median(bare_s) / statistics.median(ours_s)
    return {"ours_s": ours_s, "bare_s": bare_s, "ratio": ratio, "loss_ours": loss_ours, "loss_bare": loss_bare,
            "loss_diff": abs(loss_ours - loss_bare)}


def cuda_sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()

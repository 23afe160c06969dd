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

from megatron_lwz.engine.bare import bare_step

__all__ = ["bare_step", "cuda_sync", "measure"]


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

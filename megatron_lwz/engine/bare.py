"""The harness-overhead baseline: one optimizer step written directly against megatron-core.

``lwz bench train`` (bench/harness.py) times it against ``engine.step.train_step`` on the same
model chunks, optimizer and micro-batches. It lives in engine/ because only engine/, models/,
parallel/, checkpoint/ and data/ import megatron-core (tests/unit/meta/test_import_boundaries.py).
"""

from __future__ import annotations

from typing import Any


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

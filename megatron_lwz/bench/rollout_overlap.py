"""Measured per-iteration wall time of on-policy vs one-step-off GRPO iterations (CPU, real processes).

The rollout engine is an HF engine in its own process (rollout/engine_proc.py), the trainer a
transformers model of the same shape in this process: every iteration generates a batch (the
bench workload's lengths), takes ``train_passes`` forward/backward passes plus an SGD step on it,
and syncs the weights into the engine. On-policy: generate → train → sync. One-step-off
(rl/offpolicy.py's order): collect batch n → sync θ_n → submit batch n+1 → train on batch n, so
generation runs in the engine process while this process trains. Each process uses one thread.
"""

from __future__ import annotations

import time
from typing import Any


def _train(model: Any, optimizer: Any, groups: list, passes: int) -> None:
    import torch

    rows = [s.prompt_token_ids + s.response_token_ids for g in groups for s in g.samples]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])  # (B, T)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])  # (B, T)
    for _ in range(passes):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # (B, T-1, V)
        logp = logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
        loss = -(logp * mask[:, 1:]).sum() / mask[:, 1:].sum()
        optimizer.zero_grad()
        loss.backward()
    optimizer.step()


def iteration_seconds(requests: list[tuple[list, list, list]], *, one_step_off: bool, train_passes: int,
                      tiny_config: Any, tokenizer_cls: Any) -> float:
    """Mean wall seconds per iteration over ``requests`` (one engine request per iteration)."""
    import torch

    from megatron_lwz.rollout.engine_proc import ProcessEngine
    from megatron_lwz.rollout.hf_engine import build_hf_model

    torch.set_num_threads(1)
    model = build_hf_model(tiny_config, dtype="float32", init_seed=1).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    engine = ProcessEngine(tiny_config, tokenizer_cls, init_seed=1, threads=1)
    try:
        engine.update_weights(model.named_parameters())
        start = time.perf_counter()
        if one_step_off:
            engine.submit(*requests[0])
        for n, request in enumerate(requests):
            if one_step_off:
                groups = engine.result()
                if n:  # θ_n into the engine, then batch n+1 from it while batch n trains
                    engine.update_weights(model.named_parameters())
                if n + 1 < len(requests):
                    engine.submit(*requests[n + 1])
                _train(model, optimizer, groups, train_passes)
            else:
                groups = engine.generate(*request)
                _train(model, optimizer, groups, train_passes)
                engine.update_weights(model.named_parameters())
        return (time.perf_counter() - start) / len(requests)
    finally:
        engine.close()

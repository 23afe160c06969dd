"""Build the GRPO job's engine pool (``rollout.engine_gpus`` set): groups, engines, dispatch costs.

One engine per ``rollout.engine_gpus`` trainer ranks (0 = per node), built by the group's leader: the
HF engine on CPU (in this process, or in its own process with ``rollout.engine_process`` or
``rl.off_policy_steps = 1``), vLLM on GPU (``tensor_parallel_size`` = the group's GPUs; every rank of
the group holds the engine handle so the CUDA-IPC sync runs group-locally, rollout/vllm_group_ipc.py).
Dispatch costs are the predicted response tokens of each prompt's range (rollout/dispatch.py).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from megatron_lwz.config.base import ConfigError
from megatron_lwz.parallel.rollout_groups import engine_groups, ranks_per_engine
from megatron_lwz.rollout import build_engine
from megatron_lwz.rollout.dispatch import predicted_tokens
from megatron_lwz.rollout.hf_engine import resolve_dtype
from megatron_lwz.rollout.pool import EnginePool


def build_pool(cfg, source: Any, tokenizer: Any, kind: str, ctx) -> EnginePool:
    """The pool of this job (collective: every rank calls it)."""
    rcfg = cfg.rollout
    size = ranks_per_engine(rcfg.engine_gpus, ctx.world_size,  # no launcher variables: vLLM's TP size
                            default=rcfg.tensor_parallel_size if kind == "vllm" else None)
    if kind == "vllm" and rcfg.tensor_parallel_size != size:
        raise ConfigError(f"rollout.tensor_parallel_size ({rcfg.tensor_parallel_size}) must equal the GPUs per engine "
                          f"({size}, rollout.engine_gpus={rcfg.engine_gpus}): each engine spans its group's GPUs")
    if kind == "vllm" and cfg.rl.off_policy_steps:
        raise ConfigError("rl.off_policy_steps=1 needs the HF engine process (rollout.engine: hf)")
    groups = engine_groups(size, timeout_minutes=cfg.parallel.host_timeout_minutes)  # waits span a rollout
    cost = functools.partial(predicted_tokens, max_tokens=cfg.rl.max_tokens,
                             tokens_per_word=rcfg.dispatch_tokens_per_word, think_tokens=rcfg.dispatch_think_tokens)
    engine = None
    if kind == "vllm":
        from megatron_lwz.rollout.vllm_engine import VLLMRolloutEngine

        engine = VLLMRolloutEngine(source, tokenizer, rcfg, trainer_rank=groups.local_rank, seed=cfg.parallel.seed,
                                   group=groups.group)
    elif groups.is_leader and (rcfg.engine_process or cfg.rl.off_policy_steps):
        from megatron_lwz.data.tokenizer import Tokenizer
        from megatron_lwz.rollout.engine_proc import ProcessEngine

        engine = ProcessEngine(source, functools.partial(Tokenizer, cfg.tokenizer), init_seed=cfg.parallel.seed,
                               threads=max(1, torch.get_num_threads()), logprobs_mode=rcfg.logprobs_mode,
                               max_batch_size=rcfg.max_batch_size)
    elif groups.is_leader:
        engine = build_engine(rcfg, source, tokenizer, seed=cfg.parallel.seed)
    pool = EnginePool(groups, engine, dispatch=rcfg.dispatch, cost=cost, every_rank_syncs=kind == "vllm")
    pool.compute_dtype = torch.float32 if kind == "hf" else resolve_dtype(rcfg.dtype)
    return pool


__all__ = ["build_pool"]

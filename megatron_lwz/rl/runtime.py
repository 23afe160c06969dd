"""Everything the GRPO loop holds besides the policy trainer: engine, reward models, prompts."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from megatron_lwz.config.base import ConfigError
from megatron_lwz.data.tokenizer import Tokenizer
from megatron_lwz.engine.trainer import Trainer, build_inference_model
from megatron_lwz.models.presets import resolve
from megatron_lwz.models.reward_head import attach_reward_head
from megatron_lwz.rewards.composite import RewardScorer
from megatron_lwz.rewards.writing_rm import WritingRMScorer
from megatron_lwz.rl.prompts import load_prompts
from megatron_lwz.rollout import build_engine, resolve_engine_kind
from megatron_lwz.rollout.types import PromptRecord


@dataclass
class RLRuntime:
    tokenizer: Tokenizer
    engine: Any
    engine_kind: str
    scorer: RewardScorer
    prompts: list[PromptRecord]
    reference: Trainer | None
    evaluator: Any = None
    """Held-out evaluation (``rl.evaluate.Evaluator``; inert without ``rl.eval.path``)."""
    staging: Any = None
    """Shared-memory export buffers kept across weight syncs (CPU, one host); see rollout.export."""

    def close(self) -> None:
        """Release the export buffers and stop engine processes (engine pool)."""
        self.staging.close()
        if hasattr(self.engine, "close"):
            self.engine.close()


def _load_weights(model: Trainer, path: str, what: str) -> None:
    """Weights only (raises CheckpointError naming ``path`` when there is no checkpoint)."""
    from megatron_lwz.checkpoint.layout import CheckpointError
    from megatron_lwz.checkpoint.state import load_checkpoint

    try:
        load_checkpoint(model, Path(path), weights_only=True)
    except CheckpointError as err:
        raise CheckpointError(f"{what}: {err}") from None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a reader sees the old file or the new one, never a partial one


def _hf_source(cfg, policy: Trainer, run_dir: Path, kind: str, ctx) -> Any:
    """A transformers Qwen2Config (HF engine) or a config directory (vLLM reads one).

    The directory is written by local rank 0 of each node alone (every node's engine reads it, and a
    run directory need not be shared), file by file atomically, and every rank waits for it (host
    barrier): ranks rewriting it while vLLM reads it could hand vLLM a truncated config."""
    hf = policy.arch.to_hf_config()
    if kind == "hf":
        from transformers import Qwen2Config

        return Qwen2Config(**hf)
    path = run_dir / "rollout_hf_config"
    if ctx.local_rank == 0:
        path.mkdir(parents=True, exist_ok=True)
        _write_atomic(path / "config.json", json.dumps(hf, indent=2).encode())
        tok_dir = Path(cfg.tokenizer.path)
        for f in (tok_dir.iterdir() if tok_dir.is_dir() else []):  # vLLM loads its tokenizer from the same dir
            if f.is_file() and f.name != "config.json" and (f.name.startswith("tokenizer") or f.suffix in (".json", ".txt", ".model")):
                _write_atomic(path / f.name, f.read_bytes())
    ctx.barrier()
    return str(path)


def _build_engine(cfg, policy: Trainer, run_dir: Path, kind: str, tokenizer, ctx) -> Any:
    """The rollout engine, built after every other model of the job and put to sleep at once.

    vLLM sizes its KV cache at construction from the memory free on its GPUs, so everything else
    the job keeps on them (policy, optimizer, Writing RM, reference) must already be allocated and
    cached-but-free blocks returned (``empty_cache``) on every rank; a host barrier orders it. It
    holds dummy weights until the first sync, so it sleeps right away (level 2 discards them) and
    the first sync does not run beside a fully awake engine."""
    source = _hf_source(cfg, policy, run_dir, kind, ctx)
    if kind == "vllm":
        torch.cuda.empty_cache()
        ctx.barrier()
    if cfg.rollout.engine_gpus is not None:  # one engine per group of ranks (rl/engine_pool.py)
        from megatron_lwz.rl.engine_pool import build_pool

        engine = build_pool(cfg, source, tokenizer, kind, ctx)
    else:
        engine = build_engine(cfg.rollout, source, tokenizer, trainer_rank=ctx.rank, seed=cfg.parallel.seed)
    engine.sleep()
    if kind == "vllm":
        ctx.barrier()
    return engine


def _build_writing_rm(cfg, ctx, tokenizer) -> WritingRMScorer | None:
    if not cfg.writing_rm.checkpoint:
        return None
    rm_arch = resolve(cfg.writing_rm.model)
    rm = build_inference_model(model=cfg.writing_rm.model, parallel=cfg.parallel, precision=cfg.precision, ctx=ctx,
                               arch=rm_arch, post_build=lambda c: attach_reward_head(c, rm_arch.hidden_size, 0.02))
    _load_weights(rm, cfg.writing_rm.checkpoint, "writing_rm.checkpoint")
    return WritingRMScorer(rm, tokenizer, max_length=cfg.writing_rm.max_length,
                           max_prompt_tokens=cfg.writing_rm.max_prompt_tokens,
                           micro_batch_size=cfg.writing_rm.micro_batch_size)


def build_runtime(cfg, session) -> RLRuntime:
    """Tokenizer, Writing RM scorer and optional KL reference (same allocation), then the rollout
    engine (last: it sizes its KV cache from what the others left), prompts."""
    ctx, policy = session.ctx, session.trainer
    tokenizer = Tokenizer(cfg.tokenizer)
    kind = resolve_engine_kind(cfg.rollout)
    writing = _build_writing_rm(cfg, ctx, tokenizer)
    reference = None
    if cfg.rl.loss.kl_coef > 0:
        if not cfg.checkpoint.load_dir:
            raise ConfigError("rl.loss.kl_coef > 0 needs checkpoint.load_dir (the frozen reference policy)")
        reference = build_inference_model(model=cfg.model, parallel=cfg.parallel, precision=cfg.precision, ctx=ctx)
        _load_weights(reference, cfg.checkpoint.load_dir, "reference policy (checkpoint.load_dir)")
    engine = _build_engine(cfg, policy, session.run_dir, kind, tokenizer, ctx)
    prompt_set = load_prompts(cfg.prompts)
    if ctx.is_rank0 and prompt_set.skipped:
        print(f"prompts: skipped {prompt_set.skipped}; e.g. {prompt_set.examples[:3]}", flush=True)
    from megatron_lwz.rl.evaluate import Evaluator
    from megatron_lwz.rollout.export import ExportStaging

    return RLRuntime(tokenizer=tokenizer, engine=engine, engine_kind=kind,
                     scorer=RewardScorer(cfg.reward, score_writing=writing), prompts=prompt_set.records,
                     reference=reference, evaluator=Evaluator(cfg, engine, kind, ctx, writing), staging=ExportStaging())

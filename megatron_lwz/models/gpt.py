"""Build the Qwen2.5-architecture megatron-core ``GPTModel`` (RMSNorm, SwiGLU, RoPE, GQA, QKV bias).

The layer spec is Transformer Engine's with CUDA + TE ('te'), megatron-core's pure-torch one
otherwise ('local'); both produce the same dist-checkpoint keys (the local spec maps its norms onto
TE's fused names), so checkpoints move freely between them. No loops, no optimizers here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import torch

from megatron_lwz.config.base import ConfigError
from megatron_lwz.config.megatron import to_transformer_config
from megatron_lwz.config.schema import ModelConfig, ParallelConfig, PrecisionConfig
from megatron_lwz.models.presets import ModelArch, padded_vocab_size, resolve
from megatron_lwz.parallel.state import ParallelContext


def te_available() -> bool:
    """Transformer Engine importable and CUDA present (TE cannot work on a CPU box)."""
    return torch.cuda.is_available() and importlib.util.find_spec("transformer_engine") is not None


def use_transformer_engine(model: ModelConfig) -> bool:
    if model.layer_spec == "te":
        if not te_available():
            raise ConfigError("model.layer_spec=te needs CUDA and transformer-engine; use 'local' or 'auto'")
        return True
    return model.layer_spec == "auto" and te_available()


def layer_spec(use_te: bool) -> Any:
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if use_te:
        return get_gpt_layer_with_transformer_engine_spec()
    return get_gpt_layer_local_spec(normalization="RMSNorm")


@dataclass(frozen=True)
class BuiltModel:
    """Model chunks of this rank (one per virtual pipeline stage) and what they were built from."""

    chunks: list
    arch: ModelArch
    padded_vocab_size: int
    transformer_config: Any
    use_te: bool


def build_model(model: ModelConfig, parallel: ParallelConfig, precision: PrecisionConfig,
                ctx: ParallelContext, arch: ModelArch | None = None, initialize: bool = True) -> BuiltModel:
    """Build this rank's GPTModel chunk(s); random init from ``parallel.seed`` (megatron RNG tracker),
    or uninitialised storage with ``initialize=False`` (every weight must be written before use)."""
    from megatron.core.models.gpt import GPTModel

    arch = arch or resolve(model)
    use_te = use_transformer_engine(model)
    tconfig = to_transformer_config(arch, model, parallel, precision, use_te, initialize)
    spec = layer_spec(use_te)
    vocab = padded_vocab_size(arch.vocab_size, model.make_vocab_size_divisible_by, ctx.tp)
    num_chunks = ctx.vpp or 1
    chunks = []
    for vp_stage in range(num_chunks):
        pre = ctx.pp_rank == 0 and vp_stage == 0
        post = ctx.pp_rank == ctx.pp - 1 and vp_stage == num_chunks - 1
        gpt = GPTModel(
            config=tconfig, transformer_layer_spec=spec, vocab_size=vocab,
            max_sequence_length=arch.max_position_embeddings, pre_process=pre, post_process=post,
            parallel_output=True, share_embeddings_and_output_weights=arch.tie_word_embeddings,
            position_embedding_type="rope", rotary_percent=1.0, rotary_base=int(arch.rope_theta),
            vp_stage=vp_stage if ctx.vpp else None,
        )
        if torch.cuda.is_available():
            gpt.cuda(torch.cuda.current_device())
        chunks.append(gpt)
    return BuiltModel(chunks=chunks, arch=arch, padded_vocab_size=vocab, transformer_config=tconfig, use_te=use_te)

"""Translators from our config tree to megatron-core's own dataclasses.

The only module of ``config/`` that touches megatron (imported lazily inside each function), so
``megatron_lwz.config`` itself stays stdlib-only.
"""

from __future__ import annotations

from typing import Any

import torch

from megatron_lwz.config.schema import OptimConfig, ParallelConfig, PrecisionConfig


def resolve_dtype(precision: PrecisionConfig) -> torch.dtype:
    """'auto' → bf16 with CUDA, fp32 without."""
    name = precision.dtype
    if name == "auto":
        name = "bf16" if torch.cuda.is_available() else "fp32"
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def to_transformer_config(arch: Any, model: Any, parallel: ParallelConfig, precision: PrecisionConfig,
                          use_te: bool, initialize: bool = True) -> Any:
    """ModelArch + ModelConfig + parallel/precision → ``megatron.core.transformer.TransformerConfig``.

    ``initialize=False`` skips the random init (``perform_initialization``): for models whose every
    weight is overwritten right away (checkpoint conversion), where a 72B init costs minutes."""
    import torch.nn.functional as F
    from megatron.core.transformer import TransformerConfig

    dtype = resolve_dtype(precision)
    extra: dict[str, Any] = {}
    if precision.fp8:
        extra.update(fp8=precision.fp8, fp8_recipe=precision.fp8_recipe, fp8_param=fp8_params(precision))
    if model.recompute == "full":
        extra.update(recompute_granularity="full", recompute_method="uniform",
                     recompute_num_layers=model.recompute_num_layers)
    elif model.recompute == "selective":
        extra.update(recompute_granularity="selective")
    if parallel.virtual_pipeline_parallel:
        # PP=2 interleaving with batched p2p silently swaps activations and grads (NVIDIA/Megatron-LM#750).
        extra.update(overlap_p2p_comm=True, batch_p2p_comm=False)
    return TransformerConfig(
        num_layers=arch.num_layers, hidden_size=arch.hidden_size, ffn_hidden_size=arch.ffn_hidden_size,
        num_attention_heads=arch.num_attention_heads, num_query_groups=arch.num_query_groups,
        kv_channels=arch.head_dim, normalization="RMSNorm", layernorm_epsilon=arch.norm_eps,
        gated_linear_unit=True, activation_func=F.silu, add_bias_linear=False, add_qkv_bias=arch.qkv_bias,
        hidden_dropout=0.0, attention_dropout=0.0, init_method_std=model.init_method_std,
        bias_activation_fusion=model.swiglu_fusion, masked_softmax_fusion=False, bias_dropout_fusion=False,
        apply_rope_fusion=model.rope_fusion, persist_layer_norm=False,
        gradient_accumulation_fusion=model.gradient_accumulation_fusion,
        tensor_model_parallel_size=parallel.tensor_parallel, pipeline_model_parallel_size=parallel.pipeline_parallel,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline_parallel,
        context_parallel_size=parallel.context_parallel, sequence_parallel=parallel.sequence_parallel,
        tp_comm_overlap=parallel.tp_comm_overlap,
        params_dtype=dtype, pipeline_dtype=dtype, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        use_cpu_initialization=not torch.cuda.is_available(), deallocate_pipeline_outputs=False,
        perform_initialization=initialize, **extra,
    )


def fp8_params(precision: PrecisionConfig) -> bool:
    """Parameters kept in FP8 (``TransformerConfig.fp8_param``) — then the DDP config's
    ``fp8_param_gather`` must be set too: the distributed optimizer skips FP8 model params when it
    copies the updated main params back (megatron/core/optimizer/distrib_optimizer.py:2867-2869) and
    re-quantizes them only under ``ddp_config.fp8_param_gather`` (:2815-2843); without it the FP8
    weights are never updated. One predicate for both translators."""
    return bool(precision.fp8) and precision.fp8_param_gather


def to_ddp_config(parallel: ParallelConfig, precision: PrecisionConfig) -> Any:
    from megatron.core.distributed import DistributedDataParallelConfig

    return DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,  # fp32 main grads even with bf16 params
        overlap_grad_reduce=parallel.overlap_grad_reduce,
        overlap_param_gather=parallel.overlap_param_gather,
        use_distributed_optimizer=parallel.distributed_optimizer,
        fp8_param_gather=fp8_params(precision),
        average_in_collective=False,
        check_for_nan_in_grad=True,
    )


def to_optimizer_config(optim: OptimConfig, parallel: ParallelConfig, precision: PrecisionConfig) -> Any:
    from megatron.core.optimizer import OptimizerConfig

    dtype = resolve_dtype(precision)
    return OptimizerConfig(
        optimizer="adam", lr=optim.lr, min_lr=optim.min_lr, weight_decay=optim.weight_decay,
        adam_beta1=optim.adam_beta1, adam_beta2=optim.adam_beta2, adam_eps=optim.adam_eps,
        clip_grad=optim.clip_grad, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        params_dtype=dtype, use_distributed_optimizer=parallel.distributed_optimizer,
        overlap_param_gather=parallel.overlap_param_gather,
        decoupled_weight_decay=True,
    )

"""Cross-field and environment checks, run before any process group exists.

Every rule raises :class:`ConfigError` with the offending field(s) and the fix. Each rule has a
unit test (tests/unit/config/test_validate.py). ``cuda``/``te`` are parameters so the rules are
testable on a CPU machine.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from megatron_lwz.config.base import ConfigError
from megatron_lwz.config.schema import ModelConfig, ParallelConfig, PrecisionConfig


def environment() -> tuple[bool, bool]:
    """(CUDA available, Transformer Engine importable) without importing TE."""
    import torch

    cuda = torch.cuda.is_available()
    return cuda, cuda and importlib.util.find_spec("transformer_engine") is not None


def validate_parallel(arch: Any, parallel: ParallelConfig, world_size: int) -> int:
    """Layout rules; returns the derived data-parallel size."""
    if parallel.world_size is not None and parallel.world_size != world_size:
        raise ConfigError(f"parallel.world_size={parallel.world_size}: this recipe is written for "
                          f"{parallel.world_size} GPUs but the job has {world_size} processes")
    tp, pp, cp, vpp = (parallel.tensor_parallel, parallel.pipeline_parallel, parallel.context_parallel,
                       parallel.virtual_pipeline_parallel)
    if world_size % (tp * pp * cp):
        raise ConfigError(f"parallel: {world_size} processes are not divisible by TP×PP×CP = {tp}×{pp}×{cp}; "
                          "change the sizes or the number of processes")
    if arch.num_attention_heads % tp:
        raise ConfigError(f"parallel.tensor_parallel={tp}: model.num_attention_heads={arch.num_attention_heads} "
                          f"is not divisible by it; use a TP size that divides the head count")
    if arch.num_query_groups % tp:
        raise ConfigError(f"parallel.tensor_parallel={tp}: model.num_query_groups={arch.num_query_groups} "
                          "(KV heads) is not divisible by it; use TP ≤ and dividing the KV head count")
    if vpp is not None and pp < 2:
        raise ConfigError("parallel.virtual_pipeline_parallel needs parallel.pipeline_parallel ≥ 2")
    stages = pp * (vpp or 1)
    if arch.num_layers % stages:
        raise ConfigError(f"parallel: model.num_layers={arch.num_layers} is not divisible by "
                          f"pipeline_parallel×virtual_pipeline_parallel = {stages}; pick sizes that divide it")
    if parallel.sequence_parallel and tp < 2:
        raise ConfigError("parallel.sequence_parallel needs parallel.tensor_parallel ≥ 2 (it shards over TP)")
    if parallel.overlap_param_gather and not parallel.distributed_optimizer:
        raise ConfigError("parallel.overlap_param_gather needs parallel.distributed_optimizer=true")
    return world_size // (tp * pp * cp)


def validate_precision(model: ModelConfig, parallel: ParallelConfig, precision: PrecisionConfig,
                       cuda: bool, te: bool) -> None:
    """Numerics and kernel-availability rules."""
    if precision.dtype == "fp16":
        raise ConfigError("precision.dtype=fp16 needs dynamic loss scaling, which megatron_lwz does not wire; "
                          "use bf16 (GPU) or fp32")
    if precision.fp8 and not (cuda and te):
        raise ConfigError(f"precision.fp8={precision.fp8!r} needs CUDA and transformer-engine "
                          "(pip install -e .[gpu]); set precision.fp8=null on this machine")
    if precision.fp8_param_gather and not precision.fp8:
        raise ConfigError("precision.fp8_param_gather=true needs precision.fp8 (FP8 parameters are TE FP8 tensors)")
    if precision.fp8_param_gather and not parallel.distributed_optimizer:
        # Only the distributed optimizer re-quantizes FP8 params after a step (distrib_optimizer.py:2815).
        raise ConfigError("precision.fp8_param_gather=true needs parallel.distributed_optimizer=true "
                          "(megatron updates FP8 parameters only through the distributed optimizer)")
    if precision.fp8 and model.layer_spec == "local":
        raise ConfigError("precision.fp8 needs model.layer_spec=te or auto (FP8 GEMMs are TE modules)")
    if model.layer_spec == "te" and not (cuda and te):
        raise ConfigError("model.layer_spec=te needs CUDA and transformer-engine; use 'auto' or 'local'")
    if parallel.context_parallel > 1:
        # The loops do not yet slice sequences over CP ranks (megatron expects the caller to);
        # accepting CP>1 would silently train on duplicated data.
        raise ConfigError("parallel.context_parallel>1 is not supported yet (the data path does not split "
                          "sequences over CP ranks); use TP/PP with activation recompute for long sequences")
    if parallel.sequence_parallel and not (cuda and te and model.layer_spec != "local"):
        raise ConfigError("parallel.sequence_parallel needs the TE layer spec (CUDA + transformer-engine): "
                          "megatron's local torch RMSNorm does not support it")


def validate_kernels(model: ModelConfig, parallel: ParallelConfig, cuda: bool, te: bool) -> None:
    """Fusion and TP-overlap switches: GPU kernels with their preconditions (megatron would fail
    late, inside the first forward, or silently fall back)."""
    te_spec = cuda and te and model.layer_spec != "local"
    if model.swiglu_fusion and not cuda:
        raise ConfigError("model.swiglu_fusion is a CUDA kernel fusion; set it false on this machine")
    if model.rope_fusion and not (cuda and te):
        raise ConfigError("model.rope_fusion needs CUDA and transformer-engine (TE's fused RoPE); set it false")
    if model.gradient_accumulation_fusion and not te_spec:
        raise ConfigError("model.gradient_accumulation_fusion needs the TE layer spec on CUDA (TE fuses the wgrad "
                          "accumulation; the local spec would need APEX); set it false or model.layer_spec=te")
    if parallel.tp_comm_overlap:
        if not te_spec:
            raise ConfigError("parallel.tp_comm_overlap needs the TE layer spec on CUDA (TE userbuffers)")
        if parallel.tensor_parallel < 2 or not parallel.sequence_parallel:
            raise ConfigError("parallel.tp_comm_overlap overlaps the all-gather/reduce-scatter of sequence "
                              "parallelism: it needs parallel.tensor_parallel ≥ 2 and parallel.sequence_parallel=true")


def validate_batch(parallel_dp: int, micro_batch_size: int, global_batch_size: int, seq_length: int,
                   arch: Any, vpp: int | None, pp: int, seq_multiple: int = 1) -> int:
    """Batch-shape rules; returns micro-batches per step per DP rank. ``seq_multiple``: TP when
    sequence parallelism shards the tokens over the TP ranks."""
    if global_batch_size % (micro_batch_size * parallel_dp):
        raise ConfigError(f"train.global_batch_size={global_batch_size} must be a multiple of "
                          f"micro_batch_size×DP = {micro_batch_size}×{parallel_dp}")
    num_micro = global_batch_size // (micro_batch_size * parallel_dp)
    if vpp and num_micro < pp:
        raise ConfigError(f"train.global_batch_size={global_batch_size} gives {num_micro} micro-batches per rank; "
                          f"interleaved pipelining needs ≥ PP={pp}")
    if seq_length % seq_multiple:
        raise ConfigError(f"sequence length {seq_length} must be a multiple of {seq_multiple} (TP under "
                          "parallel.sequence_parallel × the FP8 GEMM alignment of precision.fp8_recipe, "
                          "config/alignment.py)")
    if seq_length > arch.max_position_embeddings:
        raise ConfigError(f"sequence length {seq_length} exceeds model.max_position_embeddings="
                          f"{arch.max_position_embeddings}; raise it or shorten the sequences")
    return num_micro


def validate_model_parallel(arch: Any, model: ModelConfig, parallel: ParallelConfig, precision: PrecisionConfig,
                            world_size: int, *, cuda: bool | None = None, te: bool | None = None) -> int:
    """All model/parallel/precision rules; returns DP."""
    env_cuda, env_te = environment() if cuda is None or te is None else (cuda, te)
    dp = validate_parallel(arch, parallel, world_size)
    validate_precision(model, parallel, precision, env_cuda if cuda is None else cuda, env_te if te is None else te)
    validate_kernels(model, parallel, env_cuda if cuda is None else cuda, env_te if te is None else te)
    return dp

"""One test per validation rule: each must raise ConfigError naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_lwz.config.base import ConfigError
from megatron_lwz.config.schema import ModelConfig, OptimConfig, ParallelConfig, PrecisionConfig, TrainLoopConfig
from megatron_lwz.config.validate import validate_batch, validate_model_parallel, validate_parallel, validate_precision
from megatron_lwz.models.presets import PRESETS, resolve

TINY = PRESETS["tiny"]  # 4 layers, 4 heads, 2 KV groups, max_pos 512


def _par(**kw) -> ParallelConfig:
    return ParallelConfig(**kw)


def test_valid_layout_returns_dp():
    assert validate_parallel(TINY, _par(tensor_parallel=2, pipeline_parallel=2), world_size=8) == 2


def test_world_size_not_divisible():
    with pytest.raises(ConfigError, match=r"6 processes are not divisible by TP×PP×CP"):
        validate_parallel(TINY, _par(tensor_parallel=2, pipeline_parallel=2), world_size=6)


def test_heads_not_divisible_by_tp():
    arch = resolve(ModelConfig(preset="tiny", num_attention_heads=6, num_query_groups=6, hidden_size=96))
    with pytest.raises(ConfigError, match=r"parallel.tensor_parallel=4: model.num_attention_heads=6"):
        validate_parallel(arch, _par(tensor_parallel=4), world_size=4)


def test_kv_groups_not_divisible_by_tp():
    with pytest.raises(ConfigError, match=r"num_query_groups=2 \(KV heads\)"):
        validate_parallel(TINY, _par(tensor_parallel=4), world_size=4)


def test_layers_not_divisible_by_pp():
    with pytest.raises(ConfigError, match=r"num_layers=4 is not divisible by pipeline_parallel×virtual"):
        validate_parallel(TINY, _par(pipeline_parallel=3), world_size=3)


def test_layers_not_divisible_by_vpp():
    with pytest.raises(ConfigError, match=r"= 8"):
        validate_parallel(TINY, _par(pipeline_parallel=2, virtual_pipeline_parallel=4), world_size=2)


def test_vpp_needs_pp():
    with pytest.raises(ConfigError, match=r"virtual_pipeline_parallel needs parallel.pipeline_parallel ≥ 2"):
        validate_parallel(TINY, _par(virtual_pipeline_parallel=2), world_size=1)


def test_sequence_parallel_needs_tp():
    with pytest.raises(ConfigError, match=r"sequence_parallel needs parallel.tensor_parallel ≥ 2"):
        validate_parallel(TINY, _par(sequence_parallel=True), world_size=1)


def test_overlap_param_gather_needs_distributed_optimizer():
    with pytest.raises(ConfigError, match=r"overlap_param_gather needs parallel.distributed_optimizer"):
        validate_parallel(TINY, _par(overlap_param_gather=True, distributed_optimizer=False), world_size=1)


def test_fp8_without_te_or_cuda():
    with pytest.raises(ConfigError, match=r"precision.fp8='hybrid' needs CUDA and transformer-engine"):
        validate_precision(ModelConfig(), _par(), PrecisionConfig(fp8="hybrid"), cuda=False, te=False)


def test_fp8_ok_with_te():
    validate_precision(ModelConfig(), _par(), PrecisionConfig(fp8="hybrid", fp8_recipe="blockwise"), cuda=True, te=True)


def test_fp8_with_local_spec():
    with pytest.raises(ConfigError, match=r"precision.fp8 needs model.layer_spec=te or auto"):
        validate_precision(ModelConfig(layer_spec="local"), _par(), PrecisionConfig(fp8="e4m3"), cuda=True, te=True)


def test_te_spec_without_te():
    with pytest.raises(ConfigError, match=r"model.layer_spec=te needs CUDA and transformer-engine"):
        validate_precision(ModelConfig(layer_spec="te"), _par(), PrecisionConfig(), cuda=True, te=False)


def test_context_parallel_rejected():
    with pytest.raises(ConfigError, match=r"context_parallel>1 is not supported yet"):
        validate_precision(ModelConfig(), _par(context_parallel=2), PrecisionConfig(), cuda=True, te=True)


def test_sequence_parallel_on_local_spec():
    with pytest.raises(ConfigError, match=r"sequence_parallel needs the TE layer spec"):
        validate_precision(ModelConfig(), _par(tensor_parallel=2, sequence_parallel=True), PrecisionConfig(),
                           cuda=False, te=False)


def test_fp16_rejected():
    with pytest.raises(ConfigError, match=r"precision.dtype=fp16 needs dynamic loss scaling"):
        validate_precision(ModelConfig(), _par(), PrecisionConfig(dtype="fp16"), cuda=True, te=True)


def test_global_batch_not_multiple_of_micro_times_dp():
    with pytest.raises(ConfigError, match=r"global_batch_size=12 must be a multiple of micro_batch_size×DP = 4×2"):
        validate_batch(2, 4, 12, 128, TINY, None, 1)


def test_interleaving_needs_enough_microbatches():
    with pytest.raises(ConfigError, match=r"interleaved pipelining needs ≥ PP=4"):
        validate_batch(1, 1, 2, 128, TINY, 2, 4)


def test_sequence_longer_than_positions():
    with pytest.raises(ConfigError, match=r"sequence length 1024 exceeds model.max_position_embeddings=512"):
        validate_batch(1, 1, 1, 1024, TINY, None, 1)


def test_sequence_parallel_needs_lengths_divisible_by_tp():
    with pytest.raises(ConfigError, match=r"sequence length 130 must be a multiple of 4 \(TP under parallel.sequence_parallel"):
        validate_batch(1, 1, 1, 130, TINY, None, 1, seq_multiple=4)
    assert validate_batch(1, 1, 1, 128, TINY, None, 1, seq_multiple=4) == 1


def test_jobs_check_the_batch_rules_at_start(tmp_path, monkeypatch):
    """start_session runs validate_batch (before any process group or model exists)."""
    from megatron_lwz.config.base import load_config
    from megatron_lwz.engine.session import start_session
    from megatron_lwz.pretrain.config import PretrainJobConfig

    monkeypatch.setenv("DEMO_DIR", str(tmp_path))
    cfg = load_config(PretrainJobConfig, Path(__file__).parents[3] / "examples/pretrain/tiny_cpu.yaml",
                      ["data.seq_length=2048"])
    with pytest.raises(ConfigError, match=r"sequence length 2048 exceeds model.max_position_embeddings=1024"):
        start_session(cfg, total_steps=1, console_keys=(), seq_length=cfg.data.seq_length)


def test_local_field_checks():
    with pytest.raises(ConfigError, match=r"parallel.tensor_parallel: must be ≥ 1"):
        ParallelConfig(tensor_parallel=0)
    with pytest.raises(ConfigError, match=r"optim.min_lr"):
        OptimConfig(lr=1e-4, min_lr=1e-3)
    with pytest.raises(ConfigError, match=r"not a multiple of train.micro_batch_size"):
        TrainLoopConfig(micro_batch_size=3, global_batch_size=8)


def test_model_resolution_rules():
    with pytest.raises(ConfigError, match=r"unknown 'qwen9'"):
        resolve(ModelConfig(preset="qwen9"))
    with pytest.raises(ConfigError, match=r"either model.preset or model.hf_config"):
        resolve(ModelConfig(preset="tiny", hf_config="x"))
    with pytest.raises(ConfigError, match=r"num_attention_heads=4 is not divisible by model.num_query_groups=3"):
        resolve(ModelConfig(preset="tiny", num_query_groups=3))


def test_validate_model_parallel_combines_rules():
    assert validate_model_parallel(TINY, ModelConfig(), _par(tensor_parallel=2), PrecisionConfig(), 4,
                                   cuda=False, te=False) == 2


def test_fp8_param_gather_reaches_ddp_config():
    """Issue 11 defect 6: FP8 params (TransformerConfig.fp8_param) without the DDP config's
    fp8_param_gather are never re-quantized by the distributed optimizer (distrib_optimizer.py:2815,
    2867): the translated DistributedDataParallelConfig must carry the flag, and only with FP8 on."""
    from megatron_lwz.config.megatron import fp8_params, to_ddp_config

    on = PrecisionConfig(fp8="hybrid", fp8_recipe="tensorwise", fp8_param_gather=True)
    assert to_ddp_config(_par(), on).fp8_param_gather is True
    assert fp8_params(on)  # the same predicate sets TransformerConfig.fp8_param
    assert to_ddp_config(_par(), PrecisionConfig(fp8="hybrid")).fp8_param_gather is False
    assert to_ddp_config(_par(), PrecisionConfig()).fp8_param_gather is False


def test_fp8_param_gather_needs_fp8_and_distributed_optimizer():
    with pytest.raises(ConfigError, match=r"precision.fp8_param_gather=true needs precision.fp8"):
        validate_precision(ModelConfig(), _par(), PrecisionConfig(fp8_param_gather=True), cuda=True, te=True)
    with pytest.raises(ConfigError, match=r"fp8_param_gather=true needs parallel.distributed_optimizer=true"):
        validate_precision(ModelConfig(), _par(distributed_optimizer=False),
                           PrecisionConfig(fp8="hybrid", fp8_param_gather=True), cuda=True, te=True)
    validate_precision(ModelConfig(), _par(), PrecisionConfig(fp8="hybrid", fp8_param_gather=True), cuda=True, te=True)


# ---- kernel fusions and TP-communication overlap (validate_kernels) ------------------------------

@pytest.mark.parametrize("field, match", [("swiglu_fusion", "CUDA kernel"), ("rope_fusion", "fused RoPE"),
                                          ("gradient_accumulation_fusion", "TE layer spec")])
def test_fusions_need_gpu(field, match):
    from megatron_lwz.config.validate import validate_kernels

    with pytest.raises(ConfigError, match=rf"model.{field}.*{match}"):
        validate_kernels(ModelConfig(**{field: True}), _par(), cuda=False, te=False)
    validate_kernels(ModelConfig(layer_spec="te", **{field: True}), _par(), cuda=True, te=True)


def test_tp_comm_overlap_needs_te_and_sequence_parallel():
    from megatron_lwz.config.validate import validate_kernels

    te_model = ModelConfig(layer_spec="te")
    with pytest.raises(ConfigError, match="parallel.tp_comm_overlap needs the TE layer spec"):
        validate_kernels(te_model, _par(tensor_parallel=2, sequence_parallel=True, tp_comm_overlap=True),
                         cuda=False, te=False)
    with pytest.raises(ConfigError, match="sequence_parallel=true"):
        validate_kernels(te_model, _par(tensor_parallel=2, tp_comm_overlap=True), cuda=True, te=True)
    validate_kernels(te_model, _par(tensor_parallel=2, sequence_parallel=True, tp_comm_overlap=True), cuda=True, te=True)


def test_tp_comm_overlap_needs_fixed_shapes():
    from types import SimpleNamespace

    from megatron_lwz.parallel.tp_overlap import overlap_tokens

    cpt = SimpleNamespace(data=SimpleNamespace(seq_length=4096), train=SimpleNamespace(micro_batch_size=2))
    assert overlap_tokens(cpt) == 8192
    with pytest.raises(ConfigError, match="fixed micro-batch shapes"):
        overlap_tokens(SimpleNamespace(train=SimpleNamespace(micro_batch_size=1)))


def test_translator_passes_fusions_and_overlap():
    from megatron_lwz.config.megatron import to_transformer_config

    model = ModelConfig(preset="tiny", swiglu_fusion=True, gradient_accumulation_fusion=True)
    tc = to_transformer_config(TINY, model, _par(tp_comm_overlap=True), PrecisionConfig(dtype="fp32"), use_te=False,
                               initialize=False)
    assert tc.bias_activation_fusion and tc.gradient_accumulation_fusion and tc.tp_comm_overlap
    assert not tc.apply_rope_fusion
    plain = to_transformer_config(TINY, ModelConfig(preset="tiny"), _par(), PrecisionConfig(dtype="fp32"), use_te=False,
                                  initialize=False)
    assert not (plain.bias_activation_fusion or plain.gradient_accumulation_fusion or plain.tp_comm_overlap)

"""Planner memory/time model against hand computations, Korthikanti et al. 2022 and bench.flops."""

from __future__ import annotations

import pytest

from megatron_lwz.bench.flops import train_flops_per_token
from megatron_lwz.models.presets import PRESETS
from megatron_lwz.plan.hardware import GIB, gpu
from megatron_lwz.plan.memory import act_bytes_per_token, memory_breakdown, padded_vocab
from megatron_lwz.plan.search import Fixed, plan
from megatron_lwz.plan.shape import ModelShape, from_preset
from megatron_lwz.plan.spec import Job, Layout
from megatron_lwz.plan.timing import step_time


def _lay(**kw) -> Layout:
    base = dict(tp=1, pp=1, vpp=None, dp=1, sp=False, recompute="none", fp8=False)
    return Layout(**{**base, **kw})


@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "qwen2.5-7b", "qwen2.5-32b", "qwen2.5-72b"])
def test_flops_match_bench_flops(name):
    assert from_preset(name).train_flops_per_token(32768) == pytest.approx(train_flops_per_token(PRESETS[name], 32768))


def test_params_match_hf_count():
    # ModelShape has no QKV-bias switch: Qwen2 always has one; HF's count adds the final norm (h).
    arch = PRESETS["qwen2.5-32b"]
    assert from_preset("qwen2.5-32b").num_params() + arch.hidden_size == arch.num_params()


def test_activations_equal_korthikanti_without_dropout():
    # GPT (MHA, GELU 4h): Korthikanti eq. 2 gives sbh·34 with 2 dropout masks (sbh each) and the
    # s² softmax terms; fused attention and no dropout leave 32 h bytes per token; TP without SP
    # (eq. 4): 10 + 24/t minus the 2 masks = 8 + 24/t; TP + SP (eq. 5): 32/t.
    gpt = ModelShape(layers=2, hidden=1024, ffn=4096, heads=16, kv_heads=16, vocab=1000, swiglu=False)
    h = 1024
    assert act_bytes_per_token(gpt, _lay()) == 32 * h
    assert act_bytes_per_token(gpt, _lay(tp=4)) == 8 * h + 24 * h / 4
    assert act_bytes_per_token(gpt, _lay(tp=4, sp=True)) == 32 * h / 4


def test_tp8_pp2_full_recompute_matches_hand_arithmetic():
    # The CPT recipe's previous layout, worked by hand in its comments: weights 3.8, grads 7.6,
    # Adam 5.7, FP8 3.8, logits 5.8, context 1.5, TE userbuffers 2.5 GiB; 2.05B params per GPU at TP 8 × PP 2.
    parts = memory_breakdown(from_preset("qwen2.5-32b"),
                             _lay(tp=8, pp=2, dp=4, sp=True, recompute="full", fp8=True),
                             Job(kind="cpt", seq_length=32768, global_batch=512))
    assert parts["weights"] == pytest.approx(3.81, abs=0.01)
    assert parts["grads"] == pytest.approx(7.63, abs=0.01)
    assert parts["optimizer"] == pytest.approx(5.72, abs=0.01)
    assert parts["logits"] == pytest.approx(32768 * 152576 / 8 * 10 / GIB)
    assert 30 < sum(parts.values()) < 36


def test_padded_vocab():
    assert padded_vocab(152064, 8) == 152576 and padded_vocab(151936, 1) == 151936 and padded_vocab(151937, 1) == 152064


def test_single_gpu_step_is_flops_over_rate_plus_elementwise():
    # TP = PP = DP = 1: no communication; compute = 3·F_fwd/(peak·eff) + elementwise + logits.
    shape = ModelShape(layers=4, hidden=4096, ffn=11008, heads=32, kv_heads=32, vocab=32000)
    g = gpu("h100")
    t = step_time(shape, _lay(), Job(kind="cpt", seq_length=4096, global_batch=8), g)
    assert t.tp_comm == t.dp_comm == t.pp_bubble == 0
    gemm, attn, logits = shape.fwd_flops_per_token(4096)
    lower = 8 * 4096 * 3 * (gemm + attn + logits) / (g.bf16_flops * g.gemm_eff)
    assert lower < t.compute < 1.4 * lower


def test_recompute_full_costs_a_forward_and_saves_memory():
    shape, g = from_preset("qwen2.5-7b"), gpu("h100")
    job = Job(kind="cpt", seq_length=8192, global_batch=64)
    none = step_time(shape, _lay(tp=4, dp=2, sp=True), job, g)
    full = step_time(shape, _lay(tp=4, dp=2, sp=True, recompute="full"), job, g)
    assert 1.2 < full.compute / none.compute < 1.4
    m_none = memory_breakdown(shape, _lay(tp=4, dp=2, sp=True), job)["activations"]
    m_full = memory_breakdown(shape, _lay(tp=4, dp=2, sp=True, recompute="full"), job)["activations"]
    assert m_full < m_none / 5


def test_fixed_flags_pin_the_layout_and_bad_requests_fail():
    shape, g = from_preset("qwen2.5-32b"), gpu("h100")
    preds = plan(shape, 64, g, Job(kind="cpt", seq_length=32768, global_batch=512),
                 Fixed(tp=8, pp=2, vpp=0, recompute="full"), scales={})
    assert {(p.layout.tp, p.layout.pp, p.layout.vpp, p.layout.recompute) for p in preds} == {(8, 2, None, "full")}
    with pytest.raises(ValueError, match="no layout"):
        plan(shape, 64, g, Job(kind="cpt", seq_length=4096, global_batch=512), Fixed(tp=3), scales={})
    with pytest.raises(ValueError, match="unknown"):
        gpu("v100")


def test_grpo_workload_mean_and_rollout_simulator():
    from megatron_lwz.bench.rollout_sim import DecodeModel, simulate_engine
    from megatron_lwz.plan.grpo import mean_response, response_lengths, rollout_seconds
    from megatron_lwz.plan.spec import GrpoSpec

    spec = GrpoSpec(prompts=8, group=4, prompt_mean=100, response_mean=3000, response_max=4096, gen_tp=4)
    lengths = response_lengths(spec)
    assert lengths.shape == (8, 4) and lengths.max() <= 4096
    assert mean_response(spec) == pytest.approx(3000, rel=0.01)  # the solved log-normal hits the asked mean
    with pytest.raises(ValueError, match="response-mean"):
        response_lengths(GrpoSpec(response_mean=5000, response_max=4000))
    # One engine (TP 4 on 4 GPUs): the planner's rollout is the simulator on the same lengths and a
    # DecodeModel built from the GPU table by hand.
    shape, g = from_preset("qwen2.5-7b"), gpu("h100")
    job = Job(kind="grpo", seq_length=8192, grpo=spec)
    n, kv_tok = shape.num_params(), 4 * shape.layers * shape.kv_heads * shape.d
    kv = int(((0.32 * g.hbm_gib - 3.0) * GIB * 4 - 2 * n) // kv_tok)
    model = DecodeModel(params_b=n / 1e9, weight_bytes=2.0 * n, kv_bytes_per_token=kv_tok, tp=4, hbm_bytes_per_s=g.hbm_bw,
                        peak_flops=g.bf16_flops, kv_capacity_tokens=kv)
    expect = simulate_engine([100] * 32, lengths.reshape(-1), model, prefix_share=4).seconds
    assert rollout_seconds(shape, g, 4, job) == pytest.approx(expect)
    # weights alone bound a decode step from below: ≥ 4096 steps × weights / TP / HBM bandwidth
    assert expect > 4096 * 2 * n / 4 / g.hbm_bw


def test_context_is_the_rehearsals_assumption():
    from megatron_lwz.parallel.rehearsal import CONTEXT_BYTES
    from megatron_lwz.plan.memory import CONTEXT_GIB

    assert CONTEXT_GIB == CONTEXT_BYTES / GIB


def test_userbuffers_follow_te_initialize_ub():
    # TE 2.20 registers 12 [tokens, hidden] buffers: 8 all-gather (uint8 under FP8) + 4 reduce-scatter (bf16)
    shape, job = from_preset("qwen2.5-32b"), Job(kind="cpt", seq_length=32768, global_batch=512)
    tokens_h = 32768 * 5120
    fp8 = memory_breakdown(shape, _lay(tp=8, pp=4, dp=2, sp=True, fp8=True), job)["userbuffers"]
    bf16 = memory_breakdown(shape, _lay(tp=8, pp=4, dp=2, sp=True), job)["userbuffers"]
    assert fp8 == pytest.approx(tokens_h * (8 * 1 + 4 * 2) / GIB) and bf16 == pytest.approx(tokens_h * 24 / GIB)
    assert memory_breakdown(shape, _lay(tp=8, pp=4, dp=2), job)["userbuffers"] == 0  # no SP: no overlap
    rm = Job(kind="rm", seq_length=16384, global_batch=128)  # variable shapes: our RM trainer runs without
    assert not rm.userbuffers and memory_breakdown(shape, _lay(tp=8, pp=4, dp=2, sp=True), rm)["userbuffers"] == 0


def test_grpo_peak_is_the_larger_phase():
    from megatron_lwz.plan.memory import VLLM_ASLEEP_GIB, grpo_phase_gib, peak_gib
    from megatron_lwz.plan.spec import GrpoSpec

    job = Job(kind="grpo", seq_length=16384, grpo=GrpoSpec(rm=from_preset("qwen2.5-72b"), gen_mem_fraction=0.32))
    parts = memory_breakdown(from_preset("qwen2.5-32b"), _lay(tp=8, dp=8, sp=True, recompute="full"), job, 79.6)
    assert parts["vllm"] == pytest.approx(0.32 * 79.6)  # awake budget, whatever the trainer layout
    resident = sum(v for k, v in parts.items() if k not in ("activations", "logits", "vllm"))
    phases = grpo_phase_gib(parts)
    assert phases["rollout"] == pytest.approx(resident + 0.32 * 79.6)
    assert phases["train"] == pytest.approx(resident + parts["activations"] + parts["logits"] + VLLM_ASLEEP_GIB)
    assert peak_gib(parts, job) == max(phases.values()) < sum(parts.values())
    with pytest.raises(ValueError, match="hbm_gib"):
        memory_breakdown(from_preset("qwen2.5-32b"), _lay(tp=8, dp=8), job)


def test_calibrated_activation_peak_covers_the_logits():
    from megatron_lwz.plan import calibration

    parts = {"activations": 2.0, "logits": 4.0, "weights": 1.0}
    assert calibration.apply(parts, {"activations": 0.5, "weights": 2.0}) == {"activations": 1.0, "logits": 2.0,
                                                                             "weights": 2.0}
    entry = calibration.load()["examples/grpo/qwen2.5-32b_longwriter.yaml"]
    formula = calibration.entry_formula(entry)
    scales = calibration.category_scales("grpo")
    assert entry["layout"]["recompute"] == "full"
    assert scales["activations@full"] == pytest.approx(entry["measured_gib"]["activations"]
                                                       / (formula["activations"] + formula["logits"]))
    assert "logits" not in scales and "context" not in calibration.category_scales("cpt")
    # the per-mode factor is the one a layout in that mode gets; other modes get the kind's mean
    parts = {"activations": 1.0, "logits": 1.0}
    assert calibration.apply(parts, scales, "full")["logits"] == pytest.approx(scales["activations@full"])
    assert calibration.apply(parts, scales, "selective")["logits"] == pytest.approx(scales["activations"])


def test_tie_band_prefers_memory_among_near_equal_throughputs():
    from megatron_lwz.plan.search import Prediction, rank

    def pred(tps, mem, fits=True):
        return Prediction(layout=_lay(tp=int(mem)), mem_gib=mem, mem_formula_gib=mem, fits=fits, step_s=1.0, mfu=0.1,
                          tokens_per_s_per_gpu=tps)

    a, b, c, d = pred(1000, 70), pred(990, 50), pred(950, 30), pred(2000, 10, fits=False)
    assert [p.mem_gib for p in rank([a, b, c, d])] == [50, 70, 30, 10]  # b ties a (1 %), c does not (5 %)
    assert [p.mem_gib for p in rank([a, b, c, d], tie_band=0.0)] == [70, 50, 30, 10]


def test_pipeline_p2p_crosses_the_network_once_the_job_spans_nodes():
    shape, job, g = from_preset("qwen2.5-7b"), Job(kind="cpt", seq_length=4096, global_batch=64), gpu("h100")
    one_node = step_time(shape, _lay(tp=2, pp=4, dp=1), job, g).pp_bubble
    two_nodes = step_time(shape, _lay(tp=2, pp=4, dp=2), job, g).pp_bubble  # PP neighbours 4 ranks apart
    per_mb = 4096 * 3584 * 2 / (0.8 * g.nvlink_bw)
    assert two_nodes > one_node and two_nodes - one_node > per_mb

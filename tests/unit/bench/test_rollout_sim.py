"""Rollout simulator (bench/rollout_sim.py) against step-by-step hand computations."""

import numpy as np
import pytest

from megatron_lwz.bench.rollout_sim import DecodeModel, project, simulate_engine, simulate_rollout
from megatron_lwz.bench.rollout_workload import make_workload


def unit_model(capacity=10_000, max_seqs=8):
    """Step time = 10 + K (weights 10 bytes, 1 byte per KV token, 1 byte/s, no compute, free prefill)."""
    return DecodeModel(params_b=0.0, weight_bytes=10.0, kv_bytes_per_token=1, tp=1, hbm_bytes_per_s=1.0,
                       bw_efficiency=1.0, kv_capacity_tokens=capacity, max_num_seqs=max_seqs)


def test_two_sequences_by_hand():
    # step 1: K = 2 + 2 → 14; sequence 1 done. Steps 2, 3: K = 3, 4 → 13 + 14. Total 41.
    run = simulate_engine(np.array([2, 2]), np.array([3, 1]), unit_model())
    assert run.seconds == pytest.approx(41.0) and run.tokens == 4 and run.preemptions == 0


def test_preemption_by_hand():
    # capacity 10: both admitted (K = 4); 3 steps at K = 4, 6, 8 → 48; K = 10 leaves no room → the
    # newest is preempted; sequence 0 finishes alone at K = 5 → 15; sequence 1 is re-admitted with
    # prompt + 3 generated = 5 tokens and finishes at K = 5 → 15. Total 78.
    run = simulate_engine(np.array([2, 2]), np.array([4, 4]), unit_model(capacity=10))
    assert run.seconds == pytest.approx(78.0) and run.preemptions == 1


def test_max_num_seqs_queues_requests():
    # one at a time: 10 + 1 (K = 1), then the second: 11 → 22
    run = simulate_engine(np.array([1, 1]), np.array([1, 1]), unit_model(max_seqs=1))
    assert run.seconds == pytest.approx(22.0)


def test_calibration_anchor_reproduced():
    # NIM Llama-3.3-70B fp8 TP 2, concurrency 1: ITL 18.58 ms (the anchor of bw_efficiency)
    llama = DecodeModel(params_b=70.6, weight_bytes=70.6e9, kv_bytes_per_token=163_840, tp=2)
    assert llama.step_seconds(1, 5250) == pytest.approx(18.58e-3, rel=0.02)


def test_length_aware_beats_round_robin_and_one_engine():
    work = make_workload(16, 8, seed=3)
    model = DecodeModel(kv_capacity_tokens=200_000)
    one = simulate_rollout(work, 1, "length_aware", model, total_gpus=32)
    rr = simulate_rollout(work, 4, "round_robin", model, total_gpus=32)
    la = simulate_rollout(work, 4, "length_aware", model, total_gpus=32)
    assert la.seconds <= rr.seconds < one.seconds
    assert one.idle_share == pytest.approx(0.75)  # 24 of 32 GPUs never generate
    assert sum(e.tokens for e in la.engines) == int(work.response_tokens.sum())


def test_workload_respects_predictor_rules():
    work = make_workload(200, 4, seed=0)
    for p in work.prompts:
        assert 0 < p.length_lower <= p.length_upper <= 12_000 and p.length_upper % 100 == 0
        assert p.length_upper - p.length_lower <= 3_000
    assert work.response_tokens.max() == 14_000 and work.response_tokens.min() >= 1500


def test_project_reports_every_variant():
    out = project(prompts=8, group_size=4, nodes=2, gpus_per_node=8)
    assert set(out) == {"1_engine", "8_engines_round_robin", "8_engines_length_aware", "one_step_off_length_aware"}
    assert all(v["rollout_min_per_step"] > 0 and 0 <= v["gpu_idle_share"] < 1 for v in out.values())

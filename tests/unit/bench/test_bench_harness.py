"""Harness-overhead comparison (bench/harness.py), results files (bench/results.py) and the
train benchmark's MFU/harness summary from hand-made records."""

from __future__ import annotations

import json

import pytest

from megatron_lwz.bench import train as btrain
from megatron_lwz.bench.harness import measure
from megatron_lwz.bench.report import BenchResult, Column, to_json_line
from megatron_lwz.bench.results import device_peak_flops, environment, write_results


def test_measure_alternates_and_checks_the_same_weights():
    calls, resets = [], []
    out = measure(ours=lambda: calls.append("o") or 1.0, bare=lambda: calls.append("b") or 1.0,
                  reset=lambda: resets.append(len(calls)), steps=3)
    assert calls == ["o", "b"] + ["o", "b"] * 3 and resets == [0, 1]  # reset before each check step
    assert len(out["ours_s"]) == len(out["bare_s"]) == 3 and out["loss_diff"] == 0.0 and out["ratio"] > 0


def test_rows_mfu_and_harness_summary():
    records = {"tp1": {"world": 1, "tp": 1, "pp": 1, "dp": 1, "tokens_per_step": 1000, "step_s": [2.0, 2.0],
                       "losses": [5.0, 4.0], "harness": {"ours_s": [1.0, 1.2, 1.1], "bare_s": [1.0, 1.0, 1.0],
                                                         "ratio": 1.0 / 1.1, "loss_diff": 0.0}},
               "tp2": {"world": 2, "tp": 2, "pp": 1, "dp": 1, "tokens_per_step": 1000, "step_s": [1.0],
                       "losses": [5.0, 4.0]}}
    rows = btrain.rows_from_records(records, flops_per_token=1e9, peak_flops=1e12)
    assert rows[0]["tokens_per_s_per_gpu"] == 500 and rows[0]["mfu"] == pytest.approx(0.5)   # 500 tok/s × 1 GFLOP
    assert rows[1]["tokens_per_s_per_gpu"] == 500 and rows[1]["mfu"] == pytest.approx(0.5)
    assert btrain.rows_from_records(records, 1e9)[0]["mfu"] is None  # CPU: no peak, no MFU
    h = btrain.harness_summary(records["tp1"])
    assert h["ours_step_s"] == 1.1 and h["bare_step_s"] == 1.0 and h["meets_goal"] is False  # 0.909 < 0.95


def test_device_peaks_from_the_planner_table():
    assert device_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert device_peak_flops("NVIDIA H200") == 989e12 and device_peak_flops("NVIDIA H20") == 148e12
    assert device_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12 and device_peak_flops("Tesla V100") is None


def test_results_file_holds_the_json_line_and_the_environment(tmp_path):
    result = BenchResult(bench="train", title="t", columns=[Column(key="a", header="a")], rows=[{"a": 1}],
                         summary={"x": 2.0})
    path = write_results(result, environment({"layouts": ["tp1"]}), tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["record"] == json.loads(to_json_line(result))
    assert data["env"]["versions"]["torch"] and data["env"]["device"]["kind"] in ("cpu", "cuda")
    assert data["env"]["layout"] == {"layouts": ["tp1"]}


def test_bare_megatron_loop_matches_train_step(tmp_path):
    # One real single-process launch: the bare megatron-core loop and our train_step give the same
    # loss from the same weights (a different implementation of the same step, megatron's own API).
    from megatron_lwz.bench.launch import launch_worker

    args = ["--layouts", "tp1", "--hidden", "64", "--layers", "2", "--ffn", "128", "--heads", "4", "--kv-heads", "2",
            "--vocab", "128", "--seq", "32", "--micro-batch", "2", "--micro-batches", "2", "--steps", "1",
            "--warmup", "0", "--init", str(tmp_path / "init.pt"), "--write-init", "--harness-steps", "2"]
    rec = launch_worker("megatron_lwz.bench.train_worker", 1, args, threads=1, timeout_s=300)["tp1"]
    h = rec["harness"]
    assert h["loss_diff"] < 1e-5 and abs(h["loss_ours"] - rec["losses"][0]) < 1e-5
    assert len(h["ours_s"]) == len(h["bare_s"]) == 2

"""``lwz bench checkpoint`` arithmetic: rows and ratios from per-rank phase records, the DistOpt
byte counts (by hand), and the 32B recipe extrapolation read from the recipes."""

from __future__ import annotations

import pytest

from megatron_lwz.bench.checkpoint import GIB, optimizer_bytes, recipe_extrapolation, rows_from_phases


def _rec(seconds, extra, **kw):
    return {"seconds": seconds, "rss_before": 1 * GIB, "rss_peak": 1 * GIB + extra, "rss_extra": extra, **kw}


def test_rows_take_the_worst_rank_and_compare_with_the_old_path():
    phases = {"save gather/sync": [_rec(4.0, 2 * GIB), _rec(3.0, 1 * GIB)],
              "save sharded/sync": [_rec(2.0, GIB // 2), _rec(1.0, 0)],
              "save sharded/async": [_rec(3.0, GIB, blocking_s=0.5), _rec(2.0, 0, blocking_s=1.0)],
              "load gather/sync": [_rec(2.0, GIB)], "load sharded/sync": [_rec(1.0, GIB // 4)]}
    rows = {r["phase"]: r for r in rows_from_phases(phases)}
    assert rows["save sharded/sync"]["time_vs_old"] == 0.5 and rows["save sharded/sync"]["rss_extra_vs_old"] == 0.25
    assert rows["save sharded/async"]["blocking_s"] == 1.0 and rows["save sharded/async"]["time_vs_old"] == 0.25
    assert rows["load sharded/sync"]["time_vs_old"] == 0.5 and rows["load sharded/sync"]["rss_extra_vs_old"] == 0.25


def test_optimizer_bytes_by_hand():
    # 32e9 params, TP8 PP4 DP2: 12 B × 32e9 / 32 = 12e9 B per rank gathered; / 2 sharded.
    assert optimizer_bytes(32_000_000_000, 8, 4, 2) == {"gather": 12e9, "sharded": 6e9}


def test_recipe_extrapolation_reads_the_recipes():
    rows = {r["recipe"]: r for r in recipe_extrapolation(64)}
    grpo = rows["grpo"]
    assert (grpo["tp"], grpo["pp"], grpo["dp"]) == (8, 1, 8)
    assert grpo["params"] == pytest.approx(32.76e9, rel=0.01)
    assert grpo["gather_gib_per_rank"] == pytest.approx(12 * grpo["params"] / 8 / GIB)
    assert grpo["sharded_gib_per_rank"] * 8 == pytest.approx(grpo["gather_gib_per_rank"])


def test_result_from_a_faked_launch(monkeypatch, capsys):
    """The whole report path (rows, summary, notes, JSON line) on worker output without processes."""
    import json

    from megatron_lwz.bench import checkpoint
    from megatron_lwz.bench.report import emit

    lay = {"world": 4, "tp": 1, "pp": 1, "dp": 4, "params_total": 1_000_000, "params_local": 1_000_000, "dtype": "bf16"}
    phases = {"save gather/sync": [_rec(2.0, 24_000_000)], "save sharded/sync": [_rec(1.0, 3_000_000)],
              "save sharded/async": [_rec(1.5, 3_000_000, blocking_s=0.2)],
              "load gather/sync": [_rec(1.0, 12_000_000)], "load sharded/sync": [_rec(0.5, 3_000_000)]}
    monkeypatch.setattr(checkpoint, "launch_worker", lambda *a, **k: {"phases": phases, "layout": lay})
    result = checkpoint.run_checkpoint_bench(checkpoint.CheckpointBenchConfig())
    emit(result)
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["save_time_sync_vs_old"] == 0.5 and record["save_blocking_async_vs_old"] == 0.1
    assert record["rss_rise_over_formula"] == {"gather": 2.0, "sharded": 1.0}   # 12 MB gathered, 3 MB per rank
    assert {r["recipe"] for r in record["recipes_32b"]} == {"cpt", "grpo"}

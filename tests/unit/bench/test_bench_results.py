"""Result assembly of ``lwz bench export`` / ``lwz bench train`` from worker records (hand-made
timings → the ratios, headline and pass/fail they must give), and the CLI's argument handling."""

from __future__ import annotations

import argparse

import pytest

from megatron_lwz.bench import export as bexport
from megatron_lwz.bench import train as btrain
from megatron_lwz.cli import bench_cmds


def _transport(export_s, memcpy_s, identical=None):
    t = {"export_s": export_s, "memcpy_s": memcpy_s, "export_cpu_s": [e / 2 for e in export_s],
         "memcpy_cpu_s": [m / 2 for m in memcpy_s]}
    if identical is not None:
        t["identical_to_shm"] = identical
    return t


def test_export_rows_and_summary():
    records = [
        {"rank": 0, "tp": 1, "bytes": 2e9, "tensors": 5, "transports": {"direct": _transport([1.0, 3.0, 2.0], [1.0, 1.0, 1.0])}},
        {"rank": 0, "tp": 2, "bytes": 2e9, "tensors": 5, "transports": {
            "shm": _transport([4.0, 4.0, 4.0], [1.0, 1.0, 1.0]),
            "shm+staging": _transport([2.0, 1.5, 1.6], [1.0, 1.0, 0.5], identical=True),
            "collectives": _transport([10.0], [1.0], identical=True)}},
        {"rank": 1, "tp": 2, "bytes": 2e9, "tensors": 5, "transports": {
            "shm": _transport([4.0], [1.0]), "shm+staging": _transport([2.5], [1.0], identical=True),
            "collectives": _transport([10.0], [1.0], identical=True)}},
    ]
    rows = bexport.rows_from_records(records)
    tp1 = rows[0]
    assert tp1["ratio"] == pytest.approx(0.5)  # median memcpy 1.0 / median export 2.0
    assert tp1["export_gbps"] == pytest.approx(1.0) and tp1["memcpy_gbps"] == pytest.approx(2.0)
    assert tp1["ratio_best"] == pytest.approx(1.0) and tp1["ratio_cpu"] == pytest.approx(0.5)
    staged0 = next(r for r in rows if r["tp"] == 2 and r["rank"] == 0 and r["transport"] == "shm+staging")
    assert staged0["ratio"] == pytest.approx(1.0 / 1.6) and staged0["identical"] is True
    summary = bexport.summarize(rows, bexport.ExportBenchConfig(tp=[1, 2]))
    assert summary["transport_tp1"] == "direct" and summary["transport_tp2"] == "shm+staging"
    assert summary["ratio_tp2"] == pytest.approx(0.4)  # worst rank (rank 1: 1.0 / 2.5)
    assert summary["ratio_tp2_shm"] == pytest.approx(0.25) and summary["ratio_tp2_collectives"] == pytest.approx(0.1)
    assert summary["meets_target"] is False and summary["transports_identical"] is True
    records[2]["transports"]["shm+staging"] = _transport([1.0], [1.0], identical=False)
    summary = bexport.summarize(bexport.rows_from_records(records), bexport.ExportBenchConfig(tp=[1, 2]))
    assert summary["meets_target"] is True and summary["transports_identical"] is False


def test_train_rows():
    records = {"tp1": {"world": 1, "tp": 1, "pp": 1, "dp": 1, "tokens_per_step": 1000, "step_s": [2.0, 2.0, 4.0],
                       "losses": [5.0, 4.0]},
               "tp2": {"world": 2, "tp": 2, "pp": 1, "dp": 1, "tokens_per_step": 1000, "step_s": [1.0, 1.0, 9.0],
                       "losses": [5.0 + 2e-7, 4.0 - 1e-6]}}
    rows = btrain.rows_from_records(records, flops_per_token=1e6)
    assert rows[0]["tokens_per_s"] == pytest.approx(500) and rows[0]["model_gflops"] == pytest.approx(0.5)
    assert rows[1]["speedup"] == pytest.approx(2.0) and rows[1]["efficiency"] == pytest.approx(1.0)
    assert rows[1]["loss_diff"] == pytest.approx(2e-7) and rows[1]["loss_last_diff"] == pytest.approx(1e-6)


def test_layout_sizes_and_config_validation():
    assert btrain.layout_sizes("tp2") == (2, 1) and btrain.layout_sizes("pp2") == (1, 2)
    assert btrain.layout_sizes("tp2pp2") == (2, 2)
    with pytest.raises(ValueError, match="layout 'dp2'"):
        btrain.layout_sizes("dp2")
    with pytest.raises(ValueError, match="exactly 2 processes"):
        btrain.TrainBenchConfig(layouts=["tp2pp2"])
    with pytest.raises(ValueError, match="divisible"):
        btrain.TrainBenchConfig(layouts=["pp2"], layers=3)
    with pytest.raises(ValueError, match="kv_heads"):
        bexport.ExportBenchConfig(tp=[1, 2], kv_heads=3, heads=3, hidden=96)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lwz bench")
    bench_cmds.add_arguments(parser, "bench")
    return parser.parse_args(argv)


def test_cli_parsing():
    args = _parse(["export", "--tp", "1", "2", "--hidden", "64", "--collectives"])
    assert args.which == "export" and args.tp == [1, 2] and args.hidden == 64 and args.collectives
    assert not _parse(["export"]).collectives
    args = _parse(["train", "--layouts", "tp2", "--steps", "2"])
    assert args.which == "train" and args.layouts == ["tp2"] and args.steps == 2
    assert _parse(["rewards", "--sizes", "100"]).sizes == [100]
    assert _parse(["preprocess", "--workers", "3"]).workers == 3
    with pytest.raises(SystemExit):
        _parse(["nonsense"])


def test_cli_rejects_bad_layout_before_launching(capsys):
    args = _parse(["export", "--tp", "3"])  # kv_heads 4 is not divisible by 3
    assert bench_cmds.run(args) == 1
    assert "divide by every TP size" in capsys.readouterr().err

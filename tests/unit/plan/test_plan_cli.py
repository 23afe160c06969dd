"""``lwz plan``: table then one JSON line; calibration scales the measured categories."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_lwz.plan import calibration

PLAN = [sys.executable, "-m", "megatron_lwz.cli.main", "plan"]


def test_cli_json_last_and_best_first():
    out = subprocess.run(PLAN + ["--model", "qwen2.5-7b", "--gpus", "16", "--gpu", "h100", "--seq", "8192",
                                 "--global-batch", "64", "--top", "5"], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    record = json.loads(lines[-1])
    rows = record["layouts"]
    assert len(rows) == 5 and "| # |" in out.stdout
    assert {"tp", "pp", "vpp", "dp", "sp", "recompute", "fp8", "mem_gib", "step_s", "mfu",
            "tokens_per_s_per_gpu"} <= set(rows[0])
    fitting = [r for r in rows if r["fits"]]
    best = max(r["tokens_per_s_per_gpu"] for r in fitting)
    tied = [r for r in fitting if r["tokens_per_s_per_gpu"] >= (1 - record["tie_band"]) * best]
    assert fitting[:len(tied)] == tied and [r["mem_gib"] for r in tied] == sorted(r["mem_gib"] for r in tied)
    rest = [r["tokens_per_s_per_gpu"] for r in fitting[len(tied):]]
    assert rest == sorted(rest, reverse=True)


def test_cli_config_reads_the_recipe_and_ranks_its_layout():
    recipe = Path(__file__).resolve().parents[3] / "examples/grpo/qwen2.5-32b_longwriter.yaml"
    out = subprocess.run(PLAN + ["--config", str(recipe), "--top", "3"],
                         capture_output=True, text=True, check=True)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["gpus"] == 64 and record["job"]["kind"] == "grpo" and record["recipe"]["rank"] == 1
    assert record["recipe"]["layout"] == {k: record["layouts"][0][k] for k in record["recipe"]["layout"]}
    assert "its layout ranks #1" in out.stdout


def test_cli_missing_shape_is_a_clear_error():
    out = subprocess.run(PLAN + ["--gpus", "8", "--hidden", "4096"], capture_output=True, text=True)
    assert out.returncode == 1 and "missing" in out.stderr and "--layers" in out.stderr


def test_calibration_scales_measured_categories(tmp_path):
    name = "examples/pretrain/qwen2.5-32b_cpt.yaml"
    recipes = {name: calibration.load()[name]}
    entry = recipes[name]
    formula = calibration.entry_formula(entry)
    entry["measured_gib"] = {"activations": 2 * formula["activations"], "weights": None, "context": 9.0}
    scales = calibration.category_scales("cpt", recipes)
    assert scales == {"activations": pytest.approx(2.0), "activations@none": pytest.approx(2.0)}  # context: assumed
    assert calibration.apply(formula, scales)["activations"] == pytest.approx(2 * formula["activations"])
    bad = tmp_path / "c.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="c.json"):
        calibration.load(bad)


def test_rehearsal_report_keys_are_accepted():
    name = "examples/rm/qwen2.5-72b_writing_rm.yaml"
    recipes = {name: calibration.load()[name]}
    entry = recipes[name]
    formula = calibration.entry_formula(entry)
    entry["measured_gib"] = {"params_gib": 1.1 * formula["weights"], "peak_gib": 99.0, "export_gib": 3.0}
    assert calibration.category_scales("rm", recipes) == {"weights": pytest.approx(1.1)}


def test_shipped_calibration_file_parses():
    for kind in ("cpt", "rm", "grpo"):
        assert isinstance(calibration.category_scales(kind), dict)


def test_cli_config_prints_a_recipe_layout_outside_the_table():
    recipe = Path(__file__).resolve().parents[3] / "examples/pretrain/tiny_cpu.yaml"  # 1 GPU: TP1 is not the top
    out = subprocess.run(PLAN + ["--config", str(recipe), "--top", "1"], capture_output=True, text=True, check=True)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    rank, shown = record["recipe"]["rank"], record["recipe"]["prediction"]
    assert rank > 1 and len(record["layouts"]) == 1
    assert {k: shown[k] for k in record["recipe"]["layout"]} == record["recipe"]["layout"]
    assert f"its layout ranks #{rank} of {record['candidates']}: " in out.stdout and "GiB/GPU" in out.stdout

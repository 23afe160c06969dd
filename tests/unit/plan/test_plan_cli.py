"""``lwz plan``: table then one JSON line; calibration scales the measured categories."""

from __future__ import annotations

import json
import subprocess
import sys

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
    fitting = [r["tokens_per_s_per_gpu"] for r in rows if r["fits"]]
    assert fitting == sorted(fitting, reverse=True)


def test_cli_missing_shape_is_a_clear_error():
    out = subprocess.run(PLAN + ["--gpus", "8", "--hidden", "4096"], capture_output=True, text=True)
    assert out.returncode == 1 and "missing" in out.stderr and "--layers" in out.stderr


def test_calibration_scales_measured_categories(tmp_path):
    recipes = calibration.load()
    entry = recipes["examples/pretrain/qwen2.5-32b_cpt.yaml"]
    formula = calibration.entry_formula(entry)
    entry["measured_gib"] = {"activations": 2 * formula["activations"], "weights": None}
    scales = calibration.category_scales("cpt", recipes)
    assert scales == {"activations": pytest.approx(2.0)}
    assert calibration.apply(formula, scales)["activations"] == pytest.approx(2 * formula["activations"])
    bad = tmp_path / "c.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="c.json"):
        calibration.load(bad)


def test_rehearsal_report_keys_are_accepted():
    recipes = calibration.load()
    entry = recipes["examples/rm/qwen2.5-72b_writing_rm.yaml"]
    formula = calibration.entry_formula(entry)
    entry["measured_gib"] = {"params_gib": 1.1 * formula["weights"], "peak_gib": 99.0, "export_gib": 3.0}
    assert calibration.category_scales("rm", recipes) == {"weights": pytest.approx(1.1)}


def test_shipped_calibration_file_parses():
    for kind in ("cpt", "rm", "grpo"):
        assert isinstance(calibration.category_scales(kind), dict)

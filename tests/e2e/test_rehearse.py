"""``lwz rehearse`` on shipped recipes: the real job code at the recipe's world size on the stand-in device.

Default suite: the three tiny CPU recipes (2 ranks), the CPT and GRPO recipes' rank 0 at world size 64.
``-m slow``: both pipeline ends of every at-scale recipe (the RM recipe's 72B model takes minutes).
"""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def _rehearse(*args: str) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", "rehearse", *args],
                          capture_output=True, text=True, timeout=1500)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
    return proc.returncode, json.loads(last), proc.stdout + proc.stderr


@pytest.mark.parametrize("job", ["pretrain", "rm", "grpo"])
def test_tiny_recipes(job):
    # The tiny GRPO recipe generates with the HF engine on the host, every op seen by the checking
    # dispatch mode: short answers and one iteration keep it to seconds (the at-scale GRPO test below
    # runs the default two, steady state included).
    extra = ["--steps", "1", "rl.max_tokens=24"] if job == "grpo" else []
    rc, report, out = _rehearse("--config", f"examples/{job}/tiny_cpu.yaml", "--world-size", "2", *extra)
    assert rc == 0, out[-4000:]
    assert [r["rank"] for r in report["ranks"]] == [0, 1] and report["violations"] == 0


def test_cpt_recipe_first_stage_at_64_ranks():
    rc, report, out = _rehearse("--config", "examples/pretrain/qwen2.5-32b_cpt.yaml", "--ranks", "0")
    assert rc == 0, out[-4000:]
    assert report["world_size"] == 64 and report["violations"] == 0
    rank = report["ranks"][0]
    # TP 8 × PP 4: 16 of 64 layers + the embedding per rank, bf16 → ≈ 2 GiB of parameters
    assert 1.8 < rank["params_gib"] < 2.3
    assert rank["optimizer_gib"] > rank["params_gib"]  # fp32 main params + Adam moments, sharded over DP 2
    assert rank["peak_gib"] > rank["params_gib"] + rank["grads_gib"] + rank["optimizer_gib"] + rank["activations_peak_gib"] * 0.9
    assert rank["peak_gib"] < 79.6 * 0.95, "the recipe must leave 5% of the GPU free (change the layout)"


def test_grpo_recipe_rank0_at_64_ranks():
    rc, report, out = _rehearse("--config", "examples/grpo/qwen2.5-32b_longwriter.yaml", "--ranks", "0")
    assert rc == 0, out[-4000:]
    rank = report["ranks"][0]
    assert rank["vllm_gib"] > 5 and rank["rm_gib"] > 10 and rank["export_gib"] > 0
    assert rank["peak_gib"] < 79.6 * 0.95, "the recipe must leave 5% of the GPU free"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["examples/pretrain/qwen2.5-32b_cpt.yaml", "examples/rm/qwen2.5-72b_writing_rm.yaml",
                                    "examples/grpo/qwen2.5-32b_longwriter.yaml"])
def test_at_scale_recipes_both_pipeline_ends(recipe):
    rc, report, out = _rehearse("--config", recipe)
    assert rc == 0, out[-4000:]
    assert report["violations"] == 0 and len(report["ranks"]) == 2
    assert all(r["peak_gib"] < 79.6 * 0.95 for r in report["ranks"])

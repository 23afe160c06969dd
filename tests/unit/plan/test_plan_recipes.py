"""``lwz plan`` on the shipped recipes (issue 15's acceptance): each recipe's layout is the planner's top,
and the planner's memory at the rehearsed configuration is within 10 % of what ``lwz rehearse``
measured (``plan/memory_calibration.json`` ``peak_gib``); the formula alone, before calibration, within
15 % (the cross-check: calibration cannot hide a formula that is far off)."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_lwz.plan import calibration
from megatron_lwz.plan.hardware import gpu
from megatron_lwz.plan.recipe import from_recipe, job_kind
from megatron_lwz.plan.search import plan

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
RECIPES = ["pretrain/qwen2.5-32b_cpt.yaml", "rm/qwen2.5-72b_writing_rm.yaml", "grpo/qwen2.5-32b_longwriter.yaml"]


@pytest.fixture
def no_env(monkeypatch):
    for key in ("DATA_DIR", "MODELS_DIR", "CKPT_DIR", "RUNS_DIR", "RM_INIT"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("rel", RECIPES)
def test_recipe_layout_is_the_planners_top(rel, no_env):
    recipe = from_recipe(EXAMPLES / rel)  # unset ${VAR} paths are fine: the planner reads no path
    assert recipe.gpus == 64 and recipe.kind == job_kind(EXAMPLES / rel)
    preds = plan(recipe.shape, recipe.gpus, gpu("h100"), recipe.job)
    assert preds[0].fits and preds[0].layout == recipe.layout, (preds[0].layout, recipe.layout)


def test_cpt_recipe_is_the_top_on_h800_too(no_env):
    recipe = from_recipe(EXAMPLES / RECIPES[0])
    assert plan(recipe.shape, recipe.gpus, gpu("h800"), recipe.job)[0].layout == recipe.layout


@pytest.mark.parametrize("rel", RECIPES)
def test_planned_memory_matches_the_rehearsal(rel, no_env):
    entry = calibration.load()[f"examples/{rel}"]
    recipe = from_recipe(EXAMPLES / rel)
    lay, shipped = entry["layout"], recipe.layout
    # the entry is the shipped layout as rehearsed (FP8 and TE userbuffers are off in the rehearsal)
    assert (lay["tp"], lay["pp"], lay["vpp"], lay["sp"], lay["recompute"]) == \
        (shipped.tp, shipped.pp, shipped.vpp, shipped.sp, shipped.recompute)
    measured = entry["peak_gib"]
    planned = calibration.entry_peak_gib(entry, calibration.category_scales(entry["job"]))
    formula = calibration.entry_peak_gib(entry)
    assert planned == pytest.approx(measured, rel=0.10), (planned, measured)
    assert formula == pytest.approx(measured, rel=0.15), (formula, measured)


def test_recipe_reader_takes_the_jobs_fields(no_env):
    rm = from_recipe(EXAMPLES / RECIPES[1])
    assert (rm.job.kind, rm.job.seq_length, rm.job.global_batch, rm.job.userbuffers) == ("rm", 16384, 128, False)
    grpo = from_recipe(EXAMPLES / RECIPES[2])
    spec = grpo.job.grpo
    assert (spec.prompts, spec.group, spec.response_max, spec.engines, spec.gen_tp) == (64, 32, 14000, 8, 8)
    assert spec.rm is not None and spec.rm.layers == 80 and spec.gen_mem_fraction == pytest.approx(0.32)
    one_engine = from_recipe(EXAMPLES / RECIPES[2], ["rollout.engine_gpus=null"])
    assert one_engine.job.grpo.engines == 1

"""``lwz plan`` on the shipped recipes' shapes: the CPT recipe ships the planner's top layout; the
RM recipe's layout is within the planner's error band of its top (docs/planning.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_lwz.config.base import load_config
from megatron_lwz.plan.hardware import gpu
from megatron_lwz.plan.search import Fixed, plan
from megatron_lwz.plan.shape import from_arch
from megatron_lwz.plan.spec import Job
from megatron_lwz.models.presets import resolve

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ENV = {"DATA_DIR": "/d", "MODELS_DIR": "/m", "CKPT_DIR": "/c", "RUNS_DIR": "/r"}


def _layout(cfg) -> tuple:
    p = cfg.parallel
    return (p.tensor_parallel, p.pipeline_parallel, p.virtual_pipeline_parallel, p.sequence_parallel,
            cfg.model.recompute, bool(getattr(cfg.precision, "fp8", None)))


def _key(pred) -> tuple:
    lay = pred.layout
    return lay.tp, lay.pp, lay.vpp, lay.sp, lay.recompute, lay.fp8


@pytest.fixture
def env(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RM_INIT", raising=False)


@pytest.mark.parametrize("gpu_name", ["h100", "h800"])
def test_cpt_recipe_is_the_planners_top(env, gpu_name):
    from megatron_lwz.pretrain.config import PretrainJobConfig

    cfg = load_config(PretrainJobConfig, EXAMPLES / "pretrain/qwen2.5-32b_cpt.yaml")
    job = Job(kind="cpt", seq_length=cfg.data.seq_length, global_batch=cfg.train.global_batch_size,
              micro_batch=cfg.train.micro_batch_size, tp_comm_overlap=cfg.parallel.tp_comm_overlap)
    preds = plan(from_arch(resolve(cfg.model)), 64, gpu(gpu_name), job, scales={})
    assert preds[0].fits and _key(preds[0]) == _layout(cfg)


def test_rm_recipe_within_the_error_band_of_the_top(env):
    from megatron_lwz.rewards.rm_config import RMJobConfig

    cfg = load_config(RMJobConfig, EXAMPLES / "rm/qwen2.5-72b_writing_rm.yaml")
    shape, g = from_arch(resolve(cfg.model)), gpu("h100")
    job = Job(kind="rm", seq_length=cfg.data.max_length, global_batch=cfg.train.global_batch_size)
    top = plan(shape, 64, g, job, scales={})[0]
    tp, pp, vpp, sp, rc, fp8 = _layout(cfg)
    shipped = plan(shape, 64, g, job, Fixed(tp=tp, pp=pp, vpp=vpp or 0, sp=sp, recompute=rc, fp8=fp8), scales={})[0]
    assert shipped.fits and shipped.tokens_per_s_per_gpu > 0.9 * top.tokens_per_s_per_gpu

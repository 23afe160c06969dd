"""A recipe as a planner question (``lwz plan --config RECIPE``): its model, job, GPU count and the
layout it ships.

The job comes from the recipe's own fields: CPT ``data.seq_length`` × ``train.global_batch_size`` with
its TP-overlap and DP-overlap switches; RM ``data.max_length`` pairs × ``train.global_batch_size``
(no TE userbuffers: pairs vary in length); GRPO ``rl.batching.micro_token_budget`` as the sequence
length, ``rl.prompts_per_step`` × ``rl.group_size`` samples, ``rl.max_tokens`` as the response cap,
the engine pool (``rollout.engine_gpus``: 0 = one engine per node) with ``rollout.tensor_parallel_size``
and ``gpu_memory_utilization``, the Writing RM's backbone when ``writing`` is a reward component, and
the LongWriter-Zero length-range workload (``bench/rollout_workload.py``). Paths play no part, so
``${VAR}`` references that are unset in the environment read as a placeholder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import yaml

from megatron_lwz.plan.shape import ModelShape, from_arch
from megatron_lwz.plan.spec import GrpoSpec, Job, Layout

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, kw_only=True)
class RecipePlan:
    """What the planner needs of a recipe."""

    kind: str
    """cpt | rm | grpo."""
    shape: ModelShape
    job: Job
    gpus: int
    """``parallel.world_size`` (else TP × PP × CP)."""
    layout: Layout
    """The shipped layout."""


def job_kind(recipe: str | Path) -> str:
    """cpt | rm | grpo from the recipe's top-level keys (as ``lwz rehearse`` tells the job)."""
    tree = yaml.safe_load(Path(recipe).read_text()) or {}
    if "rl" in tree or "rollout" in tree:
        return "grpo"
    return "rm" if "max_length" in (tree.get("data") or {}) else "cpt"


def _load(kind: str, recipe: str | Path, overrides: list[str]):
    from megatron_lwz.config.base import load_config

    if kind == "cpt":
        from megatron_lwz.pretrain.config import PretrainJobConfig as cls
    elif kind == "rm":
        from megatron_lwz.rewards.rm_config import RMJobConfig as cls
    else:
        from megatron_lwz.rl.job_config import GRPOJobConfig as cls
    unset = {v: f"/unset/{v}" for v in _VAR.findall(Path(recipe).read_text()) if v not in os.environ}
    with mock.patch.dict(os.environ, unset):
        return load_config(cls, recipe, overrides)


def _grpo_spec(cfg, gpus: int) -> GrpoSpec:
    from megatron_lwz.models.presets import resolve

    ro, rl = cfg.rollout, cfg.rl
    per_engine = (ro.tensor_parallel_size if ro.engine_gpus == 0 else ro.engine_gpus) if ro.engine_gpus is not None \
        else gpus
    writing = "writing" in cfg.reward.components and cfg.writing_rm.checkpoint
    return GrpoSpec(prompts=rl.prompts_per_step, group=rl.group_size, response_max=rl.max_tokens,
                    workload="longwriter", minibatches=rl.batching.num_minibatches, gen_tp=ro.tensor_parallel_size,
                    engines=max(1, gpus // per_engine), gen_mem_fraction=ro.gpu_memory_utilization,
                    rm=from_arch(resolve(cfg.writing_rm.model)) if writing else None)


def from_recipe(recipe: str | Path, overrides: list[str] | None = None) -> RecipePlan:
    """The planner's view of ``recipe`` (module doc); ConfigError naming the file on a bad recipe."""
    from megatron_lwz.models.presets import resolve

    kind = job_kind(recipe)
    cfg = _load(kind, recipe, list(overrides or []))
    p = cfg.parallel
    gpus = p.world_size or p.tensor_parallel * p.pipeline_parallel * p.context_parallel
    switches = dict(overlap_grad_reduce=p.overlap_grad_reduce, overlap_param_gather=p.overlap_param_gather,
                    distributed_optimizer=p.distributed_optimizer)
    if kind == "cpt":
        job = Job(kind="cpt", seq_length=cfg.data.seq_length, global_batch=cfg.train.global_batch_size,
                  micro_batch=cfg.train.micro_batch_size, tp_comm_overlap=p.tp_comm_overlap, **switches)
    elif kind == "rm":
        job = Job(kind="rm", seq_length=cfg.data.max_length, global_batch=cfg.train.global_batch_size,
                  micro_batch=cfg.train.micro_batch_size, tp_comm_overlap=False, **switches)
    else:
        job = Job(kind="grpo", seq_length=cfg.rl.batching.micro_token_budget, tp_comm_overlap=False,
                  grpo=_grpo_spec(cfg, gpus), **switches)
    layout = Layout(tp=p.tensor_parallel, pp=p.pipeline_parallel, vpp=p.virtual_pipeline_parallel,
                    dp=gpus // (p.tensor_parallel * p.pipeline_parallel * p.context_parallel),
                    sp=p.sequence_parallel, recompute=cfg.model.recompute, fp8=bool(cfg.precision.fp8))
    return RecipePlan(kind=kind, shape=from_arch(resolve(cfg.model)), job=job, gpus=gpus, layout=layout)

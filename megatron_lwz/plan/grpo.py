"""GRPO step = rollout + weight sync + old-log-prob recompute + RM scoring + policy updates.

Rollout: the discrete-event vLLM simulator of the rollout-at-scale issue
(:mod:`megatron_lwz.bench.rollout_sim`: continuous batching, KV-cache admission and preemption,
decode steps memory-bound on weights + KV at a calibrated share of HBM bandwidth), parametrised
here from the model shape and the GPU table: ``E`` engines of ``gen_tp`` GPUs, each holding
``gpu_memory_utilization × HBM − weights − 3 GiB`` of KV; whole prompt groups go round-robin to
the engines (prefix caching shares a prompt's KV within its group). Response lengths per sample:
``workload="lognormal"`` draws them log-normal (σ = ``RESPONSE_SIGMA``) with the cap
``response_max`` and the location solved so that the capped mean is ``response_mean``;
``workload="longwriter"`` uses the simulator's LongWriter-Zero length-range workload
(:mod:`megatron_lwz.bench.rollout_workload`), whose mean then replaces ``response_mean``.

Weight sync: a TP all-gather of the bf16 weights over NVLink (every trainer rank materialises full
tensors, rollout/export.py) plus vLLM's ``load_weights`` at HBM speed and a fixed
``SYNC_FIXED_S``. Log-prob recompute is the forward third of a training pass over all tokens;
with PP > 1 the trainer pads every micro-batch to the longest sample, which the time model follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from megatron_lwz.plan.hardware import GIB, Gpu
from megatron_lwz.plan.shape import ModelShape
from megatron_lwz.plan.spec import GrpoSpec, Job, Layout
from megatron_lwz.plan.timing import step_time

RESPONSE_SIGMA = 0.6
"""Log-normal spread of response lengths before the cap (workload='lognormal')."""
SYNC_FIXED_S = 2.0
"""Per-sync fixed cost: wake-up, IPC handle exchange, prefix-cache reset."""
VLLM_RESERVED_GIB = 3.0
"""Per-GPU share of vLLM's budget that is not KV cache (activations, CUDA graphs)."""


@dataclass(frozen=True, kw_only=True)
class GrpoTime:
    """Seconds per GRPO step by phase."""

    rollout: float
    sync: float
    logprob: float
    rm: float
    train: float

    @property
    def total(self) -> float:
        return self.rollout + self.sync + self.logprob + self.rm + self.train


@lru_cache(maxsize=32)
def response_lengths(spec: GrpoSpec) -> np.ndarray:
    """(prompts, group) generated tokens per sample (module doc); seeded, read-only."""
    cap = spec.response_max
    if spec.workload == "longwriter":
        from megatron_lwz.bench.rollout_workload import make_workload

        out = make_workload(spec.prompts, spec.group, seed=0, max_tokens=cap, prompt_tokens=spec.prompt_mean)
        lengths = out.response_tokens
    else:
        if not 0 < spec.response_mean < cap:
            raise ValueError(f"--response-mean {spec.response_mean} must be in (0, --response-max {cap})")
        z = np.random.default_rng(0).standard_normal((spec.prompts, spec.group))
        lo, hi = 0.0, math.log(cap) + 5 * RESPONSE_SIGMA
        for _ in range(60):  # bisection: capped mean is increasing in the location
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.minimum(cap, np.exp(mid + RESPONSE_SIGMA * z)).mean() < spec.response_mean \
                else (lo, mid)
        lengths = np.maximum(1, np.round(np.minimum(cap, np.exp(lo + RESPONSE_SIGMA * z)))).astype(np.int64)
    lengths.setflags(write=False)
    return lengths


def mean_response(spec: GrpoSpec) -> float:
    """Mean generated tokens per sample of the workload."""
    return float(response_lengths(spec).mean())


@lru_cache(maxsize=32)
def rollout_seconds(shape: ModelShape, gpu: Gpu, gpus: int, job: Job) -> float:
    """Makespan of one rollout on the simulator (module doc); independent of the training layout."""
    from megatron_lwz.bench.rollout_sim import DecodeModel, simulate_engine

    spec = job.grpo
    g, n = spec.gen_tp, shape.num_params()
    engines = spec.engines or max(1, gpus // g)
    kv_per_token = 2 * 2 * shape.layers * shape.kv_heads * shape.d
    kv_bytes = (spec.gen_mem_fraction * gpu.hbm_gib - VLLM_RESERVED_GIB) * GIB * g - 2 * n
    if kv_bytes <= 0:
        raise ValueError(f"--gen-mem {spec.gen_mem_fraction} leaves no KV cache next to the weights on TP {g}")
    model = DecodeModel(params_b=n / 1e9, weight_bytes=2.0 * n, kv_bytes_per_token=kv_per_token, tp=g,
                        hbm_bytes_per_s=gpu.hbm_bw, peak_flops=gpu.bf16_flops,
                        kv_capacity_tokens=int(kv_bytes // kv_per_token))
    per_engine: list[list[int]] = [[] for _ in range(engines)]
    for i, group in enumerate(response_lengths(spec)):
        per_engine[i % engines].extend(int(x) for x in group)
    return max(simulate_engine(np.full(len(lens), spec.prompt_mean), np.array(lens, dtype=np.int64), model,
                               prefix_share=spec.group).seconds for lens in per_engine if lens)


def sync_seconds(shape: ModelShape, gpu: Gpu, lay: Layout, job: Job) -> float:
    """Weight sync trainer → vLLM (colocated, CUDA IPC)."""
    nbytes = 2 * shape.num_params()
    gather = nbytes / lay.pp * (lay.tp - 1) / lay.tp / (gpu.nvlink_bw * gpu.link_eff)
    load = nbytes / job.grpo.gen_tp / (gpu.hbm_bw * 0.5)
    return gather + load + SYNC_FIXED_S


def grpo_time(shape: ModelShape, lay: Layout, job: Job, gpu: Gpu, gpus: int) -> GrpoTime:
    """All phases of one GRPO step in policy layout ``lay``."""
    spec = job.grpo
    samples = spec.prompts * spec.group
    sample_len = round(spec.prompt_mean + mean_response(spec))
    # Time: every sample once per pass, attention over its own tokens (packing changes the
    # micro-batch count, not the FLOPs); memory was checked at the token budget job.seq_length.
    # With PP > 1 every micro-batch is padded to the mini-batch's longest sample (pipeline p2p
    # needs one shape; rl/batching.py), i.e. to ~prompt + response_max.
    if lay.pp > 1:
        sample_len = min(job.seq_length, spec.prompt_mean + spec.response_max)
    per_sample = replace(job, kind="cpt", seq_length=sample_len, global_batch=samples,
                         tp_comm_overlap=job.userbuffers)  # our GRPO trainer runs without TE userbuffers
    train = step_time(shape, lay, per_sample, gpu, optimizer_steps=spec.minibatches).total
    full = step_time(shape, replace(lay, recompute="none"), per_sample, gpu)
    logprob = (full.compute + full.tp_comm + full.pp_bubble) / 3
    rm = 0.0
    if spec.rm is not None:
        rm_flops = 2 * spec.rm.num_params() * samples * spec.rm_input_mean
        rm = rm_flops / (gpus * gpu.bf16_flops * gpu.gemm_eff)
    return GrpoTime(rollout=rollout_seconds(shape, gpu, gpus, job), sync=sync_seconds(shape, gpu, lay, job),
                    logprob=logprob, rm=rm, train=train)

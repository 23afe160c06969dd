"""GRPO step = rollout + weight sync + old-log-prob recompute + RM scoring + policy updates.

The rollout term is :func:`rollout_seconds`, a closed-form decode model kept behind one function so
that the discrete-event rollout simulator of the rollout-at-scale issue can replace it:

* engines ``E`` (vLLM, TP ``g`` each) share the samples; an engine keeps ``C`` sequences in
  flight, limited by its KV cache (``gpu_memory_utilization × HBM − weights − 3 GiB``) at the mean
  live context ``prompt + response/2``;
* one decode step of ``C`` sequences reads the engine's weights and their KV once
  (``DECODE_BW_EFF`` of HBM bandwidth) or is compute-bound at ``2·N·C`` FLOPs, whichever is slower,
  plus two TP all-reduces per layer (``ALLREDUCE_LATENCY_S``) and ``STEP_OVERHEAD_S`` of scheduler time;
* ``S/C`` waves of ``response_mean`` steps, then the long tail of ``response_max − response_mean``
  steps at a tenth of the concurrency; prefill once per prompt (prefix caching).

Weight sync: a TP all-gather of the bf16 weights over NVLink (every trainer rank materialises full
tensors, rollout/export.py) plus vLLM's ``load_weights`` at HBM speed and a fixed
``SYNC_FIXED_S``. Log-prob recompute is the forward third of a training pass over all tokens;
with PP > 1 the trainer pads every micro-batch to the longest sample, which the time model follows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from megatron_lwz.plan.hardware import GIB, Gpu
from megatron_lwz.plan.shape import ModelShape
from megatron_lwz.plan.spec import Job, Layout
from megatron_lwz.plan.timing import step_time

DECODE_BW_EFF = 0.5
"""Achieved share of HBM bandwidth in vLLM decode (paged KV gathers, small batches per layer)."""
DECODE_FLOP_EFF = 0.35
"""Achieved share of BF16 peak for the decode GEMMs when compute-bound."""
ALLREDUCE_LATENCY_S = 12e-6
"""One small NVLink all-reduce (two per layer per decode step with TP > 1)."""
STEP_OVERHEAD_S = 2e-3
"""vLLM scheduler + sampling time per decode step."""
SYNC_FIXED_S = 2.0
"""Per-sync fixed cost: wake-up, IPC handle exchange, prefix-cache reset."""


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


def decode_step_seconds(shape: ModelShape, gpu: Gpu, g: int, concurrency: float, context: float) -> float:
    """One decode step of ``concurrency`` sequences at mean context ``context`` on a TP-``g`` engine."""
    kv_per_token = 2 * 2 * shape.layers * shape.kv_heads * shape.d / g
    memory = (2 * shape.num_params() / g + concurrency * context * kv_per_token) / (gpu.hbm_bw * DECODE_BW_EFF)
    compute = 2 * shape.num_params() * concurrency / g / (gpu.bf16_flops * DECODE_FLOP_EFF)
    comm = 2 * shape.layers * ALLREDUCE_LATENCY_S if g > 1 else 0.0
    return max(memory, compute) + comm + STEP_OVERHEAD_S


def rollout_seconds(shape: ModelShape, gpu: Gpu, gpus: int, job: Job) -> float:
    """Wall time of one rollout (module doc); the swap point for the rollout simulator."""
    spec = job.grpo
    g = spec.gen_tp
    engines = spec.engines or max(1, gpus // g)
    samples = spec.prompts * spec.group / engines
    kv_bytes = (spec.gen_mem_fraction * gpu.hbm_gib - 3.0) * GIB * g - 2 * shape.num_params()
    kv_tokens = max(kv_bytes, 0.0) / (2 * 2 * shape.layers * shape.kv_heads * shape.d)
    live = spec.prompt_mean + spec.response_mean / 2
    conc = max(1.0, min(samples, kv_tokens / live))
    waves = samples / conc
    bulk = waves * spec.response_mean * decode_step_seconds(shape, gpu, g, conc, live)
    tail_conc = max(1.0, conc / 10)
    tail = max(0, spec.response_max - spec.response_mean) * decode_step_seconds(
        shape, gpu, g, tail_conc, spec.prompt_mean + (spec.response_mean + spec.response_max) / 2)
    prefill = 2 * shape.num_params() * spec.prompts * spec.prompt_mean / engines / (g * gpu.bf16_flops * 0.4)
    return bulk + tail + prefill


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
    sample_len = spec.prompt_mean + spec.response_mean
    # Time: every sample once per pass, attention over its own tokens (packing changes the
    # micro-batch count, not the FLOPs); memory was checked at the token budget job.seq_length.
    # With PP > 1 every micro-batch is padded to the mini-batch's longest sample (pipeline p2p
    # needs one shape; rl/batching.py), i.e. to ~prompt + response_max.
    if lay.pp > 1:
        sample_len = min(job.seq_length, spec.prompt_mean + spec.response_max)
    per_sample = replace(job, kind="cpt", seq_length=sample_len, global_batch=samples)
    train = step_time(shape, lay, per_sample, gpu, optimizer_steps=spec.minibatches).total
    full = step_time(shape, replace(lay, recompute="none"), per_sample, gpu)
    logprob = (full.compute + full.tp_comm + full.pp_bubble) / 3
    rm = 0.0
    if spec.rm is not None:
        rm_flops = 2 * spec.rm.num_params() * samples * spec.rm_input_mean
        rm = rm_flops / (gpus * gpu.bf16_flops * gpu.gemm_eff)
    return GrpoTime(rollout=rollout_seconds(shape, gpu, gpus, job), sync=sync_seconds(shape, gpu, lay, job),
                    logprob=logprob, rm=rm, train=train)

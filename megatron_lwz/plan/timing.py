"""Step time of one training layout: FLOPs at a fitted GEMM efficiency, memory-bound elementwise
work, and the three communication patterns of Megatron (Narayanan et al. 2021, §3):

* **TP** (Shoeybi et al. 2019; SP per Korthikanti et al. 2022 §4.2.2): per layer and micro-batch
  4 all-gather/reduce-scatter forward and 4 backward (+4 when the forward is recomputed) of the
  ``s·b·h`` bf16 activation — without SP the same volume as 2 + 2 all-reduces. Ring cost per op
  ``bytes·(t−1)/t ÷ bus bandwidth`` on NVLink (on the NIC when TP spans nodes). Exposed fully,
  or ``TP_OVERLAP_EXPOSED`` of it with TE userbuffers overlap (needs SP).
* **PP**: 1F1B; the step takes ``(m + (p−1)/v)`` slowest-stage micro-batch times (bubble
  ``(p−1)/(v·m)``, Narayanan eq. 2 with interleaving), plus point-to-point sends of ``s·b·h/t``
  over the NIC once the job spans nodes (megatron's rank order puts PP outermost).
* **DP**: reduce-scatter of fp32 grads (4 B/param) and all-gather of bf16 params (2 B/param),
  ring cost ``(d−1)/d``; with overlap the reduce-scatter hides behind the last micro-batch's
  backward and the all-gather behind the first forward, the rest is exposed.

Compute: GEMMs (QKV, projections, MLP, logits) at ``peak × gemm_eff`` (FP8 GEMMs at the FP8 peak ×
``fp8_gemm_eff``; the output layer stays bf16 as in megatron), fused attention at
``ATTN_REL_EFF`` of that, and elementwise kernels reading/writing the saved activations
(``ELEM_PASSES`` passes) at ``HBM_EFF`` of HBM bandwidth. Recompute adds one forward.
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron_lwz.plan.hardware import Gpu
from megatron_lwz.plan.memory import act_bytes_per_token, microbatches, padded_vocab, params_per_gpu
from megatron_lwz.plan.shape import ModelShape
from megatron_lwz.plan.spec import Job, Layout

ATTN_REL_EFF = 0.8
"""Fused attention throughput relative to the GEMMs (FlashAttention backward is the slow half)."""
ELEM_PASSES = 6.0
"""Elementwise HBM traffic per step of a layer, in units of its saved activations (fwd 2, bwd 4)."""
HBM_EFF = 0.8
"""Achieved fraction of HBM bandwidth for streaming kernels."""
TP_OVERLAP_EXPOSED = 0.25
"""Share of TP communication left exposed with TE userbuffers overlap."""
OPTIMIZER_BYTES = 30.0
"""HBM bytes per (DP-sharded) parameter of the Adam step: read grad + master/m/v, write them + bf16."""


@dataclass(frozen=True, kw_only=True)
class StepTime:
    """Seconds of one optimizer step and its parts (per GPU, on the critical path)."""

    compute: float
    """GEMMs + attention + elementwise over all micro-batches (incl. recompute), slowest stage."""
    tp_comm: float
    """Exposed TP collectives."""
    pp_bubble: float
    """Pipeline fill/drain time + exposed point-to-point sends."""
    dp_comm: float
    """Exposed DP reduce-scatter / all-gather."""
    optimizer: float
    """Adam step (HBM-bound)."""

    @property
    def total(self) -> float:
        return self.compute + self.tp_comm + self.pp_bubble + self.dp_comm + self.optimizer


def _passes(lay: Layout) -> tuple[float, float]:
    """(GEMM passes, attention passes) in forward units: fwd 1 + bwd 2 (+ recompute)."""
    gemm = 4.0 if lay.recompute == "full" else 3.0
    return gemm, (3.0 if lay.recompute == "none" else 4.0)


def micro_batch_seconds(shape: ModelShape, lay: Layout, job: Job, gpu: Gpu, seq: int) -> tuple[float, float, float]:
    """(layer compute, logits compute, exposed TP comm) of one micro-batch on one stage, seconds."""
    tokens = seq * job.micro_batch * (2 if job.kind == "rm" else 1)
    gemm_p, attn_p = _passes(lay)
    gemm, attn, _ = shape.fwd_flops_per_token(seq)
    per_stage = tokens / (lay.pp * lay.tp)
    bf16_rate = gpu.bf16_flops * gpu.gemm_eff
    gemm_rate = gpu.fp8_flops * gpu.fp8_gemm_eff if (lay.fp8 and gpu.fp8_flops) else bf16_rate
    layers = per_stage * (gemm * gemm_p / gemm_rate + attn * attn_p / (bf16_rate * ATTN_REL_EFF))
    elem_passes = ELEM_PASSES + (2.0 if lay.recompute == "full" else 0.0)
    layers += tokens * shape.layers / lay.pp * act_bytes_per_token(shape, lay) * elem_passes / (gpu.hbm_bw * HBM_EFF)
    logits = 0.0
    if job.kind != "rm":
        logits = 3 * 2.0 * tokens * shape.hidden * padded_vocab(shape.vocab, lay.tp) / lay.tp / bf16_rate
    comm = 0.0
    if lay.tp > 1:
        ops = 8 + (4 if lay.recompute == "full" else 0)
        bw = (gpu.nvlink_bw if lay.tp <= gpu.gpus_per_node else gpu.net_bw) * gpu.link_eff
        comm = ops * shape.layers / lay.pp * tokens * shape.hidden * 2 * (lay.tp - 1) / lay.tp / bw
        if job.userbuffers and lay.sp:
            comm *= TP_OVERLAP_EXPOSED
    return layers, logits, comm


def dp_seconds(shape: ModelShape, lay: Layout, job: Job, gpu: Gpu, window_bwd: float, window_fwd: float) -> float:
    """Exposed DP gradient reduction + parameter gather for one optimizer step."""
    if lay.dp == 1:
        return 0.0
    params = max(params_per_gpu(shape, lay))
    frac = (lay.dp - 1) / lay.dp
    spans_nodes = lay.tp * lay.pp * lay.dp > gpu.gpus_per_node
    bw = (gpu.net_bw if spans_nodes else gpu.nvlink_bw) * gpu.link_eff
    if not job.distributed_optimizer:
        reduce = 2 * 4 * params * frac / bw
        return max(0.0, reduce - window_bwd) if job.overlap_grad_reduce else reduce
    rs, ag = 4 * params * frac / bw, 2 * params * frac / bw
    rs = max(0.0, rs - window_bwd) if job.overlap_grad_reduce else rs
    ag = max(0.0, ag - window_fwd) if job.overlap_param_gather else ag
    return rs + ag


def step_time(shape: ModelShape, lay: Layout, job: Job, gpu: Gpu, seq: int | None = None,
              optimizer_steps: int = 1) -> StepTime:
    """Seconds of one step of ``job`` in layout ``lay`` (``seq`` overrides the attention length;
    ``optimizer_steps`` > 1 splits the batch into that many updates, as GRPO's mini-batches)."""
    seq = seq or job.seq_length
    m = microbatches(job, lay)
    layers, logits, tp = micro_batch_seconds(shape, lay, job, gpu, seq)
    slowest = layers + logits  # the last stage carries the output layer
    avg = layers + logits / lay.pp
    v = lay.vpp or 1
    p2p = 0.0
    if lay.pp > 1:
        tokens = seq * job.micro_batch * (2 if job.kind == "rm" else 1)
        msg = tokens * shape.hidden * 2 / (lay.tp if lay.sp else 1)
        # megatron orders ranks tp-cp-dp-pp: pipeline neighbours are GPUs/PP ranks apart, so once the
        # job spans nodes some stage boundary crosses the network and the pipeline runs at its pace
        spans_nodes = lay.tp * lay.pp * lay.dp > gpu.gpus_per_node
        bw = (gpu.net_bw if spans_nodes else gpu.nvlink_bw) * gpu.link_eff
        p2p = (m + lay.pp - 1) * 2 * v * msg / bw * (0.5 if lay.vpp else 1.0)
    bubble = (lay.pp - 1) / v * (avg + tp) + p2p
    gemm_p, _ = _passes(lay)
    dp = optimizer_steps * dp_seconds(shape, lay, job, gpu, window_bwd=layers * 2 / (gemm_p + 0.0) + tp,
                                      window_fwd=layers / gemm_p)
    params = max(params_per_gpu(shape, lay))
    opt = optimizer_steps * params / (lay.dp if job.distributed_optimizer else 1) * OPTIMIZER_BYTES / (gpu.hbm_bw * HBM_EFF)
    return StepTime(compute=m * slowest, tp_comm=m * tp, pp_bubble=bubble, dp_comm=dp, optimizer=opt)

"""Enumerate TP/PP/VPP/SP/recompute/FP8 layouts, predict memory and step time, rank them.

Ranking: layouts that fit in HBM first; among them, those within ``TIE_BAND`` of the best predicted
tokens/s/GPU rank by memory (least first: a throughput difference the model cannot resolve does not
buy less headroom), then the rest by tokens/s/GPU (descending), then by memory. MFU is model FLOPs
(``ModelShape.train_flops_per_token``, no recompute) ÷ BF16 peak, also for FP8 layouts (the usual convention; FP8 shows up as MFU > the BF16 ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

from megatron_lwz.plan import calibration
from megatron_lwz.plan.grpo import grpo_time, mean_response
from megatron_lwz.plan.hardware import Gpu
from megatron_lwz.plan.memory import memory_breakdown, microbatches, peak_gib
from megatron_lwz.plan.shape import ModelShape
from megatron_lwz.plan.spec import Job, Layout
from megatron_lwz.plan.timing import step_time

RECOMPUTE = ("none", "selective", "full")


@dataclass(frozen=True, kw_only=True)
class Fixed:
    """Layout choices pinned on the command line (None = search)."""

    tp: int | None = None
    pp: int | None = None
    vpp: int | None = None
    """0 = not interleaved, None = search."""
    sp: bool | None = None
    recompute: str | None = None
    fp8: bool | None = None


@dataclass(kw_only=True)
class Prediction:
    """The planner's verdict on one layout."""

    layout: Layout
    mem_gib: float
    """Peak GiB per GPU (calibrated categories)."""
    mem_formula_gib: float
    """Peak GiB from the formula alone."""
    fits: bool
    step_s: float
    mfu: float
    tokens_per_s_per_gpu: float
    parts_s: dict[str, float] = field(default_factory=dict)
    mem_parts: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict:
        return {**self.layout.as_dict(), "mem_gib": round(self.mem_gib, 2), "mem_formula_gib": round(self.mem_formula_gib, 2),
                "fits": self.fits, "step_s": round(self.step_s, 3), "mfu": round(self.mfu, 4),
                "tokens_per_s_per_gpu": round(self.tokens_per_s_per_gpu, 1),
                "phases_s": {k: round(v, 3) for k, v in self.parts_s.items()},
                "mem_parts_gib": {k: round(v, 2) for k, v in self.mem_parts.items()}}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidates(shape: ModelShape, gpus: int, gpu: Gpu, job: Job, fixed: Fixed = Fixed()) -> list[Layout]:
    """Every layout megatron accepts for this model, GPU count and batch (validate.py's rules)."""
    out = []
    tps = [t for t in _divisors(gpus) if shape.heads % t == 0 and shape.kv_heads % t == 0 and shape.ffn % t == 0]
    for tp in ([fixed.tp] if fixed.tp else tps):
        for pp in ([fixed.pp] if fixed.pp else _divisors(shape.layers)):
            if gpus % (tp * pp):
                continue
            dp = gpus // (tp * pp)
            per_mb = job.micro_batch * (2 if job.kind == "rm" else 1)
            if job.kind != "grpo" and job.sequences_per_step % (per_mb * dp):
                continue
            vpps = [None] + [v for v in range(2, 9) if pp > 1 and shape.layers % (pp * v) == 0]
            if fixed.vpp is not None:
                vpps = [fixed.vpp or None]
            sps = [False, True] if tp > 1 else [False]
            fp8s = [False, True] if (gpu.fp8_flops and job.kind == "cpt") else [False]
            for vpp, sp, rc, fp8 in product(vpps, sps if fixed.sp is None else [fixed.sp],
                                            [fixed.recompute] if fixed.recompute else RECOMPUTE,
                                            fp8s if fixed.fp8 is None else [fixed.fp8]):
                lay = Layout(tp=tp, pp=pp, vpp=vpp, dp=dp, sp=sp, recompute=rc, fp8=fp8)
                if vpp and microbatches(job, lay) < pp:
                    continue
                out.append(lay)
    return out


TIE_BAND = 0.02
"""Predicted throughputs within this share of the best fitting layout's count as a tie (the time model's
spread on the held-out published runs is ±15 %, docs/planning.md); 0 ranks by throughput alone."""
HEADROOM = 0.08
"""Share of HBM kept free when the job's memory is calibrated (fragmentation, NCCL growth, spikes)."""
HEADROOM_UNCALIBRATED = 0.15
"""Share kept free while the formula is not yet calibrated by measured numbers (its error is unknown)."""


def predict(shape: ModelShape, lay: Layout, job: Job, gpu: Gpu, gpus: int,
            scales: dict[str, float] | None = None, headroom: float = HEADROOM) -> Prediction:
    """Memory and time of one layout; it fits when its peak ≤ (1 − ``headroom``) × HBM."""
    formula = memory_breakdown(shape, lay, job, gpu.hbm_gib)
    parts = calibration.apply(formula, scales or {}, lay.recompute)
    mem, mem_formula = peak_gib(parts, job), peak_gib(formula, job)
    if job.kind == "grpo":
        t = grpo_time(shape, lay, job, gpu, gpus)
        spec = job.grpo
        sample_len = spec.prompt_mean + mean_response(spec)
        tokens = spec.prompts * spec.group * sample_len
        step, phases = t.total, {k: getattr(t, k) for k in ("rollout", "sync", "logprob", "rm", "train")}
        # trained once + one log-prob forward per token
        model_flops = tokens * (shape.train_flops_per_token(sample_len) + sum(shape.fwd_flops_per_token(sample_len)))
    else:
        t = step_time(shape, lay, job, gpu)
        tokens = job.sequences_per_step * job.seq_length
        step = t.total
        phases = {k: getattr(t, k) for k in ("compute", "tp_comm", "pp_bubble", "dp_comm", "optimizer")}
        model_flops = tokens * shape.train_flops_per_token(job.seq_length)
    return Prediction(layout=lay, mem_gib=mem, mem_formula_gib=mem_formula, fits=mem <= (1 - headroom) * gpu.hbm_gib, step_s=step,
                      mfu=model_flops / (step * gpus * gpu.bf16_flops), tokens_per_s_per_gpu=tokens / (step * gpus),
                      parts_s=phases, mem_parts=parts)


def rank(preds: list[Prediction], tie_band: float = TIE_BAND) -> list[Prediction]:
    """``preds`` best first (module doc)."""
    best = max((p.tokens_per_s_per_gpu for p in preds if p.fits), default=0.0)

    def key(p: Prediction) -> tuple:
        tied = p.fits and p.tokens_per_s_per_gpu >= (1 - tie_band) * best
        return (not p.fits, not tied, p.mem_gib if tied else 0.0, -p.tokens_per_s_per_gpu, p.mem_gib)

    return sorted(preds, key=key)


def plan(shape: ModelShape, gpus: int, gpu: Gpu, job: Job, fixed: Fixed = Fixed(),
         scales: dict[str, float] | None = None, headroom: float | None = None,
         tie_band: float = TIE_BAND) -> list[Prediction]:
    """All candidate layouts, best first (module doc); ``scales`` None = the shipped calibration;
    ``headroom`` None = ``HEADROOM`` when ``scales`` has factors, else ``HEADROOM_UNCALIBRATED``."""
    if scales is None:
        scales = calibration.category_scales(job.kind)
    if headroom is None:
        headroom = HEADROOM if scales else HEADROOM_UNCALIBRATED
    preds = [predict(shape, lay, job, gpu, gpus, scales, headroom) for lay in candidates(shape, gpus, gpu, job, fixed)]
    if not preds:
        raise ValueError(f"no layout of {gpus} GPUs fits the model/batch constraints (heads, layers and batch must "
                         "divide); relax the fixed flags or change --gpus / --global-batch")
    return rank(preds, tie_band)

"""Published throughput numbers and the planner's predictions for them (docs/planning.md, tests).

Each :class:`Published` row is a run someone else measured, with its source; :func:`predict_row`
evaluates the planner at that run's model, cluster, batch and (where published) layout, and
returns the value comparable to the published metric. The tolerance is ±25 %; rows marked
``fitted`` set the one efficiency constant of their GPU (plan/hardware.py) and are not evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_lwz.plan.hardware import gpu as gpu_named
from megatron_lwz.plan.search import Fixed, plan
from megatron_lwz.plan.shape import ModelShape
from megatron_lwz.plan.spec import GrpoSpec, Job

TOLERANCE = 0.25


def _gpt(layers: int, hidden: int, heads: int, vocab: int = 51200) -> ModelShape:
    return ModelShape(layers=layers, hidden=hidden, ffn=4 * hidden, heads=heads, kv_heads=heads, vocab=vocab,
                      swiglu=False)


QWEN3_32B = ModelShape(layers=64, hidden=5120, ffn=25600, heads=64, kv_heads=8, head_dim=128, vocab=151936)
LLAMA3_70B = ModelShape(layers=80, hidden=8192, ffn=28672, heads=64, kv_heads=8, vocab=128256)
NARAYANAN = ("Narayanan et al. 2021, 'Efficient Large-Scale Language Model Training on GPU Clusters Using "
             "Megatron-LM', arXiv:2104.04473, Table 1 (A100 80 GB, seq 2048, V 51,200, full recompute)")
# 2021 software: no SP, no distributed optimizer, no TP overlap, DP all-reduce after backward.
JOB_2021 = dict(tp_comm_overlap=False, overlap_grad_reduce=False, overlap_param_gather=False,
                distributed_optimizer=False)


@dataclass(frozen=True, kw_only=True)
class Published:
    """One published measurement."""

    name: str
    metric: str
    """'tflops_per_gpu_hfu' (Narayanan's 96·B·s·l·h²·(1 + s/6h + V/16lh) convention), 'mfu',
    'tokens_per_s_per_gpu', 'rollout_share' or 'logprob_over_update'."""
    value: float
    source: str
    shape: ModelShape
    gpu: str
    gpus: int
    job: Job
    fixed: Fixed = field(default_factory=Fixed)
    fitted: bool = False
    note: str = ""


def _narayanan(params_b, heads, hidden, layers, tp, pp, gpus, batch, tflops, fitted=False) -> Published:
    return Published(name=f"GPT {params_b}B, {gpus}× A100 (TP {tp}, PP {pp})", metric="tflops_per_gpu_hfu",
                     value=tflops, source=NARAYANAN, shape=_gpt(layers, hidden, heads), gpu="a100", gpus=gpus,
                     job=Job(kind="cpt", seq_length=2048, global_batch=batch, **JOB_2021),
                     fixed=Fixed(tp=tp, pp=pp, vpp=0, sp=False, recompute="full", fp8=False), fitted=fitted)


PUBLISHED: list[Published] = [
    _narayanan(1.7, 24, 2304, 24, 1, 1, 32, 512, 137),
    _narayanan(3.6, 32, 3072, 30, 2, 1, 64, 512, 138),
    _narayanan(7.5, 32, 4096, 36, 4, 1, 128, 512, 142),
    _narayanan(18.4, 48, 6144, 40, 8, 1, 256, 1024, 135),
    _narayanan(39.1, 64, 8192, 48, 8, 2, 512, 1536, 138, fitted=True),
    _narayanan(76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140),
    _narayanan(145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148),
    _narayanan(310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155),
    _narayanan(529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163),
    _narayanan(1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163),
    Published(name="GPT-3 175B (V 131K), 96× H100, best layout", metric="mfu", value=0.47, fitted=True,
              source="NVIDIA/Megatron-LM README, 'Training Speed and Scalability' (strong scaling, batch 1152)",
              shape=_gpt(96, 12288, 96, 131072), gpu="h100", gpus=96,
              job=Job(kind="cpt", seq_length=4096, global_batch=1152), fixed=Fixed(fp8=False),
              note="seq 4096 assumed (the README's weak-scaling setting); layout not in the text: planner's best"),
    Published(name="GPT-3 175B (V 131K), 4608× H100, best layout", metric="mfu", value=0.42,
              source="NVIDIA/Megatron-LM README, 'Training Speed and Scalability' (strong scaling, batch 1152)",
              shape=_gpt(96, 12288, 96, 131072), gpu="h100", gpus=4608,
              job=Job(kind="cpt", seq_length=4096, global_batch=1152), fixed=Fixed(fp8=False),
              note="same assumptions; DP 48+ with 1152 sequences leaves few micro-batches per rank"),
    Published(name="Llama3-70B FP8, 64× H100 (TP 4, PP 8, VPP 5)", metric="tokens_per_s_per_gpu", value=1633,
              source="NVIDIA-NeMo/Megatron-Bridge docs/performance-summary-archive.md (1602–1664 tokens/s/GPU; "
                     "peers.md §6)", shape=LLAMA3_70B, gpu="h100", gpus=64,
              job=Job(kind="cpt", seq_length=8192, global_batch=128),
              fixed=Fixed(tp=4, pp=8, vpp=5, sp=True, fp8=True), note="GBS 128 assumed (NeMo's 70B perf recipe)"),
    Published(name="Qwen3-32B GRPO on-policy, 32× H100 (TP 4, PP 4; vLLM TP 4)", metric="tokens_per_s_per_gpu",
              value=571, source="NVIDIA-NeMo/RL docs/about/performance-summary.md v0.5 (commit e7c0123d7; peers.md §2.4)",
              shape=QWEN3_32B, gpu="h100", gpus=32,
              job=Job(kind="grpo", seq_length=4096, grpo=GrpoSpec(prompts=64, group=32, prompt_mean=104,
                                                                   response_mean=3251, response_max=4096,
                                                                   minibatches=1, gen_tp=4, gen_mem_fraction=0.6)),
              fixed=Fixed(tp=4, pp=4, vpp=0, sp=True, recompute="none", fp8=False),
              note="prompt mean 104 = 571·376·32/2048 − 3251 (their tokens/s counts prompt + generation)"),
    Published(name="DAPO Qwen2.5-32B, 128× H800: rollout share of the step", metric="rollout_share", value=0.70,
              source="verl docs/advance/one_step_off.md ('Rollout phase accounts for approximately 70%')",
              shape=ModelShape(layers=64, hidden=5120, ffn=27648, heads=40, kv_heads=8, vocab=152064), gpu="h800",
              gpus=128, job=Job(kind="grpo", seq_length=24576, grpo=GrpoSpec(
                  prompts=512, group=16, prompt_mean=200, response_mean=4000, response_max=20480, minibatches=16,
                  gen_tp=4, gen_mem_fraction=0.7)), fixed=Fixed(tp=8, pp=1, sp=True, recompute="full", fp8=False),
              note="verl DAPO recipe: 512 prompts × 16, 20K max response, gen TP 4; mean response ≈ 4K assumed "
                   "(DAPO paper, Fig. of response length); the trainer layout is approximated by Megatron TP 8"),
    Published(name="DAPO Qwen2.5-Math-7B, 16× H20, Megatron: old_log_prob / update_actor", metric="logprob_over_update",
              value=119 / 344, source="verl docs/advance/one_step_off.md (colocate sync, VLLM+Megatron: 119 s / 344 s)",
              shape=ModelShape(layers=28, hidden=3584, ffn=18944, heads=28, kv_heads=4, vocab=152064), gpu="h20",
              gpus=16, job=Job(kind="grpo", seq_length=8192, grpo=GrpoSpec(
                  prompts=512, group=16, prompt_mean=200, response_mean=3000, response_max=8192, minibatches=16,
                  gen_tp=4, gen_mem_fraction=0.7)), fixed=Fixed(tp=4, pp=1, sp=True, recompute="none", fp8=False),
              note="a ratio: independent of the unpublished batch and lengths to first order"),
]


def narayanan_flops(shape: ModelShape, job: Job) -> float:
    """Narayanan et al. 2021 eq. (3): FLOPs per step incl. recompute, F = 96·B·s·l·h²·(1 + s/6h + V/16lh)."""
    b, s, l, h, v = job.global_batch, job.seq_length, shape.layers, shape.hidden, shape.vocab
    return 96 * b * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))


def predict_row(row: Published) -> tuple[float, dict]:
    """(predicted value in ``row.metric``'s units, the best layout's JSON row)."""
    gpu = gpu_named(row.gpu)
    best = plan(row.shape, row.gpus, gpu, row.job, row.fixed, scales={}, headroom=0.0)[0]  # it ran: it fits
    if row.metric == "tflops_per_gpu_hfu":
        value = narayanan_flops(row.shape, row.job) / (best.step_s * row.gpus) / 1e12
    elif row.metric == "mfu":
        value = best.mfu
    elif row.metric == "tokens_per_s_per_gpu":
        value = best.tokens_per_s_per_gpu
    elif row.metric == "rollout_share":
        value = best.parts_s["rollout"] / best.step_s
    elif row.metric == "logprob_over_update":
        value = best.parts_s["logprob"] / best.parts_s["train"]
    else:
        raise ValueError(f"unknown metric {row.metric!r}")
    return value, best.row()


def validation_table() -> list[dict]:
    """One dict per published row: name, metric, published, predicted, relative error, within tolerance."""
    out = []
    for row in PUBLISHED:
        pred, best = predict_row(row)
        err = pred / row.value - 1
        out.append({"name": row.name, "metric": row.metric, "published": row.value, "predicted": pred, "error": err,
                    "within": abs(err) <= TOLERANCE, "fitted": row.fitted, "source": row.source, "note": row.note,
                    "layout": {k: best[k] for k in ("tp", "pp", "vpp", "dp", "sp", "recompute", "fp8")}})
    return out


def _fmt(metric: str, v: float) -> str:
    if metric == "tokens_per_s_per_gpu":
        return f"{v:,.0f} tok/s/GPU"
    if metric == "tflops_per_gpu_hfu":
        return f"{v:.0f} TFLOP/s/GPU"
    if metric in ("mfu", "rollout_share"):
        return f"{v:.1%}" + (" MFU" if metric == "mfu" else " rollout")
    return f"{v:.3f}"


def markdown_table() -> str:
    """docs/planning.md's validation table (``python -m megatron_lwz.plan.validation``)."""
    lines = ["| run | published | planner | error | ±25% | planner layout (TP/PP/VPP/DP, SP, recompute, FP8) |",
             "|---|---:|---:|---:|:--:|---|"]
    for r in validation_table():
        lay = r["layout"]
        desc = (f"{lay['tp']}/{lay['pp']}/{lay['vpp'] or '-'}/{lay['dp']}, SP {'on' if lay['sp'] else 'off'}, "
                f"{lay['recompute']}, {'FP8' if lay['fp8'] else 'BF16'}")
        verdict = "fit" if r["fitted"] else ("yes" if r["within"] else "**no**")
        lines.append(f"| {r['name']} | {_fmt(r['metric'], r['published'])} | {_fmt(r['metric'], r['predicted'])} | "
                     f"{r['error']:+.1%} | {verdict} | {desc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())

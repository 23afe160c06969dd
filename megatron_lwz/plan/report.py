"""Table + JSON record of ``lwz plan`` (the JSON line's ``layouts`` are best first)."""

from __future__ import annotations

from dataclasses import asdict

from megatron_lwz.bench.report import BenchResult, Column, format_markdown
from megatron_lwz.plan.hardware import Gpu
from megatron_lwz.plan.shape import ModelShape
from megatron_lwz.plan.spec import Job

COLUMNS = [Column(key="rank", header="#"), Column(key="tp", header="TP"), Column(key="pp", header="PP"),
           Column(key="vpp", header="VPP"), Column(key="dp", header="DP"), Column(key="sp", header="SP"),
           Column(key="recompute", header="recompute"), Column(key="fp8", header="FP8"),
           Column(key="mem_gib", header="GiB/GPU", fmt=".1f"), Column(key="fits", header="fits"),
           Column(key="step_s", header="step s", fmt=".2f"), Column(key="mfu", header="MFU", fmt=".3f"),
           Column(key="tokens_per_s_per_gpu", header="tok/s/GPU", fmt=",.0f")]
PHASE_COLUMNS = {"cpt": ["compute", "tp_comm", "pp_bubble", "dp_comm"], "rm": ["compute", "tp_comm", "pp_bubble", "dp_comm"],
                 "grpo": ["rollout", "sync", "logprob", "rm", "train"]}


def render(preds: list, shape: ModelShape, job: Job, gpu: Gpu, gpus: int, scales: dict[str, float],
           total: int, headroom: float, tie_band: float = 0.02) -> tuple[str, dict]:
    """(markdown table with notes, JSON record) for the ranked predictions."""
    rows = []
    for i, p in enumerate(preds, 1):
        row = {"rank": i, **p.row()}
        row.update({f"{k} s": v for k, v in row["phases_s"].items()})
        rows.append(row)
    phases = [Column(key=f"{k} s", header=f"{k} s", fmt=".1f") for k in PHASE_COLUMNS[job.kind]]
    best = preds[0]
    notes = [f"{total} candidate layouts; 'fits' = peak ≤ {(1 - headroom) * gpu.hbm_gib:.1f} GiB ({1 - headroom:.0%} of "
             f"{gpu.hbm_gib:.1f}); ranked by fit, then tokens/s/GPU, except that fitting layouts within "
             f"{tie_band:.0%} of the best tokens/s/GPU count as tied and rank by memory (least first). "
             "MFU = model FLOPs (no recompute) / BF16 peak.",
             "best layout memory (GiB): " + ", ".join(f"{k} {v:.1f}" for k, v in best.mem_parts.items()),
             ("memory calibrated by measured/formula factors: " + ", ".join(f"{k} ×{v:.2f}" for k, v in scales.items()))
             if scales else "memory: formula only (plan/memory_calibration.json has no measured numbers for this job)"]
    title = (f"plan: {shape.layers}L h{shape.hidden} f{shape.ffn} {shape.heads}/{shape.kv_heads} heads "
             f"V{shape.vocab} ({shape.num_params() / 1e9:.2f}B) · {job.kind} seq {job.seq_length} · "
             f"{job.sequences_per_step} seq/step · {gpus}× {gpu.name}")
    table = format_markdown(BenchResult(bench="plan", title=title, columns=COLUMNS + phases, rows=rows, notes=notes))
    keep = ("tp", "pp", "vpp", "dp", "sp", "recompute", "fp8", "mem_gib", "step_s", "mfu", "tokens_per_s_per_gpu",
            "fits", "mem_formula_gib", "phases_s", "mem_parts_gib")
    record = {"layouts": [{k: r[k] for k in keep} for r in rows], "candidates": total, "gpu": gpu.name, "gpus": gpus,
              "model": asdict(shape), "job": {"kind": job.kind, "seq_length": job.seq_length,
                                              "sequences_per_step": job.sequences_per_step},
              "calibration": scales, "tie_band": tie_band}
    return table, record

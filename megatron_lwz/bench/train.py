"""``lwz bench train``: engine throughput of TP/PP layouts against the TP = 1 baseline, same run.

Two launches of :mod:`megatron_lwz.bench.train_worker` (:mod:`megatron_lwz.bench.launch`): the
single-process ``tp1`` baseline (which also writes the shared initial state), then every other
layout on 2 processes (default ``tp2`` and ``pp2``, rebuilt one after another in the same launch).
Each layout runs ``warmup`` untimed and ``steps`` timed optimizer steps of
``engine.step.train_step`` on the same synthetic global batch (token-mean cross entropy of the
pretraining loop). Reported: median step time, tokens/s, speedup and per-process efficiency vs
TP1, achieved model GFLOP/s by the ``bench.flops`` formula, and the first- and last-step loss
differences to TP1 (the layouts must compute the same thing; > 1e-4 fails the run). The FLOPs
lines evaluate the same formula for a real model (default Qwen2.5-32B at 32K): FLOPs/token, the
attention share and the tokens/s/GPU for 40% MFU.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from megatron_lwz.bench.launch import launch_worker
from megatron_lwz.bench.flops import PEAK_FLOPS, flops_breakdown, tokens_per_s_at_mfu, train_flops_per_token
from megatron_lwz.bench.report import BenchResult, Column

LOSS_TOLERANCE = 1e-4
"""Max |loss − TP1's| (fp32; first and last step) before the benchmark reports a mismatch."""


def layout_sizes(text: str) -> tuple[int, int]:
    """``tp2`` / ``pp2`` / ``tp2pp2`` → (TP, PP); DP fills the rest of the processes."""
    if not re.fullmatch(r"((tp|pp)\d+)+", text):
        raise ValueError(f"bench train: layout {text!r}: use e.g. tp1, tp2, pp2, tp2pp2")
    sizes = {k: int(v) for k, v in re.findall(r"(tp|pp)(\d+)", text)}
    return sizes.get("tp", 1), sizes.get("pp", 1)


def model_arch(*, hidden: int, layers: int, ffn: int, heads: int, kv_heads: int, vocab: int, seq: int):
    """The benchmarked Qwen2-layout architecture (GQA, QKV bias, untied output layer)."""
    from megatron_lwz.models.presets import ModelArch

    return ModelArch(num_layers=layers, hidden_size=hidden, ffn_hidden_size=ffn, num_attention_heads=heads,
                     num_query_groups=kv_heads, vocab_size=vocab, max_position_embeddings=max(seq, 128),
                     rope_theta=1e6, norm_eps=1e-6, tie_word_embeddings=False, qkv_bias=True)


@dataclass(kw_only=True)
class TrainBenchConfig:
    """Model, batch and layouts of the training benchmark."""

    layouts: list[str] = field(default_factory=lambda: ["tp2", "pp2"])
    """Layouts beside the tp1 baseline, each on 2 processes (tpN / ppN / tpNppM with N·M = 2)."""
    hidden: int = 256
    """Hidden size of the benchmarked Qwen2-layout model."""
    layers: int = 4
    """Decoder layers (must divide by every PP size)."""
    ffn: int = 704
    """SwiGLU intermediate size."""
    heads: int = 8
    """Query heads."""
    kv_heads: int = 4
    """Key/value heads."""
    vocab: int = 2048
    """Vocabulary size."""
    seq: int = 256
    """Tokens per sequence."""
    micro_batch: int = 2
    """Sequences per micro-batch."""
    micro_batches: int = 4
    """Micro-batches per optimizer step (PP pipelines them)."""
    steps: int = 4
    """Timed steps per layout (median reported)."""
    warmup: int = 1
    """Untimed steps first."""
    threads: int = 1
    """OMP_NUM_THREADS per rank (TP1 uses one process: the same per-process budget)."""
    flops_preset: str = "qwen2.5-32b"
    """Preset evaluated by the FLOPs/token formula."""
    flops_seq: int = 32768
    """Sequence length of the FLOPs/token evaluation."""
    timeout_s: float = 600.0
    """Wall-clock limit of one launch."""
    harness_steps: int = 6
    """Alternating timed steps of our train_step vs a bare megatron-core loop in the TP1 launch (0 = off)."""
    dtype: str = "auto"
    """Model dtype: auto = bf16 on CUDA, fp32 on CPU."""
    results: str | None = None
    """Results file (JSON record + environment); None = runs/bench/train-<UTC time>.json."""

    def __post_init__(self) -> None:
        for layout in self.layouts:
            tp, pp = layout_sizes(layout)
            if tp * pp != 2:
                raise ValueError(f"bench train: layout {layout!r} must use exactly 2 processes (TP × PP = 2)")
            if self.layers % pp or self.kv_heads % tp or self.ffn % tp:
                raise ValueError(f"bench train: layout {layout!r} needs layers divisible by PP, kv_heads and ffn by TP")
        if self.steps < 1 or self.micro_batches < 1:
            raise ValueError("bench train: steps and micro_batches must be ≥ 1")


def _worker_args(cfg: TrainBenchConfig, init: Path) -> list[str]:
    args = ["--hidden", cfg.hidden, "--layers", cfg.layers, "--ffn", cfg.ffn, "--heads", cfg.heads,
            "--kv-heads", cfg.kv_heads, "--vocab", cfg.vocab, "--seq", cfg.seq, "--micro-batch", cfg.micro_batch,
            "--micro-batches", cfg.micro_batches, "--steps", cfg.steps, "--warmup", cfg.warmup, "--init", init,
            "--dtype", cfg.dtype]
    return [str(a) for a in args]


def rows_from_records(records: dict[str, dict], flops_per_token: float, peak_flops: float | None = None) -> list[dict]:
    """One row per layout, relative to ``records['tp1']``; MFU when the device's peak is known."""
    base = records["tp1"]
    base_s = statistics.median(base["step_s"])
    rows = []
    for layout, rec in records.items():
        step_s = statistics.median(rec["step_s"])
        tps = rec["tokens_per_step"] / step_s
        speedup = base_s / step_s
        rows.append({"layout": layout, "procs": rec["world"], "tp": rec["tp"], "pp": rec["pp"], "dp": rec["dp"],
                     "step_s": step_s, "tokens_per_s": tps, "speedup": speedup, "efficiency": speedup / rec["world"],
                     "model_gflops": tps * flops_per_token / 1e9, "loss_step1": rec["losses"][0],
                     "loss_diff": abs(rec["losses"][0] - base["losses"][0]),
                     "loss_last_diff": abs(rec["losses"][-1] - base["losses"][-1]), "steps_s": rec["step_s"],
                     "tokens_per_s_per_gpu": tps / rec["world"],
                     "mfu": tps * flops_per_token / (rec["world"] * peak_flops) if peak_flops else None})
    return rows


HARNESS_GOAL = 0.95
"""Our train_step's throughput as a share of the bare megatron-core loop's that we aim for."""


def harness_summary(record: dict | None) -> dict | None:
    """The TP1 launch's harness comparison (bench/harness.py) as summary values."""
    if not record:
        return None
    h = record["harness"]
    return {"ratio": h["ratio"], "ours_step_s": statistics.median(h["ours_s"]),
            "bare_step_s": statistics.median(h["bare_s"]), "loss_diff": h["loss_diff"], "steps": len(h["ours_s"]),
            "meets_goal": h["ratio"] >= HARNESS_GOAL}


def flops_summary(preset: str, seq: int) -> dict:
    """FLOPs/token, attention share and tokens/s/GPU at 40% MFU (H100 bf16) for a preset."""
    from megatron_lwz.models.presets import PRESETS

    if preset not in PRESETS:
        raise ValueError(f"bench train: --flops-preset {preset!r} unknown; choose one of {sorted(PRESETS)}")
    arch = PRESETS[preset]
    parts = flops_breakdown(arch, seq)
    return {"preset": preset, "seq": seq, "flops_per_token": parts.total, "attention_share": parts.attention_share,
            "flops_layers": parts.layers, "flops_logits": parts.logits, "flops_attention": parts.attention,
            "h100_bf16_tokens_per_s_at_40pct_mfu": tokens_per_s_at_mfu(arch, seq, 0.4, PEAK_FLOPS["h100-bf16"])}


COLUMNS = [Column(key="layout", header="layout"), Column(key="procs", header="procs"),
           Column(key="step_s", header="step s", fmt=".3f"), Column(key="tokens_per_s", header="tokens/s", fmt=",.0f"),
           Column(key="speedup", header="x TP1", fmt=".2f"), Column(key="efficiency", header="x TP1 / proc", fmt=".2f"),
           Column(key="model_gflops", header="model GFLOP/s", fmt=".2f"),
           Column(key="loss_diff", header="|Δ loss₁| vs TP1", fmt=".1e"),
           Column(key="loss_last_diff", header="|Δ loss_last|", fmt=".1e"),
           Column(key="tokens_per_s_per_gpu", header="tok/s/GPU", fmt=",.0f"), Column(key="mfu", header="MFU", fmt=".3f")]


def run_train_bench(cfg: TrainBenchConfig, progress: bool = True) -> BenchResult:
    """TP1 launch (writes the init), then one 2-process launch for the other layouts; table + summary."""
    from tqdm import tqdm

    arch = model_arch(hidden=cfg.hidden, layers=cfg.layers, ffn=cfg.ffn, heads=cfg.heads, kv_heads=cfg.kv_heads,
                      vocab=cfg.vocab, seq=cfg.seq)
    per_token = train_flops_per_token(arch, cfg.seq)
    records: dict[str, dict] = {}
    launches = [("tp1", 1, ["--write-init", "--harness-steps", str(cfg.harness_steps)])] + (
        [(",".join(cfg.layouts), 2, [])] if cfg.layouts else [])
    with tempfile.TemporaryDirectory(prefix="lwz_bench_train_") as tmp:
        init = Path(tmp) / "init.pt"
        for layouts, nproc, extra in tqdm(launches, desc="bench train (launches)", disable=not progress,
                                          file=sys.stderr):
            records.update(launch_worker("megatron_lwz.bench.train_worker", nproc,
                                         _worker_args(cfg, init) + ["--layouts", layouts, *extra], cfg.threads,
                                         cfg.timeout_s))
    from megatron_lwz.bench.results import device_info, device_peak_flops

    device = device_info()
    peak = device_peak_flops(device["name"]) if device["kind"] == "cuda" else None
    rows = rows_from_records(records, per_token, peak)
    big = flops_summary(cfg.flops_preset, cfg.flops_seq)
    summary = {f"speedup_{r['layout']}": r["speedup"] for r in rows if r["layout"] != "tp1"}
    harness = harness_summary(records["tp1"] if "harness" in records["tp1"] else None)
    summary.update(tokens_per_s_tp1=rows[0]["tokens_per_s"], step_s_tp1=rows[0]["step_s"],
                   losses_match=all(max(r["loss_diff"], r["loss_last_diff"]) <= LOSS_TOLERANCE for r in rows),
                   model_flops_per_token=per_token, flops=big, device=device, mfu_tp1=rows[0]["mfu"],
                   harness_ratio=harness and harness["ratio"], harness=harness,
                   model={"hidden": cfg.hidden, "layers": cfg.layers, "ffn": cfg.ffn, "heads": cfg.heads,
                          "kv_heads": cfg.kv_heads, "vocab": cfg.vocab, "seq": cfg.seq,
                          "tokens_per_step": cfg.micro_batches * cfg.micro_batch * cfg.seq})
    on = f"{device['count']}× {device['name']}" if device["kind"] == "cuda" else f"CPU, {cfg.threads} thread(s)/process"
    notes = [f"median of {cfg.steps} steps after {cfg.warmup} warm-up on {on}"
             + (f"; MFU vs {peak / 1e12:.0f} TFLOP/s BF16 peak" if peak else " (no peak FLOP/s known, so no MFU)")
             + f"; model FLOPs/token {per_token / 1e6:.1f} M (bench.flops formula, s={cfg.seq})",
             f"{big['preset']} at s={big['seq']}: {big['flops_per_token'] / 1e9:.1f} GFLOP/token (training), "
             f"attention {100 * big['attention_share']:.1f}% of it; 40% MFU on H100 bf16 = "
             f"{big['h100_bf16_tokens_per_s_at_40pct_mfu']:,.0f} tokens/s/GPU",
             f"first- and last-step losses agree with TP1 within {LOSS_TOLERANCE:g}: {summary['losses_match']}"]
    if harness:
        notes.append(f"harness overhead (TP1, {harness['steps']} alternating steps): bare megatron-core loop "
                     f"{harness['bare_step_s']:.4f} s / our train_step {harness['ours_step_s']:.4f} s = "
                     f"{harness['ratio']:.3f} (goal ≥ {HARNESS_GOAL}); same-weights loss |Δ| {harness['loss_diff']:.1e}")
    title = (f"train: Qwen2 h={cfg.hidden} L={cfg.layers} V={cfg.vocab}, {cfg.micro_batches}×{cfg.micro_batch}×{cfg.seq} "
             f"tokens/step, {cfg.dtype}")
    return BenchResult(bench="train", title=title, columns=COLUMNS, rows=rows, summary=summary, notes=notes)


"""``lwz bench export``: Megatron→HF weight export throughput vs a plain memcpy of the same bytes.

For each TP size one launch of :mod:`megatron_lwz.bench.export_worker` on TP local ranks
(:mod:`megatron_lwz.bench.launch`; gloo on CPU, nccl on GPU) times, interleaved in the same process,
(a) ``rollout.export.iter_hf_weights`` with every yielded tensor copied into preallocated HF-shaped
engine buffers (what ``update_weights`` does) and (b) ``copy_`` of the same number of bytes within
those buffers (half ← half, twice). Reported per rank and transport: GB/s of both (bytes of the
full HF model / median seconds) and their ratio; the issue's target is ratio ≥ 0.5 at TP = 1 and
TP = 2 on CPU. At TP > 1 the shared-memory transport is timed with a per-call and with a kept
``ExportStaging``, and (``--collectives``) the gloo/nccl transport; every transport's tensors are
checked bit for bit against the first one's.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from typing import Literal

from megatron_lwz.bench.launch import launch_worker
from megatron_lwz.bench.report import BenchResult, Column

TARGET_RATIO = 0.5
"""Issue requirement: export throughput ≥ 0.5 × memcpy."""


@dataclass(kw_only=True)
class ExportBenchConfig:
    """Model size, TP sizes and repetitions of the export benchmark."""

    tp: list[int] = field(default_factory=lambda: [1, 2])
    """TP sizes; each runs as one launch with that many local processes."""
    hidden: int = 1024
    """Hidden size of the benchmarked Qwen2-layout model (defaults: 156M params, 0.62 GB fp32; the
    TP = 2 run peaks at ~3.7 GB of RAM: 3.2 GB in the 2 ranks (torch/megatron, shards, engine
    buffers) + 0.5 GB of /dev/shm staging)."""
    layers: int = 8
    """Decoder layers."""
    ffn: int = 2816
    """SwiGLU intermediate size."""
    heads: int = 16
    """Query heads."""
    kv_heads: int = 4
    """Key/value heads (GQA groups)."""
    vocab: int = 32000
    """Vocabulary (embedding and untied output layer)."""
    dtype: Literal["fp32", "bf16"] = "fp32"
    """Export (engine) dtype; the model is fp32, so bf16 includes the cast."""
    bucket_mb: float = 128.0
    """``bucket_bytes`` of the export in MiB (shared-memory file / PP broadcast size)."""
    repeats: int = 5
    """Timed export and memcpy runs per transport (interleaved; medians reported)."""
    collectives: bool = False
    """At TP > 1 also time the collective (gloo/nccl) transport and check it is bit-identical to shared
    memory (off by default: its fresh per-tensor buffers add ~0.7 × the model to each rank's RAM)."""
    threads: int = 1
    """OMP_NUM_THREADS of each rank (the memcpy baseline uses the same threads as the export)."""
    timeout_s: float = 600.0
    """Wall-clock limit of one launch."""

    def __post_init__(self) -> None:
        if not self.tp or any(t < 1 for t in self.tp):
            raise ValueError(f"bench export: tp must be a non-empty list of sizes ≥ 1, got {self.tp}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"bench export: hidden ({self.hidden}) must divide by heads ({self.heads}) and heads "
                             f"by kv_heads ({self.kv_heads})")
        if any(self.kv_heads % t or self.ffn % t for t in self.tp):
            raise ValueError(f"bench export: kv_heads ({self.kv_heads}) and ffn ({self.ffn}) must divide by every "
                             f"TP size {self.tp}")
        if self.repeats < 1:
            raise ValueError(f"bench export: repeats must be ≥ 1, got {self.repeats}")


def _worker_args(cfg: ExportBenchConfig) -> list[str]:
    args = ["--hidden", cfg.hidden, "--layers", cfg.layers, "--ffn", cfg.ffn, "--heads", cfg.heads,
            "--kv-heads", cfg.kv_heads, "--vocab", cfg.vocab, "--dtype", cfg.dtype, "--bucket-mb", cfg.bucket_mb,
            "--repeats", cfg.repeats]
    return [str(a) for a in args] + (["--collectives"] if cfg.collectives else [])


def rows_from_records(records: list[dict]) -> list[dict]:
    """Table rows (one per rank and transport) from the workers' per-rank records."""
    med = statistics.median
    rows = []
    for rec in records:
        for transport, t in rec["transports"].items():
            export_s, memcpy_s = med(t["export_s"]), med(t["memcpy_s"])
            identical = next((v for k, v in t.items() if k.startswith("identical_to_")), None)
            rows.append({"tp": rec["tp"], "rank": rec["rank"], "transport": transport, "gbytes": rec["bytes"] / 1e9,
                         "tensors": rec["tensors"], "export_gbps": rec["bytes"] / export_s / 1e9,
                         "memcpy_gbps": rec["bytes"] / memcpy_s / 1e9, "ratio": memcpy_s / export_s,
                         "ratio_best": min(t["memcpy_s"]) / min(t["export_s"]),
                         "ratio_cpu": med(t["memcpy_cpu_s"]) / med(t["export_cpu_s"]),
                         "export_s": export_s, "memcpy_s": memcpy_s, "identical": identical})
    return rows


RECOMMENDED = {"direct": 0, "shm+staging": 1, "shm": 2, "collectives": 3}
"""Headline transport per TP size: the first of these that was timed."""


def summarize(rows: list[dict], cfg: ExportBenchConfig) -> dict:
    """Per TP size and transport the worst rank's ratio; headline = recommended transport vs the target."""
    out: dict = {}
    for tp in cfg.tp:
        mine = [r for r in rows if r["tp"] == tp]
        labels = sorted({r["transport"] for r in mine}, key=lambda t: RECOMMENDED.get(t, 9))
        for label in labels:
            key = f"tp{tp}_{label.replace('+', '_')}"
            out[f"ratio_{key}"] = min(r["ratio"] for r in mine if r["transport"] == label)
            out[f"ratio_cpu_{key}"] = min(r["ratio_cpu"] for r in mine if r["transport"] == label)
        out[f"ratio_tp{tp}"] = out[f"ratio_tp{tp}_{labels[0].replace('+', '_')}"]
        out[f"transport_tp{tp}"] = labels[0]
    identical = [r["identical"] for r in rows if r["identical"] is not None]
    headline = [out[f"ratio_tp{tp}"] for tp in cfg.tp]
    return {**out, "target_ratio": TARGET_RATIO, "meets_target": all(v >= TARGET_RATIO for v in headline),
            "transports_identical": all(identical) if identical else None,
            "model": {"hidden": cfg.hidden, "layers": cfg.layers, "ffn": cfg.ffn, "heads": cfg.heads,
                      "kv_heads": cfg.kv_heads, "vocab": cfg.vocab, "dtype": cfg.dtype},
            "bucket_mb": cfg.bucket_mb, "repeats": cfg.repeats, "threads_per_rank": cfg.threads}


COLUMNS = [Column(key="tp", header="TP"), Column(key="rank", header="rank"),
           Column(key="transport", header="transport"), Column(key="gbytes", header="GB", fmt=".3f"),
           Column(key="export_gbps", header="export+copy GB/s", fmt=".2f"),
           Column(key="memcpy_gbps", header="memcpy GB/s", fmt=".2f"),
           Column(key="ratio", header="x memcpy", fmt=".2f"), Column(key="ratio_best", header="x (best-of)", fmt=".2f"),
           Column(key="ratio_cpu", header="x (CPU time)", fmt=".2f"), Column(key="identical", header="bit-identical")]


def run_export_bench(cfg: ExportBenchConfig, progress: bool = True) -> BenchResult:
    """Launch one worker per TP size, collect every rank's timings, build the table + summary."""
    from tqdm import tqdm

    records = []
    for tp in tqdm(cfg.tp, desc="bench export (TP sizes)", disable=not progress, file=sys.stderr):
        out = launch_worker("megatron_lwz.bench.export_worker", tp, _worker_args(cfg), cfg.threads, cfg.timeout_s)
        records += out["ranks"]
    rows = rows_from_records(records)
    summary = summarize(rows, cfg)
    heads = ", ".join(f"TP{tp} ({summary[f'transport_tp{tp}']}) {summary[f'ratio_tp{tp}']:.2f}" for tp in cfg.tp)
    notes = [f"x memcpy = median memcpy wall time / median export wall time (interleaved, {cfg.repeats} runs each, "
             f"worst rank); x (CPU time) = the same with this process's CPU time (insensitive to other load)",
             f"target ≥ {TARGET_RATIO}: {'met' if summary['meets_target'] else 'NOT met'} — {heads}",
             "export+copy = iter_hf_weights with each tensor copied into preallocated engine buffers (update_weights); "
             "memcpy = copy_ of the same number of bytes within the same buffers (two half-size copies)",
             "transports: direct = TP1 zero-copy views of the parameters; shm = /dev/shm staging built per call (the "
             "CPU default); shm+staging = one ExportStaging kept across calls; collectives = gloo all-gather"]
    title = (f"export: Qwen2 h={cfg.hidden} L={cfg.layers} V={cfg.vocab} ({rows[0]['gbytes']:.2f} GB {cfg.dtype}), "
             f"TP {cfg.tp}, {cfg.threads} thread(s)/rank")
    return BenchResult(bench="export", title=title, columns=COLUMNS, rows=rows, summary=summary, notes=notes)

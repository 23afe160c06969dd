"""``lwz bench checkpoint``: save / load time and peak host RSS per rank, old vs new checkpoint I/O.

One launch of :mod:`megatron_lwz.bench.checkpoint_worker` on ``ranks`` local processes (gloo, CPU)
with the distributed optimizer. Rows: megatron's gathering DistOpt writer, synchronous (the
behaviour before issue 12, the baseline); the gather-free writer with megatron's fully-parallel
wrappers, synchronous and asynchronous; loads with both readers. Per row: the slowest rank's time,
the largest per-rank peak RSS and the largest rise of RSS during the phase, and ratios against the
baseline measured in the same run.

The extrapolation to the 32B recipes uses the byte counts the formats imply (the measured rise at
the bench size is printed next to the same formula as a check): the gathering writer holds, on
every rank, fp32 param + two Adam moments of its whole TP×PP shard (12 B × P / (TP·PP)) plus the
copy it writes; the gather-free writer stages only what the rank writes: its DistOpt slice
(12 B × P / (TP·PP·DP)) and, async, its share of the model weights.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from megatron_lwz.bench.launch import launch_worker
from megatron_lwz.bench.report import BenchResult, Column

GIB = 1024 ** 3
BASELINE = "save gather/sync"
RECIPES = {"cpt": ("megatron_lwz.pretrain.config:PretrainJobConfig", "examples/pretrain/qwen2.5-32b_cpt.yaml"),
           "grpo": ("megatron_lwz.rl.job_config:GRPOJobConfig", "examples/grpo/qwen2.5-32b_longwriter.yaml")}


@dataclass(kw_only=True)
class CheckpointBenchConfig:
    """Model and layout of the checkpoint benchmark."""

    ranks: int = 4
    """Local processes (DP = ranks / (TP·PP))."""
    tp: int = 1
    """Tensor-parallel size."""
    pp: int = 1
    """Pipeline-parallel size."""
    hidden: int = 768
    """Hidden size of the Qwen2-layout model (default ≈ 86M params: fits 4 ranks × 2 writers in 24 GB)."""
    layers: int = 6
    """Decoder layers."""
    ffn: int = 2048
    """SwiGLU intermediate size."""
    heads: int = 12
    """Query heads."""
    kv_heads: int = 4
    """Key/value heads."""
    vocab: int = 32000
    """Vocabulary size."""
    dtype: str = "bf16"
    """Model params (bf16: fp32 main params separate, as on GPUs)."""
    world_32b: int = 64
    """GPUs of the 32B recipes (8 nodes × 8)."""
    timeout_s: float = 1800.0
    """Wall-clock limit of the launch."""

    def __post_init__(self) -> None:
        if self.ranks % (self.tp * self.pp):
            raise ValueError(f"bench checkpoint: ranks={self.ranks} not divisible by TP×PP={self.tp * self.pp}")
        if self.layers % self.pp or self.kv_heads % self.tp:
            raise ValueError("bench checkpoint: layers must divide by PP and kv_heads by TP")


def _worker_args(cfg: CheckpointBenchConfig, scratch: Path) -> list[str]:
    args = ["--hidden", cfg.hidden, "--layers", cfg.layers, "--ffn", cfg.ffn, "--heads", cfg.heads,
            "--kv-heads", cfg.kv_heads, "--vocab", cfg.vocab, "--tp", cfg.tp, "--pp", cfg.pp, "--dtype", cfg.dtype,
            "--dir", scratch]
    return [str(a) for a in args]


def optimizer_bytes(params: int, tp: int, pp: int, dp: int) -> dict[str, float]:
    """Host bytes per rank for the DistOpt state (fp32 param + 2 Adam moments = 12 B / param)."""
    shard = 12 * params / (tp * pp)
    return {"gather": shard, "sharded": shard / dp}


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def recipe_extrapolation(world: int) -> list[dict]:
    """Per-rank / per-node host RAM of the DistOpt state in the 32B recipes, old vs new writer."""
    from megatron_lwz.cli.jobs import _load
    from megatron_lwz.config.base import load_config
    from megatron_lwz.models.presets import resolve

    root = Path(__file__).resolve().parents[2]
    out = []
    placeholders = {k: os.environ.get(k, f"/{k.lower()}") for k in ("DATA_DIR", "MODELS_DIR", "CKPT_DIR", "RUNS_DIR")}
    for name, (cls, path) in RECIPES.items():
        with _environ(placeholders):  # the recipes' paths do not matter here, only layout and model
            cfg = load_config(_load(cls), root / path)
        p = cfg.parallel
        dp = world // (p.tensor_parallel * p.pipeline_parallel)
        params = resolve(cfg.model).num_params()
        b = optimizer_bytes(params, p.tensor_parallel, p.pipeline_parallel, dp)
        # Bytes written (bf16 weights 2 B + DistOpt 12 B per param): before, DP rank 0 of each TP×PP shard
        # wrote all of it (with TP 8 = one node per shard: 14 B × P / PP on such a node); now every rank
        # writes its 1/DP share.
        written = 14 * params / p.pipeline_parallel if p.tensor_parallel == 8 else 8 * 14 * params / (
            p.tensor_parallel * p.pipeline_parallel)
        out.append({"recipe": name, "params": params, "tp": p.tensor_parallel, "pp": p.pipeline_parallel, "dp": dp,
                    "gather_gib_per_rank": b["gather"] / GIB, "sharded_gib_per_rank": b["sharded"] / GIB,
                    "gather_gib_per_node": 8 * b["gather"] / GIB, "sharded_gib_per_node": 8 * b["sharded"] / GIB,
                    "write_gib_busiest_node_old": written / GIB, "write_gib_per_node_new": written / dp / GIB})
    return out


def rows_from_phases(phases: dict[str, list[dict]]) -> list[dict]:
    """One row per phase: slowest rank's seconds, largest per-rank RSS peak / rise; ratios vs BASELINE."""
    rows = []
    for name, ranks in phases.items():
        rows.append({"phase": name, "seconds": max(r["seconds"] for r in ranks),
                     "blocking_s": max((r["blocking_s"] for r in ranks if "blocking_s" in r), default=None),
                     "rss_peak_gib": max(r["rss_peak"] for r in ranks) / GIB,
                     "rss_extra_gib": max(r["rss_extra"] for r in ranks) / GIB})
    base = next(r for r in rows if r["phase"] == BASELINE)
    load_base = next((r for r in rows if r["phase"] == "load gather/sync"), None)
    for row in rows:
        ref = load_base if row["phase"].startswith("load") and load_base else base
        row["time_vs_old"] = (row["blocking_s"] or row["seconds"]) / ref["seconds"]
        row["rss_extra_vs_old"] = row["rss_extra_gib"] / ref["rss_extra_gib"] if ref["rss_extra_gib"] > 0 else None
    return rows


COLUMNS = [Column(key="phase", header="phase"), Column(key="seconds", header="s (slowest rank)", fmt=".2f"),
           Column(key="blocking_s", header="training blocked s", fmt=".2f"),
           Column(key="time_vs_old", header="x old", fmt=".2f"),
           Column(key="rss_peak_gib", header="peak RSS/rank GiB", fmt=".2f"),
           Column(key="rss_extra_gib", header="RSS rise/rank GiB", fmt=".2f"),
           Column(key="rss_extra_vs_old", header="rise x old", fmt=".2f")]


def run_checkpoint_bench(cfg: CheckpointBenchConfig) -> BenchResult:
    """One launch on ``cfg.ranks`` processes; table rows, summary ratios and the 32B extrapolation."""
    with tempfile.TemporaryDirectory(prefix="lwz_bench_ckpt_") as tmp:
        print(f"bench checkpoint: {cfg.ranks} ranks, TP{cfg.tp} PP{cfg.pp}, this takes a few minutes", file=sys.stderr)
        data = launch_worker("megatron_lwz.bench.checkpoint_worker", cfg.ranks, _worker_args(cfg, Path(tmp) / "ckpt"),
                             1, cfg.timeout_s)
    rows, lay = rows_from_phases(data["phases"]), data["layout"]
    by = {r["phase"]: r for r in rows}
    predicted = optimizer_bytes(lay["params_total"], lay["tp"], lay["pp"], lay["dp"])
    big = recipe_extrapolation(cfg.world_32b)
    summary = {"save_time_sync_vs_old": by["save sharded/sync"]["time_vs_old"],
               "save_blocking_async_vs_old": by["save sharded/async"]["time_vs_old"],
               "save_rss_extra_vs_old": by["save sharded/sync"]["rss_extra_vs_old"],
               "load_time_vs_old": by["load sharded/sync"]["time_vs_old"],
               "load_rss_extra_vs_old": by["load sharded/sync"]["rss_extra_vs_old"],
               "layout": lay, "predicted_gib_per_rank": {k: v / GIB for k, v in predicted.items()},
               "rss_rise_over_formula": {"gather": by[BASELINE]["rss_extra_gib"] * GIB / predicted["gather"],
                                         "sharded": by["save sharded/sync"]["rss_extra_gib"] * GIB / predicted["sharded"]},
               "recipes_32b": big}
    notes = [f"{lay['params_total'] / 1e6:.0f}M params ({cfg.dtype}), {lay['world']} ranks TP{lay['tp']} PP{lay['pp']} "
             f"DP{lay['dp']} over gloo on CPU; 'x old' = vs {BASELINE} (time) / load gather/sync (loads); async: "
             "'training blocked' is the time until save_checkpoint returns, 's' until the save is published",
             f"DistOpt state per rank by the formats' byte counts: gather {predicted['gather'] / GIB:.2f} GiB, "
             f"sharded {predicted['sharded'] / GIB:.2f} GiB; measured save RSS rise / formula: gather "
             f"{summary['rss_rise_over_formula']['gather']:.2f}, sharded {summary['rss_rise_over_formula']['sharded']:.2f} "
             "(the formula is a lower bound for the gathering writer)"]
    for r in big:
        notes.append(f"32B {r['recipe']} (TP{r['tp']} PP{r['pp']} DP{r['dp']}, {r['params'] / 1e9:.1f}B params): DistOpt "
                     f"state held per rank while saving / loading: gather {r['gather_gib_per_rank']:.1f} GiB "
                     f"({r['gather_gib_per_node']:.0f} GiB/node) → sharded {r['sharded_gib_per_rank']:.1f} GiB "
                     f"({r['sharded_gib_per_node']:.0f} GiB/node); written by the busiest node "
                     f"{r['write_gib_busiest_node_old']:.0f} GiB → {r['write_gib_per_node_new']:.0f} GiB on every node")
    title = f"checkpoint: save / load, old (gather, sync) vs new (sharded, fully parallel, async), {lay['world']} ranks"
    return BenchResult(bench="checkpoint", title=title, columns=COLUMNS, rows=rows, summary=summary, notes=notes)

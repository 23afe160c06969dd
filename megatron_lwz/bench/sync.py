"""``lwz bench sync``: weight-sync seconds trainer → rollout engine, vs a memcpy of the same bytes.

One launch of :mod:`megatron_lwz.bench.sync_worker` per TP size (``bench.launch``; gloo on CPU,
nccl on GPU): the real ``rl.step.sync_weights`` (``rollout.export.iter_hf_weights`` — PP
broadcast, TP gather, QKV/fc1 split to HF names, bucketed — into an HF rollout engine's
``update_weights``) timed against ``copy_`` of the same number of bytes on the same device,
interleaved. Reported: median seconds, GB/s and sync/memcpy throughput ratio. The vLLM (CUDA IPC)
transport of the GPU recipes is timed inside real GRPO steps by ``lwz bench e2e`` (``sync`` phase).
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field

from megatron_lwz.bench.launch import launch_worker
from megatron_lwz.bench.report import BenchResult, Column


@dataclass(kw_only=True)
class SyncBenchConfig:
    """Model size, TP sizes and repetitions."""

    tp: list[int] = field(default_factory=lambda: [1, 2])
    """TP sizes; one launch with that many local processes each."""
    hidden: int = 1024
    layers: int = 8
    ffn: int = 2816
    heads: int = 16
    kv_heads: int = 4
    vocab: int = 32000
    repeats: int = 5
    """Timed syncs (and memcpys), median reported."""
    threads: int = 1
    """OMP threads per rank."""
    timeout_s: float = 900.0


COLUMNS = [Column(key="tp", header="TP"), Column(key="gbytes", header="GB", fmt=".3f"),
           Column(key="sync_s", header="sync s", fmt=".3f"), Column(key="sync_gb_s", header="sync GB/s", fmt=".2f"),
           Column(key="memcpy_gb_s", header="memcpy GB/s", fmt=".2f"),
           Column(key="ratio", header="sync / memcpy", fmt=".3f")]


def row_from_record(rec: dict) -> dict:
    sync_s, memcpy_s = statistics.median(rec["sync_s"]), statistics.median(rec["memcpy_s"])
    gb = rec["bytes"] / 1e9
    return {"tp": rec["tp"], "gbytes": gb, "sync_s": sync_s, "memcpy_s": memcpy_s, "sync_gb_s": gb / sync_s,
            "memcpy_gb_s": gb / memcpy_s, "ratio": memcpy_s / sync_s, "device": rec["device"]}


def run_sync_bench(cfg: SyncBenchConfig, progress: bool = True) -> BenchResult:
    from tqdm import tqdm

    args = [str(a) for a in ("--hidden", cfg.hidden, "--layers", cfg.layers, "--ffn", cfg.ffn, "--heads", cfg.heads,
                             "--kv-heads", cfg.kv_heads, "--vocab", cfg.vocab, "--repeats", cfg.repeats)]
    rows = [row_from_record(launch_worker("megatron_lwz.bench.sync_worker", tp, args, cfg.threads, cfg.timeout_s))
            for tp in tqdm(cfg.tp, desc="bench sync (launches)", disable=not progress, file=sys.stderr)]
    summary = {f"sync_s_tp{r['tp']}": r["sync_s"] for r in rows}
    summary.update({f"ratio_tp{r['tp']}": r["ratio"] for r in rows})
    notes = [f"rl.step.sync_weights into an HF rollout engine on every rank ({rows[0]['device']}), median of "
             f"{cfg.repeats} after one warm-up; ratio = memcpy seconds / sync seconds for the same bytes",
             "vLLM's CUDA-IPC sync (GPU recipes) is the 'sync' phase of `lwz bench e2e`"]
    title = f"sync: Qwen2 h={cfg.hidden} L={cfg.layers} V={cfg.vocab} → HF engine"
    return BenchResult(bench="sync", title=title, columns=COLUMNS, rows=rows, summary=summary, notes=notes)

"""Worker (4 ranks, TP=2 × PP=2): parallel hf-to-mcore, load converted checkpoints, logits, mcore-to-hf.

1. ``hf_to_mcore`` of ``--hf-untied`` as a TP×PP launch (each rank fills and saves its shard).
2. For the tied (converted beforehand by the CLI) and untied checkpoints: build a TP2×PP2
   trainer, ``load_checkpoint(weights_only=True)``, and run the probe tokens through the pipeline;
   the last stage (TP rank 0) writes the TP-gathered logits to ``--logits-dir/<name>.pt``.
3. Rank 0 converts both checkpoints back with ``mcore_to_hf --verify`` into ``--hf-back-dir/<name>``,
   and the untied one once more in bf16 (``untied_bf16``).
4. The bf16 HF model goes through a parallel hf-to-mcore again (a bf16 dist checkpoint), is loaded
   into the fp32 TP2×PP2 model, and its logits are written as ``untied_bf16.pt``.
5. ``--hf-tp4`` (8 heads, 4 KV groups) converted as a TP=4 launch, loaded at TP=4 (``tp4_at_tp4``) and
   at TP=2 × PP=2 × VPP=2 (``tp4_at_tp2pp2vpp2``: interleaved stages, other vocab padding); the tied
   TP2×PP2 checkpoint loaded at TP2×PP2×VPP2 too (``tied_at_tp2pp2vpp2``); rank 0 converts the TP=4
   checkpoint back (``--hf-back-dir/tp4``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist

from megatron_lwz import parallel
from megatron_lwz.checkpoint.convert import HfToMcoreConfig, McoreToHfConfig, hf_to_mcore, mcore_to_hf
from megatron_lwz.checkpoint.state import load_checkpoint
from megatron_lwz.config.schema import ModelConfig, OptimConfig, ParallelConfig, PrecisionConfig, SchedulerConfig
from megatron_lwz.engine.step import forward_only
from megatron_lwz.engine.trainer import build_trainer

LAYOUT = ParallelConfig(tensor_parallel=2, pipeline_parallel=2, distributed_optimizer=True)


VPP_LAYOUT = ParallelConfig(tensor_parallel=2, pipeline_parallel=2, virtual_pipeline_parallel=2)
TP4_LAYOUT = ParallelConfig(tensor_parallel=4)


def logits_of(ckpt: Path, tied: bool, tokens: torch.Tensor, layout: ParallelConfig = LAYOUT,
              hf_config: str | None = None) -> torch.Tensor | None:
    """TP-gathered logits (B, T, padded V) on the last stage, None elsewhere. One micro-batch per row
    (interleaved pipelines need ≥ PP micro-batches)."""
    ctx = parallel.init_model_parallel(layout)
    model = ModelConfig(hf_config=hf_config) if hf_config else ModelConfig(preset="tiny-gqa3", tie_word_embeddings=tied)
    trainer = build_trainer(model=model, parallel=layout,
                            precision=PrecisionConfig(dtype="fp32"), optim=OptimConfig(lr=1e-3),
                            scheduler=SchedulerConfig(), total_steps=1, ctx=ctx)
    state = load_checkpoint(trainer, ckpt, weights_only=True)
    assert state is not None and state.step == 0, state
    batches = [{"tokens": row[None], "position_ids": torch.arange(tokens.shape[1])[None]} for row in tokens]

    def forward_fn(model, b):
        return model(b["tokens"], b["position_ids"], None)

    def collect(b, logits):  # logits: (B, T, V/TP) vocab-parallel
        parts = [torch.empty_like(logits) for _ in range(ctx.tp)]
        dist.all_gather(parts, logits.contiguous(), group=ctx.tp_group)
        return torch.cat(parts, dim=-1)

    out = forward_only(trainer, batches, forward_fn, collect, tokens.shape[1], 1)
    mine = torch.cat(out, dim=0) if (out and ctx.tp_rank == 0) else None
    parallel.destroy_model_parallel()
    return mine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf-untied", required=True)
    ap.add_argument("--mc-untied", required=True)
    ap.add_argument("--mc-tied", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--logits-dir", required=True)
    ap.add_argument("--hf-back-dir", required=True)
    ap.add_argument("--hf-tp4", required=True)
    ap.add_argument("--mc-tp4", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    parallel.init(LAYOUT)
    parallel.destroy_model_parallel()
    times = {}
    start = time.perf_counter()
    hf_to_mcore(HfToMcoreConfig(hf_dir=args.hf_untied, out_dir=args.mc_untied, tp=2, pp=2, progress=False))
    times["hf_to_mcore_tp2pp2_parallel_s"] = time.perf_counter() - start
    tokens = torch.load(args.tokens)
    # The third load unties a tied checkpoint: the output layer must start as the input embedding.
    for name, ckpt, tied in (("tied", args.mc_tied, True), ("untied", args.mc_untied, False),
                             ("tied_into_untied", args.mc_tied, False)):
        logits = logits_of(Path(ckpt), tied, tokens)
        if logits is not None:
            torch.save(logits, Path(args.logits_dir) / f"{name}.pt")
    dist.barrier()
    back = Path(args.hf_back_dir)
    if dist.get_rank() == 0:
        for name, ckpt, dtype in (("tied", args.mc_tied, "auto"), ("untied", args.mc_untied, "auto"),
                                  ("untied_bf16", args.mc_untied, "bf16")):
            start = time.perf_counter()
            mcore_to_hf(McoreToHfConfig(ckpt=ckpt, out_dir=str(back / name), dtype=dtype, max_shard_size="100KB",
                                        verify=True, progress=False))
            times[f"mcore_to_hf_{name}_s"] = time.perf_counter() - start
    dist.barrier()
    mc_bf16 = Path(args.mc_untied).with_name("mc_untied_bf16")
    hf_to_mcore(HfToMcoreConfig(hf_dir=str(back / "untied_bf16"), out_dir=str(mc_bf16), tp=2, pp=2, verify=True,
                                progress=False))
    logits = logits_of(mc_bf16, False, tokens)
    if logits is not None:
        torch.save(logits, Path(args.logits_dir) / "untied_bf16.pt")
    other_layouts(args, tokens, times)
    if dist.get_rank() == 0:
        Path(args.out).write_text(json.dumps(times))
    dist.barrier()
    parallel.shutdown()


def other_layouts(args, tokens: torch.Tensor, times: dict) -> None:
    """Step 5: conversion at TP=4 and loads at TP=4 and at interleaved TP2×PP2×VPP2."""
    start = time.perf_counter()
    hf_to_mcore(HfToMcoreConfig(hf_dir=args.hf_tp4, out_dir=args.mc_tp4, tp=4, pp=1, progress=False))
    times["hf_to_mcore_tp4_parallel_s"] = time.perf_counter() - start
    for name, ckpt, layout, hf_config in (("tp4_at_tp4", args.mc_tp4, TP4_LAYOUT, args.hf_tp4),
                                          ("tp4_at_tp2pp2vpp2", args.mc_tp4, VPP_LAYOUT, args.hf_tp4),
                                          ("tied_at_tp2pp2vpp2", args.mc_tied, VPP_LAYOUT, None)):
        logits = logits_of(Path(ckpt), True, tokens, layout, hf_config)
        if logits is not None:
            torch.save(logits, Path(args.logits_dir) / f"{name}.pt")
    dist.barrier()
    if dist.get_rank() == 0:
        mcore_to_hf(McoreToHfConfig(ckpt=args.mc_tp4, out_dir=str(Path(args.hf_back_dir) / "tp4"),
                                    max_shard_size="100KB", verify=True, progress=False))
    dist.barrier()


if __name__ == "__main__":
    main()

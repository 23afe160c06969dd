"""Worker of ``lwz bench sync``: ``rl.step.sync_weights`` from a TP-sharded trainer into an HF
rollout engine on every rank, vs a memcpy of the same bytes, interleaved (rank 0 writes ``--out``)."""

from __future__ import annotations

import argparse
import json
import time

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("--hidden", 1024), ("--layers", 8), ("--ffn", 2816), ("--heads", 16), ("--kv-heads", 4),
                          ("--vocab", 32000), ("--repeats", 5)):
        ap.add_argument(flag, type=int, default=default)
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    torch.distributed.barrier()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    torch.distributed.barrier()
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict:
    """Trainer at TP = world size + one HF engine per rank; alternate sync and memcpy."""
    from megatron_lwz import parallel
    from megatron_lwz.bench.train import model_arch
    from megatron_lwz.config.schema import ModelConfig, OptimConfig, ParallelConfig, PrecisionConfig, SchedulerConfig
    from megatron_lwz.engine.trainer import build_trainer
    from megatron_lwz.rl.step import sync_weights
    from megatron_lwz.rollout.config import RolloutConfig
    from megatron_lwz.rollout.export import ExportStaging
    from megatron_lwz.rollout.hf_engine import HFRolloutEngine

    world = torch.distributed.get_world_size()
    pcfg = ParallelConfig(tensor_parallel=world, seed=7)
    ctx = parallel.init_model_parallel(pcfg)
    arch = model_arch(hidden=args.hidden, layers=args.layers, ffn=args.ffn, heads=args.heads, kv_heads=args.kv_heads,
                      vocab=args.vocab, seq=128)
    trainer = build_trainer(model=ModelConfig(), parallel=pcfg, precision=PrecisionConfig(dtype="auto"),
                            optim=OptimConfig(lr=1e-4), scheduler=SchedulerConfig(decay_style="constant"),
                            total_steps=1, ctx=ctx, arch=arch)
    dtype = "bfloat16" if ctx.device.type == "cuda" else "float32"
    engine = HFRolloutEngine.from_config(_hf_config(arch), tokenizer=None, dtype=dtype)
    engine.model.to(ctx.device)
    rollout_cfg = RolloutConfig(engine="hf", dtype=dtype)
    nbytes = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=ctx.device)
    dst = torch.empty_like(src)
    staging = ExportStaging()  # kept across syncs, as the GRPO loop does
    report = sync_weights(trainer, engine, rollout_cfg, staging)  # warm-up (faults buffers in)
    sync_s, memcpy_s = [], []
    for _ in range(args.repeats):
        sync_s.append(_timed(lambda: sync_weights(trainer, engine, rollout_cfg, staging), ctx.device))
        memcpy_s.append(_timed(lambda: (dst.copy_(src), src.copy_(dst)), ctx.device))  # nbytes moved
    staging.close()
    return {"tp": world, "bytes": nbytes, "reported_gbytes": report.get("sync/gbytes", 0.0), "sync_s": sync_s,
            "memcpy_s": memcpy_s, "device": str(ctx.device)}


def _hf_config(arch):
    from transformers import Qwen2Config

    return Qwen2Config(**{k: v for k, v in arch.to_hf_config().items() if k not in ("architectures", "model_type")})


def main(argv: list[str] | None = None) -> None:
    from megatron_lwz import parallel
    from megatron_lwz.config.schema import ParallelConfig

    args = parse_args(argv)
    parallel.init(ParallelConfig(tensor_parallel=1))
    parallel.destroy_model_parallel()
    record = measure(args)
    if torch.distributed.get_rank() == 0:
        with open(args.out, "w") as fh:
            json.dump(record, fh)
    parallel.shutdown()


if __name__ == "__main__":
    main()

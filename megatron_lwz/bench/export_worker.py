"""Worker of ``lwz bench export``: one torchrun launch of TP = nproc (gloo on CPU, nccl on GPU).

Every rank builds its TP shard of a Qwen2-architecture GPTModel, then alternates, ``repeats`` times:

* **export**: ``rollout.export.iter_hf_weights`` (TP all-gather, merge, HF split), each yielded tensor
  copied into a preallocated destination of HF-shaped tensors (views into one flat buffer), which is
  what a rollout engine's ``update_weights`` does (``hf_engine.load_named_tensors``);
* **memcpy baseline**: one ``dst.copy_(src)`` of the same number of bytes into the same destination.

Interleaving the two keeps slow drifts of a shared machine out of the ratio. Rank 0 writes a JSON
record (per-rank medians) to ``--out``. Run it through ``megatron_lwz.bench.export`` (or by hand:
``python -m torch.distributed.run --nproc_per_node=2 -m megatron_lwz.bench.export_worker --out r.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=2816)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="export (engine) dtype")
    ap.add_argument("--bucket-mb", type=float, default=512.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def _arch(args: argparse.Namespace):
    from megatron_lwz.models.presets import ModelArch

    return ModelArch(num_layers=args.layers, hidden_size=args.hidden, ffn_hidden_size=args.ffn,
                     num_attention_heads=args.heads, num_query_groups=args.kv_heads, vocab_size=args.vocab,
                     max_position_embeddings=4096, rope_theta=1e6, norm_eps=1e-6, tie_word_embeddings=False,
                     qkv_bias=True)


def _destination(export, dtype: torch.dtype, device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One flat buffer and HF-shaped views into it, laid out from one (untimed) export pass."""
    shapes = [(name, tuple(t.shape)) for name, t in export()]
    total = sum(int(torch.Size(s).numel()) for _, s in shapes)
    flat = torch.empty(total, dtype=dtype, device=device)
    views, offset = {}, 0
    for name, shape in shapes:
        n = int(torch.Size(shape).numel())
        views[name] = flat[offset:offset + n].view(shape)
        offset += n
    return flat, views


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    torch.distributed.barrier()


def _timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict:
    """Build the model on this rank's layout and time export vs memcpy; returns this rank's record."""
    from megatron_lwz import parallel
    from megatron_lwz.config.schema import ModelConfig, ParallelConfig, PrecisionConfig
    from megatron_lwz.models.gpt import build_model
    from megatron_lwz.rollout.export import iter_hf_weights

    world = torch.distributed.get_world_size()
    ctx = parallel.init_model_parallel(ParallelConfig(tensor_parallel=world, seed=7))
    arch = _arch(args)
    built = build_model(ModelConfig(), ParallelConfig(tensor_parallel=world), PrecisionConfig(dtype="fp32"), ctx,
                        arch=arch)
    for chunk in built.chunks:
        chunk.requires_grad_(False)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    bucket = int(args.bucket_mb * 2**20)

    def export():
        return iter_hf_weights(built.chunks, ctx, arch, dtype=dtype, bucket_bytes=bucket)

    dst, views = _destination(export, dtype, ctx.device)
    src = torch.randn(dst.numel(), device=ctx.device).to(dtype)

    def run_export():
        for name, tensor in export():
            views[name].copy_(tensor)

    run_export()  # warm-up: faults the destination pages in, fills allocator caches
    dst.copy_(src)
    export_s, memcpy_s = [], []
    for _ in range(args.repeats):
        export_s.append(_timed(run_export, ctx.device))
        memcpy_s.append(_timed(lambda: dst.copy_(src), ctx.device))
    run_export()
    checksum = float(dst.double().sum())
    nbytes = dst.numel() * dst.element_size()
    return {"rank": ctx.rank, "tp": world, "bytes": nbytes, "tensors": len(views), "params": dst.numel(),
            "export_s": statistics.median(export_s), "memcpy_s": statistics.median(memcpy_s),
            "export_s_all": export_s, "memcpy_s_all": memcpy_s, "checksum": checksum}


def main(argv: list[str] | None = None) -> None:
    from megatron_lwz import parallel
    from megatron_lwz.config.schema import ParallelConfig

    args = _parse(argv)
    parallel.init(ParallelConfig())  # process group only; measure() builds the TP layout
    parallel.destroy_model_parallel()
    record = measure(args)
    records: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(records, record)
    if torch.distributed.get_rank() == 0:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "ranks": records}, fh)
    parallel.shutdown()


if __name__ == "__main__":
    main()

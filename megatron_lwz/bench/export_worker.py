"""Worker of ``lwz bench export``: one launch of N ranks at TP = N (gloo on CPU, nccl on GPU).

Every rank builds its TP shard of a Qwen2-architecture GPTModel, then, per transport of
``rollout.export`` (TP = 1: direct; TP > 1: shared memory per call, shared memory with a kept
:class:`~megatron_lwz.rollout.export.ExportStaging`, and with ``--collectives`` gloo/nccl
collectives), alternates ``repeats`` times:

* **export**: ``iter_hf_weights`` (TP assembly, HF split), each yielded tensor copied into a
  preallocated destination of HF-shaped tensors (views into one flat buffer), which is what a rollout
  engine's ``update_weights`` does (``hf_engine.load_named_tensors``);
* **memcpy baseline**: the same number of bytes copied with ``copy_`` within the same destination
  (first half ← second half, then second ← first: no second buffer, so RAM stays ~3× the model).

Interleaving keeps slow drifts of a shared machine out of the ratio. After the timed runs every
transport's destination is compared bit for bit with the first one's. Rank 0 writes every rank's
record to ``--out`` (JSON). Driven by ``megatron_lwz.bench.export``; by hand:
``python -m torch.distributed.run --nproc_per_node=2 -m megatron_lwz.bench.export_worker --out r.json``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=2816)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="export (engine) dtype")
    ap.add_argument("--bucket-mb", type=float, default=128.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--collectives", action="store_true", help="TP > 1: also time the gloo/nccl transport")
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def bench_arch(args: argparse.Namespace):
    """The benchmarked architecture (Qwen2 layout: GQA, QKV bias, untied output layer)."""
    from megatron_lwz.models.presets import ModelArch

    return ModelArch(num_layers=args.layers, hidden_size=args.hidden, ffn_hidden_size=args.ffn,
                     num_attention_heads=args.heads, num_query_groups=args.kv_heads, vocab_size=args.vocab,
                     max_position_embeddings=4096, rope_theta=1e6, norm_eps=1e-6, tie_word_embeddings=False,
                     qkv_bias=True)


def destination(export, dtype: torch.dtype, device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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


def _timed(fn, device, cpu_s: list[float]) -> float:
    """Wall seconds of ``fn`` between two barriers; appends this process's CPU seconds to ``cpu_s``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    torch.distributed.barrier()
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    cpu_s.append(time.process_time() - cpu)
    torch.distributed.barrier()
    return time.perf_counter() - start


def _transports(tp: int, collectives: bool, staging) -> dict[str, dict]:
    """Transport label → keyword arguments of ``iter_hf_weights``."""
    if tp == 1:
        return {"direct": {}}
    out = {"shm": {"shm": None}, "shm+staging": {"shm": None, "staging": staging}}
    return {**out, "collectives": {"shm": False}} if collectives else out


def measure(args: argparse.Namespace) -> dict:
    """Build the model at TP = world size and time export vs memcpy; returns this rank's record."""
    from megatron_lwz import parallel
    from megatron_lwz.config.schema import ModelConfig, ParallelConfig, PrecisionConfig
    from megatron_lwz.models.gpt import build_model
    from megatron_lwz.rollout.export import ExportStaging, iter_hf_weights

    world = torch.distributed.get_world_size()
    pcfg = ParallelConfig(tensor_parallel=world, seed=7)
    ctx = parallel.init_model_parallel(pcfg)
    arch = bench_arch(args)
    built = build_model(ModelConfig(), pcfg, PrecisionConfig(dtype="fp32"), ctx, arch=arch)
    for chunk in built.chunks:
        chunk.requires_grad_(False)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    bucket = int(args.bucket_mb * 2**20)

    def export(**kwargs):
        return iter_hf_weights(built.chunks, ctx, arch, dtype=dtype, bucket_bytes=bucket, **kwargs)

    dst, views = destination(export, dtype, ctx.device)
    half = dst.numel() // 2
    lo, hi = dst[:half], dst[dst.numel() - half:]  # (n/2,) each, disjoint

    def memcpy() -> None:  # n elements moved, like one dst.copy_(src) of the whole buffer
        lo.copy_(hi)
        hi.copy_(lo)
    record = {"rank": ctx.rank, "tp": world, "bytes": dst.numel() * dst.element_size(), "tensors": len(views),
              "params": dst.numel(), "transports": {}}
    staging = ExportStaging()  # what a caller that syncs every step keeps (see rollout.export)
    transports = _transports(world, args.collectives, staging)

    def run_export(kwargs: dict) -> None:
        for name, tensor in export(**kwargs):
            views[name].copy_(tensor)

    for label, kwargs in transports.items():
        run_export(kwargs)  # warm-up: faults the destination (and a kept staging) in
        memcpy()
        export_s, memcpy_s, export_cpu, memcpy_cpu = [], [], [], []
        for _ in range(args.repeats):
            export_s.append(_timed(lambda: run_export(kwargs), ctx.device, export_cpu))
            memcpy_s.append(_timed(memcpy, ctx.device, memcpy_cpu))
        record["transports"][label] = {"export_s": export_s, "memcpy_s": memcpy_s, "export_cpu_s": export_cpu,
                                       "memcpy_cpu_s": memcpy_cpu}
    staging.close()  # free its files before the check: at most one transport's files in /dev/shm at once
    first, *others = transports
    run_export(transports[first])
    for label in others:  # bit-identical to the first transport's output (iterate to the end: lockstep)
        same = [torch.equal(views[name], tensor) for name, tensor in export(**transports[label])]
        record["transports"][label]["identical_to_" + first] = all(same)
    staging.close()
    parallel.destroy_model_parallel()
    return record


def main(argv: list[str] | None = None) -> None:
    from megatron_lwz import parallel
    from megatron_lwz.config.schema import ParallelConfig

    args = parse_args(argv)
    parallel.init(ParallelConfig())  # process group; measure() builds the TP layout
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

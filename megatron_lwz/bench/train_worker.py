"""Worker of ``lwz bench train``: timed optimizer steps of the engine for one or more layouts.

One launch (torchrun, or ``bench.launch``) runs its layouts one after another on the same process group (megatron's
model-parallel groups are rebuilt per layout, as in the parallel-equivalence tests). Every layout
starts from the same full initial state (written by the ``--write-init`` launch, loaded into each
layout's shards with ``checkpoint.full_state.load_full_state``) and trains on the same synthetic
token batch with ``engine.step.train_step`` + the pretraining token-mean cross entropy, so the
first- and last-step losses of all layouts must agree — the benchmark checks that its layouts compute the same thing.
Rank 0 writes ``{layout: record}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from megatron_lwz.bench.train import layout_sizes, model_arch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layouts", required=True, help="comma-separated, e.g. tp1 or tp2,pp2")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=704)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--micro-batches", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--init", required=True, help="full initial state (.pt)")
    ap.add_argument("--write-init", action="store_true", help="save this launch's first model as --init")
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto = bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--harness-steps", type=int, default=0,
                    help="single-process layouts: alternating steps of ours vs a bare megatron-core loop (0 = off)")
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def parse_layout(text: str):
    """``tp2``, ``pp2``, ``tp2pp2`` → ParallelConfig (DP fills the rest of the world)."""
    from megatron_lwz.config.schema import ParallelConfig

    tp, pp = layout_sizes(text)
    return ParallelConfig(tensor_parallel=tp, pipeline_parallel=pp, seed=11)


def _arch(args: argparse.Namespace):
    return model_arch(hidden=args.hidden, layers=args.layers, ffn=args.ffn, heads=args.heads, kv_heads=args.kv_heads,
                      vocab=args.vocab, seq=args.seq)


def _microbatches(args: argparse.Namespace, dp: int, dp_rank: int) -> list[dict]:
    """This DP rank's share of one fixed synthetic global batch (same tokens in every layout)."""
    gen = torch.Generator().manual_seed(5)
    total = args.micro_batches * args.micro_batch
    data = torch.randint(0, args.vocab, (total, args.seq + 1), generator=gen)  # (N, T + 1)
    mine = data.chunk(dp)[dp_rank]
    pos = torch.arange(args.seq).expand(args.micro_batch, args.seq)
    return [{"tokens": mb[:, :-1].contiguous(), "labels": mb[:, 1:].contiguous(), "position_ids": pos,
             "loss_mask": torch.ones(len(mb), args.seq)} for mb in mine.split(args.micro_batch)]


def run_layout(args: argparse.Namespace, layout: str, write_init: bool) -> dict:
    """Build the trainer for ``layout``, load the shared init, time ``warmup + steps`` optimizer steps."""
    from megatron_lwz import parallel
    from megatron_lwz.checkpoint.full_state import gather_full_state, load_full_state
    from megatron_lwz.config.schema import ModelConfig, OptimConfig, PrecisionConfig, SchedulerConfig
    from megatron_lwz.bench.harness import bare_step, cuda_sync, measure
    from megatron_lwz.engine.step import to_device, train_step
    from megatron_lwz.engine.trainer import build_trainer
    from megatron_lwz.pretrain.steps import forward_lm, global_token_count, make_loss_fn

    pcfg = parse_layout(layout)
    ctx = parallel.init_model_parallel(pcfg)
    trainer = build_trainer(model=ModelConfig(), parallel=pcfg, precision=PrecisionConfig(dtype=args.dtype),
                            optim=OptimConfig(lr=1e-3, weight_decay=0.0), scheduler=SchedulerConfig(decay_style="constant"),
                            total_steps=args.warmup + args.steps, ctx=ctx, arch=_arch(args))
    if write_init:
        torch.save(gather_full_state(trainer.unwrapped(), ctx, False), args.init)
    load_full_state(trainer.unwrapped(), torch.load(args.init), ctx, False)
    mbs = [to_device(mb, ctx.device) for mb in _microbatches(args, ctx.dp, ctx.dp_rank)]
    total_tokens = global_token_count(mbs, ctx)
    loss_fn = make_loss_fn(total_tokens)
    times, losses = [], []
    for _ in range(args.warmup + args.steps):
        torch.distributed.barrier()
        cuda_sync()
        start = time.perf_counter()
        result = train_step(trainer, mbs, forward_lm, loss_fn, args.seq, args.micro_batch)
        cuda_sync()
        torch.distributed.barrier()
        times.append(time.perf_counter() - start)
        losses.append(result.report["loss"])
    record = {"layout": layout, "world": ctx.world_size, "tp": ctx.tp, "pp": ctx.pp, "dp": ctx.dp,
              "tokens_per_step": args.micro_batches * args.micro_batch * args.seq,
              "step_s": times[args.warmup:], "warmup_s": times[:args.warmup], "losses": losses}
    if args.harness_steps and ctx.world_size == 1:
        record["harness"] = measure(
            ours=lambda: train_step(trainer, mbs, forward_lm, loss_fn, args.seq, args.micro_batch).report["loss"],
            bare=lambda: bare_step(trainer, mbs, args.seq, args.micro_batch, total_tokens),
            reset=lambda: load_full_state(trainer.unwrapped(), torch.load(args.init), ctx, False),
            steps=args.harness_steps, sync=cuda_sync)
    parallel.destroy_model_parallel()
    return record


def main(argv: list[str] | None = None) -> None:
    from megatron_lwz import parallel

    args = parse_args(argv)
    layouts = args.layouts.split(",")
    parallel.init(parse_layout(layouts[0]))  # process group (+ groups of the first layout, rebuilt below)
    parallel.destroy_model_parallel()
    results = {lay: run_layout(args, lay, args.write_init and i == 0) for i, lay in enumerate(layouts)}
    if torch.distributed.get_rank() == 0:
        with open(args.out, "w") as fh:
            json.dump(results, fh)
    parallel.shutdown()


if __name__ == "__main__":
    main()

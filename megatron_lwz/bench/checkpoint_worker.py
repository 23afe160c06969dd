"""Worker of ``lwz bench checkpoint``: time and peak host RSS of checkpoint saves and loads per rank.

One launch on N ranks builds one trainer (distributed optimizer, the given TP / PP, DP = the rest),
fills every optimizer tensor with random values, then, in this order and into separate
directories: saves with megatron's gathering DistOpt writer synchronously (the old behaviour, the
baseline), with the gather-free writer synchronously, and with the gather-free writer
asynchronously (time until training could go on, and until the save is published); then loads
the first two directories with their readers. A sampling thread records this process's RSS every
few milliseconds; each phase reports the peak RSS and the peak above the RSS before the phase.
Rank 0 writes ``{"phases": {phase: {rank: record}}, ...}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from pathlib import Path

import torch


class RssPeak:
    """Peak resident set size of this process while the ``with`` block runs (sampled)."""

    def __init__(self, interval_s: float = 0.003):
        import psutil

        self._proc, self._interval = psutil.Process(), interval_s
        self.before = self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> "RssPeak":
        self.before = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("hidden", 768), ("layers", 6), ("ffn", 2048), ("heads", 12), ("kv-heads", 4),
                          ("vocab", 32000), ("tp", 1), ("pp", 1)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--dir", required=True, help="scratch directory for the checkpoints")
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def _trainer(args: argparse.Namespace):
    from megatron_lwz import parallel
    from megatron_lwz.bench.train import model_arch
    from megatron_lwz.checkpoint.mcore_fixes import allocate_optimizer_state, distributed_optimizers
    from megatron_lwz.config.schema import ModelConfig, OptimConfig, ParallelConfig, PrecisionConfig, SchedulerConfig
    from megatron_lwz.engine.trainer import build_trainer

    pcfg = ParallelConfig(tensor_parallel=args.tp, pipeline_parallel=args.pp, distributed_optimizer=True, seed=3)
    ctx = parallel.init(pcfg)
    arch = model_arch(hidden=args.hidden, layers=args.layers, ffn=args.ffn, heads=args.heads, kv_heads=args.kv_heads,
                      vocab=args.vocab, seq=128)
    trainer = build_trainer(model=ModelConfig(), parallel=pcfg, precision=PrecisionConfig(dtype=args.dtype),
                            optim=OptimConfig(lr=1e-4), scheduler=SchedulerConfig(decay_style="constant"),
                            total_steps=10, ctx=ctx, arch=arch)
    allocate_optimizer_state(trainer.optimizer)
    gen = torch.Generator().manual_seed(ctx.rank)
    with torch.no_grad():
        for dist_opt in distributed_optimizers(trainer.optimizer):
            for state in dist_opt.optimizer.state.values():
                for key, value in state.items():
                    if key != "step" and isinstance(value, torch.Tensor):
                        value.copy_(torch.rand(value.shape, generator=gen))
    return ctx, trainer, arch


def _phase(name: str, records: dict, fn) -> None:
    torch.distributed.barrier()
    with RssPeak() as rss:
        start = time.perf_counter()
        extra = fn() or {}
        elapsed = time.perf_counter() - start
    torch.distributed.barrier()
    records[name] = {"seconds": elapsed, "rss_before": rss.before, "rss_peak": rss.peak,
                     "rss_extra": rss.peak - rss.before, **extra}


def run(args: argparse.Namespace) -> dict:
    from megatron_lwz.checkpoint.async_save import AsyncSaver
    from megatron_lwz.checkpoint.state import SaveIO, TrainState, load_checkpoint, save_checkpoint

    ctx, trainer, arch = _trainer(args)
    root = Path(args.dir)
    modes = {"gather/sync": SaveIO(distopt_io="gather", fully_parallel=False),
             "sharded/sync": SaveIO(distopt_io="sharded", fully_parallel=True)}
    records: dict = {}
    for name, io in modes.items():
        _phase(f"save {name}", records, lambda io=io, name=name: save_checkpoint(
            trainer, TrainState(step=1), root / name.replace("/", "_"), config_dict={}, keep_last=1, io=io) and None)
    saver = AsyncSaver()

    def async_save():
        start = time.perf_counter()
        save_checkpoint(trainer, TrainState(step=1), root / "sharded_async", config_dict={}, keep_last=1,
                        io=SaveIO(saver=saver))
        blocking = time.perf_counter() - start
        saver.finalize()
        return {"blocking_s": blocking}

    _phase("save sharded/async", records, async_save)
    saver.close()
    for name, io in modes.items():
        _phase(f"load {name}", records, lambda io=io, name=name: load_checkpoint(
            trainer, root / name.replace("/", "_"), io=io) and None)
    local = sum(p.numel() for chunk in trainer.unwrapped() for p in chunk.parameters())
    layout = {"world": ctx.world_size, "tp": ctx.tp, "pp": ctx.pp, "dp": ctx.dp, "params_total": arch.num_params(),
              "params_local": local, "dtype": args.dtype}
    return {"records": records, "layout": layout}


def main(argv: list[str] | None = None) -> None:
    from megatron_lwz import parallel

    args = parse_args(argv)
    mine = run(args)
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, mine)
    if torch.distributed.get_rank() == 0:
        phases = {name: [g["records"][name] for g in gathered] for name in gathered[0]["records"]}
        Path(args.out).write_text(json.dumps({"phases": phases, "layout": gathered[0]["layout"]}))
        shutil.rmtree(args.dir, ignore_errors=True)
    parallel.shutdown()


if __name__ == "__main__":
    main()

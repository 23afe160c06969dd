"""Worker (2 ranks, TP1×DP2, distributed optimizer): checkpoint I/O modes (issue 12 item 1).

1. Async save: scheduled at step 3, then one more training step runs *before* it is finalized; the
   ``latest`` marker must not move until finalization, and the checkpoint must hold the step-3
   state (the staged copy), not the state after step 4.
2. Format interchange: the same step-3 state saved by megatron's gathering writer
   (``distopt_io=gather``) and by ours (``sharded``); each directory is loaded by both readers into
   fresh, differently seeded trainers: every main param, Adam moment and step must equal the saved
   ones exactly, and 3 more training steps must give the same losses as the uninterrupted run.
3. Resharding through the gather-free writer: the step-3 checkpoint is loaded at TP2 and at PP2,
   saved again there, and loaded back at TP1×DP2: the same exact state and losses.
Rank 0 writes the JSON result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from megatron_lwz import parallel
from megatron_lwz.checkpoint.async_save import AsyncSaver
from megatron_lwz.checkpoint.layout import MARKER
from megatron_lwz.checkpoint.mcore_fixes import distributed_optimizers
from megatron_lwz.checkpoint.state import SaveIO, TrainState, load_checkpoint, save_checkpoint
from megatron_lwz.config.schema import ParallelConfig
from tests.distributed.worker_ckpt_lib import TOTAL, make_trainer, train


def optimizer_tensors(trainer) -> dict[str, torch.Tensor]:
    """Every main param and optimizer state tensor of this rank, cloned, by a stable name."""
    out = {}
    for d, dist_opt in enumerate(distributed_optimizers(trainer.optimizer)):
        for g, group in enumerate(dist_opt.optimizer.param_groups):
            for i, param in enumerate(group["params"]):
                out[f"{d}.{g}.{i}.param"] = param.detach().clone()
                for key, value in dist_opt.optimizer.state[param].items():
                    out[f"{d}.{g}.{i}.{key}"] = torch.as_tensor(value).detach().clone()
    return out


def mismatches(a: dict, b: dict) -> list[str]:
    return sorted(k for k in a if k not in b or not torch.equal(a[k], b[k])) + sorted(set(b) - set(a))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    root = Path(args.dir)
    ctx = parallel.init(ParallelConfig())
    parallel.destroy_model_parallel()
    ref = train(make_trainer(tp=1, seed=1234), range(TOTAL))
    parallel.destroy_model_parallel()

    trainer = make_trainer(tp=1, seed=1234)
    train(trainer, range(3))
    saved = optimizer_tensors(trainer)
    result = {"ref": ref}
    for mode in ("gather", "sharded"):
        save_checkpoint(trainer, TrainState(step=3), root / mode, config_dict={}, keep_last=2, io=SaveIO(distopt_io=mode))
    saver = AsyncSaver()
    save_checkpoint(trainer, TrainState(step=3), root / "async", config_dict={}, keep_last=2, io=SaveIO(saver=saver))
    result["marker_before_finalize"] = (root / "async" / MARKER).exists()
    train(trainer, range(3, 4))  # changes the live tensors while the writer may still run
    saver.close()
    result["marker_after_finalize"] = (root / "async" / MARKER).read_text().strip()
    parallel.destroy_model_parallel()

    for source in ("gather", "sharded", "async"):
        for mode in ("gather", "sharded"):
            fresh = make_trainer(tp=1, seed=99)
            load_checkpoint(fresh, root / source, io=SaveIO(distopt_io=mode))
            bad = mismatches(saved, optimizer_tensors(fresh))
            result[f"{source}->{mode}"] = {"mismatched": bad[:5], "n": len(saved),
                                           "losses": train(fresh, range(3, TOTAL))}
            parallel.destroy_model_parallel()
    for layout, kwargs in (("tp2", {"tp": 2}), ("pp2", {"tp": 1, "pp": 2})):  # re-saved by other layouts
        other = make_trainer(seed=7, **kwargs)
        load_checkpoint(other, root / "sharded", io=SaveIO(distopt_io="sharded"))
        save_checkpoint(other, TrainState(step=3), root / f"resaved_{layout}", config_dict={}, keep_last=2)
        parallel.destroy_model_parallel()
        fresh = make_trainer(tp=1, seed=99)
        load_checkpoint(fresh, root / f"resaved_{layout}")
        bad = mismatches(saved, optimizer_tensors(fresh))
        result[f"resaved_{layout}"] = {"mismatched": bad[:5], "losses": train(fresh, range(3, TOTAL))}
        parallel.destroy_model_parallel()
    gathered = [None] * ctx.world_size
    torch.distributed.all_gather_object(gathered, result)
    if ctx.rank == 0:
        Path(args.out).write_text(json.dumps(gathered))
    parallel.shutdown()


if __name__ == "__main__":
    main()

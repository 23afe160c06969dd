"""Worker (2 ranks, one process each — see ``worker_ckpt_lib.spawn_ranks``): train with a
PreemptionWatcher until some rank gets SIGTERM, then save at the step boundary and exit with
``CheckpointConfig.exit_code_on_signal``.

Each rank writes its last finished step to ``--progress-dir/rank{r}`` so the test knows when to
signal. Rank 0 writes the JSON result just before exiting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch.distributed as dist

from megatron_lwz import parallel
from megatron_lwz.checkpoint.layout import write_text_atomic
from megatron_lwz.checkpoint.signals import PreemptionWatcher
from megatron_lwz.checkpoint.state import TrainState, save_checkpoint
from megatron_lwz.config.schema import CheckpointConfig, ParallelConfig
from megatron_lwz.engine.step import train_step
from tests.distributed.worker_ckpt_lib import NUM_MB, batch_of, forward_fn, loss_fn, make_trainer

MAX_STEPS = 300


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--progress-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cfg = CheckpointConfig(save_dir=args.ckpt, exit_code_on_signal=124)
    parallel.init(ParallelConfig())
    parallel.destroy_model_parallel()
    trainer = make_trainer(tp=1, seed=1234)
    ctx, per = trainer.ctx, NUM_MB // trainer.ctx.dp

    with PreemptionWatcher(ctx, enabled=cfg.save_on_signal) as watcher:
        for step in range(MAX_STEPS):
            mine = batch_of(step % 6, trainer.arch.vocab_size)[ctx.dp_rank * per:(ctx.dp_rank + 1) * per]
            train_step(trainer, mine, forward_fn, loss_fn, seq_length=16, micro_batch_size=2)
            write_text_atomic(Path(args.progress_dir) / f"rank{ctx.rank}", str(step + 1))
            if watcher.should_stop():
                path = save_checkpoint(trainer, TrainState(step=step + 1), cfg.save_dir, config_dict={},
                                       keep_last=cfg.keep_last)
                received = [None] * ctx.world_size
                dist.all_gather_object(received, watcher.signal_received)
                if ctx.rank == 0:
                    Path(args.out).write_text(json.dumps({"stopped_after": step + 1, "path": str(path),
                                                          "received": received, "pid": os.getpid()}))
                parallel.shutdown()
                sys.exit(cfg.exit_code_on_signal)
    parallel.shutdown()
    sys.exit(3)  # never signalled: the test fails on the exit code


if __name__ == "__main__":
    main()

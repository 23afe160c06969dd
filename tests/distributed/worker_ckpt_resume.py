"""Worker (2 ranks): training checkpoints with the engine and the distributed optimizer.

``--phase first``: (a) 6 uninterrupted steps at TP1×DP2 (the reference; also in bf16); (b) the
same run for 3 steps, ``save_checkpoint`` (bf16 into a second directory), then every rank SIGKILLs
itself (no cleanup of any kind).
``--phase resume``: (a) a *differently seeded* TP1×DP2 trainer resumes from the save directory and
runs steps 4-6, then saves again; (b) the bf16 run resumes; PP2×VPP2 and TP2 trainers resume from
``iter_0000003`` explicitly; (c) error cases: optimizer format, arch mismatch, empty directory,
interrupted saves next to complete ones.
Rank 0 writes the JSON result (for ``first``: before the kill).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from megatron_lwz import parallel
from megatron_lwz.checkpoint.layout import MARKER, CheckpointError
from megatron_lwz.checkpoint.state import TrainState, load_checkpoint, save_checkpoint
from megatron_lwz.config.schema import ModelConfig, OptimConfig, ParallelConfig, PrecisionConfig, SchedulerConfig
from megatron_lwz.engine.step import train_step
from megatron_lwz.engine.trainer import build_trainer

NUM_MB, MBS, SEQ, TOTAL = 8, 2, 16, 6


def make_trainer(tp: int, seed: int, preset: str = "tiny", pp: int = 1, vpp: int | None = None,
                 dtype: str = "fp32", distributed_optimizer: bool = True):
    pcfg = ParallelConfig(tensor_parallel=tp, pipeline_parallel=pp, virtual_pipeline_parallel=vpp,
                          distributed_optimizer=distributed_optimizer, seed=seed)
    ctx = parallel.init_model_parallel(pcfg)
    return build_trainer(model=ModelConfig(preset=preset), parallel=pcfg, precision=PrecisionConfig(dtype=dtype),
                         optim=OptimConfig(lr=2e-3, weight_decay=0.01, clip_grad=1.0),
                         scheduler=SchedulerConfig(warmup_steps=2, decay_style="cosine"), total_steps=TOTAL, ctx=ctx)


def batch_of(step: int, vocab: int) -> list[dict]:
    """Global batch of optimizer step ``step`` (a pure function of the step: resumable data)."""
    gen = torch.Generator().manual_seed(1000 + step)
    tokens = torch.randint(0, vocab, (NUM_MB, MBS, SEQ + 1), generator=gen)
    return [{"tokens": t[:, :-1], "labels": t[:, 1:], "position_ids": torch.arange(SEQ).expand(MBS, SEQ)}
            for t in tokens]


def forward_fn(model, batch):
    return model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])


def loss_fn(batch, per_token):  # per_token: (B, T) cross entropy
    loss = per_token.float().sum() / (NUM_MB * MBS * SEQ)
    return loss, {"loss": loss}


def train(trainer, steps: range) -> list[float]:
    ctx, per = trainer.ctx, NUM_MB // trainer.ctx.dp
    losses = []
    for step in steps:
        mine = batch_of(step, trainer.arch.vocab_size)[ctx.dp_rank * per:(ctx.dp_rank + 1) * per]
        result = train_step(trainer, mine, forward_fn, loss_fn, seq_length=SEQ, micro_batch_size=MBS)
        losses.append(result.report["loss"])
    return losses


def rng_draws() -> list[float]:
    """One draw from every generator a checkpoint restores (python, numpy, torch, megatron tracker)."""
    from megatron.core import tensor_parallel

    with tensor_parallel.get_cuda_rng_tracker().fork():
        tracked = torch.rand(1).item()
    return [random.random(), float(np.random.rand()), torch.rand(1).item(), tracked]


def state_at(step: int) -> TrainState:
    return TrainState(step=step, consumed_samples=step * NUM_MB * MBS, consumed_tokens=step * NUM_MB * MBS * SEQ,
                      data_state={"next_step": step}, extra={"note": "resume test"})


def phase_first(ckpt: Path, out: Path) -> None:
    ref_bf16 = train(make_trainer(tp=1, seed=1234, dtype="bf16"), range(TOTAL))
    parallel.destroy_model_parallel()
    trainer = make_trainer(tp=1, seed=1234, dtype="bf16")
    train(trainer, range(3))
    save_checkpoint(trainer, state_at(3), ckpt.with_name("ckpt_bf16"), config_dict={}, keep_last=2)
    parallel.destroy_model_parallel()
    ref = train(make_trainer(tp=1, seed=1234), range(TOTAL))
    parallel.destroy_model_parallel()
    trainer = make_trainer(tp=1, seed=1234)
    first = train(trainer, range(3))
    save_checkpoint(trainer, state_at(3), ckpt, config_dict={"model": {"preset": "tiny"}}, keep_last=2)
    draws = rng_draws()
    all_draws = [None] * dist.get_world_size()
    dist.all_gather_object(all_draws, draws)
    if dist.get_rank() == 0:
        out.write_text(json.dumps({"ref": ref, "first": first, "rng_after_save": all_draws, "ref_bf16": ref_bf16}))
    dist.barrier()
    os.kill(os.getpid(), signal.SIGKILL)  # a hard kill: no destroy_process_group, no atexit


def expect_error(fn) -> str:
    try:
        fn()
    except CheckpointError as err:
        return str(err)
    return "NO ERROR"


def phase_resume(ckpt: Path, out: Path) -> None:
    result: dict = {}
    trainer = make_trainer(tp=1, seed=999)
    state = load_checkpoint(trainer, ckpt)
    draws = [None] * dist.get_world_size()
    dist.all_gather_object(draws, rng_draws())
    result.update(state=vars(state), rng_after_load=draws, resumed=train(trainer, range(state.step, TOTAL)))
    save_checkpoint(trainer, state_at(TOTAL), ckpt, config_dict={}, keep_last=2)
    parallel.destroy_model_parallel()

    trainer = make_trainer(tp=1, seed=999, dtype="bf16")
    result["resumed_bf16"] = train(trainer, range(load_checkpoint(trainer, ckpt.with_name("ckpt_bf16")).step, TOTAL))
    parallel.destroy_model_parallel()
    trainer = make_trainer(tp=1, seed=999, pp=2, vpp=2)  # model0 / model1 chunks, layers moved across ranks
    result["resumed_pp2vpp2"] = train(trainer, range(load_checkpoint(trainer, ckpt / "iter_0000003").step, TOTAL))
    parallel.destroy_model_parallel()
    trainer = make_trainer(tp=1, seed=999, distributed_optimizer=False)
    result["optimizer_format_error"] = expect_error(lambda: load_checkpoint(trainer, ckpt / "iter_0000003"))
    parallel.destroy_model_parallel()

    trainer = make_trainer(tp=2, seed=999)
    state = load_checkpoint(trainer, ckpt / "iter_0000003")
    result["resumed_tp2"] = train(trainer, range(state.step, TOTAL))
    # Interrupted saves next to the complete ones: a killed save's temp dir, a directory without .metadata.
    if dist.get_rank() == 0:
        (ckpt / ".tmp.iter_0000009").mkdir()
        shutil.copytree(ckpt / "iter_0000006", ckpt / "iter_0000008")
        (ckpt / "iter_0000008" / ".metadata").unlink()
        (ckpt.parent / "empty").mkdir(exist_ok=True)
    dist.barrier()
    result["picked_with_marker"] = load_checkpoint(trainer, ckpt).step
    dist.barrier()
    if dist.get_rank() == 0:
        (ckpt / MARKER).unlink()
    dist.barrier()
    result["picked_without_marker"] = load_checkpoint(trainer, ckpt).step
    result["explicit_partial_error"] = expect_error(lambda: load_checkpoint(trainer, ckpt / "iter_0000008"))
    result["empty_dir"] = load_checkpoint(trainer, ckpt.parent / "empty")
    result["missing_dir"] = load_checkpoint(trainer, ckpt.parent / "does-not-exist")
    result["weights_only_missing_error"] = expect_error(
        lambda: load_checkpoint(trainer, ckpt.parent / "empty", weights_only=True))
    parallel.destroy_model_parallel()

    trainer = make_trainer(tp=1, seed=999, preset="tiny-gqa3")  # hidden 96, 6 heads, vocab 300
    result["arch_error"] = expect_error(lambda: load_checkpoint(trainer, ckpt))
    result["dirs"] = sorted(p.name for p in ckpt.iterdir())
    parallel.destroy_model_parallel()
    if dist.get_rank() == 0:
        out.write_text(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", choices=["first", "resume"], required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    parallel.init(ParallelConfig())
    parallel.destroy_model_parallel()
    (phase_first if args.phase == "first" else phase_resume)(Path(args.ckpt), Path(args.out))
    parallel.shutdown()


if __name__ == "__main__":
    main()

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
from megatron_lwz.config.schema import ParallelConfig
from tests.distributed.worker_ckpt_lib import MBS, NUM_MB, SEQ, TOTAL, make_trainer, train

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


def param_sums(trainer) -> dict[str, float]:
    """Sum of every parameter (TP=1 trainers), by name: a cheap fingerprint of the weights."""
    return {name: p.detach().double().sum().item() for name, p in trainer.unwrapped()[0].named_parameters()}


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
    result["loaded_sums"] = param_sums(trainer)
    draws = [None] * dist.get_world_size()
    dist.all_gather_object(draws, rng_draws())
    result.update(state=vars(state), rng_after_load=draws, resumed=train(trainer, range(state.step, TOTAL)))
    result["sums_after_resume"] = param_sums(trainer)
    save_checkpoint(trainer, state_at(TOTAL), ckpt, config_dict={}, keep_last=2)
    parallel.destroy_model_parallel()

    trainer = make_trainer(tp=1, seed=999, dtype="bf16")
    result["resumed_bf16"] = train(trainer, range(load_checkpoint(trainer, ckpt.with_name("ckpt_bf16")).step, TOTAL))
    parallel.destroy_model_parallel()
    trainer = make_trainer(tp=1, seed=999, pp=2, vpp=2)  # model0 / model1 chunks, layers moved across ranks
    result["resumed_pp2vpp2"] = train(trainer, range(load_checkpoint(trainer, ckpt / "iter_0000003").step, TOTAL))
    # saved from the interleaved layout, loaded weights-only at TP1 (a VPP-trained Writing RM scored by GRPO)
    save_checkpoint(trainer, state_at(TOTAL), ckpt.with_name("ckpt_vpp"), config_dict={}, keep_last=1)
    parallel.destroy_model_parallel()
    trainer = make_trainer(tp=1, seed=7)
    load_checkpoint(trainer, ckpt.with_name("ckpt_vpp"), weights_only=True)
    result["sums_from_vpp"] = param_sums(trainer)
    parallel.destroy_model_parallel()
    trainer = make_trainer(tp=1, seed=999, reward_head=True)  # Writing-RM init from a policy checkpoint
    head_before = param_sums(trainer)["output_layer.weight"]
    result["rm_state"] = vars(load_checkpoint(trainer, ckpt / "iter_0000003", weights_only=True))
    result["rm_sums"], result["rm_head_before"] = param_sums(trainer), head_before
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

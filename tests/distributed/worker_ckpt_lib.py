"""Shared pieces of the checkpoint tests: a tiny training setup with resumable data, and a launcher
that starts one plain process per rank (no torchrun agent: cheaper, and every rank's exit code and
signal are visible to the test)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from megatron_lwz import parallel
from megatron_lwz.config.schema import ModelConfig, OptimConfig, ParallelConfig, PrecisionConfig, SchedulerConfig
from megatron_lwz.engine.step import train_step
from megatron_lwz.engine.trainer import build_trainer

ROOT = Path(__file__).resolve().parents[2]

def spawn_ranks(script: Path, nproc: int, args: list[str]) -> list[subprocess.Popen]:
    """Start ``script`` once per rank with torchrun's environment variables (RANK, WORLD_SIZE, ...)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for rank in range(nproc):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", RANK=str(rank),
                   WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, str(script), *args], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def wait_ranks(procs: list[subprocess.Popen], timeout: float = 600) -> tuple[list[int], str]:
    """Wait for every rank; returns (exit codes, combined output). Kills stragglers on timeout."""
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return [p.returncode for p in procs], "\n".join(f"--- rank {i} ---\n{o[-3000:]}" for i, o in enumerate(outputs))


# ----------------------------------------------------------------------------------------------
# Training setup (megatron itself is imported lazily, inside the engine calls)
# ----------------------------------------------------------------------------------------------
NUM_MB, MBS, SEQ, TOTAL = 8, 2, 16, 6
"""Micro-batches per step, micro-batch size, sequence length, steps of the reference run."""


def make_trainer(tp: int, seed: int, preset: str = "tiny", pp: int = 1, vpp: int | None = None,
                 dtype: str = "fp32", distributed_optimizer: bool = True, reward_head: bool = False):
    """A tiny trainer (AdamW, warmup + cosine schedule, clipping); ``reward_head``: the Writing RM's."""
    from megatron_lwz.models.reward_head import attach_reward_head

    pcfg = ParallelConfig(tensor_parallel=tp, pipeline_parallel=pp, virtual_pipeline_parallel=vpp,
                          distributed_optimizer=distributed_optimizer, seed=seed)
    ctx = parallel.init_model_parallel(pcfg)
    model = ModelConfig(preset=preset)
    head = (lambda chunks: attach_reward_head(chunks, 64, 0.02)) if reward_head else None
    return build_trainer(model=model, parallel=pcfg, precision=PrecisionConfig(dtype=dtype),
                         optim=OptimConfig(lr=2e-3, weight_decay=0.01, clip_grad=1.0),
                         scheduler=SchedulerConfig(warmup_steps=2, decay_style="cosine"), total_steps=TOTAL, ctx=ctx,
                         post_build=head)


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

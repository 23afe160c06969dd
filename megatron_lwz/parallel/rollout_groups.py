"""Process groups of the rollout engine pool: one engine per group of consecutive trainer ranks.

``ranks_per_engine`` consecutive global ranks form an *engine group* (a node by default: torchrun and
srun number the ranks of a node consecutively); its first rank, the *leader*, owns the engine (the
vLLM ``LLM`` spanning the group's GPUs, or an HF engine on CPU) and the group's trainer ranks feed it
their weights. Two gloo groups (host memory, never NCCL, so a rank waiting for its leader does not
spin a kernel on a GPU that vLLM shares): the engine group, and the group of all leaders (results
and failures are exchanged there).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

from megatron_lwz.config.base import ConfigError


@dataclass(frozen=True)
class EngineGroups:
    """Where this rank sits in the engine pool."""

    index: int
    """Engine fed by this rank (0 … num_engines − 1)."""
    num_engines: int
    """Engines in the job."""
    ranks: tuple[int, ...]
    """Global ranks of this engine's group (the first is the leader)."""
    rank: int
    """This process's global rank."""
    group: Any = None
    """gloo group of ``ranks`` (None when the job has one process)."""
    leaders_group: Any = None
    """gloo group of every leader; None on the other ranks and in one-process jobs."""

    @property
    def leader(self) -> int:
        return self.ranks[0]

    @property
    def is_leader(self) -> bool:
        return self.rank == self.ranks[0]

    @property
    def local_rank(self) -> int:
        """Position of this rank inside its engine group (its trainer rank for vLLM's weight transfer)."""
        return self.rank - self.ranks[0]


def ranks_per_engine(engine_gpus: int, world_size: int, environ: dict[str, str] | None = None,
                     default: int | None = None) -> int:
    """``engine_gpus`` ranks per engine; 0 = a node (``LOCAL_WORLD_SIZE`` of torchrun, or SLURM's
    ``SLURM_NTASKS_PER_NODE`` / ``SLURM_TASKS_PER_NODE``; else ``default``, else the whole world)."""
    env = os.environ if environ is None else environ
    if engine_gpus < 0:
        raise ConfigError(f"rollout.engine_gpus: must be >= 0 (0 = one engine per node), got {engine_gpus}")
    size = engine_gpus
    if size == 0:
        raw = (env.get("LOCAL_WORLD_SIZE") or env.get("SLURM_NTASKS_PER_NODE")
               or env.get("SLURM_TASKS_PER_NODE", "")).split("(")[0].split(",")[0]  # srun: "8(x8)"
        size = int(raw) if raw else (default or world_size)
    if world_size % size:
        raise ConfigError(f"rollout.engine_gpus: {size} ranks per engine does not divide the world size {world_size}")
    return size


def engine_groups(ranks_per_engine: int, *, timeout_minutes: float = 120.0) -> EngineGroups:
    """Create the engine groups (collective: every rank calls it, in the same order)."""
    if not dist.is_initialized():
        return EngineGroups(index=0, num_engines=1, ranks=(0,), rank=0)
    world, rank = dist.get_world_size(), dist.get_rank()
    if world % ranks_per_engine:
        raise ConfigError(f"rollout.engine_gpus: {ranks_per_engine} ranks per engine does not divide the world "
                          f"size {world}")
    timeout = datetime.timedelta(minutes=timeout_minutes)
    num = world // ranks_per_engine
    mine = None
    for e in range(num):
        members = list(range(e * ranks_per_engine, (e + 1) * ranks_per_engine))
        group = dist.new_group(members, backend="gloo", timeout=timeout)
        if rank in members:
            mine = (e, tuple(members), group)
    leaders = dist.new_group([e * ranks_per_engine for e in range(num)], backend="gloo", timeout=timeout)
    assert mine is not None
    index, members, group = mine
    return EngineGroups(index=index, num_engines=num, ranks=members, rank=rank, group=group,
                        leaders_group=leaders if rank == members[0] else None)


__all__ = ["EngineGroups", "engine_groups", "ranks_per_engine"]

"""The only owner of process-group state: init torch.distributed + megatron model parallelism, and
hand out an immutable :class:`ParallelContext` that everything else receives explicitly.

megatron-core still keeps its groups in ``parallel_state`` globals internally; this module is the
only place in megatron_lwz that calls into ``parallel_state`` (checked by an import-boundary test).
"""

from __future__ import annotations

import datetime
import os
import random
from dataclasses import dataclass
from typing import Any

import torch

from megatron_lwz.config.base import ConfigError
from megatron_lwz.config.schema import ParallelConfig
from megatron_lwz.parallel import cpu_compat, diagnostics
from megatron_lwz.parallel.env import LaunchEnv, detect


@dataclass(frozen=True)
class ParallelContext:
    """Ranks, sizes and process groups of this process. Immutable; pass it explicitly."""

    rank: int
    world_size: int
    local_rank: int
    tp: int
    pp: int
    cp: int
    dp: int
    vpp: int | None
    tp_rank: int
    pp_rank: int
    cp_rank: int
    dp_rank: int
    device: torch.device
    backend: str
    tp_group: Any
    pp_group: Any
    cp_group: Any
    dp_group: Any
    """Data-parallel group (without CP)."""
    dp_cp_group: Any
    """Data-parallel × context-parallel group (gradients and loss normalisation)."""
    mp_group: Any
    """Model-parallel group (TP × PP)."""
    embedding_group: Any
    """First and last PP stage (tied embeddings)."""
    host_group: Any = None
    """Every rank, gloo backend (host tensors and object waits). Collectives on the groups above take
    tensors on ``device`` (NCCL on GPU); host-side coordination — rollout hand-off, votes, barriers
    around vLLM construction — goes here, so a rank that waits does not spin a kernel on a GPU that
    vLLM's workers share. ``None`` only for contexts built without :func:`init_model_parallel`."""

    @property
    def is_first_stage(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp - 1

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0

    @property
    def is_data_rank0(self) -> bool:
        """Rank 0 of its DP group on the last stage with TP rank 0 (holds a complete loss value)."""
        return self.tp_rank == 0 and self.is_last_stage and self.cp_rank == 0

    def barrier(self) -> None:
        """Host barrier over every rank (gloo group: no device work, no spinning kernel)."""
        if torch.distributed.is_initialized():
            torch.distributed.barrier(group=self.host_group)

    def share_from_rank0(self, fn, *args):
        """``fn(*args)`` on rank 0, its (picklable) result on every rank, waited for on the host group.

        (A rehearsed rank other than 0 gets the stand-in's answer for ``fn`` instead: it cannot
        receive rank 0's — see ``parallel.rehearsal.peer_call``.)"""
        from megatron_lwz.parallel import rehearsal

        if rehearsal.is_active() and not self.is_rank0:
            return rehearsal.peer_call(fn, *args)
        holder = [fn(*args) if self.is_rank0 else None]
        if self.world_size > 1:
            torch.distributed.broadcast_object_list(holder, src=0, group=self.host_group)
        return holder[0]


def _validate_layout(cfg: ParallelConfig, world_size: int) -> int:
    model_parallel = cfg.tensor_parallel * cfg.pipeline_parallel * cfg.context_parallel
    if world_size % model_parallel:
        raise ConfigError(
            f"parallel: world size {world_size} is not divisible by TP×PP×CP = "
            f"{cfg.tensor_parallel}×{cfg.pipeline_parallel}×{cfg.context_parallel} = {model_parallel}; "
            "change the parallel sizes or the number of processes"
        )
    return world_size // model_parallel


def _init_process_group(launch: LaunchEnv, cfg: ParallelConfig) -> str:
    from megatron_lwz.parallel import rehearsal

    if rehearsal.is_active():  # a stand-in world: the declared backend is what the GPU job would use
        declared = "nccl" if cfg.backend == "auto" else cfg.backend
        return rehearsal.init_world(launch.rank, launch.world_size, declared, cfg.timeout_minutes)
    cuda = torch.cuda.is_available()
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if cuda else "gloo")
    if backend == "nccl" and not cuda:
        raise ConfigError("parallel.backend: nccl needs CUDA; use gloo or auto on CPU")
    if cuda:
        torch.cuda.set_device(launch.local_rank)
    if not torch.distributed.is_initialized():
        os.environ.setdefault("MASTER_ADDR", launch.master_addr)
        os.environ.setdefault("MASTER_PORT", str(launch.master_port))
        torch.distributed.init_process_group(
            backend=backend, rank=launch.rank, world_size=launch.world_size,
            timeout=datetime.timedelta(minutes=cfg.timeout_minutes),
            init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
        )
    return backend


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and, through megatron's tracker, CUDA / TP-local streams)."""
    import numpy as np
    from megatron.core import tensor_parallel

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def _host_group(cfg: ParallelConfig, backend: str):
    """The world's gloo group (the default group itself when the world already runs on gloo)."""
    if backend == "gloo":
        return torch.distributed.group.WORLD
    return torch.distributed.new_group(backend="gloo", timeout=datetime.timedelta(minutes=cfg.host_timeout_minutes))


def _device() -> torch.device:
    from megatron_lwz.parallel import rehearsal

    if rehearsal.is_active():
        return rehearsal.DEVICE
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def _context(cfg: ParallelConfig, launch: LaunchEnv, backend: str) -> ParallelContext:
    from megatron.core import parallel_state as ps

    device = _device()
    return ParallelContext(
        rank=launch.rank, world_size=launch.world_size, local_rank=launch.local_rank,
        tp=cfg.tensor_parallel, pp=cfg.pipeline_parallel, cp=cfg.context_parallel,
        dp=ps.get_data_parallel_world_size(), vpp=cfg.virtual_pipeline_parallel,
        tp_rank=ps.get_tensor_model_parallel_rank(), pp_rank=ps.get_pipeline_model_parallel_rank(),
        cp_rank=ps.get_context_parallel_rank(), dp_rank=ps.get_data_parallel_rank(),
        device=device, backend=backend,
        tp_group=ps.get_tensor_model_parallel_group(), pp_group=ps.get_pipeline_model_parallel_group(),
        cp_group=ps.get_context_parallel_group(), dp_group=ps.get_data_parallel_group(),
        dp_cp_group=ps.get_data_parallel_group(with_context_parallel=True),
        mp_group=ps.get_model_parallel_group(), embedding_group=ps.get_embedding_group(),
        host_group=_host_group(cfg, backend),
    )


def init(cfg: ParallelConfig, launch: LaunchEnv | None = None) -> ParallelContext:
    """Initialise torch.distributed (torchrun / SLURM / single process) and megatron model parallelism."""
    from megatron_lwz.parallel import rehearsal

    if not rehearsal.is_active():
        cpu_compat.install()  # no-op with CUDA; the rehearsal installs its own stand-in device
    launch = launch or detect()
    _validate_layout(cfg, launch.world_size)
    diagnostics.apply(cfg, launch.rank)  # NCCL flight recorder: read when the process group is created
    diagnostics.install_stack_dumps(cfg, launch.rank)
    backend = _init_process_group(launch, cfg)
    return init_model_parallel(cfg, launch, backend)


def init_model_parallel(cfg: ParallelConfig, launch: LaunchEnv | None = None,
                        backend: str | None = None) -> ParallelContext:
    """(Re)build megatron's model-parallel groups for ``cfg`` on an initialised process group.

    Calling it again with another layout (after :func:`destroy_model_parallel`) lets one launch
    test several layouts, which is how the equivalence tests stay fast.
    """
    from megatron.core import parallel_state as ps

    launch = launch or LaunchEnv(rank=torch.distributed.get_rank(), world_size=torch.distributed.get_world_size(),
                                 local_rank=int(os.environ.get("LOCAL_RANK", 0)), master_addr="", master_port=0,
                                 launcher="existing")
    _validate_layout(cfg, launch.world_size)
    ps.initialize_model_parallel(
        tensor_model_parallel_size=cfg.tensor_parallel,
        pipeline_model_parallel_size=cfg.pipeline_parallel,
        virtual_pipeline_model_parallel_size=cfg.virtual_pipeline_parallel,
        context_parallel_size=cfg.context_parallel,
        distributed_timeout_minutes=int(cfg.timeout_minutes),
    )
    seed_everything(cfg.seed)
    return _context(cfg, launch, backend or torch.distributed.get_backend())


def destroy_model_parallel() -> None:
    from megatron.core import parallel_state as ps

    ps.destroy_model_parallel()


def shutdown() -> None:
    """Tear down megatron groups and the default process group."""
    if torch.distributed.is_initialized():
        destroy_model_parallel()
        torch.distributed.destroy_process_group()

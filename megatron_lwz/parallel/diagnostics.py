"""Hang and timeout diagnostics of every rank: NCCL flight recorder and Python stack dumps.

At 64 ranks a hang shows up as one collective that never completes. Two records say where:

* **NCCL flight recorder** (torch's ring buffer of the last collectives per process group): with
  ``parallel.nccl_trace_buffer_size`` > 0 the watchdog writes it on a collective timeout
  (``TORCH_NCCL_DUMP_ON_TIMEOUT``) to ``<debug_dir>/nccl_trace_rank_<rank>``; read the files with
  ``python -m torch.distributed.flight_recorder.fr_trace <debug_dir>``, which names the rank that never
  joined. The variables are read when the NCCL process group is created, so :func:`apply` runs before
  ``init_process_group``; a value already exported (``export TORCH_FR_BUFFER_SIZE=…``) wins.
* **Python stacks of every thread** (``faulthandler``): dumped when the process dies of a fatal
  signal — SIGABRT is how the NCCL watchdog ends a rank after a collective timeout
  (``TORCH_NCCL_ASYNC_ERROR_HANDLING``) — and, without stopping anything, on
  ``parallel.stack_dump_signal`` (SIGUSR2 by default): ``slurm/launch.sh`` relays
  ``scancel --batch --signal=USR2 <job>`` to every trainer, or ``kill -USR2 <pid>`` on a node. Output
  goes to ``<debug_dir>/stacks.rank<NNNNN>.txt`` (appended), or to stderr without a debug_dir.

The short collective timeout of training (``parallel.timeout_minutes``) and the long waits around
rollouts (``parallel.host_timeout_minutes``, the gloo host group) are set in ``parallel.state``.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from pathlib import Path
from typing import IO, MutableMapping

from megatron_lwz.config.schema import ParallelConfig


def nccl_env(cfg: ParallelConfig, rank: int) -> dict[str, str]:
    """The flight-recorder variables for ``cfg`` (empty when ``nccl_trace_buffer_size`` is 0).

    torch 2.14's names (its old ``TORCH_NCCL_TRACE_BUFFER_SIZE`` / ``TORCH_NCCL_DEBUG_INFO_TEMP_FILE``
    still work but print a deprecation warning on every rank). The dump file name is a prefix: torch
    appends the global rank.
    """
    if cfg.nccl_trace_buffer_size <= 0:
        return {}
    env = {"TORCH_FR_BUFFER_SIZE": str(cfg.nccl_trace_buffer_size), "TORCH_NCCL_DUMP_ON_TIMEOUT": "1"}
    if cfg.debug_dir:
        env["TORCH_FR_DUMP_TEMP_FILE"] = str(Path(cfg.debug_dir) / "nccl_trace_rank_")
    return env


def apply(cfg: ParallelConfig, rank: int, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Export :func:`nccl_env` (values already in ``environ`` win) and create ``debug_dir``; returns
    the variables that were set."""
    environ = os.environ if environ is None else environ
    if cfg.debug_dir:
        Path(cfg.debug_dir).mkdir(parents=True, exist_ok=True)
    added = {k: v for k, v in nccl_env(cfg, rank).items() if k not in environ}
    environ.update(added)
    return added


def stack_dump_file(cfg: ParallelConfig, rank: int) -> IO:
    """Where this rank's stack dumps go: ``<debug_dir>/stacks.rank<NNNNN>.txt`` (line-buffered, append)."""
    if not cfg.debug_dir:
        return sys.stderr
    path = Path(cfg.debug_dir) / f"stacks.rank{rank:05d}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", buffering=1, encoding="utf-8")  # kept open: faulthandler writes to its fd


def install_stack_dumps(cfg: ParallelConfig, rank: int) -> IO | None:
    """``faulthandler`` for every thread: on fatal signals (incl. the NCCL watchdog's SIGABRT) and on
    ``cfg.stack_dump_signal`` (the process keeps running). Returns the file written to (keep a
    reference), or None when ``cfg.stack_dumps`` is off."""
    if not cfg.stack_dumps:
        return None
    out = stack_dump_file(cfg, rank)
    faulthandler.enable(file=out, all_threads=True)
    if cfg.stack_dump_signal:
        faulthandler.register(getattr(signal, cfg.stack_dump_signal), file=out, all_threads=True, chain=False)
    return out

"""Preemption: turn SIGTERM / SIGUSR1 into "save at the next step boundary, then exit" on every rank.

SLURM sends SIGTERM on preemption or time limit (then SIGKILL after ``KillWait``, 30 s by
default) and, with ``sbatch --signal=USR1@120``, SIGUSR1 two minutes early. A signal may reach
only some ranks, so the decision is agreed collectively: :meth:`PreemptionWatcher.should_stop`
all-reduces a 0/1 flag with MAX over the world group at each step boundary — every rank stops at
the same step, saves, and exits with ``CheckpointConfig.exit_code_on_signal``:

* ``0`` — the job ends as COMPLETED; resubmission is the launcher's business (e.g. a
  ``trap 'scontrol requeue $SLURM_JOB_ID' USR1`` in the sbatch script, or a job chain that
  simply resubmits and auto-resumes from the ``latest`` marker).
* non-zero (e.g. ``124``) — a wrapper can tell "preempted, checkpoint saved" apart from success
  and requeue (``sbatch --requeue`` jobs are requeued by SLURM on preemption anyway).

Prefer launching one task per GPU with ``srun`` (the signal reaches every rank directly). Under
``torchrun`` the agent forwards SIGTERM to its workers (and SIGKILLs them 30 s later), but it does
not handle SIGUSR1, which terminates the agent itself — use SIGTERM there.

Usage::

    with PreemptionWatcher(ctx) as watcher:
        for step in ...:
            train_step(...)
            if watcher.should_stop():      # collective, once per step on every rank
                save_checkpoint(...)
                sys.exit(cfg.checkpoint.exit_code_on_signal)
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any, Iterable

log = logging.getLogger(__name__)

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


@contextlib.contextmanager
def shield_children(signals: Iterable[int] = (signal.SIGUSR1,)):
    """Processes started inside the block never see ``signals``; this process gets them afterwards.

    The signals are blocked (``pthread_sigmask``) for the block: a blocked mask survives fork and exec
    (POSIX), so helper processes spawned here — vLLM's engine core and workers — keep them blocked
    and cannot die of the SIGUSR1 that ``sbatch --signal=USR1@N`` sends to every process of the step,
    while a signal meant for the trainer stays pending and is delivered when the block ends (nothing
    is lost, unlike ``SIG_IGN``). No-op outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    blocked = set(signals)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class PreemptionWatcher:
    """Records preemption signals; :meth:`should_stop` is the collective stop decision."""

    def __init__(self, ctx: Any = None, *, signals: Iterable[int] = DEFAULT_SIGNALS, enabled: bool = True):
        """``ctx``: a ParallelContext (its device is used for the all-reduce; nccl needs CUDA);
        without it the default process group's backend decides. ``enabled=False`` installs
        nothing (``checkpoint.save_on_signal: false``) but :meth:`should_stop` still works."""
        self._ctx = ctx
        self._signals = tuple(signals) if enabled else ()
        self._previous: dict[int, Any] = {}
        self._received: int | None = None
        self._requested = False

    def install(self) -> "PreemptionWatcher":
        """Install the handlers (main thread only); the previous handlers are kept for uninstall."""
        if self._signals and threading.current_thread() is not threading.main_thread():
            raise RuntimeError("PreemptionWatcher.install() must run in the main thread (signal handlers)")
        for sig in self._signals:
            if sig not in self._previous:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> "PreemptionWatcher":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._received is None:
            # Only async-signal-tolerant work here: a flag and one line on stderr.
            print(f"[megatron_lwz] received {signal.Signals(signum).name}: will save a checkpoint at the "
                  "next step boundary and exit", file=sys.stderr, flush=True)
        self._received = signum

    @property
    def signal_received(self) -> int | None:
        """The last signal this process received (None if none)."""
        return self._received

    def request_stop(self) -> None:
        """Ask for a stop from code (e.g. a wall-clock budget), as if a signal had arrived."""
        self._requested = True

    @property
    def local_stop(self) -> bool:
        return self._received is not None or self._requested

    def should_stop(self) -> bool:
        """Collective over the world group: True on every rank iff any rank got a signal / request."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.local_stop
        if self._ctx is not None:
            device = self._ctx.device
        else:
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
                else torch.device("cpu")
        flag = torch.tensor([1 if self.local_stop else 0], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

"""Workarounds for megatron-core 0.19.2 dist-checkpointing bugs. Not CPU-specific.

All three optimizer bugs live in ``optimizer/distrib_optimizer.py`` and hit only the torch-Adam
path, i.e. whenever neither Transformer Engine nor Apex is importable (``HAVE_APEX_OR_TE=False``,
lines 20-35): every CPU box, and GPU boxes without TE/Apex. With TE/Apex the fixes are no-ops.

* **P2** ``state_dict()`` (lines 836-840) asserts that the torch-Adam per-parameter ``step`` is
  unique. ``sharded_state_dict()`` calls it first (line 1532), so building the sharded state dict
  of a *fresh* optimizer (empty state, i.e. the one being loaded into) fails with a bare
  ``AssertionError``. Fix: :func:`allocate_optimizer_state` gives every main parameter the state
  torch Adam would create on its first step (step 0, zero moments), which changes nothing
  numerically.
* **P3** ``_set_main_param_and_optimizer_states`` (lines 1216-1224) copies *every* tensor key of
  the live Adam state, ``step`` included, from the loaded tensors; the ``fully_reshardable``
  loader (lines 2389-2392) deliberately drops ``step`` → ``KeyError: 'step'``. Fix: during the
  load, an instance-level wrapper passes ``step`` as a non-tensor, which mcore skips.
* **P4** ``load_state_dict`` (lines 1024-1032) assigns *one* ``step`` tensor object to every
  parameter's state; torch Adam increments ``step`` in place per parameter, so after one
  post-load step the count reads ``step + n_params`` and bias correction silently diverges.
  Fix: :func:`distopt_load_fixes` un-shares the tensors after the load.

:func:`use_process_safe_write_queue` is not a bug fix but a robustness choice: megatron's writer
reports results through a queue that it creates with a spawn-context ``multiprocessing.Manager``
(``strategies/filesystem_async.py:53-66``). That starts one server process per rank, re-imports
``__main__`` (a missing ``if __name__ == "__main__"`` guard then hangs the save), costs seconds,
and, being a child of the rank, is killed by the same SIGTERM that asks us to save on preemption.
An in-process ``queue.Queue`` serves sync saves, a fork-context ``multiprocessing.Queue`` megatron's
forking async writer (the child inherits the pipe); neither starts a server process.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch


def distributed_optimizers(optimizer: Any) -> list:
    """The megatron ``DistributedOptimizer`` instances inside ``optimizer`` (chained or not)."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    parts = getattr(optimizer, "chained_optimizers", None) or [optimizer]
    return [p for p in parts if isinstance(p, DistributedOptimizer)]


def needs_torch_adam_fixes() -> bool:
    """True when mcore's DistributedOptimizer wraps torch Adam (no TE / Apex fused Adam)."""
    from megatron.core.optimizer import distrib_optimizer

    return not distrib_optimizer.HAVE_APEX_OR_TE


@torch.no_grad()
def allocate_optimizer_state(optimizer: Any) -> int:
    """P2: give main params without state torch Adam's initial state; returns how many got one."""
    if not needs_torch_adam_fixes():
        return 0
    count = 0
    for dist_opt in distributed_optimizers(optimizer):
        inner = dist_opt.optimizer
        for group in inner.param_groups:
            for param in group["params"]:
                if len(inner.state[param]) == 0:
                    state = {
                        "step": torch.tensor(0.0, dtype=torch.float32),
                        "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                    }
                    if group.get("amsgrad", False):
                        state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    inner.state[param] = state
                    count += 1
    return count


def _skip_step_wrapper(original):
    def set_states(model_param, tensors):
        tensors = dict(tensors)
        tensors.setdefault("step", None)  # a non-tensor: mcore skips the copy (P3)
        return original(model_param, tensors)

    return set_states


def unshare_step_tensors(optimizer: Any) -> None:
    """P4: give every parameter its own ``step`` tensor (torch Adam increments it in place)."""
    if not needs_torch_adam_fixes():
        return
    for dist_opt in distributed_optimizers(optimizer):
        for state in dist_opt.optimizer.state.values():
            step = state.get("step")
            if isinstance(step, torch.Tensor):
                state["step"] = step.detach().clone()


@contextlib.contextmanager
def distopt_load_fixes(optimizer: Any) -> Iterator[None]:
    """Wrap ``optimizer.load_state_dict(loaded)`` of a DistributedOptimizer checkpoint (P3 + P4).

    The wrapper is an instance attribute that shadows the method only for the duration of the
    load; nothing in megatron's modules is modified.
    """
    patched = []
    if needs_torch_adam_fixes():
        for dist_opt in distributed_optimizers(optimizer):
            dist_opt._set_main_param_and_optimizer_states = _skip_step_wrapper(
                dist_opt._set_main_param_and_optimizer_states)
            patched.append(dist_opt)
    try:
        with torch.no_grad():  # main params may be views of fp32 leaf params (dp_reshardable path)
            yield
    finally:
        for dist_opt in patched:
            del dist_opt._set_main_param_and_optimizer_states
        unshare_step_tensors(optimizer)


def use_process_safe_write_queue(async_save: bool) -> None:
    """Give megatron's torch_dist writer a results queue without a Manager server process.

    Sync save: a ``queue.Queue`` (put and get in the calling thread; a ``multiprocessing.Queue``
    would race: its put is flushed by a feeder thread while megatron's ``get_nowait`` already
    looks). Async save (megatron's ``TemporalAsyncCaller`` forks the writer): a fork-context
    ``multiprocessing.Queue``, whose pipe the child inherits; the child flushes it before exiting,
    and the parent reads it only after the child has exited. Each save's writer keeps a reference to
    the queue it was planned with, so replacing the module's queue between saves is safe.
    """
    import multiprocessing
    import queue

    from megatron.core.dist_checkpointing.strategies import filesystem_async, torch as torch_strategy

    filesystem_async._results_queue = multiprocessing.get_context("fork").Queue() if async_save else queue.Queue()
    # Sync saves run through mcore's async code path, which warns that *async* saving is deprecated.
    torch_strategy._logged_mcore_async_deprecation = True

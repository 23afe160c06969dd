"""GPU rehearsal on a CPU box: the ``meta`` device stands in for "the GPU", torch's fake process group
stands in for a full-size world, and every placement and collective is checked.

What it enforces (each violation raises :class:`RehearsalViolation` naming the aten op or collective
and our call site — the first ``megatron_lwz`` frame outside this module):

* an aten op whose tensor arguments live on both the host and the device (0-dim host scalars are
  allowed, as CUDA allows them; copies, and indexing a device tensor with host indices, are allowed);
* a collective on a group whose *declared* backend is NCCL (``nccl``: device tensors only) given a
  host tensor, or a gloo group given a device tensor (``cpu:gloo,cuda:nccl`` takes both);
* ``pin_memory`` and other host-side CUDA calls are answered as on a GPU node.

How (facts in shared/reference/rehearsal.md): a ``TorchFunctionMode`` rewrites ``device="cuda"`` /
``device=<int>`` / ``.cuda()`` to ``meta``; a ``TorchDispatchMode`` sees every aten op (backward
included), checks devices, answers ``.item()`` on meta tensors (bool → False, int → 1, float → 1.0)
and device → host copies (ones of the right shape), and counts the bytes of live meta storages (by
storage identity, so views count once) for the per-GPU memory report. Collectives are intercepted
at the ``torch.distributed`` Python API (patched before megatron is imported, which binds some of
them at import) and become checked no-ops; object collectives *mirror*: a rank that is not the
source keeps its own object (an empty dict becomes a dict of ones) and the count of mirrored
values is reported — their contents are not rehearsed.

This module is the only place that installs the rehearsal; ``activate()`` must run before megatron
is imported. It is inert unless activated.
"""

from __future__ import annotations

import sys
from typing import Callable

import torch
from torch.overrides import TorchFunctionMode

from megatron_lwz.parallel import cpu_compat
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from megatron_lwz.parallel.rehearsal_collectives import (  # noqa: F401 — re-exported
    COUNTS, declared_backend, init_world, patch_distributed,
)
from megatron_lwz.parallel.rehearsal_memory import (  # noqa: F401 — re-exported
    STATE, TRACKER, MemoryTracker, RehearsalViolation, call_site, unique_bytes,
)

DEVICE = torch.device("meta")
GPU_NAME = "NVIDIA H100 80GB HBM3 (rehearsal stand-in)"
GPU_TOTAL_BYTES = int(79.6 * 2**30)  # torch.cuda.get_device_properties(0).total_memory of an 80 GB H100/H800
CONTEXT_BYTES = int(1.5 * 2**30)
"""Resident but not tensors: CUDA context (~0.5 GiB) and NCCL communicator buffers (~1 GiB at 64 ranks)."""
def is_active() -> bool:
    return bool(STATE["active"])


# ----------------------------------------------------------------------------------- device modes


_is_cuda = cpu_compat.is_cuda_device  # the same rule as the CPU layer: str "cuda…", torch.device, int


class _CudaToMetaMode(TorchFunctionMode):
    """``device='cuda'`` / ``device=<int>`` / ``.cuda()`` / ``.to('cuda')`` → the meta device."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0].to(DEVICE)
        if func is torch.tensor and args and isinstance(args[0], (list, tuple)):
            leaves, _ = tree_flatten(args[0])
            if leaves and all(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in leaves):
                # torch.tensor([device scalars]) reads each value without dispatch: stack them on the device
                return torch.stack([t.reshape(()) for t in leaves]).to(kwargs.get("dtype") or leaves[0].dtype)
        if func is torch.Tensor.pin_memory or func is torch.Tensor.is_pinned:
            return args[0] if func is torch.Tensor.pin_memory else False
        if "device" in kwargs and _is_cuda(kwargs["device"]):
            kwargs = dict(kwargs, device=DEVICE)
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda(args[1]):
            args = (args[0], DEVICE, *args[2:])
        return func(*args, **kwargs)


_COPY_OPS = {"aten._to_copy.default", "aten.copy_.default", "aten._copy_from.default",
             "aten._copy_from_and_resize.default", "aten.lift_fresh.default", "aten.set_.source_Storage"}
_INDEX_OPS = {"aten.index.Tensor", "aten.index_put_.default", "aten.index_put.default",
              "aten._index_put_impl_.default"}


def _scalar_answer(dtype: torch.dtype):
    if dtype == torch.bool:
        return False
    return 1.0 if dtype.is_floating_point else 1


class _CheckMode(TorchDispatchMode):
    """Device-mix check, host answers for meta values, memory accounting — for every aten op."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _is_cuda(kwargs.get("device")):  # factories reached without the function mode (autograd threads)
            kwargs = dict(kwargs, device=DEVICE)
        name = str(func)
        flat, _ = tree_flatten((args, kwargs))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        devices = {t.device.type for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
        on_meta = any(t.device.type == "meta" for t in tensors)
        if name == "aten._local_scalar_dense.default" and on_meta:
            return _scalar_answer(tensors[0].dtype)
        if name in ("aten.is_nonzero.default", "aten.equal.default") and on_meta:
            return name == "aten.equal.default"
        if name in _COPY_OPS and on_meta:
            return self._copy(func, name, args, kwargs)
        if len(devices) > 1 and name not in _INDEX_OPS:
            raise RehearsalViolation(f"host/device mix {sorted(devices)} in {name} at {call_site()}: move the "
                                     "host tensor to ctx.device (or compute on the host) before this op")
        out = func(*args, **kwargs)
        tree_map(lambda t: TRACKER.track(t) if isinstance(t, torch.Tensor) and t.device.type == "meta" else None, out)
        return out

    @staticmethod
    def _copy(func, name, args, kwargs):
        if name == "aten._to_copy.default" and kwargs.get("device") is not None \
                and torch.device(kwargs["device"]).type == "cpu":
            src = args[0]  # device → host copy: ones, like .item() (values are not rehearsed; no 0-division)
            return torch.ones(src.shape, dtype=kwargs.get("dtype") or src.dtype, device="cpu")
        if name == "aten.copy_.default" and args[0].device.type == "cpu":
            return args[0]  # host destination, device source: leave the host values
        if name == "aten.copy_.default" and args[1].device.type == "cpu":
            return args[0]  # host → device copy into a meta destination: nothing to move
        out = func(*args, **kwargs)
        tree_map(lambda t: TRACKER.track(t) if isinstance(t, torch.Tensor) and t.device.type == "meta" else None, out)
        return out


PEERS: dict[str, Callable] = {}
"""Stand-in answers of functions whose results a rehearsed rank would receive from rank 0."""


def register_peer(qualname: str, fn: Callable) -> None:
    PEERS[qualname] = fn


def peer_call(fn: Callable, *args):
    """What rank 0 would broadcast for ``fn(*args)``, from the stand-in registered for ``fn``."""
    key = getattr(fn, "__qualname__", repr(fn))
    COUNTS["peer_calls"] += 1
    if key not in PEERS:
        raise RehearsalViolation(f"no stand-in for rank 0's {key} at {call_site()} (register one with "
                                 "rehearsal.register_peer)")
    owner = getattr(fn, "__self__", None)
    return PEERS[key](owner, *args) if owner is not None else PEERS[key](*args)


# ----------------------------------------------------------------------------------- CUDA runtime


class _Props:
    name = GPU_NAME
    total_memory = GPU_TOTAL_BYTES
    major, minor = 9, 0
    multi_processor_count = 132


def _patch_cuda(gpus_per_node: int) -> None:

    cpu_compat._patch_cuda_runtime()  # synchronize / streams / events / nvtx / empty_cache → no-ops
    cuda = torch.cuda
    cuda.is_available = lambda: True
    cuda.device_count = lambda: gpus_per_node
    cuda.current_device = lambda: 0
    cuda.set_device = lambda *a, **k: None
    cuda.get_device_name = lambda *a, **k: GPU_NAME
    cuda.get_device_properties = lambda *a, **k: _Props()
    cuda.get_device_capability = lambda *a, **k: (9, 0)
    cuda.memory_allocated = lambda *a, **k: TRACKER.live
    cuda.max_memory_allocated = lambda *a, **k: TRACKER.peak
    cuda.memory_reserved = lambda *a, **k: TRACKER.resident()
    cuda.reset_peak_memory_stats = lambda *a, **k: None
    cuda.mem_get_info = lambda *a, **k: (GPU_TOTAL_BYTES - TRACKER.resident(), GPU_TOTAL_BYTES)
    cuda.is_initialized = lambda: True
    torch.optim.Optimizer._accelerator_graph_capture_health_check = lambda self: None  # asks the driver
    type_of = torch.Tensor.type

    def type_(self, *args, **kwargs):  # megatron dispatches on 'torch.cuda.*Tensor' strings
        out = type_of(self, *args, **kwargs)
        if not args and not kwargs and isinstance(out, str) and out.startswith("torch.meta."):
            return "torch.cuda." + out[len("torch.meta."):]
        return out

    torch.Tensor.type = type_
    cpu_compat._patch_rng()  # the CUDA RNG tracker runs on the CPU generator


def activate(gpus_per_node: int = 8) -> None:
    """Install the rehearsal for this process (call before importing megatron). Idempotent."""
    if STATE["active"]:
        return
    if "megatron.core" in sys.modules:
        raise RuntimeError("rehearsal.activate() must run before megatron.core is imported "
                           "(megatron binds collectives at import)")
    patch_distributed()
    _patch_cuda(gpus_per_node)
    import torch.fx.experimental._config as fx_config

    fx_config.meta_nonzero_assume_all_nonzero = True  # boolean-mask indexing on the device: shapes as if all kept
    TRACKER.set_extra("context", CONTEXT_BYTES)
    fmode, dmode = _CudaToMetaMode(), _CheckMode()
    fmode.__enter__()
    dmode.__enter__()
    STATE.update(active=True, modes=(fmode, dmode))

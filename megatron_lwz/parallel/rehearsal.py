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
and device → host copies (zeros of the right shape), and counts the bytes of live meta storages (by
storage identity, so views count once) for the per-GPU memory report. Collectives are intercepted
at the ``torch.distributed`` Python API (patched before megatron is imported, which binds some of
them at import) and become checked no-ops; object collectives *mirror*: a rank that is not the
source keeps its own object (an empty dict becomes a dict of zeros) and the count of mirrored
values is reported — their contents are not rehearsed.

This module is the only place that installs the rehearsal; ``activate()`` must run before megatron
is imported. It is inert unless activated.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import os
import sys
import traceback
import weakref
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

DEVICE = torch.device("meta")
GPU_NAME = "NVIDIA H100 80GB HBM3 (rehearsal stand-in)"
GPU_TOTAL_BYTES = 80 * 10**9  # 79.6 GiB usable on an 80 GB H100/H800 (reported by torch as ~79.1 GiB)
_STATE: dict[str, Any] = {"active": False}


class RehearsalViolation(RuntimeError):
    """A GPU-path defect found by the rehearsal (host/device mix, wrong tensor on a group)."""


def is_active() -> bool:
    return bool(_STATE["active"])


def _call_site() -> str:
    """The innermost frame of our own code outside this module (else the innermost frame at all)."""
    frames = traceback.extract_stack()[:-2]
    for fr in reversed(frames):
        if "megatron_lwz" in fr.filename and not fr.filename.endswith("parallel/rehearsal.py"):
            return f"{os.path.relpath(fr.filename)}:{fr.lineno} ({fr.name}: {fr.line})"
    fr = frames[-1]
    return f"{fr.filename}:{fr.lineno} ({fr.name})"


# ----------------------------------------------------------------------------------- memory


class MemoryTracker:
    """Live bytes of meta ("GPU") storages, deduplicated by storage; peak since the last ``mark``."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self._refs: dict[int, list[int]] = {}  # storage id → [bytes, live tensor count]
        self.extra: dict[str, int] = {}  # modelled residents that are not torch tensors here (vLLM)
        self.extra_peak: dict[str, int] = {}
        self._paused = 0

    def resident(self) -> int:
        return self.live + sum(self.extra.values())

    @contextlib.contextmanager
    def paused(self):
        """Meta tensors made inside are shapes, not GPU memory (e.g. a meta HF model for its names)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def track(self, t: torch.Tensor) -> None:
        if self._paused:
            return
        key = t.untyped_storage()._cdata
        entry = self._refs.get(key)
        if entry is None:
            entry = self._refs[key] = [t.untyped_storage().nbytes(), 0]
            self.live += entry[0]
            self.peak = max(self.peak, self.resident())
        entry[1] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self._refs.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            self.live -= entry[0]
            del self._refs[key]

    def set_extra(self, name: str, nbytes: int) -> None:
        self.extra[name] = int(nbytes)
        self.extra_peak[name] = max(self.extra_peak.get(name, 0), int(nbytes))
        self.peak = max(self.peak, self.resident())

    @contextlib.contextmanager
    def window(self, record: Callable[[int], None]):
        """Report ``peak during − resident before`` of the enclosed code to ``record``."""
        before, outer_peak = self.resident(), self.peak
        self.peak = before
        try:
            yield
        finally:
            record(self.peak - before)
            self.peak = max(outer_peak, self.peak)


TRACKER = MemoryTracker()


def unique_bytes(tensors) -> int:
    """Bytes of the distinct meta storages behind ``tensors`` (views and buffers counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type == "meta":
            seen[t.untyped_storage()._cdata] = t.untyped_storage().nbytes()
    return sum(seen.values())


# ----------------------------------------------------------------------------------- device modes


def _is_cuda(device) -> bool:
    if isinstance(device, int) and not isinstance(device, bool):
        return True
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, torch.device) and device.type == "cuda"


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
            raise RehearsalViolation(f"host/device mix {sorted(devices)} in {name} at {_call_site()}: move the "
                                     "host tensor to ctx.device (or compute on the host) before this op")
        out = func(*args, **kwargs)
        tree_map(lambda t: TRACKER.track(t) if isinstance(t, torch.Tensor) and t.device.type == "meta" else None, out)
        return out

    @staticmethod
    def _copy(func, name, args, kwargs):
        if name == "aten._to_copy.default" and kwargs.get("device") is not None \
                and torch.device(kwargs["device"]).type == "cpu":
            src = args[0]  # device → host copy: zeros (values are not rehearsed)
            return torch.zeros(src.shape, dtype=kwargs.get("dtype") or src.dtype, device="cpu")
        if name == "aten.copy_.default" and args[0].device.type == "cpu":
            return args[0]  # host destination, device source: leave the host values
        if name == "aten.copy_.default" and args[1].device.type == "cpu":
            return args[0]  # host → device copy into a meta destination: nothing to move
        out = func(*args, **kwargs)
        tree_map(lambda t: TRACKER.track(t) if isinstance(t, torch.Tensor) and t.device.type == "meta" else None, out)
        return out


# ----------------------------------------------------------------------------------- collectives

_DECLARED: dict[int, str] = {}  # id(group) → declared backend ("nccl", "gloo", "cpu:gloo,cuda:nccl")
COUNTS: collections.Counter = collections.Counter()


def declared_backend(group) -> str:
    group = group if group is not None else dist.group.WORLD
    return _DECLARED.get(id(group), _STATE.get("world_backend", "nccl"))


def _check_tensors(op: str, group, tensors) -> None:
    backend = declared_backend(group)
    allowed = {"nccl": {"meta"}, "gloo": {"cpu"}}.get(backend, {"cpu", "meta"})
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type not in allowed:
            kind = "host" if t.device.type == "cpu" else "device"
            raise RehearsalViolation(
                f"{op} on a {backend} group got a {kind} tensor {tuple(t.shape)} {t.dtype} at {_call_site()}"
                + (" (NCCL takes device tensors only: torch raises 'No backend type associated with device "
                   "type cpu')" if backend == "nccl" else " (a gloo-only group takes host tensors)"))
    COUNTS[op] += 1


class _DoneWork:
    def wait(self, *a, **k):
        return True

    def is_completed(self):
        return True

    def get_future(self):
        fut = torch.futures.Future()
        fut.set_result(None)
        return fut


def _tensor_collective(op: str, tensor_args: Callable[..., list]):
    def fn(*args, **kwargs):
        group = kwargs.get("group")
        if group is None:
            group = next((a for a in args if isinstance(a, dist.ProcessGroup)), None)
        _check_tensors(op, group, tensor_args(*args, **kwargs))
        return _DoneWork() if kwargs.get("async_op") else None
    return fn


def _flat_tensors(*args, **kwargs) -> list:
    flat, _ = tree_flatten((args, {k: v for k, v in kwargs.items() if k != "group"}))
    return [t for t in flat if isinstance(t, torch.Tensor)]


def _mirror_broadcast(object_list, src=None, group=None, device=None, group_src=None):
    me = dist.get_rank()
    COUNTS["broadcast_object_list"] += 1
    if src is not None and src == me:
        return
    for i, obj in enumerate(object_list):
        if obj is None:
            raise RehearsalViolation(f"broadcast_object_list from rank {src} at {_call_site()}: this rehearsed rank "
                                     "has no value to mirror; share through ParallelContext.share_from_rank0")
        if isinstance(obj, dict) and not obj:
            object_list[i] = collections.defaultdict(float)
    COUNTS["mirrored_objects"] += 1


def _mirror_gather(object_list, obj, group=None):
    COUNTS["all_gather_object"] += 1
    COUNTS["mirrored_objects"] += 1
    for i in range(len(object_list)):
        object_list[i] = obj


def _batch_isend_irecv(p2p_op_list):
    for op in p2p_op_list:
        _check_tensors("batch_isend_irecv", op.group, [op.tensor])
    return [_DoneWork() for _ in p2p_op_list]


@contextlib.contextmanager
def _coalescing_manager(group=None, device=None, async_ops=False):
    class _CM:
        works: list = []

        def wait(self):
            return True

        def append(self, work):
            return None
    yield _CM()


def _new_group_factory(original):
    def new_group(ranks=None, timeout=None, backend=None, pg_options=None, *args, **kwargs):
        group = original(ranks, timeout, None, None, *args, **kwargs)
        declared = str(backend) if backend is not None else _STATE["world_backend"]
        if group is not None and group is not dist.GroupMember.NON_GROUP_MEMBER:
            _DECLARED[id(group)] = declared
        return group
    return new_group


_TENSOR_OPS = ("all_reduce", "all_gather", "all_gather_into_tensor", "_all_gather_base", "reduce_scatter_tensor",
               "_reduce_scatter_base", "reduce_scatter", "broadcast", "reduce", "all_to_all_single", "all_to_all",
               "send", "recv", "isend", "irecv", "gather", "scatter", "all_reduce_coalesced")


def _patch_distributed() -> None:
    c10d = dist.distributed_c10d
    for op in _TENSOR_OPS:
        fn = _tensor_collective(op, _flat_tensors)
        setattr(dist, op, fn)
        setattr(c10d, op, fn)
    for name, fn in (("broadcast_object_list", _mirror_broadcast), ("all_gather_object", _mirror_gather),
                     ("batch_isend_irecv", _batch_isend_irecv), ("_coalescing_manager", _coalescing_manager),
                     ("barrier", lambda *a, **k: COUNTS.update(["barrier"])),
                     ("monitored_barrier", lambda *a, **k: None)):
        setattr(dist, name, fn)
        setattr(c10d, name, fn)
    dist.new_group = c10d.new_group = _new_group_factory(c10d.new_group)


def init_world(rank: int, world_size: int, declared_backend_name: str, timeout_minutes: float) -> str:
    """The fake world (``rank`` of ``world_size``, no communication) under the declared backend."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    _STATE["world_backend"] = declared_backend_name
    if not dist.is_initialized():
        dist.init_process_group("cpu:fake,cuda:fake,meta:fake", store=FakeStore(), rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    _DECLARED[id(dist.group.WORLD)] = declared_backend_name
    return declared_backend_name


# ----------------------------------------------------------------------------------- CUDA runtime


class _Props:
    name = GPU_NAME
    total_memory = GPU_TOTAL_BYTES
    major, minor = 9, 0
    multi_processor_count = 132


def _patch_cuda(gpus_per_node: int) -> None:
    from megatron_lwz.parallel import cpu_compat

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
    if _STATE["active"]:
        return
    if "megatron.core" in sys.modules:
        raise RuntimeError("rehearsal.activate() must run before megatron.core is imported "
                           "(megatron binds collectives at import)")
    _patch_distributed()
    _patch_cuda(gpus_per_node)
    import torch.fx.experimental._config as fx_config

    fx_config.meta_nonzero_assume_all_nonzero = True  # boolean-mask indexing on the device: shapes as if all kept
    fmode, dmode = _CudaToMetaMode(), _CheckMode()
    fmode.__enter__()
    dmode.__enter__()
    _STATE.update(active=True, modes=(fmode, dmode))

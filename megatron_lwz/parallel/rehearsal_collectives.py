"""Collectives of a rehearsed rank: checked against the group's *declared* backend, then no-ops.

Part of the GPU rehearsal (``parallel.rehearsal``); see its docstring. NCCL groups take device
tensors only, gloo groups host tensors only, ``cpu:gloo,cuda:nccl`` both. Object collectives mirror
(a non-source rank keeps its own object; an empty dict becomes a dict of ones) and are counted.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
from typing import Callable

import torch
import torch.distributed as dist
from torch.utils._pytree import tree_flatten

from megatron_lwz.parallel.rehearsal_memory import call_site, RehearsalViolation, STATE

_DECLARED: dict[int, str] = {}  # id(group) → declared backend ("nccl", "gloo", "cpu:gloo,cuda:nccl")
COUNTS: collections.Counter = collections.Counter()


def declared_backend(group) -> str:
    group = group if group is not None else dist.group.WORLD
    return _DECLARED.get(id(group), STATE.get("world_backend", "nccl"))


def _check_tensors(op: str, group, tensors) -> None:
    backend = declared_backend(group)
    allowed = {"nccl": {"meta"}, "gloo": {"cpu"}}.get(backend, {"cpu", "meta"})
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type not in allowed:
            kind = "host" if t.device.type == "cpu" else "device"
            raise RehearsalViolation(
                f"{op} on a {backend} group got a {kind} tensor {tuple(t.shape)} {t.dtype} at {call_site()}"
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
        return _DoneWork() if kwargs.get("async_op") or op in ("isend", "irecv") else None  # isend/irecv: always a Work
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
            raise RehearsalViolation(f"broadcast_object_list from rank {src} at {call_site()}: this rehearsed rank "
                                     "has no value to mirror; share through ParallelContext.share_from_rank0")
        if isinstance(obj, dict) and not obj:
            object_list[i] = collections.defaultdict(lambda: 1.0)  # report sums: ones, as .item() answers
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
        declared = str(backend) if backend is not None else STATE["world_backend"]
        if group is not None and group is not dist.GroupMember.NON_GROUP_MEMBER:
            _DECLARED[id(group)] = declared
        return group
    return new_group


_TENSOR_OPS = ("all_reduce", "all_gather", "all_gather_into_tensor", "_all_gather_base", "reduce_scatter_tensor",
               "_reduce_scatter_base", "reduce_scatter", "broadcast", "reduce", "all_to_all_single", "all_to_all",
               "send", "recv", "isend", "irecv", "gather", "scatter", "all_reduce_coalesced")


def patch_distributed() -> None:
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

    STATE["world_backend"] = declared_backend_name
    if not dist.is_initialized():
        dist.init_process_group("cpu:fake,cuda:fake,meta:fake", store=FakeStore(), rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    _DECLARED[id(dist.group.WORLD)] = declared_backend_name
    return declared_backend_name



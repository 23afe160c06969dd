"""Megatron TP/PP shards → full Hugging Face tensors, bucketed, in memory (no disk).

``iter_hf_weights(chunks, ctx, arch, ...)`` runs on EVERY trainer rank in lockstep and yields the
same ``(hf_name, full tensor)`` sequence on every rank (vLLM's colocated IPC transfer wants every
rank to own every tensor; the HF engine on CPU just consumes it):

1. the parameter list of every pipeline stage is exchanged once (names, shapes) over the PP group;
2. stage by stage, parameters are grouped into buckets of ≤ ``bucket_bytes`` (in the engine dtype);
3. a bucket's full tensors are assembled by one of two transports:

   * **shared memory** (CPU, every model-parallel rank on one host — gloo's TCP loopback moves
     ~0.2–1 GB/s where a memcpy moves ~4): a bucket lives in a ``/dev/shm`` file that every rank
     of the TP×PP group maps (:class:`ExportStaging`); the owning stage's TP ranks write (and cast)
     their shards straight into their slots of the full layout, one all-reduce doubles as barrier,
     and every rank yields views of the mapping. One write of ``1/TP`` of the bytes per rank, no
     gather, no PP broadcast, no merge copy;
   * **collectives** (GPU, several hosts, or no room in /dev/shm): the owning stage all-gathers each
     TP shard into one buffer (``all_gather_into_tensor``: for dim-0 shards other than SwiGLU fc1
     the buffer *is* the full tensor, otherwise ``checkpoint.mapping.tp_merge``); with PP > 1 it
     casts and packs the bucket into one flat buffer broadcast over the PP group (one collective per
     bucket instead of one per tensor); with PP = 1 tensors are yielded one by one, unpacked;

4. every rank converts with ``checkpoint.mapping.megatron_to_hf`` (QKV split per query group,
   gate/up split, vocab padding dropped, tied output layer skipped).

Yielded tensors are read-only. With TP = PP = 1 and the parameter dtype they are detached views of
the trainer's parameters, so they change with the next optimizer step: consumers copy them into the
engine (as ``update_weights`` does). Shared-memory tensors are views of a mapping every rank of the
group sees; it is never rewritten while any rank still references one of its tensors.
``lwz bench export`` measures this against a plain memcpy of the same bytes.

The only knowledge of the HF layout is ``checkpoint.mapping`` (plus the fc1 [gate_r; up_r] shard
layout that ``mapping.tp_shard`` also encodes); this module adds the communication.
"""

from __future__ import annotations

import mmap
import os
import socket
import uuid
import zlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from megatron_lwz.checkpoint.full_state import global_named_parameters
from megatron_lwz.checkpoint.mapping import canonical_name, megatron_to_hf, partition_dim, tp_merge
from megatron_lwz.models.presets import ModelArch
from megatron_lwz.parallel.state import ParallelContext


@dataclass(frozen=True)
class _Meta:
    name: str
    full_shape: tuple[int, ...]


def _full_shape(name: str, local: torch.Tensor, tp: int) -> tuple[int, ...]:
    shape = list(local.shape)
    dim = partition_dim(name)
    if dim is not None and tp > 1:
        shape[dim] *= tp
    return tuple(shape)


def _stage_params(chunks: list, ctx: ParallelContext, tied: bool) -> tuple[dict[str, torch.Tensor], list[list[_Meta]]]:
    """This rank's params by global name, and every PP stage's param list (same on all ranks)."""
    local = {}
    for chunk in chunks:
        for name, param in global_named_parameters(chunk):
            if tied and name == "output_layer.weight":
                continue  # HF ties lm_head to the embedding itself
            local[name] = param
    mine = [_Meta(n, _full_shape(n, p, ctx.tp)) for n, p in local.items()]
    if ctx.pp == 1:
        return local, [mine]
    stages: list = [None] * ctx.pp
    dist.all_gather_object(stages, mine, group=ctx.pp_group)
    return local, stages


def _buckets(metas: list[_Meta], dtype: torch.dtype, bucket_bytes: int) -> Iterator[list[_Meta]]:
    bucket, size = [], 0
    itemsize = torch.empty((), dtype=dtype).element_size()
    for meta in metas:
        nbytes = itemsize * int(torch.Size(meta.full_shape).numel())
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append(meta)
        size += nbytes
    if bucket:
        yield bucket


_SHM_DIR = "/dev/shm"
_SHM_MAX_FILES = 4  # mappings kept for reuse; older ones live on only through their tensors


def _is_fc1(name: str) -> bool:
    return canonical_name(name).endswith("mlp.linear_fc1.weight")  # TP shard = [gate_r; up_r]


def _tp_gather(name: str, local: torch.Tensor, ctx: ParallelContext) -> torch.Tensor:
    """Full tensor of a TP-sharded parameter: one ``all_gather_into_tensor`` into a dim-0 concatenation.

    Replicated parameters come back as detached views (no copy). For dim-0 shards of everything but
    SwiGLU fc1 the gathered buffer *is* the full tensor; the others go through ``tp_merge``.
    """
    local = local.detach()
    dim = partition_dim(name)
    if ctx.tp == 1 or dim is None:
        return local
    gathered = torch.empty((ctx.tp * local.shape[0], *local.shape[1:]), dtype=local.dtype,
                           device=local.device)  # (tp·rows, ...): rank r's shard at rows [r·rows, (r+1)·rows)
    dist.all_gather_into_tensor(gathered, local.contiguous(), group=ctx.tp_group)
    if dim == 0 and not _is_fc1(name):
        return gathered
    return tp_merge(name, list(gathered.chunk(ctx.tp, dim=0)))


def _write_shard(name: str, full: torch.Tensor, local: torch.Tensor, ctx: ParallelContext) -> None:
    """Copy (and cast) this TP rank's shard into its slot of the full tensor ``full`` (inverse of tp_shard)."""
    local = local.detach()
    dim = partition_dim(name)
    if ctx.tp == 1 or dim is None:
        if ctx.tp_rank == 0:  # replicated: one writer
            full.copy_(local)
        return
    if _is_fc1(name):
        for half, shard in zip(full.chunk(2, dim=0), local.chunk(2, dim=0)):
            half.chunk(ctx.tp, dim=0)[ctx.tp_rank].copy_(shard)
        return
    full.chunk(ctx.tp, dim=dim)[ctx.tp_rank].copy_(local)


def _use_shm(ctx: ParallelContext, shm: bool | None) -> bool:
    """Shared-memory transport? Auto: CPU tensors, TP×PP > 1, one host, /dev/shm present (one all-reduce)."""
    if shm is False or ctx.tp * ctx.pp == 1:
        return False
    if ctx.device.type != "cpu":
        # Every rank of a job has the same device type, so this needs no vote — and the vote below
        # (host tensors) could not run on the NCCL model-parallel group of a GPU job anyway.
        if shm:
            raise ValueError(f"export: shm=True needs CPU tensors (this rank: device {ctx.device}); pass shm=None")
        return False
    host = zlib.crc32(socket.gethostname().encode())
    able = int(ctx.device.type == "cpu" and os.path.isdir(_SHM_DIR))
    votes = torch.tensor([host, -host, -able], dtype=torch.int64)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX, group=ctx.mp_group)  # → max host, -min host, -min able
    possible = bool(votes[0] == -votes[1] and votes[2] == -1)
    if shm and not possible:
        raise ValueError(f"export: shm=True needs CPU tensors, every TP×PP rank on one host and {_SHM_DIR} "
                         f"on each (this rank: device {ctx.device}, host {socket.gethostname()}); pass shm=None")
    return possible


class ExportStaging:
    """The /dev/shm files of the shared-memory transport, shared by the TP×PP group.

    Every rank maps each file once (``mmap``; pages fault in once) and hands out per-bucket tensors
    over the mapping (``torch.frombuffer``). A file is unlinked at the end of the bucket that created
    it (every rank has mapped it by then; only a crash inside that window leaves a
    ``/dev/shm/lwz_export_*`` behind), and it is rewritten for a later bucket only when no rank still
    references a tensor of its previous bucket (``StorageWeakRef``, agreed on in the one all-reduce
    that ends every bucket): a consumer that keeps every tensor gets fresh files (the pool keeps at
    most ``_SHM_MAX_FILES``; older ones live on through their tensors), one that copies and drops them
    (``update_weights``) cycles through three.

    Without ``staging=`` every export call builds and drops its own; a caller that exports
    repeatedly (a weight sync per RL step) can keep one — ``with ExportStaging() as staging:`` — so
    the files' pages are faulted in once per run instead of once per call (≤ 4 × ``bucket_bytes``
    of /dev/shm stay mapped until ``close``).
    """

    def __init__(self) -> None:
        self.ctx: ParallelContext | None = None
        self.creator = 0
        self.files: list[list] = []  # [mmap, nbytes, StorageWeakRef | None], same order on every rank
        self.free: list[bool] = []  # per file: no rank references it (as of the last agreement)

    def __enter__(self) -> "ExportStaging":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the pool (mappings with live tensors stay until those are freed)."""
        self.files, self.free = [], []

    def start(self, ctx: ParallelContext) -> None:
        """Begin an export call on ``ctx`` (collective over its TP×PP group): bind, refresh free flags."""
        if ctx is not self.ctx:
            self.close()
            self.ctx, self.creator = ctx, dist.get_global_rank(ctx.mp_group, 0)
        elif self.files:
            self._agree()

    def _agree(self) -> None:
        """All-reduce of 'unreferenced here' over the group: a file is free only if free everywhere."""
        mine = torch.tensor([ref is None or ref.expired() for _, _, ref in self.files], dtype=torch.uint8)
        dist.all_reduce(mine, op=dist.ReduceOp.MIN, group=self.ctx.mp_group)
        self.free = [bool(x) for x in mine.tolist()]

    def _create(self, nbytes: int) -> tuple[int, str] | None:
        """A new file of ``nbytes`` mapped on every rank (None if /dev/shm has no room): (index, path)."""
        holder: list = [None]
        if self.ctx.rank == self.creator:
            stat = os.statvfs(_SHM_DIR)
            if stat.f_bavail * stat.f_frsize >= 2 * nbytes:  # room for this bucket and one still held
                holder[0] = os.path.join(_SHM_DIR, f"lwz_export_{os.getpid()}_{uuid.uuid4().hex}")
                with open(holder[0], "wb") as fh:
                    fh.truncate(nbytes)
        dist.broadcast_object_list(holder, src=self.creator, group=self.ctx.mp_group)
        if holder[0] is None:
            return None
        if len(self.files) >= _SHM_MAX_FILES:  # same decision on every rank (same list)
            self.files.pop(0)
            self.free.pop(0)
        try:
            fd = os.open(holder[0], os.O_RDWR)
            try:
                self.files.append([mmap.mmap(fd, nbytes), nbytes, None])  # MAP_SHARED, read/write
            finally:
                os.close(fd)
        except OSError:
            if self.ctx.rank == self.creator:
                os.unlink(holder[0])
            raise
        self.free.append(False)
        return len(self.files) - 1, holder[0]

    def _end_bucket(self, new_path: str | None) -> None:
        """Barrier that also agrees on which files no rank references any more; unlinks a new file."""
        self._agree()  # also: every rank has mapped the new file and written its shards
        if new_path is not None and self.ctx.rank == self.creator:
            os.unlink(new_path)  # the mappings keep the memory alive

    def bucket(self, bucket: list[_Meta], stage: int, local: dict[str, torch.Tensor],
               dtype: torch.dtype) -> torch.Tensor | None:
        """The bucket as one flat tensor over a shared mapping, shards written by their stage."""
        from torch.multiprocessing.reductions import StorageWeakRef

        numel = sum(int(torch.Size(m.full_shape).numel()) for m in bucket)
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        reuse = [i for i, (free, f) in enumerate(zip(self.free, self.files)) if free and f[1] >= nbytes]
        index, new_path = (reuse[0], None) if reuse else (self._create(nbytes) or (None, None))
        if index is None:
            return None
        entry = self.files[index]
        flat = torch.frombuffer(entry[0], dtype=dtype, count=numel)  # a new storage: its own liveness
        entry[2] = StorageWeakRef(flat.untyped_storage())
        if stage == self.ctx.pp_rank:
            offset = 0
            for meta in bucket:
                n = int(torch.Size(meta.full_shape).numel())
                _write_shard(meta.name, flat[offset:offset + n].view(meta.full_shape), local[meta.name], self.ctx)
                offset += n
        self._end_bucket(new_path)  # every shard of the bucket is written
        return flat


def _collective_bucket(bucket: list[_Meta], stage: int, local: dict[str, torch.Tensor], ctx: ParallelContext,
                       dtype: torch.dtype) -> torch.Tensor:
    """The bucket as one flat tensor: gathered, cast and packed by its stage, broadcast over PP."""
    numels = [int(torch.Size(m.full_shape).numel()) for m in bucket]
    flat = torch.empty(sum(numels), dtype=dtype, device=ctx.device)
    if stage == ctx.pp_rank:
        for meta, part in zip(bucket, flat.split(numels)):
            shard = local[meta.name].to(dtype) if ctx.tp > 1 else local[meta.name]  # cast before the gather
            part.view(meta.full_shape).copy_(_tp_gather(meta.name, shard, ctx))  # casts inside copy_ at TP = 1
    if ctx.pp > 1:
        dist.broadcast(flat, src=dist.get_global_rank(ctx.pp_group, stage), group=ctx.pp_group)
    return flat


@torch.no_grad()
def iter_megatron_full(chunks: list, ctx: ParallelContext, *, tied: bool, dtype: torch.dtype,
                       bucket_bytes: int = 512 * 2**20, shm: bool | None = None,
                       staging: ExportStaging | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(global megatron name, full tensor in ``dtype``) for every parameter, on every rank.

    ``bucket_bytes`` bounds one shared-memory file or PP broadcast (unused by the per-tensor path).
    ``shm``: None = shared memory when possible, False = collectives only, True = require it (an error
    where it is impossible; TP = PP = 1 needs no transport at all).
    ``staging``: keep the shared-memory files across calls (see :class:`ExportStaging`).
    """
    local, stages = _stage_params(chunks, ctx, tied)
    own = staging is None
    if _use_shm(ctx, shm):
        staging = staging or ExportStaging()
        staging.start(ctx)
    else:
        own, staging = False, None
    if ctx.pp == 1 and staging is None:  # nothing to broadcast: per tensor, no packing
        for meta in stages[0]:
            yield meta.name, _tp_gather(meta.name, local[meta.name].to(dtype), ctx)
        return
    try:
        for stage, metas in enumerate(stages):
            for bucket in _buckets(metas, dtype, bucket_bytes):
                flat = staging.bucket(bucket, stage, local, dtype) if staging else None
                if flat is None:
                    flat = _collective_bucket(bucket, stage, local, ctx, dtype)
                # A sub-generator, so no local of this frame pins the bucket once it is consumed.
                yield from _unpack(bucket, flat)
                del flat
    finally:
        if own:
            staging.close()


def _unpack(bucket: list[_Meta], flat: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    numels = [int(torch.Size(m.full_shape).numel()) for m in bucket]
    for meta, part in zip(bucket, flat.split(numels)):
        yield meta.name, part.view(meta.full_shape)


def iter_hf_weights(chunks: list, ctx: ParallelContext, arch: ModelArch, *, dtype: torch.dtype = torch.float32,
                    bucket_bytes: int = 512 * 2**20, shm: bool | None = None,
                    staging: ExportStaging | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF Qwen2 name, full tensor) for the whole model, on every rank; see the module docstring."""
    for name, full in iter_megatron_full(chunks, ctx, tied=arch.tie_word_embeddings, dtype=dtype,
                                         bucket_bytes=bucket_bytes, shm=shm, staging=staging):
        yield from megatron_to_hf(name, full, arch)


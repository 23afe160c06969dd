"""Megatron TP/PP shards → full Hugging Face tensors, bucketed, in memory (no disk).

``iter_hf_weights(chunks, ctx, arch, ...)`` runs on EVERY trainer rank in lockstep and yields the
same ``(hf_name, full tensor)`` sequence on every rank (vLLM's colocated IPC transfer wants every
rank to own every tensor; the HF engine on CPU just consumes it):

1. the parameter list of every pipeline stage is exchanged once (names, shapes) over the PP group;
2. stage by stage, parameters are grouped into buckets of ≤ ``bucket_bytes`` (in the engine dtype);
3. for a bucket, the owning stage all-gathers each TP shard over its TP group and merges it
   (``checkpoint.mapping.tp_merge``: fused QKV and [gate; up] aware), casts to the engine dtype and
   packs the bucket into one flat buffer, which is broadcast over the PP group (one collective per
   bucket instead of one per tensor);
4. every rank unpacks and converts with ``checkpoint.mapping.megatron_to_hf`` (QKV split per query
   group, gate/up split, vocab padding dropped, tied output layer skipped).

The only knowledge of the HF layout is ``checkpoint.mapping``; this module adds the communication.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from megatron_lwz.checkpoint.full_state import global_named_parameters, tp_gather
from megatron_lwz.checkpoint.mapping import megatron_to_hf, partition_dim
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


@torch.no_grad()
def iter_megatron_full(chunks: list, ctx: ParallelContext, *, tied: bool, dtype: torch.dtype,
                       bucket_bytes: int = 512 * 2**20) -> Iterator[tuple[str, torch.Tensor]]:
    """(global megatron name, full tensor in ``dtype``) for every parameter, on every rank."""
    local, stages = _stage_params(chunks, ctx, tied)
    device = ctx.device
    for stage, metas in enumerate(stages):
        for bucket in _buckets(metas, dtype, bucket_bytes):
            numels = [int(torch.Size(m.full_shape).numel()) for m in bucket]
            if stage == ctx.pp_rank:
                flat = torch.cat([tp_gather(m.name, local[m.name], ctx).to(dtype).reshape(-1) for m in bucket])
            else:
                flat = torch.empty(sum(numels), dtype=dtype, device=device)
            if ctx.pp > 1:
                dist.broadcast(flat, src=dist.get_global_rank(ctx.pp_group, stage), group=ctx.pp_group)
            for meta, part in zip(bucket, flat.split(numels)):
                yield meta.name, part.view(meta.full_shape)


def iter_hf_weights(chunks: list, ctx: ParallelContext, arch: ModelArch, *, dtype: torch.dtype = torch.float32,
                    bucket_bytes: int = 512 * 2**20) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF Qwen2 name, full tensor) for the whole model, on every rank; see the module docstring."""
    for name, full in iter_megatron_full(chunks, ctx, tied=arch.tie_word_embeddings, dtype=dtype,
                                         bucket_bytes=bucket_bytes):
        yield from megatron_to_hf(name, full, arch)


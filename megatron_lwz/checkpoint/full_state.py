"""Full (TP=1, PP=1) megatron state ⇄ this rank's sharded model chunks, over explicit groups.

``load_full_state`` copies each rank's slice of a full state dict into its chunks (any TP/PP/VPP);
``gather_full_state`` is its inverse (TP all-gather, then PP all-gather of objects). Global layer
numbers come from ``TransformerLayer.layer_number`` (1-based, global for PP and VPP).
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.distributed as dist

from megatron_lwz.checkpoint.mapping import canonical_name, split_layer_name, tp_merge, tp_shard
from megatron_lwz.parallel.state import ParallelContext


def _layer_numbers(chunk) -> list[int]:
    decoder = getattr(chunk, "decoder", None)
    return [layer.layer_number - 1 for layer in decoder.layers] if decoder is not None else []


def global_named_parameters(chunk) -> Iterator[tuple[str, torch.nn.Parameter]]:
    """(global canonical name, local parameter) of one unwrapped GPTModel chunk."""
    chunk = unwrap(chunk)
    numbers = _layer_numbers(chunk)
    for name, param in chunk.named_parameters():
        name = canonical_name(name)
        layer, rest = split_layer_name(name)
        if layer is not None:
            name = f"decoder.layers.{numbers[layer]}.{rest}"
        yield name, param


def param_tp_dim(param: torch.Tensor) -> int | None:
    """TP partition dim from megatron's own parameter attributes (None = replicated, e.g. norms or
    the RM's scalar head); robust to modules the name mapping does not know."""
    return param.partition_dim if getattr(param, "tensor_model_parallel", False) else None


def unwrap(module):
    """Strip DDP / Float16Module wrappers."""
    while hasattr(module, "module"):
        module = module.module
    return module


VOCAB_TENSORS = ("embedding.word_embeddings.weight", "output_layer.weight")


def resize_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """Truncate or zero-pad dim 0 to ``rows`` (vocabulary padding is not part of the model)."""
    if t.shape[0] >= rows:
        return t[:rows]
    return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])], dim=0)


def _source_name(name: str, tied: bool) -> str:
    return "embedding.word_embeddings.weight" if tied and name == "output_layer.weight" else name


@torch.no_grad()
def load_full_state(chunks: list, full: dict[str, torch.Tensor], ctx: ParallelContext, tied: bool) -> None:
    """Copy this rank's TP slice of every full tensor into its chunks; raises on a missing name."""
    for chunk in chunks:
        for name, param in global_named_parameters(chunk):
            src = _source_name(name, tied)
            if src not in full:
                raise KeyError(f"full state has no tensor for {name!r}")
            tensor = full[src]
            if name in VOCAB_TENSORS and param_tp_dim(param) == 0:  # vocab padding depends on TP: re-pad
                tensor = resize_rows(tensor, param.shape[0] * ctx.tp)
            shard = tp_shard(name, tensor, ctx.tp, ctx.tp_rank, dim=param_tp_dim(param))
            if shard.shape != param.shape:
                raise ValueError(f"{name}: shard shape {tuple(shard.shape)} != parameter {tuple(param.shape)}")
            param.copy_(shard.to(param.dtype))


@torch.no_grad()
def tp_gather(name: str, local: torch.Tensor, ctx: ParallelContext) -> torch.Tensor:
    """Full tensor of a TP-sharded parameter (identity for replicated ones)."""
    dim = param_tp_dim(local)
    if ctx.tp == 1 or dim is None:
        return local.detach()
    parts = [torch.empty_like(local) for _ in range(ctx.tp)]
    dist.all_gather(parts, local.detach().contiguous(), group=ctx.tp_group)
    return tp_merge(name, parts, dim=dim)


@torch.no_grad()
def gather_full_state(chunks: list, ctx: ParallelContext, tied: bool) -> dict[str, torch.Tensor]:
    """Every rank gets the full model state (CPU tensors). For tests and small models only."""
    mine: dict[str, torch.Tensor] = {}
    for chunk in chunks:
        for name, param in global_named_parameters(chunk):
            full = tp_gather(name, param, ctx)
            if tied and name == "output_layer.weight":
                continue
            mine[name] = full.cpu().clone()
    if ctx.pp == 1:
        return mine
    gathered: list = [None] * ctx.pp
    dist.all_gather_object(gathered, mine, group=ctx.pp_group)
    out: dict[str, torch.Tensor] = {}
    for part in gathered:
        out.update(part)
    return out

"""DistributedOptimizer state written and read by every rank in parallel, without gathering shards.

megatron-core 0.19.2's ``fully_reshardable`` format stores the fp32 main params and Adam moments in
*model space* (``optimizer.state.{param,exp_avg,exp_avg_sq}.<model key>``, each shaped like the
model tensor, sharded by TP / PP like it), which is what makes a checkpoint loadable at any layout.
But its code gets there by all-gathering every DP rank's flat slice into full TP×PP-shard buffers
on *every* rank (``get_parameter_state_dp_zero(return_on_all_ranks=True)``, on save and — empty — on
load): 12 bytes × params / (TP·PP) of host RAM per rank (≈ 24 GB for Qwen2.5-32B at TP 8 × PP 2).
mcore's gather-free model-space format (``fully_sharded_model_space``) relies on
``ShardedTensor.flattened_range``, which 0.19.2's torch_dist strategy rejects (``mapping.py:134``).

This module writes the *same* model-space tensors without any gather: a rank's DistOpt shard of a
parameter is a contiguous range of the parameter's flattened TP-local tensor; that range is cut into
at most 2·ndim − 1 rectangular boxes (a partial first row, whole rows, a partial last row,
recursively), each a ``ShardedTensor`` with no regular grid (``axis_fragmentations=None``: torch DCP
"uneven sharding", mcore ≥ 0.14 with torch ≥ 2.6) whose data is a *view* of the live optimizer
tensor. Saving writes from those views; loading reads straight into them (each rank requests
only its own boxes, at any TP / PP / DP: DCP cuts them out of whatever chunks were stored). The
keys, shapes and the common part (``param_groups``, ``param_state_sharding_type:
fully_reshardable``) are those of mcore's format, so checkpoints of either writer load with either
reader. SwiGLU ``linear_fc1`` (a ``ShardedTensorFactory`` storing gate and up halves at separate
global offsets) is split into its halves first, using the factory's own ``build_fn`` on a meta tensor.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import torch

FORMAT = "fully_reshardable"
"""``param_state_sharding_type`` stored: the on-disk layout is mcore's fully_reshardable one."""

Box = tuple[tuple[int, ...], tuple[int, ...]]


def flat_range_boxes(start: int, end: int, shape: tuple[int, ...]) -> list[Box]:
    """Rectangular boxes (offset, size) covering the row-major flat range [start, end) of ``shape``,
    in flat order (each box is contiguous in memory)."""
    if start >= end:
        return []
    if len(shape) <= 1:
        return [((start,), (end - start,))]
    inner = math.prod(shape[1:])
    r0, c0 = divmod(start, inner)
    r1, c1 = divmod(end, inner)
    if r0 == r1:
        return [((r0, *o), (1, *s)) for o, s in flat_range_boxes(c0, c1, shape[1:])]
    boxes: list[Box] = []
    if c0:
        boxes += [((r0, *o), (1, *s)) for o, s in flat_range_boxes(c0, inner, shape[1:])]
        r0 += 1
    if r1 > r0:
        boxes.append(((r0, *(0,) * (len(shape) - 1)), (r1 - r0, *shape[1:])))
    if c1:
        boxes += [((r1, *o), (1, *s)) for o, s in flat_range_boxes(0, c1, shape[1:])]
    return boxes


def _pieces(sharded, param: torch.Tensor) -> list[tuple[int, Any]]:
    """(flat start in the TP-local param, ShardedTensor) for the parts a model entry stores."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    if isinstance(sharded, ShardedTensor):
        return [(0, sharded)]
    meta = torch.empty(param.shape, dtype=param.dtype, device="meta")
    built = sharded.build_fn(sharded.key, meta, sharded.replica_id, None)
    out = []
    for piece in nested_values(built if isinstance(built, (dict, list)) else [built]):
        if not piece.data.is_contiguous():
            raise NotImplementedError(f"{sharded.key}: non-contiguous factory piece; use checkpoint.distopt_io=gather")
        out.append((piece.data.storage_offset(), piece))
    return sorted(out, key=lambda x: x[0])


def _box_tensors(key: str, piece, piece_start: int, flat: torch.Tensor, lo: int, hi: int) -> list:
    """ShardedTensors for ``flat`` (= the local param's flat elements [lo, hi)) ∩ ``piece``."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    shape = tuple(piece.data.shape)
    a, b = max(lo, piece_start), min(hi, piece_start + math.prod(shape))
    out, prepend = [], piece.prepend_axis_num
    for offset, size in flat_range_boxes(a - piece_start, b - piece_start, shape):
        first = piece_start + sum(o * math.prod(shape[i + 1:]) for i, o in enumerate(offset)) - lo
        data = flat.detach()[first:first + math.prod(size)].view((1,) * prepend + size)
        global_offset = tuple(piece.global_offset[:prepend]) + tuple(
            g + o for g, o in zip(piece.global_offset[prepend:], offset))
        out.append(ShardedTensor(key, data, data.dtype, tuple(data.shape), tuple(piece.global_shape), global_offset,
                                 None, replica_id=(*piece.replica_id[:2], 0),
                                 allow_shape_mismatch=piece.allow_shape_mismatch))
    return out


def param_state_boxes(dist_opt, model_sharded_state_dict: dict) -> dict[int, dict[str, list]]:
    """{param index: {state key: [box ShardedTensors viewing this rank's optimizer tensors]}}."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.utils import extract_sharded_tensors_and_factories

    tensors_only, _ = extract_sharded_tensors_and_factories(model_sharded_state_dict)
    by_param = {sh.data: sh for sh in nested_values(tensors_only)}
    state, index = {}, 0
    for gbuf_range_maps in dist_opt.gbuf_ranges:
        for per_bucket in gbuf_range_maps.values():
            for gbuf_range_map in per_bucket:
                for model_param, ranges in gbuf_range_map["param_map"].items():
                    lo, hi = ranges["param"].start, ranges["param"].end
                    pieces = _pieces(by_param[model_param], model_param)
                    entry = {}
                    for name, flat in dist_opt._get_main_param_and_optimizer_states(model_param).items():
                        if name == "step" or not isinstance(flat, torch.Tensor) or flat.dim() == 0:
                            continue  # torch Adam's step: read from param_groups (mcore convention)
                        entry[name] = [box for start, piece in pieces for box in _box_tensors(
                            f"optimizer.state.{name}.{piece.key}", piece, start, flat.view(-1), lo, hi)]
                    state[index] = entry
                    index += 1
    return state


def supported(dist_opt) -> bool:
    """The optimizer keeps its states as plain tensors we can view (not the precision-aware path)."""
    return not dist_opt.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8 and not dist_opt.ddp_config.use_megatron_fsdp


def _sharded_state_dict(dist_opt):
    def build(model_sharded_state_dict=None, is_loading=False, sharding_type=None, metadata=None):
        if is_loading:  # allocate the state a fresh optimizer lacks (TE / Apex Adam), as mcore does
            dist_opt.load_state_dict(dist_opt.state_dict())
        state_dict = dist_opt.state_dict()  # param_groups (+ step), grad scaler: the common part
        dist_opt._lwz_boxes = param_state_boxes(dist_opt, model_sharded_state_dict or {})
        state_dict["param_state"] = dist_opt._lwz_boxes
        state_dict["param_state_sharding_type"] = FORMAT
        return state_dict
    return build


def _load_state_dict(dist_opt, original):
    def load(state_dict):
        state_dict = dict(state_dict)
        loaded = state_dict.pop("param_state", None)  # read into the live tensors by the load itself
        if loaded is not None and getattr(dist_opt, "_lwz_boxes", None) is not None:
            restore_boxes(dist_opt._lwz_boxes, loaded)
        return original(state_dict)
    return load


@contextlib.contextmanager
def sharded_io(optimizer: Any, *, loading: bool) -> Iterator[list]:
    """While active, the DistributedOptimizers inside ``optimizer`` build their sharded state dict
    from boxes (and, ``loading``, skip the param-state step of ``load_state_dict``). Instance
    attributes shadow the methods for the duration only; megatron's classes are not modified.
    Yields the patched optimizers (empty when unsupported: megatron's own code then runs)."""
    from megatron_lwz.checkpoint.mcore_fixes import distributed_optimizers

    found = distributed_optimizers(optimizer)
    patched = found if all(supported(d) for d in found) else []
    for dist_opt in patched:
        dist_opt.sharded_state_dict = _sharded_state_dict(dist_opt)
        if loading:
            dist_opt.load_state_dict = _load_state_dict(dist_opt, type(dist_opt).load_state_dict.__get__(dist_opt))
    try:
        yield patched
    finally:
        for dist_opt in patched:
            for name in ("sharded_state_dict", "load_state_dict", "_lwz_boxes"):
                dist_opt.__dict__.pop(name, None)


@torch.no_grad()
def restore_boxes(requested: Any, loaded: Any) -> int:
    """Copy loaded box tensors into the requested views where the loader returned new tensors
    (DCP normally reads in place). Walks both param-state dicts in parallel; returns the copies."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    copies = 0
    if isinstance(requested, ShardedTensor):
        if isinstance(loaded, torch.Tensor) and loaded.data_ptr() != requested.data.data_ptr():
            requested.data.copy_(loaded.view_as(requested.data))
            copies += 1
    elif isinstance(requested, dict) and isinstance(loaded, dict):
        for key, value in requested.items():
            if key in loaded:
                copies += restore_boxes(value, loaded[key])
    elif isinstance(requested, list) and isinstance(loaded, list):
        for a, b in zip(requested, loaded):
            copies += restore_boxes(a, b)
    return copies

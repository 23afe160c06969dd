"""Loading checkpoints that lack Transformer Engine ``_extra_state`` (e.g. converted ones) into a TE model.

A TE module keeps its FP8 scaling metadata (amax history, scales, recipe) in ``_extra_state``
(``get_extra_state``: transformer_engine/pytorch/module/base.py:1354, ops/op.py:632), and
megatron-core turns every ``*_extra_state`` entry of a state dict into a ``ShardedObject``
(``make_sharded_tensors_for_checkpoint``, megatron/core/transformer/utils.py:162-168), also for
modules without their own ``sharded_state_dict`` (``sharded_state_dict_default``, utils.py:286-291).
A checkpoint written without TE does not hold all of them: the local spec's final norm (torch
``RMSNorm``) has none, while the TE spec's ``TENorm`` (``te.pytorch.RMSNorm``, an ops
``BasicOperation``) has ``decoder.final_layernorm._extra_state``. ``hf-to-mcore`` writes with the
local spec wherever TE is missing, so without this the TE model cannot load the converted
checkpoint ("Missing key in checkpoint").

:func:`drop_absent_extra_state` removes from the sharded state dict to be loaded every
``_extra_state`` object the checkpoint does not contain (read from its metadata,
``dist_checkpointing.serialization.load_sharded_metadata``), and :func:`load_model_chunk` then loads
with torch's strict key check except for those entries. The modules keep their fresh FP8 state:
scaling factors start from scratch (TE recomputes them from the first amax measurements).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

SUFFIX = "_extra_state"


def stored_object_keys(directory: Path) -> set[str]:
    """Keys of the ``ShardedObject``s stored in a dist checkpoint (one per object, all shards)."""
    from megatron.core.dist_checkpointing import ShardedObject
    from megatron.core.dist_checkpointing.serialization import load_sharded_metadata

    return {sh.key for sh in load_sharded_metadata(str(directory)).values() if isinstance(sh, ShardedObject)}


def _walk(sharded: dict, stored: set[str], dropped: list[str]) -> None:
    from megatron.core.dist_checkpointing import ShardedObject

    for name, value in list(sharded.items()):
        if isinstance(value, dict):
            _walk(value, stored, dropped)
        elif isinstance(value, ShardedObject) and value.key.endswith(SUFFIX) and value.key not in stored:
            del sharded[name]
            dropped.append(name)


def drop_absent_extra_state(model_sharded: Iterable[dict], directory: Path, *, log_rank0: bool = True) -> list[str]:
    """Remove, in place, the ``_extra_state`` objects ``directory`` lacks from each chunk's sharded
    state dict; returns their state-dict names (logged once with their count)."""
    chunks = list(model_sharded)
    if not any(_has_extra_state(sd) for sd in chunks):
        return []
    stored = stored_object_keys(directory)
    dropped: list[str] = []
    for chunk_sd in chunks:
        _walk(chunk_sd, stored, dropped)
    if dropped and log_rank0:
        log.warning("%s: %d Transformer Engine _extra_state entries (FP8 scaling metadata) are not in the "
                    "checkpoint (written without TE, e.g. converted from HF): FP8 scaling state starts fresh; "
                    "e.g. %s", directory, len(dropped), sorted(dropped)[:3])
    return dropped


def _has_extra_state(sharded: dict) -> bool:
    return any(_has_extra_state(v) if isinstance(v, dict) else str(k).endswith(SUFFIX) for k, v in sharded.items())


def load_model_chunk(chunk: Any, state: dict, *, allowed_missing: Iterable[str], where: Path) -> None:
    """``chunk.load_state_dict(state)`` with torch's strict key check, except ``allowed_missing``."""
    from megatron_lwz.checkpoint.layout import CheckpointError

    result = chunk.load_state_dict(state, strict=False)
    missing = set(result.missing_keys) - set(allowed_missing)
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{where}: weights do not fit the model: missing {sorted(missing)}, "
                              f"unexpected {sorted(result.unexpected_keys)}")

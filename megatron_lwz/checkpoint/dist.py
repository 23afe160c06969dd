"""Thin layer over megatron-core ``dist_checkpointing`` (torch_dist format, sync or async saves,
megatron's fully-parallel save / load wrappers).

The model part of every checkpoint is exactly ``GPTModel.sharded_state_dict()`` under the key
``model`` (``model0``, ``model1``, … with virtual pipeline stages), as Megatron-LM writes it, so
Megatron-LM / NeMo tooling and plain ``dist_checkpointing.load`` read it. The distributed
optimizer uses the ``fully_reshardable`` layout (written without gathering, see ``distopt_io``),
so checkpoints load at any TP / PP / DP.

:class:`McoreCheckpointReader` reads one decoder layer (or one tensor) at a time from a
checkpoint through a *partial* sharded state dict — the conversion tools never hold more than one
layer of the source.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from megatron_lwz.checkpoint.layout import CheckpointError
from megatron_lwz.checkpoint.mapping import LAYER_KEY_PREFIX, name_from_checkpoint_key
from megatron_lwz.checkpoint.mcore_fixes import use_process_safe_write_queue

SHARDING_METADATA = {
    "distrib_optim_sharding_type": "fully_reshardable",
    "singleton_local_shards": False,
    "chained_optim_avoid_prefix": True,
}
"""``metadata`` for every ``sharded_state_dict`` call. mcore's default DistOpt format
(``fully_sharded_model_space``) cannot be saved (``mapping.py`` rejects flattened ranges)."""

CHECKPOINT_VERSION = 3.0
"""Megatron-LM's ``checkpoint_version`` for dist checkpoints (stored as-is for its tools)."""


def model_keys(num_chunks: int) -> list[str]:
    """Top-level keys of the model chunks: ``model``, or ``model0``.. with virtual stages."""
    return ["model"] if num_chunks == 1 else [f"model{i}" for i in range(num_chunks)]


def model_sharded_state_dict(chunks: list) -> dict[str, Any]:
    """``{model key: chunk.sharded_state_dict()}`` of the *unwrapped* chunks (no ``module.`` prefix)."""
    return {key: chunk.sharded_state_dict(metadata=dict(SHARDING_METADATA))
            for key, chunk in zip(model_keys(len(chunks)), chunks)}


def save_sharded(sharded_state_dict: dict, directory: Path, *, parallel_group: Any = None, async_save: bool = False):
    """Collective torch_dist save (every rank of the default group calls it).

    ``parallel_group`` (the DP group): megatron's ``FullyParallelSaveStrategyWrapper`` spreads the
    writing of tensors replicated over that group (the model weights over DP) across its ranks
    instead of leaving it all to DP rank 0. ``async_save``: returns megatron's ``AsyncRequest``
    (the caller schedules it on an ``AsyncCallsQueue``, see ``checkpoint.async_save``); the files
    are complete only once it is finalized. Otherwise returns None when the files are written.
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper
    from megatron.core.dist_checkpointing.strategies.torch import TorchDistSaveShardedStrategy

    use_process_safe_write_queue(async_save)
    strategy = TorchDistSaveShardedStrategy(backend="torch_dist", version=1, thread_count=2)
    if parallel_group is not None:
        strategy = FullyParallelSaveStrategyWrapper(strategy, parallel_group)
    # async_strategy "mcore": megatron's own forking writer (the default, "nvrx", needs nvidia-resiliency-ext)
    return dist_checkpointing.save(sharded_state_dict, str(directory), sharded_strategy=strategy,
                                   validate_access_integrity=True, async_sharded_save=async_save,
                                   async_strategy="mcore")


def load_sharded(sharded_state_dict: dict, directory: Path, validate: bool = True, parallel_group: Any = None) -> dict:
    """Load ``sharded_state_dict``'s tensors from ``directory``; mcore errors get the path added.

    ``parallel_group``: megatron's ``FullyParallelLoadStrategyWrapper`` reads each tensor that is
    replicated over the group once and broadcasts it, instead of every rank reading it."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.core import CheckpointingException
    from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelLoadStrategyWrapper
    from megatron.core.dist_checkpointing.strategies.torch import TorchDistLoadShardedStrategy
    from torch.distributed.checkpoint.api import CheckpointException

    strategy = None
    if parallel_group is not None:
        strategy = FullyParallelLoadStrategyWrapper(TorchDistLoadShardedStrategy(), parallel_group)
    try:
        return dist_checkpointing.load(sharded_state_dict, str(directory), sharded_strategy=strategy,
                                       validate_access_integrity=validate)
    except (CheckpointingException, CheckpointException, KeyError) as err:
        text = str(err)
        text = text if len(text) < 1500 else text[:1500] + " …"  # DCP lists every stored key
        raise CheckpointError(f"{directory}: cannot load: {text}") from err


EMBEDDING_KEY = "embedding.word_embeddings.weight"


def _compatible(model_sh, stored_sh, vocab_size: int) -> bool:
    """Same global shape, or a vocabulary tensor whose padding differs (TP-dependent padding)."""
    if tuple(model_sh.global_shape) == tuple(stored_sh.global_shape):
        return True
    a, b = tuple(model_sh.global_shape), tuple(stored_sh.global_shape)
    return bool(model_sh.allow_shape_mismatch) and a[1:] == b[1:] and min(a[0], b[0]) >= vocab_size


def _non_main(replica_id):
    return (1, *replica_id[1:]) if isinstance(replica_id, tuple) else 1


def restrict_to_checkpoint(sharded: dict, directory: Path, vocab_size: int) -> tuple[list[str], list[str]]:
    """Adapt a model sharded state dict *in place* for a weights-only load from ``directory``.

    * a tensor the checkpoint lacks, or stores with another shape (other than vocab padding), is
      dropped: it keeps its fresh initialisation (a new head, e.g. the Writing RM's scalar head
      in place of the vocabulary output layer);
    * an untied vocabulary ``output_layer.weight`` missing from a *tied* checkpoint is read from
      the stored input embedding (untying, as Hugging Face does).

    Returns (state-dict names kept fresh, names initialised from the tied embedding).
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing import ShardedTensor
    from megatron.core.dist_checkpointing.mapping import ShardedTensorFactory

    stored = dist_checkpointing.load_tensors_metadata(str(directory))
    fresh, untied = [], []
    for chunk_sd in sharded.values():
        for name, sh in list(chunk_sd.items()):
            if not isinstance(sh, (ShardedTensor, ShardedTensorFactory)):
                continue
            found = stored.get(sh.key)
            is_tensor = isinstance(sh, ShardedTensor)
            if (found is None and is_tensor and sh.key == "output_layer.weight" and EMBEDDING_KEY in stored
                    and sh.global_shape[0] >= vocab_size):
                chunk_sd[name] = replace(sh, key=EMBEDDING_KEY, replica_id=_non_main(sh.replica_id))
                untied.append(name)
            elif found is None or (is_tensor and not _compatible(sh, found, vocab_size)):
                del chunk_sd[name]
                fresh.append(name)
    return fresh, untied


def ensure_process_group() -> None:
    """dist_checkpointing needs torch.distributed; give a lone process a 1-rank gloo group."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


class McoreCheckpointReader:
    """Full (TP=1, PP=1) tensors of a dist checkpoint's model, read lazily.

    Works on any GPTModel dist checkpoint (ours or Megatron-LM's) in one process; names come back
    in megatron's canonical (local-spec) global spelling, e.g. ``decoder.layers.3.mlp.linear_fc1.weight``.
    """

    def __init__(self, directory: str | Path):
        from megatron.core import dist_checkpointing

        ensure_process_group()
        self.directory = Path(directory)
        metadata = dist_checkpointing.load_tensors_metadata(str(self.directory))
        self._meta = {key: sh for key, sh in metadata.items() if not key.startswith("optimizer.")}
        layer_keys = [k for k in self._meta if k.startswith(LAYER_KEY_PREFIX)]
        self.num_layers = self._meta[layer_keys[0]].global_shape[0] if layer_keys else 0
        self._layer_keys = sorted(layer_keys)
        self._other_keys = sorted(k for k in self._meta if not k.startswith(LAYER_KEY_PREFIX))

    def keys(self) -> list[str]:
        """Model tensor keys stored in the checkpoint (dist-checkpoint spelling)."""
        return self._other_keys + self._layer_keys

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._meta[key].global_shape)

    def dtype_of(self, key: str) -> torch.dtype:
        return self._meta[key].dtype

    def dtype(self) -> torch.dtype:
        return self._meta[self._other_keys[0] if self._other_keys else self._layer_keys[0]].dtype

    def has(self, key: str) -> bool:
        return key in self._meta

    def non_layer_names(self) -> list[str]:
        return [name_from_checkpoint_key(k, None) for k in self._other_keys]

    def _load(self, requests: dict[str, Any]) -> dict[str, torch.Tensor]:
        loaded = load_sharded(requests, self.directory, validate=False)
        return {name: loaded[name] for name in requests}

    def tensor(self, key: str) -> torch.Tensor:
        """One non-layer tensor by checkpoint key (e.g. ``embedding.word_embeddings.weight``)."""
        from megatron.core.dist_checkpointing import ShardedTensor

        if key not in self._meta:
            raise CheckpointError(f"{self.directory}: no tensor {key!r} (has {self._other_keys})")
        sh = self._meta[key]
        buf = torch.empty(sh.global_shape, dtype=sh.dtype)
        return self._load({key: ShardedTensor.from_rank_offsets(key, buf, replica_id=0)})[key]

    def layer(self, index: int) -> dict[str, torch.Tensor]:
        """All tensors of decoder layer ``index``: {canonical global name: full tensor}."""
        from megatron.core.dist_checkpointing import ShardedTensor

        if not 0 <= index < self.num_layers:
            raise CheckpointError(f"{self.directory}: layer {index} out of range (0..{self.num_layers - 1})")
        requests = {}
        for key in self._layer_keys:
            sh = self._meta[key]
            # The layer axis is an explicit leading dim of size 1 and there is no regular grid
            # (axis_fragmentations=None): one process reads one slice; a grid would make torch
            # expect owners of the other slices.
            buf = torch.empty((1, *sh.global_shape[1:]), dtype=sh.dtype)
            requests[key] = ShardedTensor(key, buf, sh.dtype, tuple(buf.shape), tuple(sh.global_shape),
                                          (index,) + (0,) * (buf.ndim - 1), None, replica_id=0)
        return {name_from_checkpoint_key(k, index): t[0] for k, t in self._load(requests).items()}

"""Checkpoints: megatron dist_checkpointing saves with atomic publish, resume at any layout,
preemption handling, and HF Qwen2 ⇄ megatron conversion (one mapping module: ``mapping``).

Public API (imported lazily, so ``import megatron_lwz.checkpoint`` stays cheap)::

    TrainState, save_checkpoint, load_checkpoint, latest_checkpoint, read_checkpoint_meta,
    CheckpointError, PreemptionWatcher
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainState": "megatron_lwz.checkpoint.state",
    "save_checkpoint": "megatron_lwz.checkpoint.state",
    "load_checkpoint": "megatron_lwz.checkpoint.state",
    "read_checkpoint_meta": "megatron_lwz.checkpoint.state",
    "read_checkpoint_config": "megatron_lwz.checkpoint.state",
    "latest_checkpoint": "megatron_lwz.checkpoint.layout",
    "CheckpointError": "megatron_lwz.checkpoint.layout",
    "CheckpointMeta": "megatron_lwz.checkpoint.layout",
    "PreemptionWatcher": "megatron_lwz.checkpoint.signals",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'megatron_lwz.checkpoint' has no attribute {name!r}")

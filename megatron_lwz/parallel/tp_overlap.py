"""Transformer Engine userbuffers for TP-communication overlap (``parallel.tp_comm_overlap``).

TE overlaps the sequence-parallel all-gather / reduce-scatter of the QKV, projection, fc1 and fc2
GEMMs with the GEMMs themselves (chunked ring exchange into pre-registered buffers). The buffers
are sized once for the micro-batch's token count × hidden size, so the job's micro-batches must all
have that shape — true for packed pretraining (``data.seq_length × train.micro_batch_size``), not
for RM pairs or RL samples. Megatron-LM does the same in ``_initialize_tp_communicators``
(megatron/training/initialize.py), which we cannot import; every rank must call this after the
process groups exist and before the model is built (TE bootstraps its own communicators).
"""

from __future__ import annotations

from typing import Any

from megatron_lwz.config.base import ConfigError


def overlap_tokens(cfg: Any) -> int:
    """Tokens of one micro-batch of a fixed-shape job; ConfigError for jobs whose shapes vary."""
    seq = getattr(getattr(cfg, "data", None), "seq_length", None)
    if seq is None:
        raise ConfigError("parallel.tp_comm_overlap needs fixed micro-batch shapes (pretraining's data.seq_length); "
                          "RM and GRPO micro-batches vary in length — set parallel.tp_comm_overlap=false")
    return int(seq) * int(cfg.train.micro_batch_size)


def init_tp_comm_overlap(tokens: int, hidden: int, tp: int, fp8: bool) -> None:
    """``transformer_engine.pytorch.module.base.initialize_ub`` for a ``[tokens, hidden]`` buffer.

    TE 2.20.2 takes ``quantization_modes`` (``use_fp8`` is deprecated there): one mode, FP8 when the
    GEMMs run in FP8 (its 8 all-gather buffers are then uint8; plan/memory.py counts them)."""
    import torch
    from transformer_engine.pytorch.module.base import UserBufferQuantizationMode, initialize_ub

    mode = UserBufferQuantizationMode.FP8 if fp8 else UserBufferQuantizationMode.NONE
    initialize_ub(shape=[tokens, hidden], tp_size=tp, quantization_modes=[mode], dtype=torch.bfloat16,
                  bootstrap_backend="nccl")

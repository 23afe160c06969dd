"""Our Bradley–Terry Writing RM as an offline pairwise judge (``lwz eval arena --judge rm:CKPT``).

``load_writing_rm(checkpoint)`` rebuilds the RM from a ``lwz train-rm`` checkpoint — its stored
``config.yaml`` (architecture, tokenizer, ``data.max_length`` / ``max_prompt_tokens``) and weights
(``checkpoint.state.load_checkpoint``, which reshards a TP/PP-saved checkpoint to the current layout) —
on one process (TP = PP = 1; the RM must fit one device), and returns GRPO's scorer
(``rewards.writing_rm.WritingRMScorer``): ``score(questions, answers) -> list[float]``, the same
(question, answer) input the RM saw in training. ``pairwise.rm_verdicts`` turns two scores into a verdict.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from megatron_lwz.config.base import ConfigError, from_dict


def load_writing_rm(checkpoint: str, *, micro_batch_size: int = 4):
    """A ``WritingRMScorer`` for the RM checkpoint (a save directory or one checkpoint directory)."""
    from megatron_lwz import parallel
    from megatron_lwz.checkpoint.state import load_checkpoint, read_checkpoint_config
    from megatron_lwz.data.tokenizer import Tokenizer
    from megatron_lwz.engine.trainer import build_inference_model
    from megatron_lwz.models.presets import resolve
    from megatron_lwz.models.reward_head import attach_reward_head
    from megatron_lwz.parallel.env import detect
    from megatron_lwz.rewards.rm_config import RMJobConfig
    from megatron_lwz.rewards.writing_rm import WritingRMScorer

    if detect().world_size != 1:
        raise ConfigError("--judge rm:CKPT runs on one process (launch lwz eval arena without torchrun)")
    try:
        cfg = from_dict(RMJobConfig, read_checkpoint_config(checkpoint))
    except ConfigError as err:
        raise ConfigError(f"{checkpoint}: not a Writing RM checkpoint of lwz train-rm ({err})") from None
    layout = dataclasses.replace(cfg.parallel, tensor_parallel=1, pipeline_parallel=1, virtual_pipeline_parallel=None,
                                 context_parallel=1, sequence_parallel=False, tp_comm_overlap=False, world_size=None)
    ctx = parallel.init(layout)
    arch = resolve(cfg.model)
    model = build_inference_model(model=cfg.model, parallel=layout, precision=cfg.precision, ctx=ctx, arch=arch,
                                  post_build=lambda chunks: attach_reward_head(chunks, arch.hidden_size, 0.02))
    load_checkpoint(model, Path(checkpoint), weights_only=True)
    return WritingRMScorer(model, Tokenizer(cfg.data.tokenizer), max_length=cfg.data.max_length,
                           max_prompt_tokens=cfg.data.max_prompt_tokens, micro_batch_size=micro_batch_size)

"""Worker: Writing-RM scores (scalar head on the last token) at several layouts from one init."""

from __future__ import annotations

import torch

from megatron_lwz import parallel
from megatron_lwz.checkpoint.full_state import gather_full_state, load_full_state
from megatron_lwz.config.schema import ModelConfig, PrecisionConfig
from megatron_lwz.engine.trainer import build_inference_model
from megatron_lwz.models.presets import resolve
from megatron_lwz.models.reward_head import attach_reward_head
from megatron_lwz.rewards.writing_rm import score_token_lists
from tests.distributed.workerlib import parse_layout, run_layouts


def run_layout(name: str, args) -> list[float]:
    init_path, write_init = args.init, args.write_init
    pcfg = parse_layout(name, seed=3)
    ctx = parallel.init_model_parallel(pcfg)
    model_cfg = ModelConfig(preset="tiny")
    arch = resolve(model_cfg)
    rm = build_inference_model(model=model_cfg, parallel=pcfg, precision=PrecisionConfig(dtype="fp32"), ctx=ctx,
                               post_build=lambda c: attach_reward_head(c, arch.hidden_size, 0.5))
    if write_init:
        torch.save(gather_full_state(rm.unwrapped(), ctx, False), init_path)
    load_full_state(rm.unwrapped(), torch.load(init_path), ctx, False)
    gen = torch.Generator().manual_seed(4)
    seqs = [torch.randint(1, arch.vocab_size, (int(n),), generator=gen).tolist() for n in (5, 9, 3, 12, 7, 7, 2)]
    scores = score_token_lists(rm, seqs, micro_batch_size=2, pad_id=0)
    parallel.destroy_model_parallel()
    return scores


if __name__ == "__main__":
    run_layouts(run_layout)

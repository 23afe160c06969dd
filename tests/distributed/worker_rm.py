"""Worker: Writing-RM scores (scalar head on the last token) at several layouts from one init."""

from __future__ import annotations

import argparse
import json
import re

import torch

from megatron_lwz import parallel
from megatron_lwz.checkpoint.full_state import gather_full_state, load_full_state
from megatron_lwz.config.schema import ModelConfig, ParallelConfig, PrecisionConfig
from megatron_lwz.engine.trainer import build_inference_model
from megatron_lwz.models.presets import resolve
from megatron_lwz.models.reward_head import attach_reward_head
from megatron_lwz.rewards.writing_rm import score_token_lists


def layout(text: str) -> ParallelConfig:
    sizes = {k: int(v) for k, v in re.findall(r"(tp|pp)(\d+)", text)}
    return ParallelConfig(tensor_parallel=sizes.get("tp", 1), pipeline_parallel=sizes.get("pp", 1), seed=3)


def run_layout(name: str, init_path: str, write_init: bool) -> list[float]:
    pcfg = layout(name)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layouts", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--write-init", action="store_true")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    parallel.init(layout(args.layouts.split(",")[0]))
    parallel.destroy_model_parallel()
    res = {lay: run_layout(lay, args.init, args.write_init) for lay in args.layouts.split(",")}
    if torch.distributed.get_rank() == 0:
        with open(args.out, "w") as fh:
            json.dump(res, fh)
    parallel.shutdown()


if __name__ == "__main__":
    main()

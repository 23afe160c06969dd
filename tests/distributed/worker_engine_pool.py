"""4 ranks as 2 "nodes" (2 ranks each), one HF engine process per node: pool samples equal one
engine's; after every sync both engines hold the trainer's weights; a killed engine fails every
rank fast with one clear error. Rank 0 writes the JSON result."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "rollout"))
from rollout_testlib import ByteTokenizer, tiny_config, tiny_model  # noqa: E402

from megatron_lwz.parallel.rollout_groups import engine_groups  # noqa: E402
from megatron_lwz.rollout.dispatch import predicted_tokens  # noqa: E402
from megatron_lwz.rollout.engine_proc import ProcessEngine  # noqa: E402
from megatron_lwz.rollout.hf_engine import HFRolloutEngine  # noqa: E402
from megatron_lwz.rollout.pool import EnginePool, RolloutPoolError  # noqa: E402
from megatron_lwz.rollout.types import PromptRecord, SamplingParams  # noqa: E402

QUESTIONS = ["hi", "Write a long story about a lighthouse.", "写一首诗", "x = {1, 2}", "short", "tell me"]
RANGES = [(10, 20), (3000, 6000), (100, 200), (50, 60), (5, 10), (900, 1200)]


def ids(groups):
    return [[s.response_token_ids for s in g.samples] for g in groups]


def perturb(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    groups = engine_groups(2, timeout_minutes=5)
    trainer = tiny_model(seed=1)
    engine = ProcessEngine(tiny_config(), ByteTokenizer, init_seed=99) if groups.is_leader else None
    cost = lambda r: predicted_tokens(r, max_tokens=10_000, think_tokens=0)  # noqa: E731
    pool = EnginePool(groups, engine, dispatch="length_aware", cost=cost)
    recs = [PromptRecord(prompt_id=str(i), question=q, length_lower=lo, length_upper=hi)
            for i, (q, (lo, hi)) in enumerate(zip(QUESTIONS, RANGES))]
    texts = [r.question for r in recs]
    params = SamplingParams(n=4, temperature=1.0, top_p=0.95, max_tokens=12, seed=11)
    mine: dict = {"rank": dist.get_rank(), "engine": groups.index, "weights_equal": [], "samples_equal": []}
    for sync in range(2):
        if sync:
            perturb(trainer, seed=sync)
        pool.update_weights((n, p.detach()) for n, p in trainer.named_parameters())
        if groups.is_leader:
            state = engine.state_dict()
            mine["weights_equal"].append(all(torch.equal(state[n], p) for n, p in trainer.named_parameters()))
        got = pool.generate(recs, texts, params)
        want = HFRolloutEngine(trainer, ByteTokenizer()).generate(recs, texts, params)
        mine["samples_equal"].append(ids(got) == ids(want))
    mine["plan"] = [[(s.prompt_index, s.first_sample, s.num_samples) for s in e] for e in pool.plan(recs, params.n)]
    dist.barrier()
    if groups.index == 1 and groups.is_leader:
        os.kill(engine.process.pid, signal.SIGKILL)
        engine.process.join(timeout=10)
    dist.barrier()
    start = time.monotonic()
    try:
        pool.generate(recs, texts, params)
        mine["error"] = None
    except RolloutPoolError as err:
        mine["error"] = str(err)
    mine["fail_s"] = time.monotonic() - start
    pool.close()
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    if dist.get_rank() == 0:
        Path(args.out).write_text(json.dumps(everyone))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

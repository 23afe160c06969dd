"""Worker: train a tiny Qwen2 for 3 Adam steps under several layouts in one launch.

Run under torchrun. ``--layouts tp1pp1`` with 1 process is the reference: it also writes the
initial full state (``--init``) that every other layout loads, so all layouts start equal.
Each layout records per-step losses, grad norms, the final full parameters and the per-token
log-probs of a probe batch.
"""

from __future__ import annotations

import torch

from megatron_lwz import parallel
from megatron_lwz.checkpoint.full_state import gather_full_state, load_full_state
from megatron_lwz.config.schema import (
    ModelConfig, OptimConfig, PrecisionConfig, SchedulerConfig,
)
from megatron_lwz.engine.logprobs import token_logprobs
from megatron_lwz.engine.step import forward_only, train_step
from megatron_lwz.engine.trainer import build_trainer
from tests.distributed.workerlib import parse_layout, run_layouts

NUM_MB, MBS, SEQ, STEPS = 8, 2, 16, 3


def make_data(vocab: int):
    gen = torch.Generator().manual_seed(7)
    steps = []
    for _ in range(STEPS):
        tokens = torch.randint(0, vocab, (NUM_MB, MBS, SEQ + 1), generator=gen)
        mask = torch.ones(NUM_MB, MBS, SEQ)
        mask[:, :, :3] = 0  # an uneven loss mask exercises the global token normaliser
        steps.append([{"tokens": t[:, :-1], "labels": t[:, 1:], "loss_mask": m,
                       "position_ids": torch.arange(SEQ).expand(MBS, SEQ)} for t, m in zip(tokens, mask)])
    return steps


def run_layout(layout: str, args) -> dict:
    model_cfg, init_path, write_init, tied = ModelConfig(preset=args.preset, tie_word_embeddings=args.tied), \
        args.init, args.write_init, args.tied
    pcfg = parse_layout(layout, distributed_optimizer=True, seed=1234)
    ctx = parallel.init_model_parallel(pcfg)
    trainer = build_trainer(model=model_cfg, parallel=pcfg, precision=PrecisionConfig(dtype="fp32"),
                            optim=OptimConfig(lr=1e-3, weight_decay=0.01, clip_grad=1.0, adam_beta2=0.999),
                            scheduler=SchedulerConfig(decay_style="constant"), total_steps=STEPS, ctx=ctx)
    if write_init:
        torch.save(gather_full_state(trainer.unwrapped(), ctx, tied), init_path)
    load_full_state(trainer.unwrapped(), torch.load(init_path), ctx, tied)
    steps = make_data(trainer.arch.vocab_size)
    total = float(sum(mb["loss_mask"].sum() for mb in steps[0]))

    def forward_fn(model, batch):
        return model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])

    def loss_fn(batch, per_token):  # per_token: (B, T) cross entropy
        masked = per_token.float() * batch["loss_mask"]
        return masked.sum() / total, {"loss": masked.sum() / total}

    per = NUM_MB // ctx.dp
    losses, norms = [], []
    for mbs in steps:
        mine = mbs[ctx.dp_rank * per:(ctx.dp_rank + 1) * per]
        result = train_step(trainer, mine, forward_fn, loss_fn, seq_length=SEQ, micro_batch_size=MBS)
        losses.append(result.report["loss"])
        norms.append(result.grad_norm)

    def logits_fn(model, batch):
        return model(batch["tokens"], batch["position_ids"], None)

    probe = steps[0][2 * ctx.dp_rank:2 * ctx.dp_rank + 2]  # 2 micro-batches: interleaving needs ≥ PP
    lps = forward_only(trainer, probe, logits_fn,
                       lambda b, logits: token_logprobs(logits, b["labels"], ctx.tp_group), SEQ, MBS)
    final = gather_full_state(trainer.unwrapped(), ctx, tied)
    out = {"losses": losses, "grad_norms": norms,
           "params": {k: v.flatten().tolist() for k, v in final.items()},
           "logprobs": lps[0].flatten().tolist() if (lps and ctx.dp_rank == 0) else None}
    # The probe log-probs live on the last stage (DP rank 0); hand them to global rank 0.
    gathered = [None] * ctx.world_size
    torch.distributed.all_gather_object(gathered, out["logprobs"])
    out["logprobs"] = next((g for g in gathered if g is not None), None)
    parallel.destroy_model_parallel()
    return out


def _extra(ap) -> None:
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--tied", action="store_true")


if __name__ == "__main__":
    run_layouts(run_layout, _extra)

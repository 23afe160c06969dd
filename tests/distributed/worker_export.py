"""Worker: Megatron (TP/PP) → HF export, checked against transformers' Qwen2ForCausalLM.

For each layout: build the tiny-gqa3 model (or tied variant) from the reference init, export with
``rollout.export.iter_hf_weights`` on every rank, load into HF ``Qwen2ForCausalLM`` with
``strict=True``, compare logits with the megatron model; then run one training step, push the new
weights into the HF rollout engine with ``update_weights`` and compare again, plus rollout
log-probs vs trainer log-probs on generated samples.
"""

from __future__ import annotations

import torch

from megatron_lwz import parallel
from megatron_lwz.checkpoint.full_state import gather_full_state, load_full_state
from megatron_lwz.config.schema import ModelConfig, OptimConfig, PrecisionConfig, SchedulerConfig
from megatron_lwz.engine.step import forward_only, train_step
from megatron_lwz.engine.trainer import build_trainer
from megatron_lwz.rollout.export import iter_hf_weights
from tests.distributed.workerlib import parse_layout, run_layouts

SEQ, MBS = 12, 2


def megatron_logits(trainer, tokens: torch.Tensor) -> torch.Tensor | None:
    """Full-vocab logits (B, T, V) on every rank (TP-gathered, sent from the last stage)."""
    ctx = trainer.ctx
    batch = {"tokens": tokens, "position_ids": torch.arange(tokens.shape[1]).expand_as(tokens)}

    def fwd(model, b):
        return model(b["tokens"], b["position_ids"], None)

    def collect(b, logits):
        parts = [torch.empty_like(logits) for _ in range(ctx.tp)]
        torch.distributed.all_gather(parts, logits.contiguous(), group=ctx.tp_group)
        return torch.cat(parts, dim=-1)

    out = forward_only(trainer, [batch, batch] if ctx.vpp else [batch], fwd, collect, tokens.shape[1], len(tokens))
    holder = [out[0] if out else None]
    torch.distributed.broadcast_object_list(holder, src=torch.distributed.get_world_size() - 1)
    return holder[0]


def hf_model(arch, state) -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(Qwen2Config(**arch.to_hf_config(), torch_dtype="float32")).eval()
    if arch.tie_word_embeddings:  # like HF checkpoints, the export omits the tied lm_head; HF's
        state = {**state, "lm_head.weight": state["model.embed_tokens.weight"]}  # state_dict lists it
    model.load_state_dict(state, strict=True)
    return model


def run_layout(name: str, args) -> dict:
    preset, tied, init_path, write_init = args.preset, args.tied, args.init, args.write_init
    pcfg = parse_layout(name, seed=99)
    ctx = parallel.init_model_parallel(pcfg)
    trainer = build_trainer(model=ModelConfig(preset=preset, tie_word_embeddings=tied), parallel=pcfg,
                            precision=PrecisionConfig(dtype="fp32"), optim=OptimConfig(lr=1e-2, weight_decay=0.0),
                            scheduler=SchedulerConfig(decay_style="constant"), total_steps=1, ctx=ctx)
    if write_init:
        torch.save(gather_full_state(trainer.unwrapped(), ctx, tied), init_path)
    load_full_state(trainer.unwrapped(), torch.load(init_path), ctx, tied)
    arch = trainer.arch
    tokens = torch.randint(0, arch.vocab_size, (MBS, SEQ), generator=torch.Generator().manual_seed(3))
    shm = False if args.no_shm else None  # False: the collectives path GPUs and multi-host runs use
    state = dict(iter_hf_weights(trainer.unwrapped(), ctx, arch, bucket_bytes=64 * 1024, shm=shm))
    hf = hf_model(arch, state)
    ours = megatron_logits(trainer, tokens)[..., : arch.vocab_size]
    with torch.no_grad():
        diff_before = (hf(tokens).logits - ours).abs().max().item()
    # One optimizer step, then push the new weights into the HF rollout engine.
    from megatron_lwz.rollout.hf_engine import HFRolloutEngine

    batch = {"tokens": tokens, "labels": torch.roll(tokens, -1, 1), "position_ids": torch.arange(SEQ).expand(MBS, SEQ)}
    mbs = [batch, batch] if ctx.vpp else [batch]
    train_step(trainer, mbs, lambda m, b: m(b["tokens"], b["position_ids"], None, labels=b["labels"]),
               lambda b, loss: (loss.float().mean() / len(mbs), {"loss": loss.float().mean().detach()}), SEQ, MBS)

    class Tok:
        eod = arch.vocab_size - 1
        def encode(self, text): return [int(x) for x in text.split()]
        def decode(self, ids): return " ".join(str(i) for i in ids) + " "

    engine = HFRolloutEngine(hf, Tok())
    engine.update_weights(iter_hf_weights(trainer.unwrapped(), ctx, arch, shm=shm))
    after = megatron_logits(trainer, tokens)[..., : arch.vocab_size]
    with torch.no_grad():
        diff_after = (hf(tokens).logits - after).abs().max().item()
        moved = (after - ours).abs().max().item()
    # rollout log-probs of sampled continuations vs the trainer's recomputed log-probs
    from megatron_lwz.rollout.types import PromptRecord, SamplingParams

    prompt = PromptRecord(prompt_id="p", question="q", length_lower=1, length_upper=2)
    groups = engine.generate([prompt], [" ".join(map(str, tokens[0, :6].tolist()))],
                             SamplingParams(n=2, temperature=1.0, max_tokens=6, seed=5))
    lp_diff = 0.0
    for sample in groups[0].samples:
        seq = torch.tensor([sample.prompt_token_ids + sample.response_token_ids])
        full = megatron_logits(trainer, seq)
        lps = torch.log_softmax(full[0, :-1, : arch.vocab_size].float(), -1)
        start = len(sample.prompt_token_ids) - 1
        mine = lps[start:].gather(1, seq[0, start + 1:, None]).squeeze(1)
        lp_diff = max(lp_diff, (mine - torch.tensor(sample.rollout_logprobs)).abs().max().item())
    parallel.destroy_model_parallel()
    return {"logits_before": diff_before, "logits_after": diff_after, "moved": moved, "rollout_logprob": lp_diff,
            "names": sorted(state)}


def _extra(ap) -> None:
    ap.add_argument("--preset", default="tiny-gqa3")
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--no-shm", action="store_true", help="export over collectives, not shared memory")


if __name__ == "__main__":
    run_layouts(run_layout, _extra)

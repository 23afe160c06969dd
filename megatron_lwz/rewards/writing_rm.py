"""Writing RM scoring (batched, any TP/PP/DP) and the Bradley–Terry pair loss (paper Eq. 4).

``score_texts`` is what GRPO calls: (prompt, answer) pairs → one scalar each, computed on the same
allocation as the policy. Each DP rank scores a contiguous share; scores are all-gathered so every
rank returns the full list.

Scale: Eq. 4 only sees score differences between two answers to the same prompt, so a trained RM's
scores carry an arbitrary per-prompt offset (the demo RM gives ≈ +2.4 on English and ≈ −0.8 on Chinese
prompts for answers of similar quality). GRPO is unaffected (Eq. 5 normalises within each group);
comparisons over time need a fixed prompt set (``rl.eval``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist

from megatron_lwz.engine.step import forward_only
from megatron_lwz.models.reward_head import last_token_scores
from megatron_lwz.models.presets import round_up
from megatron_lwz.rewards.rm_data import encode_pair_side, pad_batch


def forward_scores(model, batch: dict) -> torch.Tensor:
    """(B, T, 1) scores on the last stage; hidden states elsewhere."""
    return model(batch["tokens"], batch["position_ids"], None)


def bt_loss_fn(total_pairs: float):
    """Eq. 4 contribution of a micro-batch of m pairs (rows: m chosen, then m rejected)."""

    def loss_fn(batch: dict, scores: torch.Tensor):
        margin = pair_margins(batch, scores)  # (m,)
        m = margin.numel()
        loss = -torch.nn.functional.logsigmoid(margin).sum()
        return loss / total_pairs, {"loss": loss.detach() / total_pairs, "pairs": torch.tensor(float(m)),
                                    "correct": (margin > 0).float().sum(), "margin": margin.detach().sum()}

    return loss_fn


def pair_margins(batch: dict, scores: torch.Tensor) -> torch.Tensor:
    """r(x, y_w) − r(x, y_l) for the real pairs of a micro-batch: (m,)."""
    r = last_token_scores(scores, batch["lengths"])  # (2·side,)
    m, side = int(batch["num_pairs"]), int(batch["side"])
    return r[:m] - r[side:side + m]


def pair_eval_collect(batch: dict, scores: torch.Tensor) -> dict[str, torch.Tensor]:
    margin = pair_margins(batch, scores)
    m = margin.numel()
    return {"pairs": torch.tensor(float(m)), "correct": (margin > 0).float().sum(), "margin": margin.sum(),
            "loss": -torch.nn.functional.logsigmoid(margin).sum()}


@torch.no_grad()
def score_token_lists(trainer, seqs: Sequence[list[int]], *, micro_batch_size: int, pad_id: int,
                      pad_to: int | None = None) -> list[float]:
    """Score already-tokenised sequences; every rank returns all scores in input order."""
    ctx = trainer.ctx
    per = (len(seqs) + ctx.dp - 1) // ctx.dp
    lo, hi = min(len(seqs), ctx.dp_rank * per), min(len(seqs), (ctx.dp_rank + 1) * per)
    mine = list(seqs[lo:hi])
    # With PP every micro-batch must share one shape (p2p buffers): pad to the longest of the share.
    length = pad_to or (round_up(max((len(s) for s in mine), default=1), trainer.seq_multiple) if ctx.pp > 1 else None)
    chunks = [mine[i:i + micro_batch_size] for i in range(0, len(mine), micro_batch_size)]
    if ctx.pp > 1:  # and one row count: pad the last chunk with one-token dummies (scores dropped)
        chunks = [c + [[pad_id]] * (micro_batch_size - len(c)) for c in chunks]
    mbs = [pad_batch(c, pad_id, length, trainer.seq_multiple) for c in chunks]
    seq_len = length or max((b["tokens"].shape[1] for b in mbs), default=1)
    out = forward_only(trainer, mbs, forward_scores,
                       lambda b, s: last_token_scores(s, b["lengths"]), seq_len, micro_batch_size) if mbs else []
    # Device tensors of one fixed size per rank (``per``) on the NCCL groups — no pickled objects.
    share = torch.zeros(max(per, 1), dtype=torch.float32, device=ctx.device)  # (per,)
    if out:
        share[: len(mine)] = torch.cat(out).float()[: len(mine)]
    if ctx.pp > 1:  # scores live on the last stage
        dist.broadcast(share, src=dist.get_global_rank(ctx.pp_group, ctx.pp - 1), group=ctx.pp_group)
    if ctx.dp > 1:
        gathered = torch.empty(ctx.dp * share.numel(), dtype=share.dtype, device=ctx.device)  # (DP·per,)
        dist.all_gather_into_tensor(gathered, share, group=ctx.dp_group)
        share = gathered
    values = share.cpu().tolist()
    counts = [max(0, min(len(seqs), (r + 1) * per) - min(len(seqs), r * per)) for r in range(ctx.dp)]
    width = max(per, 1)
    return [x for r, n in enumerate(counts) for x in values[r * width: r * width + n]]


class WritingRMScorer:
    """``scorer(prompts, answers) -> list[float]``: the Writing RM as GRPO's batched reward callable."""

    def __init__(self, trainer, tokenizer, *, max_length: int, max_prompt_tokens: int, micro_batch_size: int):
        self.trainer = trainer
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_prompt_tokens = max_prompt_tokens
        self.micro_batch_size = micro_batch_size

    def __call__(self, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
        seqs = [encode_pair_side(self.tokenizer, p, a, self.max_length, self.max_prompt_tokens)
                for p, a in zip(prompts, answers)]
        return score_token_lists(self.trainer, seqs, micro_batch_size=self.micro_batch_size,
                                 pad_id=self.tokenizer.pad_id)

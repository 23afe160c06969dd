"""The phases of one GRPO iteration (LongWriter-Zero, paper §4–5), each a plain function.

* rollout: G samples per prompt; each DP replica generates its contiguous share of the prompts
  (HF engine, seed = base + step + 1000·dp_rank) and the groups are all-gathered, or rank 0 drives
  vLLM and broadcasts them. Every rank ends with the same groups.
* old log-probs: recomputed by the trainer before any update (on-policy ⇒ ratio exactly 1 at the
  first mini-batch), or the rollout engine's (``loss.logprob_source='rollout'``, optional TIS).
  The rollout-vs-trainer gap is measured every iteration (``rollout.verify_*``).
* train: ``batching.num_minibatches`` optimizer steps; each mini-batch is packed into micro-batches
  under a token budget and balanced over DP; loss = ``rl.loss.policy_loss`` (clipped surrogate,
  ε_low/ε_high, β·KL, chosen aggregation) with global normalisers.
* sync: Megatron shards → HF tensors (``rollout.export``) → engine, bucketed, no disk.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from megatron_lwz.config.alignment import sequence_multiple
from megatron_lwz.engine.logprobs import token_entropy, token_logprobs
from megatron_lwz.engine.step import StepResult, forward_only, train_step
from megatron_lwz.models.presets import round_up
from megatron_lwz.rl.batching import TrainBatch, pack_microbatches
from megatron_lwz.rl.loss import count_normalisers, policy_loss, summarize_metrics
from megatron_lwz.rollout.export import iter_hf_weights
from megatron_lwz.rollout.templates import format_prompt
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, SamplingParams


def sampling_params(cfg, step: int, dp_rank: int) -> SamplingParams:
    rl = cfg.rl
    return SamplingParams(n=rl.group_size, temperature=rl.temperature, top_p=rl.top_p, max_tokens=rl.max_tokens,
                          stop=list(rl.stop), seed=rl.seed + step + 1000 * dp_rank, logprobs=True)


def rollout(engine, engine_kind: str, prompts: list[PromptRecord], cfg, step: int, ctx,
            params=sampling_params) -> list[RolloutGroup]:
    """Generate ``params(cfg, step, dp_rank).n`` samples per prompt (default: the training rollout's
    ``rl.group_size``); identical groups on every rank afterwards."""
    texts = [format_prompt(p.question, cfg.prompts.template) for p in prompts]
    if hasattr(engine, "collect"):  # engine pool (rollout/pool.py): per-sample seeds, dispatch by length
        return engine.generate(prompts, texts, params(cfg, step, 0))
    if engine_kind == "vllm":  # rank 0 drives vLLM; the others wait on the host group, not in NCCL
        return ctx.share_from_rank0(engine.generate, prompts, texts, params(cfg, step, 0))
    per = (len(prompts) + ctx.dp - 1) // ctx.dp
    lo, hi = min(len(prompts), ctx.dp_rank * per), min(len(prompts), (ctx.dp_rank + 1) * per)
    mine = engine.generate(prompts[lo:hi], texts[lo:hi], params(cfg, step, ctx.dp_rank)) if hi > lo else []
    if ctx.dp == 1:
        return mine
    parts: list = [None] * ctx.dp
    dist.all_gather_object(parts, mine, group=ctx.dp_group)
    return [g for part in parts for g in part]


def _fit_columns(t: torch.Tensor, width: int, fill: int | float) -> torch.Tensor:
    """(B, T) → (B, width): truncate, or right-pad with ``fill``."""
    if t.shape[1] >= width:
        return t[:, :width]
    return torch.cat([t, t.new_full((t.shape[0], width - t.shape[1]), fill)], dim=1)


def _microbatch(batch: TrainBatch, rows: list[int], length: int | None, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Columns trimmed to the longest row rounded up to ``multiple`` (TP under sequence parallelism),
    or fitted to ``length`` when every micro-batch needs one shape."""
    sub = batch.select(rows)
    width = length or round_up(int(sub.lengths.max()), multiple)
    pad = batch.pad_token_id
    out = {"tokens": _fit_columns(sub.tokens, width, pad), "labels": _fit_columns(sub.labels, width, pad),
           "loss_mask": _fit_columns(sub.loss_mask, width, 0), "position_ids": torch.arange(width).expand(len(rows), width),
           "advantages": sub.advantages}
    for key in ("rollout_logprobs", "old_logprobs", "ref_logprobs"):
        value = getattr(sub, key)
        if value is not None:
            out[key] = _fit_columns(value, width, 0.0)
    return out


def _pad_rows(mb: dict[str, torch.Tensor], rows: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Append empty rows (pad tokens, loss_mask 0, advantage 0): they add nothing to loss or grads."""
    extra = rows - len(mb["tokens"])
    if extra <= 0:
        return mb
    out = {}
    for key, value in mb.items():
        fill = pad_id if key in ("tokens", "labels") else 0
        out[key] = torch.cat([value, value.new_full((extra, *value.shape[1:]), fill)])
    out["position_ids"] = mb["position_ids"][:1].expand(rows, -1)
    return out


def plan_minibatch(batch: TrainBatch, cfg, ctx) -> list[dict[str, torch.Tensor]]:
    """This DP rank's micro-batches of one mini-batch (token-budget packing, balanced over DP).

    With PP > 1 the pipeline's p2p buffers need one (B, T) for every micro-batch, so micro-batches
    are padded to the longest row and to the largest row count of this rank's plan.
    """
    lengths = [int(x) for x in batch.lengths]
    plan = pack_microbatches(lengths, cfg.rl.batching.micro_token_budget, ctx.dp)[ctx.dp_rank]
    multiple = sequence_multiple(ctx.tp, cfg.parallel.sequence_parallel, cfg.precision.fp8, cfg.precision.fp8_recipe)
    if ctx.pp == 1:
        return [_microbatch(batch, rows, None, multiple) for rows in plan]
    width, most = round_up(max(lengths), multiple), max(len(rows) for rows in plan)
    return [_pad_rows(_microbatch(batch, rows, width), most, batch.pad_token_id) for rows in plan]


def forward_logits(model, mb: dict) -> torch.Tensor:
    return model(mb["tokens"], mb["position_ids"], None)  # (B, T, V/TP) on the last stage


def attach_logprobs(trainer, mbs: list[dict], key: str) -> None:
    """Trainer log-probs (B, T) of every micro-batch under the current weights, stored as ``mb[key]``."""
    if not mbs:
        return
    ctx = trainer.ctx
    seq = int(mbs[0]["tokens"].shape[1])
    vocab = trainer.arch.vocab_size
    out = forward_only(trainer, mbs, forward_logits,
                       lambda b, logits: token_logprobs(logits, b["labels"], ctx.tp_group, vocab_size=vocab,
                                                        tp_rank=ctx.tp_rank).detach(), seq, len(mbs[0]["tokens"]))
    for mb, lp in zip(mbs, out):  # only the last stage gets outputs (and computes the loss)
        mb[key] = lp


def logprob_gap(mbs: list[dict], ctx) -> dict[str, float]:
    """Rollout-engine vs trainer log-prob gap over response tokens (max over all ranks, mean).

    Computed on ``ctx.device``: trainer log-probs come from the model (GPU), rollout log-probs and
    masks from the host batch, and the all-reduce runs on the default (NCCL) group."""
    device = ctx.device
    gap_max = torch.zeros((), dtype=torch.float64, device=device)
    gap_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    for mb in mbs:
        if "old_logprobs" in mb and "rollout_logprobs" in mb:
            mask = mb["loss_mask"].to(device).bool()
            diff = (mb["old_logprobs"].to(device) - mb["rollout_logprobs"].to(device)).abs()[mask].double()
            if diff.numel():
                gap_max = torch.maximum(gap_max, diff.max())
                gap_sum += diff.sum()
                count += diff.numel()
    dist.all_reduce(gap_max, op=dist.ReduceOp.MAX)
    stacked = torch.stack([gap_sum, count])
    dist.all_reduce(stacked)
    stacked = stacked.cpu()
    return {"rollout/logprob_gap_max": float(gap_max.cpu()),
            "rollout/logprob_gap_mean": float(stacked[0] / stacked[1].clamp(min=1))}


def make_loss_fn(cfg, ctx, vocab_size: int, num_tokens: int, num_seqs: int):
    """Micro-batch loss: ``policy_loss`` on vocab-parallel log-probs (entropy only for metrics unless weighted)."""
    loss_cfg = cfg.rl.loss
    kw = {"vocab_size": vocab_size, "tp_rank": ctx.tp_rank}

    def loss_fn(mb: dict, logits: torch.Tensor):
        # Entropy first: megatron's vocab-parallel cross entropy overwrites its fp32 input in place.
        with torch.set_grad_enabled(loss_cfg.entropy_coef > 0 and torch.is_grad_enabled()):
            entropy = token_entropy(logits, ctx.tp_group, **kw)  # (B, T)
        logprobs = token_logprobs(logits, mb["labels"], ctx.tp_group, **kw)  # (B, T)
        return policy_loss(logprobs, mb["old_logprobs"], mb["advantages"], mb["loss_mask"], loss_cfg,
                           num_tokens_global=num_tokens, num_seqs_global=num_seqs, ref_logprobs=mb.get("ref_logprobs"),
                           rollout_logprobs=mb.get("rollout_logprobs"), entropy=entropy)

    return loss_fn


def train_minibatch(trainer, minibatch: TrainBatch, mbs: list[dict], cfg) -> tuple[StepResult, dict[str, float]]:
    """One optimizer step on a mini-batch; returns the step result and summarised loss metrics."""
    num_tokens, num_seqs = count_normalisers(minibatch.loss_mask)
    seq = int(mbs[0]["tokens"].shape[1])
    result = train_step(trainer, mbs, forward_logits, make_loss_fn(cfg, trainer.ctx, trainer.arch.vocab_size, num_tokens, num_seqs),
                        seq_length=seq, micro_batch_size=len(mbs[0]["tokens"]))
    return result, summarize_metrics(result.report)


def engine_dtype(engine, rollout_cfg) -> torch.dtype:
    """The dtype the engine computes in: its model's (HF engine, always fp32 on CPU) or the config's (vLLM).

    Exporting in any other dtype would silently round the weights (bf16 export into an fp32 engine
    shows up as a 1e-2 rollout-vs-trainer log-prob gap)."""
    if getattr(engine, "compute_dtype", None) is not None:  # engine pool
        return engine.compute_dtype
    model = getattr(engine, "model", None)
    if isinstance(model, torch.nn.Module):
        return next(model.parameters()).dtype
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(rollout_cfg.dtype, torch.float32)


def sync_weights(trainer, engine, rollout_cfg, staging=None) -> dict[str, float]:
    """Push the trainer's weights into the rollout engine (every rank, in lockstep).

    ``staging``: export buffers kept across syncs (``rollout.export.ExportStaging``), so a CPU sync
    does not re-fault fresh shared-memory pages every iteration."""
    start = time.perf_counter()
    dtype = engine_dtype(engine, rollout_cfg)
    # No engine.wake() here: after a level-2 sleep the weights are discarded, and update_weights
    # itself wakes the weights, loads them, then wakes the KV cache (vllm_engine.py).
    report = engine.update_weights(iter_hf_weights(trainer.unwrapped(), trainer.ctx, trainer.arch, dtype=dtype,
                                                   bucket_bytes=rollout_cfg.bucket_bytes, staging=staging))
    seconds = time.perf_counter() - start
    nbytes = float(getattr(report, "num_bytes", 0) or 0)
    return {"time/sync_s": seconds, "sync/gbytes": nbytes / 1e9}


def set_old_logprobs(trainer, plans: list[list[dict]], cfg, reference=None) -> dict[str, float]:
    """Fill ``old_logprobs`` (and ``ref_logprobs`` when β > 0) of every micro-batch before the first
    update; return the rollout-vs-trainer log-prob gap."""
    for plan in plans:
        if reference is not None:
            attach_logprobs(reference, plan, "ref_logprobs")
        if cfg.rl.loss.logprob_source == "recompute":
            attach_logprobs(trainer, plan, "old_logprobs")
        else:
            for mb in plan:
                mb["old_logprobs"] = mb["rollout_logprobs"]
    if cfg.rl.loss.logprob_source == "recompute":
        return logprob_gap([mb for plan in plans for mb in plan], trainer.ctx)
    return {}



def check_logprob_gap(metrics: dict[str, float], rollout_cfg, step: int, sync_index: int) -> None:
    """Raise ``WeightSyncMismatch`` when verification is due and the mean rollout-vs-trainer gap is too large.

    ``sync_index`` counts the weight syncs of *this run* (0 = the first after start or resume), so a
    resumed run verifies its first sync too, then every ``rollout.verify_every``."""
    from megatron_lwz.rollout.verify import WeightSyncMismatch

    gap = metrics.get("rollout/logprob_gap_mean", 0.0)
    if rollout_cfg.should_verify(sync_index) and gap > rollout_cfg.verify_threshold:
        raise WeightSyncMismatch(f"step {step}: mean |rollout − trainer| log-prob gap {gap:.3g} > "
                                 f"rollout.verify_threshold={rollout_cfg.verify_threshold} (wrong weights?)")

"""GRPO policy loss: token-level clipped surrogate (paper Eq. 1–2) with KL, entropy, dual-clip and TIS.

Per response token t of sample i (advantage A_i from rl/advantage.py, paper Eq. 5, broadcast to tokens):

    ρ_t  = exp(logp_t − old_t)                                         PPO ratio vs π_θold
    pg_t = −min(ρ_t·A, clip(ρ_t, 1 − ε_low, 1 + ε_high)·A)              ε_low = ε_high = 0.2 in the paper
         (dual-clip, optional, A < 0 only: pg_t = min(pg_t, −c·A))
    pg_t ← w_t·pg_t,  w_t = min(exp(old_t − rollout_t), C), detached   TIS (optional, see below)
    l_t  = pg_t + β·KL_t − η·H_t               KL_t: k3 = exp(ref − logp) − (ref − logp) − 1

The paper writes Eq. 1 with a sequence-level ratio and β = 0; like every peer trainer (verl, slime,
NeMo-RL, OpenRLHF) we apply the ratio and clip per token, which is what "GRPO" means in practice.

TIS (truncated importance sampling, verl/slime ``tis``). The samples were drawn by the rollout engine
(vLLM, maybe FP8), whose probabilities differ slightly from the trainer's even at equal weights. With
``logprob_source='recompute'`` ``old_t`` is the trainer's own forward under θ_old, so the PPO ratio is
a pure trainer/trainer ratio and the engine mismatch is corrected by the *separate*, detached weight
w_t = min(π_old,trainer(t) / π_rollout(t), C) = min(exp(old_t − rollout_t), C) — exactly slime's
``tis = exp(old_log_probs − rollout_log_probs)`` (without its lower clamp) and verl's ``tis_imp_ratio``.
With ``logprob_source='rollout'`` the caller passes the rollout log-probs as ``old``: the PPO ratio is
then π_θ/π_rollout and already carries the correction (clipped by ε), so TIS is rejected by LossConfig.

Aggregation and its length bias (N_tok: loss tokens of the mini-batch, N_seq: its sequences with at
least one loss token, |o_i|: loss tokens of sample i, L_norm: the constant ``norm_length``):

* ``token-mean`` (DAPO, verl's default): loss = Σ_i Σ_t l_it / N_tok. Every token weighs the same, so a
  sample's total weight grows with its length: a long bad answer is punished, and a long good answer
  rewarded, in proportion to its length. No per-sample length bias; only the step size varies with the
  batch's total length. Default for LongWriter's 14K-token outputs.
* ``seq-mean-token-mean`` (original GRPO/DeepSeekMath): loss = (1/N_seq) Σ_i (1/|o_i|) Σ_t l_it. Every
  sample weighs the same, so each token of a long sample weighs 1/|o_i| less. Short good answers get
  larger per-token updates (pushes good answers shorter), long bad answers smaller per-token penalties
  (bad answers drift longer) — the length bias Dr. GRPO identified; it dilutes 14K-token samples 1/14000.
* ``seq-mean-token-sum-norm`` (Dr. GRPO): loss = (1/N_seq) Σ_i Σ_t l_it / L_norm. Each token weighs
  1/(N_seq·L_norm), independent of its sample's length and of the batch's lengths: unbiased w.r.t.
  length; the update magnitude scales with mean length / L_norm (short outputs → smaller effective LR).
  (verl's mode of the same name divides Σ_i by the *padded* width and not by N_seq.)

Distributed contract. A micro-batch sees only part of a mini-batch, so ``policy_loss`` takes the
mini-batch's GLOBAL normalisers (``count_normalisers`` summed over every micro-batch of every DP rank;
the whole mini-batch's loss mask is known on every rank before the update, so no collective is needed)
and returns the micro-batch's CONTRIBUTION: each token carries its final weight (1/N_tok,
1/(|o_i|·N_seq) or 1/(L_norm·N_seq)), so the contributions of all micro-batches and DP ranks SUM to the
mini-batch loss exactly (tests/unit/rl/test_loss_microbatch.py). Sequences are never split across
micro-batches; a context-parallel shard of one may be, if ``seq_num_tokens`` gives each row's full
|o_i|. Gradients must be SUMMED over micro-batches and ranks. With megatron-core's schedule:
  - loss_func returning (loss, reduced): the schedule divides by num_microbatches and DDP averages over
    DP, so return ``contribution · num_microbatches · dp_size``;
  - ``calculate_per_token_loss=True`` and (loss, num_tokens, reduced): DDP sums and grads are divided by
    Σ num_tokens, so return ``(contribution · num_tokens_global, local loss-token count, …)``.
Metrics come back as fp64 sums (keys end in ``_sum`` / ``_count``): all-reduce SUM over micro-batches
and ranks, then call ``summarize_metrics``.

Tensors: logprobs/old/ref/rollout/entropy/loss_mask are (B, T) aligned as in rl/batching.py (column t
scores label t = token t+1); advantages (B,). Pure torch: no megatron, no torch.distributed.
"""

from __future__ import annotations

import torch

from megatron_lwz.rl.config import LossConfig

_LOG_RATIO_LIMIT = 20.0  # exp(±20) stays finite in fp32; a |log-ratio| beyond it is a bug upstream anyway


def count_normalisers(loss_mask: torch.Tensor) -> tuple[int, int]:
    """(loss tokens, sequences with ≥ 1 loss token) of a (B, T) mask; sum these over all micro-batches."""
    per_seq = (loss_mask != 0).sum(dim=-1)  # (B,)
    return int(per_seq.sum()), int((per_seq > 0).sum())


def token_weights(loss_mask: torch.Tensor, cfg: LossConfig, *, num_tokens_global: int, num_seqs_global: int,
                  seq_num_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) final weight of each token in the mini-batch loss (0 off the mask); see the module docstring."""
    mask = (loss_mask != 0).to(torch.float64)  # (B, T)
    if cfg.aggregation == "token-mean":
        if num_tokens_global <= 0:
            raise ValueError(f"num_tokens_global must be > 0 for token-mean, got {num_tokens_global}")
        return mask / num_tokens_global
    if num_seqs_global <= 0:
        raise ValueError(f"num_seqs_global must be > 0 for {cfg.aggregation}, got {num_seqs_global}")
    if cfg.aggregation == "seq-mean-token-mean":
        per_seq = mask.sum(dim=-1) if seq_num_tokens is None else seq_num_tokens.to(mask)  # (B,) |o_i|
        per_seq = per_seq.unsqueeze(-1).clamp(min=1.0)  # (B, 1)
        return mask / (per_seq * num_seqs_global)
    if cfg.aggregation == "seq-mean-token-sum-norm":
        if not cfg.norm_length:
            raise ValueError("loss.norm_length must be set for seq-mean-token-sum-norm (e.g. the rollout max_tokens)")
        return mask / (float(cfg.norm_length) * num_seqs_global)
    raise ValueError(f"loss.aggregation: unknown mode {cfg.aggregation!r}")


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(π_θ ‖ π_ref) from sampled-token log-probs (Schulman's k1/k2/k3)."""
    log_ratio = (ref_logprobs - logprobs).clamp(-_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT)  # log π_ref/π_θ
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    if estimator == "k3":
        return torch.exp(log_ratio) - log_ratio - 1.0
    raise ValueError(f"loss.kl_estimator: unknown estimator {estimator!r}")


def clipped_surrogate(log_ratio: torch.Tensor, adv: torch.Tensor, cfg: LossConfig
                      ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token −min(ρA, clip(ρ)A) (dual-clipped if set). Returns (pg (B,T), ρ (B,T), clip masks)."""
    ratio = torch.exp(log_ratio.clamp(-_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT))  # (B, T)
    unclipped = -ratio * adv
    clipped = -ratio.clamp(1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high) * adv
    pg = torch.maximum(unclipped, clipped)  # = −min(ρA, clip(ρ)A)
    with torch.no_grad():
        masks = {
            "clipped_high": (adv > 0) & (ratio > 1.0 + cfg.clip_eps_high),
            "clipped_low": (adv < 0) & (ratio < 1.0 - cfg.clip_eps_low),
        }
    if cfg.dual_clip is not None:
        capped = torch.minimum(pg, -cfg.dual_clip * adv)
        pg = torch.where(adv < 0, capped, pg)
        with torch.no_grad():
            masks["dual_clipped"] = (adv < 0) & (ratio > cfg.dual_clip)
    return pg, ratio, masks


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                loss_mask: torch.Tensor, cfg: LossConfig, *, num_tokens_global: int, num_seqs_global: int,
                ref_logprobs: torch.Tensor | None = None, rollout_logprobs: torch.Tensor | None = None,
                entropy: torch.Tensor | None = None, seq_num_tokens: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """This micro-batch's contribution to the mini-batch GRPO loss, and its metric sums.

    ``logprobs`` (B, T) carries the gradient; ``old_logprobs``, ``ref_logprobs`` and ``rollout_logprobs``
    (B, T) are treated as constants; ``advantages`` (B,); ``entropy`` (B, T) of π_θ, may carry gradient.
    Values off ``loss_mask`` are ignored (they may be garbage, even inf). Summing the returned scalar over
    all micro-batches and DP ranks of a mini-batch equals the loss under ``cfg.aggregation``.
    ``seq_num_tokens`` (B,): each row's full loss-token count, only needed when rows are context-parallel
    shards under seq-mean-token-mean (default: counted from ``loss_mask``).
    """
    _check_shapes(logprobs, old_logprobs, advantages, loss_mask, ref_logprobs, rollout_logprobs, entropy)
    mask = loss_mask != 0  # (B, T) bool
    dtype = torch.promote_types(logprobs.dtype, torch.float32)  # bf16/fp16 → fp32; fp64 stays (tests)
    logp = logprobs.to(dtype)
    old = old_logprobs.detach().to(dtype)
    adv = advantages.detach().to(dtype).unsqueeze(-1)  # (B, 1)
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    log_ratio = torch.where(mask, logp - old, zero)  # masked first: no NaN gradients from padding
    pg, ratio, clip_masks = clipped_surrogate(log_ratio, adv, cfg)  # (B, T)

    metrics: dict[str, torch.Tensor] = {}
    if rollout_logprobs is not None:
        rollout_gap = torch.where(mask, old - rollout_logprobs.detach().to(dtype), zero)  # log π_old/π_rollout
        raw_w = torch.exp(rollout_gap.clamp(-_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT))
        metrics["rollout_abs_logprob_diff_sum"] = rollout_gap.abs()[mask].sum()
        if cfg.tis:
            tis_w = raw_w.clamp(max=cfg.tis_cap)
            pg = pg * tis_w
            metrics["tis_weight_sum"] = tis_w[mask].sum()
            metrics["tis_capped_count"] = (raw_w > cfg.tis_cap)[mask].sum()
    elif cfg.tis:
        raise ValueError("loss.tis is on but rollout_logprobs was not given (the rollout engine must return log-probs)")

    per_token = pg
    if cfg.kl_coef > 0:
        if ref_logprobs is None:
            raise ValueError(f"loss.kl_coef={cfg.kl_coef} needs ref_logprobs from the frozen reference model")
        ref = torch.where(mask, ref_logprobs.detach().to(dtype), zero)
        kl = kl_estimate(torch.where(mask, logp, zero), ref, cfg.kl_estimator)  # (B, T), 0 off the mask
        per_token = per_token + cfg.kl_coef * kl
        metrics["kl_ref_sum"] = kl.detach()[mask].sum()
    if entropy is not None:
        ent = torch.where(mask, entropy.to(dtype), zero)
        if cfg.entropy_coef > 0:
            per_token = per_token - cfg.entropy_coef * ent
        metrics["entropy_sum"] = ent.detach()[mask].sum()

    weights = token_weights(mask, cfg, num_tokens_global=num_tokens_global, num_seqs_global=num_seqs_global,
                            seq_num_tokens=seq_num_tokens)
    loss = (per_token * weights.to(per_token.device, per_token.dtype)).sum()
    metrics.update(_core_metrics(mask, pg, ratio, log_ratio, clip_masks))
    return loss, {k: v.detach().to(torch.float64) for k, v in metrics.items()}  # fp64: counts reach 10^7+


def _core_metrics(mask: torch.Tensor, pg: torch.Tensor, ratio: torch.Tensor, log_ratio: torch.Tensor,
                  clip_masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        per_seq = mask.sum(dim=-1)
        r = ratio[mask]
        out = {
            "loss_tokens_count": per_seq.sum(),
            "loss_seqs_count": (per_seq > 0).sum(),
            "pg_loss_sum": pg[mask].sum(),
            "ratio_sum": r.sum(),
            "ratio_sq_sum": r.square().sum(),
            # k3 estimate of KL(π_old ‖ π_θ): how far this update has moved from the rollout policy
            "approx_kl_old_sum": (r - 1.0 - log_ratio[mask]).sum(),
        }
        for name, m in clip_masks.items():
            out[f"{name}_count"] = m[mask].sum()
    return out


def summarize_metrics(sums: dict[str, float | torch.Tensor]) -> dict[str, float]:
    """Turn all-reduced metric sums into means/fractions per loss token (call after the SUM all-reduce)."""
    vals = {k: float(v) for k, v in sums.items()}
    tokens = max(vals.get("loss_tokens_count", 0.0), 1.0)
    out: dict[str, float] = {"loss_tokens": vals.get("loss_tokens_count", 0.0),
                             "loss_seqs": vals.get("loss_seqs_count", 0.0)}
    for key, value in vals.items():
        if key in ("loss_tokens_count", "loss_seqs_count"):
            continue
        if key.endswith("_count"):
            out[key[: -len("_count")] + "_frac"] = value / tokens
        elif key.endswith("_sum"):
            out[key[: -len("_sum")] + "_mean"] = value / tokens
    if "ratio_sum" in vals and "ratio_sq_sum" in vals:
        mean = vals["ratio_sum"] / tokens
        out["ratio_std"] = max(vals["ratio_sq_sum"] / tokens - mean * mean, 0.0) ** 0.5
        out.pop("ratio_sq_mean", None)
    return out


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T) log-softmax of ``logits`` (B, T, V) at ``labels`` (B, T) — the trainer-side logp_t (no TP)."""
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    return logp.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B, T) entropy H = logsumexp(z) − Σ softmax(z)·z of the next-token distribution (no TP)."""
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(dim=-1)


def _check_shapes(logprobs, old, advantages, mask, ref, rollout, entropy) -> None:
    shape = tuple(logprobs.shape)
    if len(shape) != 2:
        raise ValueError(f"logprobs must be (B, T), got {shape}")
    named = {"old_logprobs": old, "loss_mask": mask, "ref_logprobs": ref, "rollout_logprobs": rollout,
             "entropy": entropy}
    for name, t in named.items():
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{name} must have the shape of logprobs {shape}, got {tuple(t.shape)}")
    if tuple(advantages.shape) != shape[:1]:
        raise ValueError(f"advantages must be (B,) = ({shape[0]},), got {tuple(advantages.shape)}")

"""Weight-sync verification: compare rollout-engine log-probs with the trainer's on a probe batch.

After a trainer → rollout weight sync, both sides hold the same policy π_θ, so for the same token
sequences the rollout engine's per-token ``log π(token)`` (``raw_logprobs`` mode, see
:mod:`megatron_lwz.rollout.sampling`) must equal the trainer's recomputed log-probs up to
numerical noise (fp32 CPU: ~1e-5; bf16 GPU kernels: a few 1e-2 at most on real models). A
larger gap means a broken export (wrong QKV split, stale conversion cache, tied embedding
mix-up, padded vocabulary …) — the silent reward-collapse failure that peers guard with a
first-sync check (slime ``--check-weight-update-equal``, NeMo-RL ``token_mult_prob_error``,
reference peers.md §9.4). We report

* ``max_abs`` / ``mean_abs``: max / mean over valid tokens of ``|lp_rollout − lp_trainer|``;
* ``mult_prob_error``: NeMo-RL's ``mean(exp(|lp_rollout − lp_trainer|))`` (1.0 = identical).

:func:`verify_logprobs` raises :class:`WeightSyncMismatch` when ``max_abs`` exceeds the threshold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch

LOG = logging.getLogger(__name__)

PerToken = Union[torch.Tensor, Sequence[float]]


class WeightSyncError(ValueError):
    """A weight update named an unknown parameter, had a wrong shape, or left parameters unset."""


class WeightSyncMismatch(RuntimeError):
    """Rollout and trainer log-probs disagree after a weight sync (the sync is broken)."""


@dataclass(kw_only=True, frozen=True)
class LogprobDiff:
    """Agreement statistics between rollout and trainer log-probs on the valid tokens."""

    max_abs: float
    """max |lp_rollout - lp_trainer|."""
    mean_abs: float
    """mean |lp_rollout - lp_trainer|."""
    mult_prob_error: float
    """mean exp(|lp_rollout - lp_trainer|) (NeMo-RL's token_mult_prob_error; 1.0 = identical)."""
    num_tokens: int
    """Number of compared tokens."""

    def as_dict(self) -> dict[str, float]:
        return {"logprob_max_abs_diff": self.max_abs, "logprob_mean_abs_diff": self.mean_abs,
                "token_mult_prob_error": self.mult_prob_error, "logprob_num_tokens": float(self.num_tokens)}


def _flatten(values: Sequence[PerToken] | torch.Tensor, mask: torch.Tensor | None, what: str) -> torch.Tensor:
    """Valid tokens of a padded (B, T) tensor + mask, or of a list of per-sequence vectors, as (N,)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().double()
        if mask is None:
            return values.reshape(-1)
        if mask.shape != values.shape:
            raise ValueError(f"{what}: mask shape {tuple(mask.shape)} != values shape {tuple(values.shape)}")
        return values[mask.bool()]
    if mask is not None:
        raise ValueError(f"{what}: a mask is only accepted with a padded tensor, not a list")
    rows = [torch.as_tensor(v, dtype=torch.float64).detach().reshape(-1).cpu() for v in values]
    return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.float64)


def compare_logprobs(
    rollout: Sequence[PerToken] | torch.Tensor,
    trainer: Sequence[PerToken] | torch.Tensor,
    mask: torch.Tensor | None = None,
) -> LogprobDiff:
    """Compare per-token log-probs: lists of per-sequence vectors, or padded (B, T) tensors + mask."""
    if not isinstance(rollout, torch.Tensor) and not isinstance(trainer, torch.Tensor):
        if len(rollout) != len(trainer):
            raise ValueError(f"{len(rollout)} rollout sequences vs {len(trainer)} trainer sequences")
        for i, (a, b) in enumerate(zip(rollout, trainer)):
            if len(a) != len(b):
                raise ValueError(f"sequence {i}: {len(a)} rollout log-probs vs {len(b)} trainer log-probs")
    a = _flatten(rollout, mask, "rollout")
    b = _flatten(trainer, mask, "trainer")
    if a.shape != b.shape:
        raise ValueError(f"{a.numel()} rollout tokens vs {b.numel()} trainer tokens")
    if a.numel() == 0:
        raise ValueError("no tokens to compare (empty probe batch or all-zero mask)")
    diff = (a.cpu() - b.cpu()).abs()  # (N,)
    if not torch.isfinite(diff).all():  # NaN/inf log-probs on either side: a broken sync
        inf = float("inf")
        return LogprobDiff(max_abs=inf, mean_abs=inf, mult_prob_error=inf, num_tokens=int(a.numel()))
    return LogprobDiff(max_abs=float(diff.max()), mean_abs=float(diff.mean()),
                       mult_prob_error=float(diff.exp().mean()), num_tokens=int(a.numel()))


def verify_logprobs(
    rollout: Sequence[PerToken] | torch.Tensor,
    trainer: Sequence[PerToken] | torch.Tensor,
    *,
    threshold: float,
    mask: torch.Tensor | None = None,
    context: str = "weight sync",
    logger: logging.Logger | None = None,
) -> LogprobDiff:
    """Log the rollout-vs-trainer log-prob gap and raise :class:`WeightSyncMismatch` above ``threshold``."""
    stats = compare_logprobs(rollout, trainer, mask)
    (logger or LOG).info(
        "%s check: |Δ logprob| max %.3g mean %.3g, token_mult_prob_error %.6f over %d tokens (threshold %.3g)",
        context, stats.max_abs, stats.mean_abs, stats.mult_prob_error, stats.num_tokens, threshold)
    if not stats.max_abs <= threshold:
        raise WeightSyncMismatch(
            f"{context}: rollout and trainer log-probs differ by up to {stats.max_abs:.4g} "
            f"(mean {stats.mean_abs:.4g}, token_mult_prob_error {stats.mult_prob_error:.4f}, "
            f"{stats.num_tokens} tokens) > threshold {threshold:.4g}. The exported weights do not "
            "reproduce the trainer's policy: check the Megatron→HF name map, the QKV/gate-up split, "
            "tied embeddings and vocabulary padding (raise rollout.verify_threshold only for known "
            "precision gaps, e.g. bf16 rollouts).")
    return stats


@torch.no_grad()
def teacher_forced_logprobs(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    response_starts: Sequence[int],
    *,
    batch_size: int = 8,
) -> list[torch.Tensor]:
    """``log_softmax(model(seq))`` gathered at each response token of each sequence (HF model).

    ``sequences[i]`` is prompt + response token ids, ``response_starts[i]`` the index of the first
    response token (= prompt length, >= 1). Returns one float32 (len(seq) - start,) tensor per
    sequence: ``log π(seq[t] | seq[:t])`` for ``t >= start``, from a right-padded full forward.
    """
    if len(sequences) != len(response_starts):
        raise ValueError(f"{len(sequences)} sequences vs {len(response_starts)} response starts")
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    for lo in range(0, len(sequences), batch_size):
        chunk = [list(s) for s in sequences[lo:lo + batch_size]]
        starts = list(response_starts[lo:lo + batch_size])
        width = max(len(s) for s in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)  # (B, T) right-padded
        mask = torch.zeros(len(chunk), width, dtype=torch.long)  # (B, T)
        for row, seq in enumerate(chunk):
            ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, :len(seq)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # (B, T, V)
        logprobs = logits.float().log_softmax(dim=-1)  # (B, T, V)
        for row, (seq, start) in enumerate(zip(chunk, starts)):
            if not 1 <= start <= len(seq):
                raise ValueError(f"sequence {lo + row}: response start {start} outside [1, {len(seq)}]")
            targets = ids[row, start:len(seq)].to(device)  # (R,)
            picked = logprobs[row, start - 1:len(seq) - 1].gather(-1, targets[:, None]).squeeze(-1)
            out.append(picked.cpu())
    return out


def probe_from_groups(groups: Sequence[Any], num_samples: int) -> tuple[list[list[int]], list[int], list[list[float]]]:
    """The first ``num_samples`` samples with a response and rollout log-probs, as a probe batch.

    Returns ``(sequences, response_starts, rollout_logprobs)``: prompt + response ids, prompt
    lengths and the engine's per-token log-probs — feed the first two to the trainer (or to
    :func:`teacher_forced_logprobs`) and the result with the third to :func:`verify_logprobs`.
    """
    sequences: list[list[int]] = []
    starts: list[int] = []
    logprobs: list[list[float]] = []
    for group in groups:
        for sample in group.samples:
            if len(sequences) == num_samples:
                return sequences, starts, logprobs
            if not sample.response_token_ids or sample.rollout_logprobs is None:
                continue
            sequences.append(list(sample.prompt_token_ids) + list(sample.response_token_ids))
            starts.append(len(sample.prompt_token_ids))
            logprobs.append(list(sample.rollout_logprobs))
    return sequences, starts, logprobs

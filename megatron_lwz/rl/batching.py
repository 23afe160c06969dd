"""Scored rollout groups → trainer batches: dynamic sampling, mini-batches, micro-batch packing.

Alignment convention (the one megatron's GPTModel(labels=...) and HF causal LMs use). Row i holds the
prompt (P tokens) then the response (R tokens), right-padded to T. Column t is the prediction made AT
position t, i.e. of label t = token t+1; every per-token tensor (loss_mask, old/rollout/ref log-probs,
the trainer's logprobs and entropies) uses these columns::

    t          :  0    1    2    3    4    5    6    7
    tokens     :  p0   p1   p2   r0   r1   r2   pad  pad      P = 3, R = 3, length = 6, T = 8
    labels     :  p1   p2   r0   r1   r2   pad  pad  pad      labels[t] = tokens[t+1]
    loss_mask  :  0    0    1    1    1    0    0    0        1 iff labels[t] is a response token
    logprobs   :  .    .    r0   r1   r2   .    .    .        log π(labels[t] | tokens[:t+1])

so loss_mask[i, t] = 1 for t ∈ [P−1, P+R−2] and rollout_logprobs[i, P−1+j] = sample.rollout_logprobs[j].
The trainer gets logp = −(per-token cross-entropy of logits vs ``labels``), or
``rl.loss.logprobs_from_logits(logits, batch.labels)``.

Where each option acts (``BatchingConfig``):

* ``dynamic_sampling`` — DAPO dynamic sampling: ``build_train_batch`` drops groups whose rewards are
  identical across samples (``zero_variance_groups``: every component constant → every advantage 0).
  Refilling the batch by generating more prompts is the loop's job.
* ``num_minibatches`` → ``split_minibatches`` (through ``minibatches_for_update``, which never trains
  nothing silently: a batch with fewer than DP × ``num_minibatches`` rows gets as many mini-batches as
  DP allows, or none, with a warning each time); ``micro_token_budget`` → ``pack_microbatches``.
* Truncated (overlong) samples are treated at scoring time (``reward.overlong``, rewards/composite.py):
  DAPO filtering masks them out of the advantages (rl/advantage.py); their rows stay in the batch with
  advantage 0, which contributes nothing to the loss.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from dataclasses import dataclass, field
from typing import Sequence

import torch

from megatron_lwz.rl.config import BatchingConfig
from megatron_lwz.rollout.types import RolloutGroup, Sample

log = logging.getLogger(__name__)


def zero_variance_groups(groups: Sequence[RolloutGroup]) -> list[bool]:
    """True for groups where every reward component has one value across all samples (no GRPO signal)."""
    flags = []
    for group in groups:
        keys = set().union(*(s.rewards.keys() for s in group.samples)) if group.samples else set()
        flags.append(all(len({s.rewards.get(k) for s in group.samples}) <= 1 for k in keys))
    return flags


@dataclass(kw_only=True)
class TrainBatch:
    """Right-padded trainer inputs, one row per sample; per-token tensors use the module's alignment."""

    tokens: torch.Tensor
    """(B, T) int64 prompt + response ids, right-padded with ``pad_token_id``."""
    loss_mask: torch.Tensor
    """(B, T) float32: 1 where labels[:, t] = tokens[:, t+1] is a response token."""
    advantages: torch.Tensor
    """(B,) float32 per-sample advantage (broadcast to the sample's tokens by the loss)."""
    lengths: torch.Tensor
    """(B,) int64 prompt + response tokens of each row (no padding)."""
    prompt_lengths: torch.Tensor
    """(B,) int64 prompt tokens of each row."""
    group_index: torch.Tensor
    """(B,) int64 index of the row's group in the list given to build_train_batch."""
    sample_index: torch.Tensor
    """(B,) int64 index of the row's sample within its group."""
    truncated: torch.Tensor
    """(B,) bool: the sample hit max_tokens (finish_reason 'length')."""
    pad_token_id: int
    """Id used for padding (labels beyond a row's end are this id and are never in the loss)."""
    rollout_logprobs: torch.Tensor | None = None
    """(B, T) float32 log π_rollout of labels[:, t] where loss_mask is 1 (0 elsewhere); None without."""
    old_logprobs: torch.Tensor | None = None
    """(B, T) log π_θold for the PPO ratio; filled by the trainer recompute (or = rollout_logprobs)."""
    ref_logprobs: torch.Tensor | None = None
    """(B, T) log π_ref for the KL term; filled by the reference forward when loss.kl_coef > 0."""
    stats: dict[str, int] = field(default_factory=dict)
    """Counts from building: groups_in, groups_zero_variance_dropped, samples_truncated_dropped, rows."""

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def labels(self) -> torch.Tensor:
        """(B, T) int64 tokens shifted left by one (labels[:, t] = tokens[:, t+1]), padded at the end."""
        pad = torch.full_like(self.tokens[:, :1], self.pad_token_id)
        return torch.cat([self.tokens[:, 1:], pad], dim=1)

    @property
    def position_ids(self) -> torch.Tensor:
        """(B, T) int64 0..T−1 on every row (right padding leaves the real tokens' positions intact)."""
        b, t = self.tokens.shape
        return torch.arange(t, device=self.tokens.device).unsqueeze(0).expand(b, t)

    @property
    def response_lengths(self) -> torch.Tensor:
        """(B,) int64 response tokens of each row."""
        return self.lengths - self.prompt_lengths

    def select(self, rows: Sequence[int] | torch.Tensor) -> TrainBatch:
        """Sub-batch of ``rows`` (in that order), trimmed to its longest row."""
        idx = torch.as_tensor(list(rows) if not isinstance(rows, torch.Tensor) else rows, dtype=torch.long)
        width = int(self.lengths[idx].max()) if idx.numel() else 0
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value[idx.to(value.device)]
                value = value[:, :width] if value.dim() == 2 else value
            out[f.name] = value
        out["stats"] = {"rows": int(idx.numel())}
        return TrainBatch(**out)

    def to(self, device: torch.device | str) -> TrainBatch:
        """Copy with every tensor moved to ``device``."""
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[key] = value.to(device, non_blocking=True)
        return TrainBatch(**moved)


def build_train_batch(groups: Sequence[RolloutGroup], advantages: torch.Tensor | Sequence[Sequence[float]],
                      cfg: BatchingConfig, *, pad_token_id: int) -> TrainBatch:
    """One row per kept sample of ``groups``; ``advantages`` is (num_groups, G), [g][j] for sample j of group g."""
    if len(advantages) != len(groups):
        raise ValueError(f"advantages has {len(advantages)} rows but there are {len(groups)} groups")
    keep_group = [True] * len(groups)
    stats = {"groups_in": len(groups), "groups_zero_variance_dropped": 0}
    if cfg.dynamic_sampling:
        keep_group = [not z for z in zero_variance_groups(groups)]
        stats["groups_zero_variance_dropped"] = keep_group.count(False)
    rows: list[tuple[int, int, Sample, float]] = []
    for g, group in enumerate(groups):
        adv = [float(a) for a in advantages[g]]
        if len(adv) != len(group.samples):
            raise ValueError(f"group {g} (prompt {group.prompt.prompt_id}): {len(group.samples)} samples "
                             f"but {len(adv)} advantages")
        if not keep_group[g]:
            continue
        rows += [(g, j, sample, adv[j]) for j, sample in enumerate(group.samples)]
    stats["rows"] = len(rows)
    return _collate(rows, pad_token_id, stats)


def _collate(rows: list[tuple[int, int, Sample, float]], pad_token_id: int, stats: dict[str, int]) -> TrainBatch:
    have_lp = [s.rollout_logprobs is not None for _, _, s, _ in rows]
    if any(have_lp) and not all(have_lp):
        g, j, s, _ = rows[have_lp.index(False)]
        raise ValueError(f"group {g} sample {j} (prompt {s.prompt.prompt_id}) has no rollout_logprobs while "
                         "others do; the rollout engine must return log-probs for every sample or none")
    width = max((s.num_tokens for _, _, s, _ in rows), default=0)
    b = len(rows)
    tokens = torch.full((b, width), pad_token_id, dtype=torch.long)
    loss_mask = torch.zeros(b, width, dtype=torch.float32)
    rollout_lp = torch.zeros(b, width, dtype=torch.float32) if rows and all(have_lp) else None
    for i, (g, j, s, _) in enumerate(rows):
        p, r = len(s.prompt_token_ids), len(s.response_token_ids)
        if p < 1:
            raise ValueError(f"group {g} sample {j} (prompt {s.prompt.prompt_id}): empty prompt; the first "
                             "response token needs a position to be predicted from")
        tokens[i, : p + r] = torch.tensor(list(s.prompt_token_ids) + list(s.response_token_ids), dtype=torch.long)
        loss_mask[i, p - 1 : p - 1 + r] = 1.0
        if rollout_lp is not None:
            if len(s.rollout_logprobs) != r:
                raise ValueError(f"group {g} sample {j} (prompt {s.prompt.prompt_id}): {len(s.rollout_logprobs)} "
                                 f"rollout log-probs for {r} response tokens")
            rollout_lp[i, p - 1 : p - 1 + r] = torch.tensor(s.rollout_logprobs, dtype=torch.float32)
    return TrainBatch(
        tokens=tokens, loss_mask=loss_mask, pad_token_id=pad_token_id, rollout_logprobs=rollout_lp,
        advantages=torch.tensor([a for *_, a in rows], dtype=torch.float32),
        lengths=torch.tensor([s.num_tokens for _, _, s, _ in rows], dtype=torch.long),
        prompt_lengths=torch.tensor([len(s.prompt_token_ids) for _, _, s, _ in rows], dtype=torch.long),
        group_index=torch.tensor([g for g, *_ in rows], dtype=torch.long),
        sample_index=torch.tensor([j for _, j, *_ in rows], dtype=torch.long),
        truncated=torch.tensor([s.truncated for _, _, s, _ in rows], dtype=torch.bool),
        stats=stats,
    )


def split_minibatches(batch: TrainBatch, num_minibatches: int, *, seed: int | None = None) -> list[TrainBatch]:
    """``num_minibatches`` disjoint sub-batches covering every row, sizes differing by ≤ 1 (one update each).

    Rows keep their order (groups stay contiguous) unless ``seed`` is given, which shuffles them first.
    """
    n = len(batch)
    if num_minibatches < 1 or num_minibatches > n:
        raise ValueError(f"num_minibatches must be in [1, {n}] (rows in the batch), got {num_minibatches}")
    order = torch.arange(n)
    if seed is not None:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [batch.select(chunk) for chunk in torch.tensor_split(order, num_minibatches)]


def minibatches_for_update(batch: TrainBatch, num_minibatches: int, dp_size: int, *, seed: int | None = None,
                           warn: bool = True) -> list[TrainBatch]:
    """The iteration's mini-batches: every DP rank needs ≥ 1 row per mini-batch (``pack_microbatches``).

    With fewer than ``dp_size × num_minibatches`` rows (dynamic sampling dropped groups, a small
    prompt batch) the iteration makes ``rows // dp_size`` updates instead — none below ``dp_size``
    rows — and says so (``warn``: log a warning naming the fields to change; rank 0 passes True).
    """
    rows = len(batch)
    usable = min(num_minibatches, rows // dp_size)
    if usable < num_minibatches and warn:
        what = "trains NOTHING" if usable == 0 else f"makes only {usable} of {num_minibatches} updates"
        log.warning("GRPO iteration %s: %d rows < DP %d × rl.batching.num_minibatches %d; raise "
                    "rl.prompts_per_step / rl.group_size or lower num_minibatches (dynamic sampling may have "
                    "dropped groups)", what, rows, dp_size, num_minibatches)
    return split_minibatches(batch, usable, seed=seed) if usable else []


def pack_microbatches(lengths: Sequence[int], token_budget: int, dp_size: int) -> list[list[list[int]]]:
    """Indices into ``lengths`` as [dp_rank][micro_batch][row]: balanced over ranks, packed under a budget.

    1. Rows are split over the DP ranks by total tokens (Karmarkar–Karp largest differencing).
    2. Each rank packs its rows first-fit-decreasing so that rows × longest row ≤ ``token_budget``
       (a row longer than the budget gets a micro-batch of its own).
    3. Every rank must run the same number of micro-batches (pipeline schedules and gradient sync
       need it) and none may be empty: a rank with fewer splits its costliest multi-row micro-batch;
       one with only single-row micro-batches takes the shortest row of another rank's multi-row one.
       Raises ValueError when there are fewer rows than dp_size × that number.
    Deterministic: ties are broken by index.
    """
    n = len(lengths)
    if dp_size < 1 or token_budget < 1:
        raise ValueError(f"dp_size and token_budget must be ≥ 1, got {dp_size} and {token_budget}")
    if n < dp_size:
        raise ValueError(f"{n} rows cannot give each of {dp_size} DP ranks a micro-batch; use larger mini-batches")
    if any(int(x) < 1 for x in lengths):
        raise ValueError("every length must be ≥ 1")
    lens = [int(x) for x in lengths]
    ranks = [_pack_first_fit(part, lens, token_budget) for part in _karmarkar_karp(lens, dp_size)]
    _equalise_counts(ranks, lens)
    return ranks


def _karmarkar_karp(lens: list[int], k: int) -> list[list[int]]:
    """k-way largest differencing: partition indices so that the k sums are close; every part non-empty."""
    heap: list[tuple[int, int, list[int], list[list[int]]]] = []
    order = sorted(range(len(lens)), key=lambda i: (-lens[i], i))
    for tie, i in enumerate(order):
        heapq.heappush(heap, (-lens[i], tie, [lens[i]] + [0] * (k - 1), [[i]] + [[] for _ in range(k - 1)]))
    tie = len(order)
    while len(heap) > 1:
        _, _, s1, p1 = heapq.heappop(heap)
        _, _, s2, p2 = heapq.heappop(heap)
        merged = sorted(((s1[j] + s2[k - 1 - j], p1[j] + p2[k - 1 - j]) for j in range(k)), key=lambda x: -x[0])
        sums, parts = [m[0] for m in merged], [m[1] for m in merged]
        heapq.heappush(heap, (-(sums[0] - sums[-1]), tie, sums, parts))
        tie += 1
    parts = [sorted(p) for p in heap[0][3]]
    while any(not p for p in parts):  # only with near-equal n and k; move a shortest row from the fullest part
        donor = max(range(k), key=lambda r: (len(parts[r]), -r))
        row = min(parts[donor], key=lambda i: (lens[i], i))
        parts[donor].remove(row)
        parts[next(r for r in range(k) if not parts[r])].append(row)
    return parts


def _pack_first_fit(rows: list[int], lens: list[int], budget: int) -> list[list[int]]:
    """First-fit decreasing under padded cost: a bin's first row is its longest, so cost = size × lens[bin[0]]."""
    bins: list[list[int]] = []
    for i in sorted(rows, key=lambda i: (-lens[i], i)):
        for b in bins:
            if (len(b) + 1) * lens[b[0]] <= budget:
                b.append(i)
                break
        else:
            bins.append([i])
    return bins


def _split_point(mb: list[int], lens: list[int]) -> int:
    """k minimising the larger padded cost of mb[:k] and mb[k:] (mb sorted by decreasing length)."""
    return min(range(1, len(mb)), key=lambda k: (max(k * lens[mb[0]], (len(mb) - k) * lens[mb[k]]), k))


def _equalise_counts(ranks: list[list[list[int]]], lens: list[int]) -> None:
    target = max(len(r) for r in ranks)
    for rank in ranks:
        while len(rank) < target:
            multi = [m for m in range(len(rank)) if len(rank[m]) > 1]
            if multi:
                m = max(multi, key=lambda m: (len(rank[m]) * lens[rank[m][0]], -m))
                k = _split_point(rank[m], lens)
                rank[m : m + 1] = [rank[m][:k], rank[m][k:]]
                continue
            donors = [(d, m) for d, other in enumerate(ranks) for m, mb in enumerate(other) if len(mb) > 1]
            if not donors:
                total = sum(len(mb) for r in ranks for mb in r)
                raise ValueError(f"cannot give each of {len(ranks)} DP ranks {target} non-empty micro-batches "
                                 f"with {total} rows; raise micro_token_budget or the mini-batch size")
            d, m = max(donors, key=lambda dm: (sum(lens[i] for mb in ranks[dm[0]] for i in mb), -dm[0], -dm[1]))
            rank.append([ranks[d][m].pop()])  # mb is sorted by decreasing length: pop() is its shortest row

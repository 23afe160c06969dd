"""Pairwise generative reward (``reward.pairwise``), beyond the paper: a sample's reward is its win rate.

After Writing-Zero's BRPO (each rollout judged against a peer from its own group) and Arena-Write's
pairwise protocol; pairwise judging resists the verbosity bias of scalar RMs. Opponents:

* ``round_robin`` (default): the group on a ring, each sample compared with the ``peers`` samples after
  it (offsets 1..peers), so every sample takes part in exactly min(2·peers, G − 1) comparisons;
* ``random``: each sample draws ``peers`` distinct random peers (seeded by ``seed``, the prompt id and the
  sample's index); it also collects the comparisons that others drew against it (counts vary);
* ``reference``: each sample against its prompt's reference answer (``reference`` in the prompt file).

Every comparison is judged in both orders (i shown first, then j shown first) and the two verdicts are
averaged: s_ij = ½ (P(i ≻ j | i first) + 1 − P(j ≻ i | j first)). A judge that always prefers the
first answer thus gives every comparison ½ — position bias cancels exactly. One order failing leaves
the other's verdict; a sample with no successful comparison fails (the scorer falls back to the other
components for it). Win rate = mean of s_ij over the sample's comparisons, in [0, 1]; a lone sample (a
group of one, e.g. a held-out evaluation answer) has no peer and gets the neutral ½. All judgments of a
rollout go to the judge in one batch (concurrent requests, disk-cached by the judge client).
"""

from __future__ import annotations

import random
import statistics
import zlib
from dataclasses import dataclass
from typing import Literal, Sequence

from megatron_lwz.config.base import ConfigError
from megatron_lwz.rewards.length import AnswerPolicy, extract_answer
from megatron_lwz.rewards.llm_client import LLMError
from megatron_lwz.rollout.types import Sample

REFERENCE = -1
"""Opponent index meaning "the prompt's reference answer"."""


@dataclass(kw_only=True)
class PairwiseConfig:
    """Pairwise win-rate reward: who each sample is compared with, and by which judge."""

    judge: Literal["llm", "writing_rm"] = "llm"
    """'llm' = the OpenAI-compatible judge at reward.judge; 'writing_rm' = the BT Writing RM,
    P(A ≻ B) = σ(r_A − r_B) (local, no server; needs writing_rm.checkpoint)."""
    opponent: Literal["round_robin", "random", "reference"] = "round_robin"
    """Peers on a ring (equal comparison counts), random peers, or the prompt's reference answer."""
    peers: int = 1
    """round_robin: ring offsets 1..peers (min(2·peers, G − 1) comparisons per sample); random: peers drawn per sample."""
    seed: int = 0
    """Seed of the random pairing."""
    answer_policy: AnswerPolicy = "well_formed"
    """How the judged answer is extracted from a response ('' when there is none)."""

    def __post_init__(self) -> None:
        if self.peers < 1:
            raise ConfigError(f"reward.pairwise.peers must be >= 1, got {self.peers}")


def comparisons(group_size: int, cfg: PairwiseConfig, key: str = "") -> list[tuple[int, int]]:
    """Unordered comparisons (i, j) of one group; j = REFERENCE for the reference opponent."""
    if cfg.opponent == "reference":
        return [(i, REFERENCE) for i in range(group_size)]
    if group_size < 2:
        return []
    pairs: set[tuple[int, int]] = set()
    if cfg.opponent == "round_robin":
        for offset in range(1, min(cfg.peers, group_size - 1) + 1):
            pairs.update(tuple(sorted((i, (i + offset) % group_size))) for i in range(group_size))
    else:
        for i in range(group_size):
            rng = random.Random(cfg.seed * 1_000_003 + zlib.crc32(f"{key}/{i}".encode()))
            others = [j for j in range(group_size) if j != i]
            pairs.update(tuple(sorted((i, j))) for j in rng.sample(others, min(cfg.peers, len(others))))
    return sorted(pairs)


@dataclass
class _Comparison:
    group: int
    i: int
    j: int


class PairwiseChannel:
    """Fills one win rate per sample (or an error string) for groups of scored samples."""

    name = "pairwise"

    def __init__(self, cfg: PairwiseConfig, judge) -> None:
        self.cfg = cfg
        self.judge = judge
        self.collective = getattr(judge, "collective", False)

    def _answer(self, sample: Sample) -> str:
        return extract_answer(sample.response_text, self.cfg.answer_policy) or ""

    def _plan(self, groups: Sequence[Sequence[Sample]]) -> tuple[list[_Comparison], list[tuple[str, str, str]], list[str]]:
        plan, items, missing = [], [], []
        for g, samples in enumerate(groups):
            if not samples:
                continue
            prompt = samples[0].prompt
            answers = [self._answer(s) for s in samples]
            reference = getattr(prompt, "reference", None)
            for i, j in comparisons(len(samples), self.cfg, prompt.prompt_id):
                if j == REFERENCE and not reference:
                    missing.append(prompt.prompt_id)
                    continue
                other = reference if j == REFERENCE else answers[j]
                plan.append(_Comparison(g, i, j))
                items += [(prompt.question, answers[i], other), (prompt.question, other, answers[i])]
        return plan, items, missing

    def score(self, groups: Sequence[Sequence[Sample]]) -> tuple[list[list[float | str]], dict[str, float]]:
        """Win rates per group (same layout as ``groups``) and ``reward/pairwise/*`` metrics."""
        plan, items, missing = self._plan(groups)
        verdicts = self.judge.prefer_first(items) if items else []
        wins: list[list[list[float]]] = [[[] for _ in samples] for samples in groups]
        first_wins, failed = [], 0
        for k, comp in enumerate(plan):
            forward, backward = verdicts[2 * k], verdicts[2 * k + 1]
            ok = [v for v in (forward, backward) if not isinstance(v, LLMError)]
            failed += 2 - len(ok)
            first_wins += ok
            parts = ([forward] if not isinstance(forward, LLMError) else []) + \
                    ([1.0 - backward] if not isinstance(backward, LLMError) else [])
            if not parts:
                continue
            s_ij = statistics.fmean(parts)
            wins[comp.group][comp.i].append(s_ij)
            if comp.j != REFERENCE:
                wins[comp.group][comp.j].append(1.0 - s_ij)
        lone = self.cfg.opponent != "reference"
        values: list[list[float | str]] = [
            [0.5 if lone and len(ws) == 1 else statistics.fmean(w) if w else
             ("no reference answer" if self.cfg.opponent == "reference" else
              "every pairwise judgment of this sample failed") for w in ws] for ws in wins]
        metrics = {"reward/pairwise/judgments": float(len(items)), "reward/pairwise/failed_judgments": float(failed),
                   "reward/pairwise/first_position_win_rate": statistics.fmean(first_wins) if first_wins else 0.5,
                   "reward/pairwise/missing_reference": float(len(set(missing)))}
        metrics.update(self.judge.stats.take("reward/pairwise/judge"))
        return values, metrics

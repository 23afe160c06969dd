"""Composite reward stage of GRPO: fills ``sample.rewards['length'|'format'|'writing'|…]`` for every
sample of a rollout (paper §4: three reward models; their advantages are averaged, Eq. 5, in
``megatron_lwz.rl.advantage``).

* ``length``: Eq. 3 on the answer's word count (``rewards/length.py``), range from the PromptRecord.
* ``format``: structure gate × (1 − repetition penalty) (``rewards/format.py``).
* ``writing``: an injected batched callable ``score_writing(prompts, answers) -> scores`` (the
  Bradley–Terry Writing RM; prompts are the raw questions, answers the extracted ``<answer>`` text per
  ``writing_answer_policy``, "" when there is none, so untagged output scores as an empty answer).
* extra components: ``extra_rewards={'name': fn(sample) -> float}``, listed in ``components``.
* beyond the paper (``docs/design.md``, "Rewards beyond the paper"): ``pairwise`` (win rate against
  group peers or a reference, ``rewards/pairwise.py``), ``rubric`` (query-only rubric scores,
  ``rewards/rubric.py``), both judged by the LLM at ``reward.judge`` (or, for pairwise, the Writing RM),
  and constraint gates on the advantage (``reward.gate``, ``rewards/gate.py``).

Failure isolation: a component that raises (or returns a non-finite value) on one sample scores that
sample ``failure_value`` (per component: ``failure_values``), records the error in
``sample.reward_failures[name]`` and logs it; the step goes on. A failed judge-channel value
(pairwise, rubric) is instead set to the mean of its group's successful values, so its Eq. 5
advantage for that component is 0 and the sample is ranked by the remaining components. A batched writing call that raises is
bisected until the failing samples are isolated (O(f · log n) extra calls for f bad samples).

Overlong (truncated, ``finish_reason == 'length'``) samples — the paper does not say how it treated
them (paper.md §5, §11); ``overlong.policy`` chooses:

* ``worst`` (default): not scored; every component gets the worst value of its group: 0 for the
  [0, 1] components (length, format), the minimum over the group's finished samples for the others
  (writing). A truncated answer can thus never beat a finished one, whatever the RM scale.
* ``none``: scored like any sample (strict answer extraction gives length 0 and format 0).
* ``soft``: scored, plus DAPO's soft overlong punishment added to ``length``:
  0 if T ≤ T_max − B, (T_max − B − T)/B inside the buffer, −1 beyond (T = response tokens,
  T_max = ``max_response_tokens``, B = ``buffer_tokens``).
* ``filter``: not scored (components set to 0) and excluded from the advantage computation
  (``megatron_lwz.rl.advantage.advantages_for_groups`` masks them: DAPO overlong filtering).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

from megatron_lwz.config.base import ConfigError
from megatron_lwz.rewards.format import FormatReward, FormatRewardConfig
from megatron_lwz.rewards.gate import GateConfig, gate_metrics
from megatron_lwz.rewards.length import (
    AnswerPolicy, LengthRewardConfig, answer_word_count, extract_answer, length_reward,
)
from megatron_lwz.rewards.llm_client import EndpointConfig
from megatron_lwz.rewards.pairwise import PairwiseConfig
from megatron_lwz.rewards.rubric import RubricConfig
from megatron_lwz.rollout.types import RolloutGroup, Sample

logger = logging.getLogger(__name__)

WritingScorer = Callable[[list[str], list[str]], Sequence[float]]
"""Batched Writing RM: (questions, answers) → one scalar per pair."""
SampleReward = Callable[[Sample], float]
"""An extra per-sample reward component."""
BUILTIN_COMPONENTS = ("length", "format", "writing", "pairwise", "rubric")
BOUNDED_COMPONENTS = {"length": 0.0, "format": 0.0, "pairwise": 0.0, "rubric": 0.0}
"""Components with a known floor (their minimum possible value), used by the 'worst' overlong policy."""


@dataclass(kw_only=True)
class OverlongConfig:
    """Treatment of truncated samples (finish_reason == 'length'); see the module docstring."""

    policy: Literal["worst", "none", "soft", "filter"] = "worst"
    """'worst' | 'none' | 'soft' (DAPO soft punishment on length) | 'filter' (masked from advantages)."""
    max_response_tokens: int = 14000
    """T_max of the soft punishment; set it to the rollout's max_tokens (14,000 in the paper)."""
    buffer_tokens: int = 2000
    """B: width of the soft-punishment ramp before T_max."""

    def __post_init__(self) -> None:
        if not 0 < self.buffer_tokens < self.max_response_tokens:
            raise ConfigError("overlong: need 0 < buffer_tokens < max_response_tokens")


@dataclass(kw_only=True)
class RewardConfig:
    """Which rewards run, how they are weighted in Eq. 5, and each component's settings."""

    components: list[str] = field(default_factory=lambda: ["length", "writing", "format"])
    """Reward components (each gets its own group-normalised advantage)."""
    weights: dict[str, float] = field(default_factory=dict)
    """Eq. 5 weights per component (unlisted ones weigh 1.0), normalised to sum 1; empty = equal
    (the paper's 1/3 each). Set a weight to 0 to log a component without training on it."""
    combine: Literal["advantage_mean", "reward_mean"] = "advantage_mean"
    """'advantage_mean' = Eq. 5 (normalise each reward, then average); 'reward_mean' = the ablation
    (average the raw rewards, then normalise once)."""
    advantage_eps: float = 1e-6
    """eps in (r − mean) / (std + eps)."""
    unbiased_std: bool = True
    """Group std with Bessel's correction (G − 1), like TRL/verl GRPO; False = population std (G)."""
    length: LengthRewardConfig = field(default_factory=LengthRewardConfig)
    """Length RM (Eq. 3) settings."""
    format: FormatRewardConfig = field(default_factory=FormatRewardConfig)
    """Format RM settings."""
    writing_answer_policy: AnswerPolicy = "well_formed"
    """How the answer handed to the Writing RM is extracted ('' when there is none)."""
    overlong: OverlongConfig = field(default_factory=OverlongConfig)
    """Truncated-sample policy."""
    failure_value: float = 0.0
    """Reward given to a sample whose component raised."""
    failure_values: dict[str, float] = field(default_factory=dict)
    """Per-component override of failure_value (e.g. a low score on the Writing RM's scale)."""
    num_workers: int = 0
    """Processes for the CPU rewards (length + format); 0 = in-process."""
    gate: GateConfig = field(default_factory=GateConfig)
    """Constraint gates on the advantage (beyond the paper, RLMR): violating samples are never reinforced."""
    pairwise: PairwiseConfig = field(default_factory=PairwiseConfig)
    """The 'pairwise' component: win rate against group peers or a reference answer (beyond the paper)."""
    rubric: RubricConfig = field(default_factory=RubricConfig)
    """The 'rubric' component: per-prompt rubric written from the prompt alone (beyond the paper)."""
    judge: EndpointConfig | None = None
    """OpenAI-compatible judge server of the pairwise/rubric components (a vLLM server on its own GPUs)."""

    def __post_init__(self) -> None:
        if not self.components or len(set(self.components)) != len(self.components):
            raise ConfigError(f"reward.components must be a non-empty list without repeats, got {self.components}")
        unknown = set(self.weights) - set(self.components)
        if unknown:
            raise ConfigError(f"reward.weights names {sorted(unknown)} not in reward.components {self.components}")
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.get(c, 1.0) for c in self.components) <= 0:
            raise ConfigError("reward.weights must be >= 0 with a positive sum")
        if self.overlong.policy == "soft" and "length" not in self.components:
            raise ConfigError("reward.overlong.policy='soft' adds to the 'length' reward: add it to reward.components")
        gates = set(self.gate.thresholds) - set(self.components)
        if gates:
            raise ConfigError(f"reward.gate.thresholds names {sorted(gates)} not in reward.components "
                              f"{self.components} (give a gate-only component weight 0)")
        if self.judge is None and ("rubric" in self.components or
                                   ("pairwise" in self.components and self.pairwise.judge == "llm")):
            raise ConfigError("reward.judge: the 'rubric' and LLM 'pairwise' components need a judge endpoint "
                              "(url, model); or set reward.pairwise.judge=writing_rm")
        if self.num_workers > 0 and self.format.semantic.enabled:
            raise ConfigError("reward.num_workers > 0 with format.semantic.enabled: the embedder runs in-process")

    def weight_vector(self) -> dict[str, float]:
        """Normalised Eq. 5 weights for every component (equal when none are given)."""
        raw = {c: self.weights.get(c, 1.0) for c in self.components}
        total = sum(raw.values())
        return {c: w / total for c, w in raw.items()}


def soft_overlong_penalty(num_tokens: int, max_tokens: int, buffer: int) -> float:
    """DAPO soft overlong punishment (0, linear ramp to −1 across the buffer, −1 beyond)."""
    if num_tokens <= max_tokens - buffer:
        return 0.0
    if num_tokens <= max_tokens:
        return (max_tokens - buffer - num_tokens) / buffer
    return -1.0


def _cpu_rewards(args: tuple[str, int, int, RewardConfig, tuple[str, ...]],
                 format_rm: FormatReward | None = None) -> dict[str, float | str]:
    """Length and format values of one response (an error string in place of a value that raised).

    Top-level so worker processes can run it; a worker builds its own FormatReward (no embedder).
    """
    text, lower, upper, cfg, names = args
    out: dict[str, float | str] = {}
    for name in names:
        try:
            if name == "length":
                words = answer_word_count(text, cfg.length.answer_policy)
                out[name] = length_reward(words, lower, upper, cfg.length.l_max_for(upper))
            else:
                out[name] = (format_rm or FormatReward(cfg.format))(text).score
        except Exception as err:  # isolate: one bad sample never kills the step
            out[name] = f"{type(err).__name__}: {err}"
    return out


class RewardScorer:
    """Scores rollout groups in place (``score``) and returns logging metrics."""

    def __init__(self, cfg: RewardConfig | None = None, *, score_writing: WritingScorer | None = None,
                 extra_rewards: dict[str, SampleReward] | None = None, judge_client=None) -> None:
        self.cfg = cfg or RewardConfig()
        self.score_writing = score_writing
        self.extra = dict(extra_rewards or {})
        missing = [c for c in self.cfg.components if c not in BUILTIN_COMPONENTS and c not in self.extra]
        if missing:
            raise ValueError(f"reward.components {missing} have no implementation: pass extra_rewards={{name: fn}}")
        if "writing" in self.cfg.components and score_writing is None:
            raise ValueError("the 'writing' component needs score_writing=(questions, answers) -> scores")
        self.format_rm = FormatReward(self.cfg.format) if "format" in self.cfg.components else None
        self._pool: ProcessPoolExecutor | None = None
        from megatron_lwz.rewards.channels import build_channels

        self.channels = build_channels(self.cfg, score_writing, judge_client)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> RewardScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fail(self, sample: Sample, name: str, error: str) -> None:
        sample.rewards[name] = self.cfg.failure_values.get(name, self.cfg.failure_value)
        sample.reward_failures[name] = error
        logger.warning("reward %s failed on prompt %s: %s", name, sample.prompt.prompt_id, error)

    def _set(self, sample: Sample, name: str, value: float | str) -> None:
        if isinstance(value, str):
            self._fail(sample, name, value)
        elif not math.isfinite(value):
            self._fail(sample, name, f"non-finite value {value}")
        else:
            sample.rewards[name] = float(value)

    def _score_cpu(self, samples: list[Sample]) -> None:
        names = tuple(c for c in ("length", "format") if c in self.cfg.components)
        if not names or not samples:
            return
        jobs = [(s.response_text, s.prompt.length_lower, s.prompt.length_upper, self.cfg, names) for s in samples]
        if self.cfg.num_workers > 0:
            if self._pool is None:
                import multiprocessing

                self._pool = ProcessPoolExecutor(self.cfg.num_workers, mp_context=multiprocessing.get_context("spawn"))
            chunk = max(1, len(jobs) // (4 * self.cfg.num_workers))
            results = list(self._pool.map(_cpu_rewards, jobs, chunksize=chunk))
        else:
            results = [_cpu_rewards(job, self.format_rm) for job in jobs]
        for sample, result in zip(samples, results):
            for name, value in result.items():
                self._set(sample, name, value)

    def _score_writing(self, samples: list[Sample]) -> None:
        if not samples:
            return
        questions = [s.prompt.question for s in samples]
        answers = [extract_answer(s.response_text, self.cfg.writing_answer_policy) or "" for s in samples]
        try:
            scores = list(self.score_writing(questions, answers))
            if len(scores) != len(samples):
                raise ValueError(f"score_writing returned {len(scores)} scores for {len(samples)} samples")
        except Exception as err:
            if len(samples) == 1:
                self._fail(samples[0], "writing", f"{type(err).__name__}: {err}")
                return
            half = len(samples) // 2  # bisect to isolate the failing sample(s)
            self._score_writing(samples[:half])
            self._score_writing(samples[half:])
            return
        for sample, value in zip(samples, scores):
            self._set(sample, "writing", float(value) if isinstance(value, (int, float)) else f"bad score {value!r}")

    def _score_extra(self, samples: list[Sample]) -> None:
        for name, fn in self.extra.items():
            if name not in self.cfg.components:
                continue
            for sample in samples:
                try:
                    self._set(sample, name, float(fn(sample)))
                except Exception as err:
                    self._fail(sample, name, f"{type(err).__name__}: {err}")

    def _score_channel(self, channel, groups: Sequence[RolloutGroup], skip_truncated: bool) -> dict[str, float]:
        """One judge channel over the whole rollout (LLM judges on rank 0 only, result broadcast)."""
        from megatron_lwz.rewards.judge import on_rank0

        scored = [[s for s in g.samples if not (skip_truncated and s.truncated)] for g in groups]

        def run():
            try:
                return channel.score(scored)
            except Exception as err:  # never fatal: every sample falls back to the other components
                return [[f"{type(err).__name__}: {err}"] * len(ss) for ss in scored], {}

        values, metrics = run() if channel.collective else on_rank0(run)
        for samples, vals in zip(scored, values):
            for sample, value in zip(samples, vals):
                self._set(sample, channel.name, value)
            ok = [s.rewards[channel.name] for s in samples if channel.name not in s.reward_failures]
            for sample in samples:
                if channel.name in sample.reward_failures and ok:
                    sample.rewards[channel.name] = statistics.fmean(ok)  # neutral: A_k = 0 for it
        return metrics

    def _apply_overlong(self, groups: Sequence[RolloutGroup]) -> None:
        policy, cfg = self.cfg.overlong.policy, self.cfg.overlong
        for group in groups:
            finished = [s for s in group.samples if not s.truncated]
            for sample in group.samples:
                if policy == "soft":
                    sample.rewards["length"] += soft_overlong_penalty(
                        len(sample.response_token_ids), cfg.max_response_tokens, cfg.buffer_tokens)
                elif sample.truncated and policy in ("worst", "filter"):
                    for name in self.cfg.components:
                        values = [s.rewards[name] for s in finished if name in s.rewards]
                        floor = BOUNDED_COMPONENTS.get(name)
                        candidates = values + ([floor] if floor is not None else [])
                        fallback = self.cfg.failure_values.get(name, self.cfg.failure_value)
                        worst = min(candidates) if candidates else fallback
                        sample.rewards[name] = worst if policy == "worst" else 0.0

    def score(self, groups: Sequence[RolloutGroup]) -> dict[str, float]:
        """Fill ``sample.rewards`` for every sample of ``groups``; returns logging metrics."""
        samples = [s for g in groups for s in g.samples]
        skip_truncated = self.cfg.overlong.policy in ("worst", "filter")
        scored = [s for s in samples if not (skip_truncated and s.truncated)]
        self._score_cpu(scored)
        if "writing" in self.cfg.components:
            self._score_writing(scored)
        self._score_extra(scored)
        channel_metrics: dict[str, float] = {}
        for channel in self.channels:
            channel_metrics.update(self._score_channel(channel, groups, skip_truncated))
        self._apply_overlong(groups)
        return self.metrics(samples) | channel_metrics

    def metrics(self, samples: Sequence[Sample]) -> dict[str, float]:
        """reward/<name>/{mean,std,failures}, overlong fraction and format gate failures by reason."""
        out: dict[str, float] = {"reward/num_samples": float(len(samples))}
        if not samples:
            return out
        for name in self.cfg.components:
            values = [s.rewards[name] for s in samples if name in s.rewards]
            out[f"reward/{name}/mean"] = statistics.fmean(values) if values else math.nan
            out[f"reward/{name}/std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
            out[f"reward/{name}/failures"] = float(sum(name in s.reward_failures for s in samples))
        out["reward/overlong_frac"] = sum(s.truncated for s in samples) / len(samples)
        out.update(gate_metrics(list(samples), self.cfg.gate))
        if "length" in self.cfg.components:
            out["reward/length/in_range_frac"] = sum(s.rewards.get("length") == 1.0 for s in samples) / len(samples)
        return out


def format_gate_reasons(samples: Sequence[Sample], cfg: FormatRewardConfig | None = None) -> Counter[str]:
    """Counts of Format RM gate outcomes ('ok', 'missing_answer', …) for a diagnostic log line."""
    from megatron_lwz.rewards.format import check_structure

    return Counter(check_structure(s.response_text, cfg)[0] for s in samples)

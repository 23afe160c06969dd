"""Typed data contracts between the GRPO stages (no heavy imports: stdlib only).

Vocabulary (README glossary): a *sample* is one completion of one prompt; a *group* is the G
samples of one prompt; a *step* is one optimizer update; a *rollout* is the generation phase
of one GRPO iteration (all groups of one prompt batch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

FinishReason = Literal["stop", "length"]


@dataclass(kw_only=True, frozen=True)
class PromptRecord:
    """One RL prompt with the reward metadata it needs (from ``lwz data predict-length``)."""

    prompt_id: str
    """Stable id (dataset line or hash); used for resume and for grouping samples."""
    question: str
    """The raw user request, without any template."""
    length_lower: int
    """L_lower of the Length RM (paper Eq. 3), in words (CJK characters + English words)."""
    length_upper: int
    """L_upper of the Length RM (paper Eq. 3)."""
    language: str = "en"
    """'en' or 'zh' (chooses the think template; paper §6.1 picks by CJK detection)."""
    reference: str | None = None
    """Optional reference answer (the 'reference' opponent of reward.pairwise)."""
    criteria: tuple[dict[str, str], ...] | None = None
    """Optional rubric in the WritingBench criteria format (reward.rubric uses it instead of generating one)."""


@dataclass(kw_only=True)
class SamplingParams:
    """Sampling settings shared by every rollout engine (HF on CPU, vLLM on GPU)."""

    n: int = 1
    """Samples per prompt (the group size G; the paper uses 32)."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0 = off; the paper uses 1.0 for RL)."""
    max_tokens: int = 64
    """Maximum generated tokens per sample (14,000 in the paper's RL)."""
    stop: list[str] = field(default_factory=list)
    """Stop strings; the matched stop string is kept in the text (e.g. '</answer>')."""
    seed: int | None = None
    """Seed for reproducible sampling (per call)."""
    logprobs: bool = True
    """Return per-token log-probs of the sampled tokens (under the sampling distribution's model)."""


@dataclass(kw_only=True)
class Sample:
    """One completion: token ids, text, rollout log-probs and (after scoring) its rewards."""

    prompt: PromptRecord
    """The prompt this sample answers."""
    prompt_text: str
    """The templated prompt string fed to the model."""
    prompt_token_ids: list[int]
    """Token ids of ``prompt_text``."""
    response_token_ids: list[int]
    """Generated token ids (without the prompt; includes the stop tokens, not any padding)."""
    response_text: str
    """Decoded response (truncated right after a matched stop string)."""
    finish_reason: FinishReason
    """'stop' (stop string or EOS) or 'length' (hit max_tokens: an *overlong* / truncated sample)."""
    rollout_logprobs: list[float] | None = None
    """log π_rollout(token) per response token, as reported by the rollout engine."""
    rewards: dict[str, float] = field(default_factory=dict)
    """Per-component reward values (e.g. 'length', 'writing', 'format'), filled by the reward stage."""
    reward_failures: dict[str, str] = field(default_factory=dict)
    """Component → error message for rewards that raised on this sample (scored as failed)."""

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.response_token_ids)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass(kw_only=True)
class RolloutGroup:
    """The G samples of one prompt (GRPO normalises advantages within a group)."""

    prompt: PromptRecord
    samples: list[Sample]

    def __len__(self) -> int:
        return len(self.samples)


class RolloutEngine(Protocol):
    """What the GRPO loop needs from a generation backend (HF on CPU, vLLM on GPU)."""

    def generate(self, prompts: Sequence[PromptRecord], prompt_texts: Sequence[str],
                 params: SamplingParams) -> list[RolloutGroup]:
        """Generate ``params.n`` samples for every prompt; one RolloutGroup per prompt, in order."""
        ...

    def update_weights(self, named_tensors) -> None:
        """Load an iterable of (hf_name, full tensor) into the engine's model (no disk)."""
        ...

    def sleep(self) -> None:
        """Release generation memory while the trainer runs (no-op where not applicable)."""
        ...

    def wake(self) -> None:
        """Re-acquire generation memory before the next rollout."""
        ...


def replace(obj, **changes):
    """dataclasses.replace re-exported for callers that only import this module."""
    return dataclasses.replace(obj, **changes)

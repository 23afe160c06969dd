"""Format RM of LongWriter-Zero: structure gate × (1 − repetition/stuffing penalty), in [0, 1].

The paper's Format RM "ensures strict adherence to the <think>…</think><answer>…</answer> structure,
and also detects repeated content" (model card; paper.md §3); its exact form is not published. Ours:

    score = structure_gate × (1 − penalty)
    penalty = 1 − (1 − p_repeat) × (1 − p_stuffing)
    p_repeat = clip((R − tolerance) / (full − tolerance), 0, 1),
    R = max(dup_sentence_ratio, near_dup_ratio, semantic_dup_ratio)        (repetition.py, semantic.py)
    p_stuffing = keyword-stuffing severity                                  (repetition.stuffing_stats)

* ``structure_gate`` is 1 iff, after stripping surrounding whitespace and ``ignored_suffixes``, the
  response is exactly ``<think>T</think>``, optional whitespace, ``<answer>A</answer>``; each of the four
  tags occurs exactly once; no text but whitespace lies outside the two blocks; and ``A`` holds at least
  ``min_answer_words`` words (CJK characters + English words). Otherwise 0, with a ``reason``.
* Signals combine by ``max`` (one duplicated paragraph also shows up as duplicated sentences: no double
  counting) and the two independent penalties multiply their keep-factors.
* Repetition is measured on the answer only; the thinking part is planning and may restate the task.
* ``structure='direct'`` is the gate of the Direct-Answer (no-think) template (paper.md §6.2, the
  Base-nothink ablation): exactly one ``<answer>A</answer>``, no think tag anywhere, nothing outside;
  the repetition/stuffing penalty is unchanged. It must match ``prompts.template`` (checked by the GRPO
  job config), so each arm of the think ablation is scored against the format its prompt asks for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from megatron_lwz.config.base import ConfigError
from megatron_lwz.rewards.length import CJK_CHAR_RE, ENGLISH_WORD_RE, count_words
from megatron_lwz.rewards.repetition import RepetitionConfig, line_paragraphs, repetition_stats
from megatron_lwz.rewards.semantic import SemanticRepetitionConfig

if TYPE_CHECKING:
    from megatron_lwz.rewards.semantic import ParagraphEmbedder

TAG_RE = re.compile(r"</?(?:think|answer)>")
EXPECTED_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
DIRECT_TAGS = ["<answer>", "</answer>"]


@dataclass(kw_only=True)
class FormatRewardConfig:
    """Every threshold of the Format RM (structure gate, repetition, stuffing, semantic paraphrase)."""

    structure: Literal["think", "direct"] = "think"
    """Gate: 'think' = one <think>…</think> then one <answer>…</answer> (paper); 'direct' = one
    <answer>…</answer> and no think tag (Direct-Answer template). Must equal prompts.template."""
    ignored_suffixes: list[str] = field(default_factory=lambda: ["<|endoftext|>", "<|im_end|>"])
    """End-of-text markers a decoder may leave after </answer>; stripped before the structure check."""
    require_nonempty_think: bool = False
    """Also fail the gate when <think></think> holds only whitespace (the paper requires one segment)."""
    min_answer_words: int = 1
    """The answer must hold at least this many words (CJK characters + English words)."""
    repetition_tolerance: float = 0.05
    """Repeated share R up to this is free (recaps, refrains, a repeated short transition)."""
    repetition_full: float = 0.5
    """Repeated share R at which p_repeat reaches 1 (half the answer is a copy: score 0)."""
    repetition: RepetitionConfig = field(default_factory=RepetitionConfig)
    """Duplicate / near-duplicate / stuffing thresholds (repetition.py)."""
    semantic: SemanticRepetitionConfig = field(default_factory=SemanticRepetitionConfig)
    """Optional embedding paraphrase check (semantic.py); off by default."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.repetition_tolerance < self.repetition_full <= 1.0:
            raise ConfigError("format: need 0 <= repetition_tolerance < repetition_full <= 1 "
                             f"(got {self.repetition_tolerance}, {self.repetition_full})")


@dataclass(kw_only=True)
class FormatResult:
    """Format RM score with its per-check breakdown."""

    score: float
    """Final reward in [0, 1]."""
    structure_ok: bool
    """Whether the <think>/<answer> structure gate passed."""
    reason: str
    """'ok' or why the gate failed (missing_answer, multiple_answer, nested_tags, text_outside, …)."""
    dup_sentence_ratio: float = 0.0
    dup_paragraph_ratio: float = 0.0
    near_dup_ratio: float = 0.0
    semantic_dup_ratio: float = 0.0
    stuffing: float = 0.0
    top_term: str | None = None
    top_term_share: float = 0.0
    repetition_penalty: float = 0.0
    penalty: float = 0.0


def _strip_suffixes(text: str, suffixes: list[str]) -> str:
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for suffix in suffixes:
            if suffix and text.endswith(suffix):
                text = text[: -len(suffix)].rstrip()
                changed = True
    return text


def check_structure(text: str, cfg: FormatRewardConfig | None = None) -> tuple[str, str | None]:
    """(reason, answer text) for a raw response; reason 'ok' means the structure gate passes."""
    cfg = cfg or FormatRewardConfig()
    text = _strip_suffixes(text, cfg.ignored_suffixes)
    tags = [(m.group(0), m.start(), m.end()) for m in TAG_RE.finditer(text)]
    names = [name for name, _, _ in tags]
    if not text:
        return "empty", None
    if cfg.structure == "direct":
        return _check_direct(text, tags, cfg)
    for tag in ("<think>", "<answer>"):
        if tag not in names and "</" + tag[1:] not in names:
            return f"missing_{tag[1:-1]}", None
    for tag in EXPECTED_TAGS:
        if names.count(tag) > 1:
            return f"multiple_{tag.strip('</>')}", None
    for tag in EXPECTED_TAGS:
        if names.count(tag) == 0:
            return ("unterminated_" if tag.startswith("</") else "unopened_") + tag.strip("</>"), None
    if names != EXPECTED_TAGS:
        pos = {name: i for i, name in enumerate(names)}
        closed_before_open = pos["</think>"] < pos["<think>"] or pos["</answer>"] < pos["<answer>"]
        answer_first = names == ["<answer>", "</answer>", "<think>", "</think>"]
        return ("wrong_order" if closed_before_open or answer_first else "nested_tags"), None
    (_, start, think_start), (_, think_stop, think_end), (_, answer_tag, answer_start), (_, answer_stop, end) = tags
    if text[:start].strip() or text[think_end:answer_tag].strip() or text[end:].strip():
        return "text_outside", None
    if cfg.require_nonempty_think and not text[think_start:think_stop].strip():
        return "empty_think", None
    answer = text[answer_start:answer_stop]
    if not answer.strip() or not _has_words(answer, cfg.min_answer_words):
        return "empty_answer", None
    return "ok", answer


def _check_direct(text: str, tags: list[tuple[str, int, int]], cfg: FormatRewardConfig) -> tuple[str, str | None]:
    """The Direct-Answer gate: exactly ``<answer>A</answer>`` (surrounding whitespace allowed), no think tag."""
    names = [name for name, _, _ in tags]
    if "<think>" in names or "</think>" in names:
        return "think_in_direct", None
    if "<answer>" not in names and "</answer>" not in names:
        return "missing_answer", None
    for tag in DIRECT_TAGS:
        if names.count(tag) > 1:
            return f"multiple_{tag.strip('</>')}", None
        if names.count(tag) == 0:
            return ("unterminated_" if tag.startswith("</") else "unopened_") + tag.strip("</>"), None
    if names != DIRECT_TAGS:
        return "wrong_order", None
    (_, start, answer_start), (_, answer_stop, end) = tags
    if text[:start].strip() or text[end:].strip():
        return "text_outside", None
    answer = text[answer_start:answer_stop]
    if not answer.strip() or not _has_words(answer, cfg.min_answer_words):
        return "empty_answer", None
    return "ok", answer


def _has_words(text: str, minimum: int) -> bool:
    if minimum <= 1:  # a search stops at the first word: no full count_words pass on 14K-word answers
        return minimum <= 0 or bool(CJK_CHAR_RE.search(text) or ENGLISH_WORD_RE.search(text))
    return count_words(text) >= minimum


def _ramp(value: float, start: float, full: float) -> float:
    return min(1.0, max(0.0, (value - start) / (full - start)))


def format_reward(text: str, cfg: FormatRewardConfig | None = None, *,
                  embedder: ParagraphEmbedder | None = None) -> FormatResult:
    """Format RM of one raw response (see the module docstring for the exact formula).

    ``embedder`` is required when ``cfg.semantic.enabled`` (``FormatReward`` builds it once).
    """
    cfg = cfg or FormatRewardConfig()
    reason, answer = check_structure(text, cfg)
    if answer is None:
        return FormatResult(score=0.0, structure_ok=False, reason=reason)
    stats = repetition_stats(answer, cfg.repetition)
    semantic = 0.0
    if cfg.semantic.enabled:
        if embedder is None:
            raise ValueError("format.semantic.enabled needs an embedder: use FormatReward(cfg) or pass embedder=")
        semantic = embedder.paraphrase_ratio(line_paragraphs(answer), stats.num_tokens)
    repeated = max(stats.dup_sentence_ratio, stats.near_dup_ratio, semantic)
    p_repeat = _ramp(repeated, cfg.repetition_tolerance, cfg.repetition_full)
    penalty = 1.0 - (1.0 - p_repeat) * (1.0 - stats.stuffing)
    return FormatResult(
        score=1.0 - penalty, structure_ok=True, reason="ok",
        dup_sentence_ratio=stats.dup_sentence_ratio, dup_paragraph_ratio=stats.dup_paragraph_ratio,
        near_dup_ratio=stats.near_dup_ratio, semantic_dup_ratio=semantic, stuffing=stats.stuffing,
        top_term=stats.top_term, top_term_share=stats.top_term_share,
        repetition_penalty=p_repeat, penalty=penalty,
    )


class FormatReward:
    """Callable Format RM holding its config and (when enabled) the paragraph embedder."""

    def __init__(self, cfg: FormatRewardConfig | None = None) -> None:
        self.cfg = cfg or FormatRewardConfig()
        self.embedder = None
        if self.cfg.semantic.enabled:
            from megatron_lwz.rewards.semantic import ParagraphEmbedder

            self.embedder = ParagraphEmbedder(self.cfg.semantic)

    def __call__(self, text: str) -> FormatResult:
        return format_reward(text, self.cfg, embedder=self.embedder)

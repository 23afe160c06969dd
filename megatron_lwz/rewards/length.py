"""Length RM of LongWriter-Zero (paper Eq. 3) and the word count it is measured in.

Eq. 3, with ``len(o)`` the word count of the ``<answer>`` text::

    r_length(o) = 1                                    if L_lower <= len(o) <= L_upper
                = len(o) / L_lower                     if len(o) <  L_lower
                = (L_max - len(o)) / (L_max - L_upper) if len(o) >  L_upper     (clipped to [0, 1])

Word count: CJK characters + English words, exactly as the authors' LongBench-Write evaluation code
(THUDM/LongWriter ``evaluation/pred.py``) and the LongWriter-Zero eval script count length::

    len(re.findall(r'[\\u4e00-\\u9fff]', text)) + len(re.findall(r'\\b[a-zA-Z]+\\b', text))

Digits, punctuation and non-Latin/non-CJK scripts therefore count 0, and "don't" is two words.

Choices the paper leaves open (paper.md §1.1, §11) and how we fill them:

* ``L_max`` (where the over-length branch reaches 0). Default **16,000 words**: it must exceed every
  ``L_upper`` the range predictor may emit (≤ 12,000), and 16,000 = 12,000 × 4/3 keeps a decay window
  (4,000) wider than the widest allowed range (3,000) even for prompts at the cap. It is also above what
  the paper's 14K-token budget holds in English (~10.5K words at ~1.33 Qwen2.5 tokens/word), so over-long
  English answers are penalised linearly rather than clipped flat. ``l_max_factor`` switches to the
  relative form ``L_max = factor × L_upper`` (per prompt) for a slope that scales with the target.
* ``L_lower = 0``: a count below the lower bound is impossible, so the ``len/L_lower`` branch never runs
  and nothing divides by 0. The range ``[0, 0]`` ("unfulfillable" in the predictor prompt, paper.md
  §1.3) is still scored by the same formula but such prompts are dropped from RL data by default
  (``is_fulfillable``; ``megatron_lwz.rewards.prompt_io.read_prompt_records``).
* What is measured: the ``<answer>`` text (``extract_answer``); see ``AnswerPolicy`` for missing tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from megatron_lwz.config.base import ConfigError

CJK_CHAR_RE = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_WORD_RE = re.compile(r"\b[a-zA-Z]+\b")
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
THINK_BLOCK_RE = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)

DEFAULT_L_MAX = 16_000
"""Default L_max in words (see the module docstring for the justification)."""
PREDICTOR_MAX_UPPER = 12_000
"""The largest L_upper the paper's range-predictor prompt allows (paper.md §1.3, rule 3)."""

AnswerPolicy = Literal["well_formed", "strict", "allow_unterminated", "whole_text"]
"""How ``extract_answer`` treats responses without a closed ``<answer>…</answer>``.

* ``well_formed`` (default of the RL rewards): exactly one ``<answer>`` and one ``</answer>`` in the
  response, and no think tag inside the answer; otherwise there is no answer (length 0, empty text for
  the Writing RM). Beyond the paper: with ``strict``, a policy that repeats ``…</think> <answer>…``
  segments was seen (CPU demo, step ~15) to inflate the Length RM and the Writing RM through the first
  ``<answer>`` … last ``</answer>`` span while only the Format RM objected — 2 rewards to 1 in Eq. 5.

* ``strict`` (default): only the first closed ``<answer>…</answer>`` counts (the regex of the
  LongWriter-Zero eval script, paper.md §6.3); otherwise there is no answer and its length is 0.
* ``allow_unterminated``: additionally, an opening ``<answer>`` with no closing tag (a truncated,
  ``finish_reason == 'length'`` sample) yields the text after the last ``<answer>``.
* ``whole_text``: additionally, a response without any ``<answer>`` tag yields the whole response with
  ``<think>…</think>`` blocks removed (for Direct-Answer / untagged models).
"""


def count_words(text: str) -> int:
    """Number of CJK characters plus English words (the authors' LongBench-Write ``count_words``)."""
    return len(CJK_CHAR_RE.findall(text)) + len(ENGLISH_WORD_RE.findall(text))


def has_cjk(text: str) -> bool:
    """True when ``text`` holds a CJK character (the paper's rule for picking the Chinese template)."""
    return CJK_CHAR_RE.search(text) is not None


def detect_language(text: str) -> str:
    """'zh' if the text contains a CJK character else 'en' (model-card template selection, paper.md §6.1)."""
    return "zh" if has_cjk(text) else "en"


def extract_answer(response: str, policy: AnswerPolicy = "strict") -> str | None:
    """The text inside the first ``<answer>…</answer>`` of ``response`` (not stripped), or None.

    See ``AnswerPolicy`` for what happens without a closed answer block.
    """
    if policy == "well_formed":
        if response.count("<answer>") != 1 or response.count("</answer>") != 1:
            return None
        match = ANSWER_RE.search(response)
        if match is None or "<think>" in match.group(1) or "</think>" in match.group(1):
            return None
        return match.group(1)
    match = ANSWER_RE.search(response)
    if match is not None:
        return match.group(1)
    if policy == "strict":
        return None
    start = response.rfind("<answer>")
    if start >= 0:
        return response[start + len("<answer>"):]
    if policy == "whole_text":
        return THINK_BLOCK_RE.sub("", response)
    return None


def answer_word_count(response: str, policy: AnswerPolicy = "strict") -> int:
    """``count_words`` of the extracted answer; 0 when there is none."""
    answer = extract_answer(response, policy)
    return 0 if answer is None else count_words(answer)


def is_fulfillable(lower: int, upper: int) -> bool:
    """False for the predictor's "cannot be fulfilled / exceeds the limits" range ``[0, 0]``."""
    return not (lower == 0 and upper == 0)


def length_reward(num_words: int, lower: int, upper: int, l_max: float) -> float:
    """Paper Eq. 3 for an answer of ``num_words`` words and target range ``[lower, upper]``.

    Raises ValueError unless ``0 <= lower <= upper < l_max`` and ``num_words >= 0``. The over-length
    branch is clipped to [0, 1] (the formula itself goes negative past ``l_max``).
    """
    if num_words < 0:
        raise ValueError(f"num_words must be >= 0, got {num_words}")
    if not 0 <= lower <= upper:
        raise ValueError(f"length range must satisfy 0 <= lower <= upper, got [{lower}, {upper}]")
    if not l_max > upper:
        raise ValueError(f"l_max ({l_max}) must be greater than the upper bound ({upper}); raise l_max")
    if num_words < lower:  # implies lower > 0: no division by zero
        return num_words / lower
    if num_words <= upper:
        return 1.0
    return min(1.0, max(0.0, (l_max - num_words) / (l_max - upper)))


@dataclass(kw_only=True)
class LengthRewardConfig:
    """Settings of the Length RM (paper Eq. 3)."""

    l_max: float = DEFAULT_L_MAX
    """Absolute L_max in words: the over-length reward reaches 0 here (must exceed every L_upper)."""
    l_max_factor: float | None = None
    """If set (> 1), use the relative form L_max = l_max_factor × L_upper per prompt instead of l_max."""
    answer_policy: AnswerPolicy = "well_formed"
    """How the answer text is found; 'well_formed' = the one closed <answer> block of a well-formed response."""

    def __post_init__(self) -> None:
        if self.l_max_factor is not None and not self.l_max_factor > 1.0:
            raise ConfigError(f"length.l_max_factor must be > 1 (got {self.l_max_factor}); e.g. 2.0")
        if self.l_max_factor is None and not self.l_max > 0:
            raise ConfigError(f"length.l_max must be > 0 (got {self.l_max})")

    def l_max_for(self, upper: int) -> float:
        """L_max for a prompt whose range ends at ``upper`` (relative form if configured; the range
        [0, 0] has no scale and always uses the absolute ``l_max``)."""
        if self.l_max_factor is not None and upper > 0:
            return self.l_max_factor * upper
        if not self.l_max > upper:
            raise ValueError(f"length.l_max ({self.l_max}) must exceed L_upper ({upper}); raise length.l_max")
        return self.l_max


def length_reward_for_response(response: str, lower: int, upper: int,
                               cfg: LengthRewardConfig | None = None) -> float:
    """Eq. 3 applied to the answer of a raw ``<think>…</think><answer>…</answer>`` response."""
    cfg = cfg or LengthRewardConfig()
    return length_reward(answer_word_count(response, cfg.answer_policy), lower, upper, cfg.l_max_for(upper))

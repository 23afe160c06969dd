"""Think-format strings the data side needs: the paper's templates, tags, role markers and EOD.

The exact think prompts (paper.md §6.1, released strings) live in ``megatron_lwz.rollout.templates``
(stdlib only) and are re-exported here, so there is one source of truth. ``{question}`` is the only
placeholder; :func:`format_think_prompt` fills it by plain ``str.replace`` (braces in a question are
safe). The completion is expected to be ``<think>…</think> <answer>…</answer>`` (the format reward
allows whitespace between the segments); decoding stops at ``</answer>``, ``<|user|>`` or
``<|endoftext|>`` (paper.md §6.3).
"""

from __future__ import annotations

from megatron_lwz.rollout.templates import THINK_TEMPLATE_EN, THINK_TEMPLATE_ZH, is_chinese

THINK_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
"""The four format tags (single tokens in the tokenizers we train)."""
ROLE_MARKERS = ("<|user|>", "<|assistant|>", "<|用户|>", "<|助手|>")
"""Role markers of the English and Chinese templates (single tokens in the tokenizers we train)."""
EOD_TOKEN = "<|endoftext|>"
"""End-of-document token string (Qwen2.5's, and the EOD piece of the tokenizers we train)."""


def detect_language(text: str) -> str:
    """'zh' if ``text`` contains a CJK ideograph ``[\\u4e00-\\u9fff]`` else 'en' (the released selector)."""
    return "zh" if is_chinese(text) else "en"


def format_think_prompt(question: str, language: str | None = None) -> str:
    """The think template with ``question`` filled in; ``language`` None selects by CJK detection."""
    lang = detect_language(question) if language is None else language
    if lang not in ("en", "zh"):
        raise ValueError(f"language: {lang!r} is not 'en' or 'zh'")
    template = THINK_TEMPLATE_ZH if lang == "zh" else THINK_TEMPLATE_EN
    return template.replace("{question}", question, 1)


__all__ = ["THINK_TEMPLATE_EN", "THINK_TEMPLATE_ZH", "THINK_TAGS", "ROLE_MARKERS", "EOD_TOKEN",
           "detect_language", "format_think_prompt"]

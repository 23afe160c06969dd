"""The LongWriter-Zero think prompt templates (paper.md §6.1), verbatim, and language selection.

These are the exact raw-completion strings of the released model (R1-Zero style): one line each, the
English one with **two spaces** before ``<|user|>`` and "etc.." with two dots. ``{question}`` is the
only placeholder; fill it with :func:`format_think_prompt` (plain ``str.replace``, so braces inside a
question are safe). The model's completion is expected to be ``<think>…</think> <answer>…</answer>``;
decoding stops at ``<|user|>``, ``<|endoftext|>`` or ``</answer>`` (paper.md §6.3).
"""

from __future__ import annotations

import re

THINK_TEMPLATE_EN = (
    'A conversation between the user and the assistant. The user provides a writing/general '
    'task, and the assistant completes it. The assistant first deeply thinks through the '
    'writing/answering process in their mind before providing the final written work to the '
    'user. The assistant should engage in comprehensive and in-depth planning to ensure that '
    'every aspect of the writing/general task is detailed and well-structured. If there is any '
    'uncertainty or ambiguity in the writing request, the assistant should reflect, ask '
    'themselves clarifying questions, and explore multiple writing approaches to ensure the '
    'final output meets the highest quality standards. Since writing is both a creative and '
    'structured task, the assistant should analyze it from multiple perspectives, considering '
    'coherence, clarity, style, tone, audience, purpose, etc.. Additionally, the assistant '
    'should review and refine the work to enhance its expressiveness. The writing thought '
    'process and the final written work should be enclosed within <think> </think> and '
    '<answer> </answer> tags, respectively, as shown below: <think>A comprehensive strategy '
    'for writing that encompasses detailed planning and structural design—including '
    'brainstorming, outlining, style selection, audience adaptation, self-reflection, quality '
    'assurance, etc..</think> <answer>The final written work after thorough optimization and '
    'refinement.</answer>  <|user|>: {question} <|assistant|>:'
)
"""English think prompt (paper.md §6.1, verbatim)."""
THINK_TEMPLATE_ZH = (
    '用户与助手之间的对话。用户提供一个写作/通用任务，助手完成它。'
    '助手首先在脑海中深入思考写作/回答过程，然后向用户提供最终的书面作品。'
    '助手应进行全面而深入的规划，确保写作/通用任务的每个方面都详细且结构合理。'
    '如果写作要求存在任何不确定性或歧义，助手应反思，向自己提出澄清性问题，'
    '并探索多种写作方式，以确保最终作品达到最高质量标准。'
    '由于写作是一个既富有创造性又需要结构性的任务，助手应从多个角度进行分析，'
    '考虑连贯性、清晰度、风格、语气、受众和目的，等等因素。此外，'
    '助手还应对作品进行审查和优化，以增强其表达效果。'
    '写作思考过程和最终的书面作品分别用 <think> </think> 和 <answer> </answer> 标签包裹，'
    '如下所示：<think>详细的写作规划和结构设计，'
    '可能包括头脑风暴、大纲制定、风格选择、受众适配、反思以及质量检查等等。'
    '</think> <answer>经过充分优化和润色的最终书面作品。'
    '</answer> <|用户|>: {question} <|助手|>:'
)
"""Chinese think prompt (paper.md §6.1, verbatim)."""


THINK_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
"""The four format tags (must be single tokens in our trained tokenizers)."""
ROLE_MARKERS = ("<|user|>", "<|assistant|>", "<|用户|>", "<|助手|>")
"""Role markers used by the English and Chinese templates."""
EOD_TOKEN = "<|endoftext|>"
"""End-of-document token string (Qwen2.5's, and the EOD piece of tokenizers we train)."""
STOP_STRINGS = ("<|user|>", EOD_TOKEN, "</answer>")
"""Decoding stop strings of the released model (paper.md §6.3)."""

_CJK = re.compile(r"[\u4e00-\u9fff]")


def detect_language(text: str) -> str:
    """'zh' if ``text`` contains a CJK ideograph ``[\\u4e00-\\u9fff]`` else 'en' (the released selector)."""
    return "zh" if _CJK.search(text) else "en"


def format_think_prompt(question: str, language: str | None = None) -> str:
    """The think template with ``question`` filled in; ``language`` None selects by CJK detection."""
    lang = detect_language(question) if language is None else language
    if lang not in ("en", "zh"):
        raise ValueError(f"language: {lang!r} is not 'en' or 'zh'")
    template = THINK_TEMPLATE_ZH if lang == "zh" else THINK_TEMPLATE_EN
    return template.replace("{question}", question)

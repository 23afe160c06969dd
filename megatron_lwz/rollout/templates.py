"""Prompt templates of LongWriter-Zero (paper §3.1 / Appendix; exact released strings).

* **Think** format (the RL format of the paper, R1-Zero style raw completion prompt): the exact
  English and Chinese strings of the released model card (reference paper.md §6.1), one line
  each; the English one has *two* spaces before ``<|user|>`` and "etc.." with two dots, exactly as
  released. The language is chosen like the released code:
  ``re.search(r'[\u4e00-\u9fff]', question)`` → Chinese, else English.
* **Direct-Answer** (no-think) format used for the Base-nothink ablation (paper figure, reference
  §6.2): the five instruction lines joined by newlines. The paper does not show how the user turn is
  attached to it; we append it on a new line with the same ``<|user|>: … <|assistant|>:`` markers as
  the think format, so the same stop strings apply. There is no Chinese version in the paper; the
  English instruction is used for every language.

The model is expected to answer ``<think>…</think> <answer>…</answer>``; generation stops at
``</answer>`` (kept in the text, it is what the Format reward checks) or at the next ``<|user|>``.
"""

from __future__ import annotations

import re
from typing import Literal

TemplateName = Literal["think", "direct"]

_CJK = re.compile(r"[\u4e00-\u9fff]")

DEFAULT_STOP: tuple[str, ...] = ("</answer>", "<|user|>", "<|endoftext|>")
"""Stop strings of the released decoding setup (paper.md §6.3), for the think and direct formats."""

# fmt: off
THINK_TEMPLATE_EN = (
    'A conversation between the user and the assistant. The user provides a writing/general '
    'task, and the assistant completes it. The assistant first deeply thinks through the '
    'writing/answering process in their mind before providing the final written work to the '
    'user. The assistant should engage in comprehensive and in-depth planning to ensure that '
    'every aspect of the writing/general task is detailed and well-structured. If there is '
    'any uncertainty or ambiguity in the writing request, the assistant should reflect, ask '
    'themselves clarifying questions, and explore multiple writing approaches to ensure the '
    'final output meets the highest quality standards. Since writing is both a creative and '
    'structured task, the assistant should analyze it from multiple perspectives, considering '
    'coherence, clarity, style, tone, audience, purpose, etc.. Additionally, the assistant '
    'should review and refine the work to enhance its expressiveness. The writing thought '
    'process and the final written work should be enclosed within <think> </think> and <answer> '
    '</answer> tags, respectively, as shown below: <think>A comprehensive strategy for writing '
    'that encompasses detailed planning and structural design—including brainstorming, outlining, '
    'style selection, audience adaptation, self-reflection, quality assurance, etc..</think> '
    '<answer>The final written work after thorough optimization and refinement.</answer> '
    ' <|user|>: {question} <|assistant|>:'
)

THINK_TEMPLATE_ZH = (
    '用户与助手之间的对话。用户提供一个写作/通用任务，助手完成它。助手首先在脑海中深'
    '入思考写作/回答过程，然后向用户提供最终的书面作品。助手应进行全面而深入的规划，'
    '确保写作/通用任务的每个方面都详细且结构合理。如果写作要求存在任何不确定性或歧义'
    '，助手应反思，向自己提出澄清性问题，并探索多种写作方式，以确保最终作品达到最高质'
    '量标准。由于写作是一个既富有创造性又需要结构性的任务，助手应从多个角度进行分析，'
    '考虑连贯性、清晰度、风格、语气、受众和目的，等等因素。此外，助手还应对作品进行审'
    '查和优化，以增强其表达效果。写作思考过程和最终的书面作品分别用 <think> '
    '</think> 和 <answer> </answer> 标签包裹，如下所示：'
    '<think>详细的写作规划和结构设计，可能包括头脑风暴、大纲制定、风格选择、受'
    '众适配、反思以及质量检查等等。</think> <answer>经过充分优化和润'
    '色的最终书面作品。</answer> <|用户|>: {question} <|'
    '助手|>:'
)

DIRECT_INSTRUCTION = (
    'A conversation between the user and the assistant.\n'
    'The user provides a writing/general task, and the assistant completes it.\n'
    'The assistant directly provides the final written work.\n'
    'The final written work should be enclosed within <answer> tags, as shown below:\n'
    '<answer>Final written work.</answer>'
)
# fmt: on

DIRECT_TEMPLATE = DIRECT_INSTRUCTION + "\n<|user|>: {question} <|assistant|>:"

_SLOT = "{question}"


def is_chinese(question: str) -> bool:
    """True when ``question`` contains a CJK Unified Ideograph (the released selection rule)."""
    return _CJK.search(question) is not None


def think_template(question: str) -> str:
    """The think template (with its ``{question}`` slot) that the released code picks for ``question``."""
    return THINK_TEMPLATE_ZH if is_chinese(question) else THINK_TEMPLATE_EN


def format_prompt(question: str, template: TemplateName = "think") -> str:
    """Return the raw completion prompt for ``question`` in the ``template`` format.

    The question is substituted literally (no ``str.format``), so braces in it are safe.
    """
    if template == "think":
        text = think_template(question)
    elif template == "direct":
        text = DIRECT_TEMPLATE
    else:
        raise ValueError(f"template={template!r} is not one of ['think', 'direct']")
    return text.replace(_SLOT, question, 1)


def default_stop(template: TemplateName = "think") -> list[str]:
    """Default stop strings for ``template`` (a fresh list the caller may extend)."""
    if template not in ("think", "direct"):
        raise ValueError(f"template={template!r} is not one of ['think', 'direct']")
    return list(DEFAULT_STOP)

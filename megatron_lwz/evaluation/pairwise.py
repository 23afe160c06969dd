"""Pairwise judges of ``lwz eval arena``: an LLM with a pairwise prompt, or our Writing RM.

Verdict convention (MT-Bench / Chatbot Arena "pair-v2", which Arena-Write's "evaluated twice with
flipped order" judging builds on; the paper does not publish its judge prompt, reference notes §9.2):
the judge ends its reply with ``[[A]]`` (first answer better), ``[[B]]`` (second better) or ``[[C]]``
(tie). The last verdict after any ``<think>`` block counts; a reply without one is unusable (re-asked,
then a failed judgment).

Prompts (``PAIR_PROMPTS``):

* ``mt-bench-pair-v2``: FastChat's ``pair-v2`` system prompt and template, verbatim;
* ``writing``: the same with the sentence "Do not allow the length of the responses to influence your
  evaluation." replaced by one that asks to check explicit requirements (length, format, style) — for
  long-form writing tasks, where meeting a requested length is part of the task.

The Writing-RM judge scores both answers with the Bradley–Terry RM (paper Eq. 4:
P(A ≻ B) = σ(r_A − r_B)) and says ``A`` when r_A − r_B > ``margin``, ``B`` when < −margin, else ``C``.
It sees the same ``(question, answer)`` input as in GRPO; it is position-free, so both orders agree.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from megatron_lwz.rewards.llm_client import strip_reasoning

VERDICT_RE = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_SLOT_RE = re.compile(r"\{(question|answer_a|answer_b)\}")

_MT_BENCH_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. You should choose the assistant that follows the user's instructions and "
    "answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of the "
    "responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as "
    "possible. After providing your explanation, output your final verdict by strictly following this format: "
    "\"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie.")
_TEMPLATE = ("[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n"
             "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n"
             "[The End of Assistant B's Answer]")
_WRITING_SYSTEM = _MT_BENCH_SYSTEM.replace(
    "Do not allow the length of the responses to influence your evaluation.",
    "Check whether each response meets the explicit requirements of the task (such as length, format and "
    "style); beyond them, do not prefer a response for being longer.")

PAIR_PROMPTS: dict[str, tuple[str, str]] = {
    "mt-bench-pair-v2": (_MT_BENCH_SYSTEM, _TEMPLATE),
    "writing": (_WRITING_SYSTEM, _TEMPLATE),
}
"""name → (system prompt, user template with {question}, {answer_a}, {answer_b})."""


def parse_verdict(text: str) -> str | None:
    """'A', 'B' or 'C' (the last ``[[X]]`` after reasoning), or None."""
    found = VERDICT_RE.findall(strip_reasoning(text))
    return found[-1] if found else None


def pair_messages(prompt_name: str, question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    """System + user messages of one ordered comparison (plain substitution: braces in texts are safe)."""
    if prompt_name not in PAIR_PROMPTS:
        raise ValueError(f"judge prompt {prompt_name!r} is not one of {sorted(PAIR_PROMPTS)}")
    system, template = PAIR_PROMPTS[prompt_name]
    values = {"question": question, "answer_a": answer_a, "answer_b": answer_b}
    user = _SLOT_RE.sub(lambda m: values[m.group(1)], template)  # one pass: slot-like text in inputs stays
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


ScoreFn = Callable[[Sequence[str], Sequence[str]], list[float]]
"""``score(questions, answers) -> scores`` (the Writing RM's batched interface, WritingRMScorer)."""


def rm_verdicts(score: ScoreFn, questions: Sequence[str], answers_a: Sequence[str], answers_b: Sequence[str], *,
                margin: float = 0.0, batch_size: int = 64) -> list[tuple[str, float]]:
    """(verdict, r_A − r_B) per comparison from the Writing RM (see module doc)."""
    out: list[tuple[str, float]] = []
    for lo in range(0, len(questions), batch_size):
        qs = list(questions[lo:lo + batch_size])
        scores = score(qs + qs, list(answers_a[lo:lo + batch_size]) + list(answers_b[lo:lo + batch_size]))
        for ra, rb in zip(scores[:len(qs)], scores[len(qs):]):
            diff = float(ra) - float(rb)
            out.append(("A" if diff > margin else "B" if diff < -margin else "C", diff))
    return out

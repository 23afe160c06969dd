"""Judges behind the reward channels beyond the paper (``reward.pairwise``, ``reward.rubric``).

Two kinds:

* an **LLM judge**: any OpenAI-compatible server (a vLLM server on its own GPUs in the recipes) through
  the one judge client of ``rewards/llm_client.py`` (batched, concurrent, disk-cached, failures as
  ``LLMError`` values). This module only needs the small ``ChatClient`` protocol below; ``ask`` adds the
  per-step statistics (requests, failures, token counts, wall time) that become ``reward/<channel>/*``.
* a **local pairwise judge**: the Bradley–Terry Writing RM, P(A ≻ B) = σ(r_A − r_B) (paper Eq. 4's model
  of a preference), so CPU runs and ablations need no server.

Verdicts of the pairwise prompt follow the arena convention of ``lwz eval arena``: the judge ends its
reply with ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie); the last one in the reply counts.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from megatron_lwz.rewards.llm_client import LLMError, Message, strip_reasoning

VERDICT_RE = re.compile(r"\[\[\s*([ABC])\s*\]\]")
VERDICT_VALUE = {"A": 1.0, "B": 0.0, "C": 0.5}


class ChatClient(Protocol):
    """What the judge channels need from the judge client: conversations in, one reply (or error) each."""

    def chat_many(self, conversations: Sequence[list[Message]]) -> list[Any]:
        """One reply per conversation, in order: a ``ChatResult`` (text, token counts, cached) or an ``LLMError``."""
        ...


@dataclass
class JudgeStats:
    """Per-step judge accounting (reset by ``take``)."""

    requests: int = 0
    failures: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def take(self, prefix: str) -> dict[str, float]:
        """``{prefix}/{requests,failed_requests,cache_hits,prompt_tokens,completion_tokens,latency_s}``, then reset.

        Tokens count the replies the server produced this step (cached replies cost nothing)."""
        out = {f"{prefix}/requests": float(self.requests), f"{prefix}/failed_requests": float(self.failures),
               f"{prefix}/cache_hits": float(self.cache_hits),
               f"{prefix}/prompt_tokens": float(self.prompt_tokens),
               f"{prefix}/completion_tokens": float(self.completion_tokens), f"{prefix}/latency_s": self.seconds}
        self.requests = self.failures = self.cache_hits = self.prompt_tokens = self.completion_tokens = 0
        self.seconds = 0.0
        return out


def _reply_text(reply: Any) -> str:
    text = reply if isinstance(reply, str) else getattr(reply, "text", None)
    if not isinstance(text, str):
        raise LLMError(f"judge reply without text: {str(reply)[:200]}")
    return text


def _tokens(reply: Any, name: str) -> int:
    return int(getattr(reply, name, None) or 0)  # ChatResult: None when the server sent no usage


def ask(client: ChatClient, conversations: Sequence[list[Message]], stats: JudgeStats) -> list[str | LLMError]:
    """The judge's texts for ``conversations`` (an ``LLMError`` in place of each failed one), counted in ``stats``."""
    if not conversations:
        return []
    start = time.perf_counter()
    replies = list(client.chat_many(list(conversations)))
    stats.seconds += time.perf_counter() - start
    if len(replies) != len(conversations):
        raise LLMError(f"judge client returned {len(replies)} replies for {len(conversations)} conversations")
    out: list[str | LLMError] = []
    for reply in replies:
        stats.requests += 1
        if isinstance(reply, BaseException):
            stats.failures += 1
            out.append(reply if isinstance(reply, LLMError) else LLMError(f"{type(reply).__name__}: {reply}"))
            continue
        try:
            out.append(_reply_text(reply))
        except LLMError as err:
            stats.failures += 1
            out.append(err)
            continue
        if getattr(reply, "cached", False):
            stats.cache_hits += 1
            continue
        stats.prompt_tokens += _tokens(reply, "prompt_tokens")
        stats.completion_tokens += _tokens(reply, "completion_tokens")
    return out


def parse_verdict(text: str) -> float:
    """1.0 if the first answer wins (``[[A]]``), 0.0 (``[[B]]``), 0.5 (tie ``[[C]]``); the last verdict counts."""
    found = VERDICT_RE.findall(strip_reasoning(text))
    if not found:
        raise LLMError(f"no [[A]]/[[B]]/[[C]] verdict in judge reply: {text[-200:]!r}")
    return VERDICT_VALUE[found[-1]]


PAIRWISE_SYSTEM = (
    "You are an impartial judge of writing. You see one writing request and two responses, A and B. "
    "Decide which response fulfils the request better: relevance, depth, structure, style, and any "
    "explicit requirement of the request (length, format, audience). Ignore the order in which the "
    "responses are shown, and do not prefer a response for being longer or for repeating itself. "
    "Explain briefly, then end your reply with exactly one verdict: [[A]] if A is better, [[B]] if B is "
    "better, [[C]] for a tie.")


def pairwise_messages(question: str, first: str, second: str) -> list[Message]:
    """The pairwise judging conversation (first answer shown as A)."""
    user = f"[Writing request]\n{question}\n\n[Response A]\n{first}\n\n[Response B]\n{second}"
    return [{"role": "system", "content": PAIRWISE_SYSTEM}, {"role": "user", "content": user}]


class LLMPairJudge:
    """P(first ≻ second) ∈ {0, ½, 1} from an LLM judge's verdict (one request per ordered pair)."""

    collective = False

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.stats = JudgeStats()

    def prefer_first(self, items: Sequence[tuple[str, str, str]]) -> list[float | LLMError]:
        texts = ask(self.client, [pairwise_messages(q, a, b) for q, a, b in items], self.stats)
        out: list[float | LLMError] = []
        for text in texts:
            try:
                out.append(text if isinstance(text, LLMError) else parse_verdict(text))
            except LLMError as err:
                out.append(err)
        return out


class RMPairJudge:
    """The Bradley–Terry Writing RM as a local pairwise judge: P(first ≻ second) = σ(r_first − r_second).

    Every distinct (question, answer) is scored once per call (batched through ``score_writing``, a
    collective call on the policy's allocation, so every rank runs it).
    """

    collective = True

    def __init__(self, score_writing: Callable[[list[str], list[str]], Sequence[float]]) -> None:
        self.score_writing = score_writing
        self.stats = JudgeStats()

    def prefer_first(self, items: Sequence[tuple[str, str, str]]) -> list[float | LLMError]:
        keys = list(dict.fromkeys((q, a) for q, first, second in items for a in (first, second)))
        start = time.perf_counter()
        try:
            scores = [float(x) for x in self.score_writing([q for q, _ in keys], [a for _, a in keys])]
            if len(scores) != len(keys) or not all(math.isfinite(x) for x in scores):
                raise ValueError(f"score_writing gave {len(scores)} finite-checked scores for {len(keys)} answers")
        except Exception as err:  # never fatal: every judgment of this call fails
            self.stats.failures += len(items)
            self.stats.requests += len(items)
            return [LLMError(f"writing RM judge: {type(err).__name__}: {err}")] * len(items)
        self.stats.seconds += time.perf_counter() - start
        self.stats.requests += len(items)
        score = dict(zip(keys, scores))
        return [1.0 / (1.0 + math.exp(-(score[(q, a)] - score[(q, b)]))) for q, a, b in items]


def on_rank0(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on global rank 0 only and broadcast its result (all ranks hold the same rollout, so one
    judge pass serves them all); a plain call without an initialised process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return fn()
    holder = [fn() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]

"""Asking an LLM judge through the one client (``rewards/llm_client.py``) until its reply parses.

``JudgeConfig`` is the judge of every evaluation command: an OpenAI-compatible endpoint (``url``),
model name, sampling (None = the protocol's), concurrency / timeout / retry limits and the reply cache
(``<out>/judge_cache.sqlite`` unless set). ``ask_parsed`` sends every conversation once (concurrently,
with a progress bar), parses each reply, and re-asks only the unusable ones up to ``reask`` times —
each re-ask is a new cache entry (``Sampling.sample`` = attempt number), so a rerun replays the same
replies from the cache and makes no request at all. Transport failures (after the client's own
retries on 429 / 5xx / timeouts) are not re-asked here: they are reported as failed judgments, and
— failures are not cached — asked again by the next run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from megatron_lwz.rewards.llm_client import ChatResult, EndpointConfig, LLMError, Message, OpenAIClient, Sampling


@dataclass(kw_only=True)
class JudgeConfig:
    """An LLM judge behind an OpenAI-compatible endpoint."""

    url: str
    """Base URL of the endpoint, e.g. http://judge-host:8000/v1."""
    model: str | None = None
    """Model name sent to the endpoint; None = the protocol's judge model."""
    temperature: float | None = None
    """Judge sampling temperature; None = the protocol's."""
    top_p: float | None = None
    """Judge nucleus mass; None = the protocol's."""
    max_tokens: int | None = None
    """Judge reply budget in tokens; None = the protocol's."""
    reask: int = 2
    """Extra asks for a reply that does not parse (missing score / verdict, malformed JSON)."""
    concurrency: int = 16
    """Judge requests in flight."""
    timeout_s: float = 600.0
    """Per-request timeout."""
    max_retries: int = 6
    """Client retries on 429 / 5xx / timeouts (exponential backoff)."""
    backoff_s: float = 2.0
    """First retry delay (doubles per retry)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable with the API key."""
    cache_path: str | None = None
    """Reply cache (SQLite); None = <out>/judge_cache.sqlite."""


@dataclass
class Asked:
    """Outcome of one judged conversation."""

    parsed: Any | None
    """The parser's value, or None when no reply parsed."""
    reply: ChatResult | LLMError
    """The last reply (or the transport error)."""
    attempts: int
    """Asks made for it (1 + re-asks), whether cached or not."""
    prompt_tokens: int = 0
    """Prompt tokens over all its replies (cached replies included: the cost of the judgment)."""
    completion_tokens: int = 0
    """Completion tokens over all its replies."""

    @property
    def error(self) -> str | None:
        if self.parsed is not None:
            return None
        if isinstance(self.reply, LLMError):
            return f"request failed: {self.reply}"
        return "unparseable reply"


def make_client(cfg: JudgeConfig, default_model: str, out_dir: Path) -> OpenAIClient:
    """The judge client: ``cfg`` on top of the protocol's defaults, cache under ``out_dir``."""
    cache = cfg.cache_path or str(out_dir / "judge_cache.sqlite")
    endpoint = EndpointConfig(url=cfg.url, model=cfg.model or default_model, api_key_env=cfg.api_key_env,
                              timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, backoff_s=cfg.backoff_s,
                              concurrency=cfg.concurrency, cache_path=cache)
    return OpenAIClient(endpoint)


def ask_parsed(client: OpenAIClient, conversations: Sequence[list[Message]], sampling: Sampling,
               parse: Callable[[str], Any | None], *, reask: int, desc: str) -> list[Asked]:
    """One ``Asked`` per conversation: ask, parse, re-ask the unusable replies (see module doc)."""
    results: list[Asked | None] = [None] * len(conversations)
    pending = list(range(len(conversations)))
    for attempt in range(reask + 1):
        if not pending:
            break
        label = desc if attempt == 0 else f"{desc} (re-ask {attempt})"
        replies = client.chat_many([conversations[i] for i in pending],
                                   replace(sampling, sample=attempt), desc=label)
        still = []
        for i, reply in zip(pending, replies):
            previous = results[i]
            tokens = (0, 0) if previous is None else (previous.prompt_tokens, previous.completion_tokens)
            value = None if isinstance(reply, LLMError) else parse(reply.text)
            if isinstance(reply, ChatResult):
                tokens = (tokens[0] + (reply.prompt_tokens or 0), tokens[1] + (reply.completion_tokens or 0))
            results[i] = Asked(parsed=value, reply=reply, attempts=attempt + 1, prompt_tokens=tokens[0],
                               completion_tokens=tokens[1])
            if value is None and isinstance(reply, ChatResult):
                still.append(i)
        pending = still
    return [r for r in results if r is not None]

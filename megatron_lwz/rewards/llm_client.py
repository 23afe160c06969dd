"""The one LLM client of megatron_lwz: any OpenAI-compatible endpoint (vLLM, SGLang, TGI, hosted APIs).

Everything that asks an LLM goes through ``OpenAIClient`` (length-range predictor, prompt judge,
WritingBench critic, arena judge, generative GRPO rewards):

* ``chat(messages, sampling=None) -> ChatResult`` — one chat-completions call; raises ``LLMError``.
* ``chat_many(conversations, sampling=None, desc=None) -> list[ChatResult | LLMError]`` — batched and
  concurrent, order kept; a conversation that failed for good yields its ``LLMError`` in place of the
  result (the batch never dies). ``sampling`` may be one ``Sampling`` or one per conversation; ``desc``
  shows a tqdm bar.
* ``complete(prompt) -> str`` / ``generate(prompts) -> list[str | LLMError]`` — the single-user-message
  (or raw ``/completions`` with ``api='completions'``) form of the length predictor and prompt filter.
* ``usage`` — thread-safe counters of this client: HTTP requests sent, retries, cache hits, failures,
  prompt and completion tokens of the replies received.

``ChatResult``: ``text`` (a ``reasoning_content`` field of vLLM/SGLang reasoning parsers is folded back
as ``<think>…</think>``), ``prompt_tokens`` / ``completion_tokens`` (the server's ``usage``; None when it
sends none), ``finish_reason`` and ``cached`` (True when served from the on-disk cache).

Rules:

* transport is the maintained ``openai`` package (httpx connection pooling, timeouts, typed errors)
  with its own retries off, so that one policy covers every failure: connection errors, timeouts,
  HTTP 408/409/429/5xx and unparseable bodies are retried ``max_retries`` times with exponential
  backoff ``backoff_s · 2^attempt`` (±25 % jitter, capped at ``max_backoff_s``; a ``Retry-After``
  header is honoured up to that cap); other 4xx fail at once (a bad request does not get better);
* at most ``concurrency`` requests of one client are in flight at once, whichever threads send them;
* with ``cache_path`` (or a ``ResponseCache`` passed in) successful replies are stored on disk keyed by
  (model, messages, resolved sampling) — see ``llm_cache`` — so an interrupted run resumes without
  re-asking; failures are not cached (a rerun asks again).

The API key is read from the environment variable named by ``api_key_env``; without one the
placeholder ``EMPTY`` is sent (vLLM's convention; servers started without ``--api-key`` ignore it).
``extract_json`` pulls the last JSON object out of a reply that may start with reasoning text or a
``<think>…</think>`` block (QwQ-32B, the paper's predictor model, always reasons first).
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Literal, Sequence, TypeVar

from megatron_lwz.config.base import ConfigError
from megatron_lwz.rewards.llm_cache import ResponseCache, cache_key

GenerateFn = Callable[[list[str]], list[str]]
"""A batched text generator: prompts in, one completion per prompt out (our rollout engine fits)."""
Message = dict[str, str]
"""One chat message: ``{"role": "system" | "user" | "assistant", "content": text}``."""

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)
_BODY_PARAMS = ("temperature", "top_p", "max_tokens", "seed")
_T = TypeVar("_T")
_R = TypeVar("_R")


class LLMError(RuntimeError):
    """A request failed for good (after retries) or the server's reply was unusable.

    ``status`` is the last HTTP status (None for connection errors, timeouts and bad bodies).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(kw_only=True)
class EndpointConfig:
    """An OpenAI-compatible HTTP endpoint (length predictor, prompt judge, evaluation judges)."""

    url: str
    """Base URL, e.g. http://host:8000/v1 (the /chat/completions or /completions path is appended)."""
    model: str
    """Model name sent in the request (e.g. Qwen/QwQ-32B, the paper's predictor)."""
    api: Literal["chat", "completions"] = "chat"
    """'chat' → POST {url}/chat/completions with one user message; 'completions' → raw prompt."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the bearer token (unset or empty → the placeholder 'EMPTY')."""
    temperature: float = 0.6
    """Default sampling temperature (QwQ-32B's recommended 0.6); a request's Sampling overrides it."""
    top_p: float | None = None
    """Default nucleus-sampling mass; None = not sent (the server's default)."""
    max_tokens: int = 8192
    """Default completion token budget (reasoning models need room to think before the JSON)."""
    seed: int | None = None
    """Default sampling seed sent to the server; None = not sent."""
    timeout_s: float = 300.0
    """Per-request timeout in seconds."""
    max_retries: int = 4
    """Retries after the first attempt for transient failures."""
    backoff_s: float = 2.0
    """First retry delay; doubles every retry."""
    max_backoff_s: float = 60.0
    """Upper bound of one retry delay."""
    concurrency: int = 8
    """Requests of one client in flight at once."""
    cache_path: str | None = None
    """SQLite file caching successful replies by (model, messages, sampling); None = no cache."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint.url must start with http:// or https://, got {self.url!r}")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.concurrency < 1:
            raise ConfigError("endpoint: need timeout_s > 0, max_retries >= 0, concurrency >= 1")


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """Sampling of one request; None fields fall back to the ``EndpointConfig`` defaults."""

    temperature: float | None = None
    """Sampling temperature."""
    top_p: float | None = None
    """Nucleus-sampling mass."""
    max_tokens: int | None = None
    """Completion token budget."""
    seed: int | None = None
    """Server-side sampling seed; also part of the cache key (vary it for independent samples)."""
    extra_body: dict[str, Any] | None = None
    """Further body fields passed through as-is (e.g. vLLM's ``top_k``); part of the cache key."""
    sample: int = 0
    """Index of an independent sample of the same request: part of the cache key only, never sent
    (a re-ask after an unusable reply, or k judge samples from a server that ignores ``seed``)."""


@dataclass
class ChatResult:
    """One reply: text plus the server's token counts."""

    text: str
    """Reply text (reasoning folded back as ``<think>…</think>``)."""
    prompt_tokens: int | None = None
    """Prompt tokens the server counted (None if it sent no ``usage``)."""
    completion_tokens: int | None = None
    """Completion tokens the server counted (None if it sent no ``usage``)."""
    finish_reason: str | None = None
    """'stop', 'length' (hit max_tokens), … as sent by the server."""
    cached: bool = False
    """True when served from the on-disk cache (no request was made)."""


@dataclass
class UsageStats:
    """Counters of one client (thread-safe through ``add``)."""

    requests: int = 0
    """HTTP requests sent (every attempt, retries included)."""
    retries: int = 0
    """Attempts after a transient failure."""
    cache_hits: int = 0
    """Calls answered from the cache."""
    failures: int = 0
    """Calls that ended in an LLMError."""
    prompt_tokens: int = 0
    """Prompt tokens of the replies received (not of cached ones)."""
    completion_tokens: int = 0
    """Completion tokens of the replies received (not of cached ones)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class OpenAIClient:
    """Blocking client for one endpoint; thread-safe. See the module docstring for the API."""

    def __init__(self, cfg: EndpointConfig, *, sleep: Callable[[float], None] = time.sleep,
                 cache: ResponseCache | None = None) -> None:
        import openai  # import here: `lwz --help` and reward-only users stay light

        self.cfg = cfg
        self.usage = UsageStats()
        self.cache = cache if cache is not None else (ResponseCache(cfg.cache_path) if cfg.cache_path else None)
        self._sleep = sleep
        self._rng = random.Random(0)
        self._rng_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(cfg.concurrency)
        self._openai = openai
        self._client = openai.OpenAI(base_url=cfg.url.rstrip("/"), api_key=os.environ.get(cfg.api_key_env) or "EMPTY",
                                     timeout=cfg.timeout_s, max_retries=0)

    # ------------------------------------------------------------------ public API
    def chat(self, messages: Sequence[Message], sampling: Sampling | None = None) -> ChatResult:
        """One chat completion of ``messages`` (cached, retried); raises LLMError when it fails for good."""
        if self.cfg.api != "chat":
            raise LLMError(f"{self.cfg.url}: chat() needs api='chat' (this endpoint is configured as 'completions')")
        return self._ask({"messages": [dict(m) for m in messages]}, sampling)

    def chat_many(self, conversations: Sequence[Sequence[Message]],
                  sampling: Sampling | Sequence[Sampling | None] | None = None, *,
                  desc: str | None = None) -> list[ChatResult | LLMError]:
        """``chat`` over ``conversations`` with up to ``concurrency`` in flight; failures returned, not raised."""
        per = list(sampling) if isinstance(sampling, (list, tuple)) else [sampling] * len(conversations)
        if len(per) != len(conversations):
            raise ValueError(f"chat_many: {len(per)} samplings for {len(conversations)} conversations")

        def one(item: tuple[Sequence[Message], Sampling | None]) -> ChatResult | LLMError:
            try:
                return self.chat(item[0], item[1])
            except LLMError as err:
                return err

        return self._map(one, list(zip(conversations, per)), desc)

    def complete(self, prompt: str) -> str:
        """One completion of ``prompt`` (one user message, or a raw prompt with api='completions')."""
        payload = {"messages": [{"role": "user", "content": prompt}]} if self.cfg.api == "chat" else {"prompt": prompt}
        return self._ask(payload, None).text

    def generate(self, prompts: Sequence[str], *, desc: str | None = None) -> list[str | LLMError]:
        """Completions for ``prompts`` in order; a prompt that failed for good yields its LLMError."""

        def one(prompt: str) -> str | LLMError:
            try:
                return self.complete(prompt)
            except LLMError as err:
                return err

        return self._map(one, list(prompts), desc)

    def close(self) -> None:
        """Close the HTTP connection pool and the cache file."""
        self._client.close()
        if self.cache is not None:
            self.cache.close()

    # ------------------------------------------------------------------ internals
    def _map(self, fn: Callable[[_T], _R], items: list[_T], desc: str | None) -> list[_R]:
        from tqdm import tqdm

        with tqdm(total=len(items), desc=desc, disable=desc is None, dynamic_ncols=True) as bar:
            def tick(item: _T) -> _R:
                out = fn(item)
                bar.update(1)
                return out

            if self.cfg.concurrency == 1 or len(items) <= 1:
                return [tick(item) for item in items]
            with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(items))) as pool:
                return list(pool.map(tick, items))

    def _params(self, sampling: Sampling | None) -> dict[str, Any]:
        cfg, s = self.cfg, sampling or Sampling()
        params: dict[str, Any] = {
            "temperature": cfg.temperature if s.temperature is None else s.temperature,
            "top_p": cfg.top_p if s.top_p is None else s.top_p,
            "max_tokens": cfg.max_tokens if s.max_tokens is None else s.max_tokens,
            "seed": cfg.seed if s.seed is None else s.seed,
            **(s.extra_body or {}),
        }
        return {k: v for k, v in params.items() if v is not None}

    def _ask(self, payload: dict[str, Any], sampling: Sampling | None) -> ChatResult:
        params = self._params(sampling)
        key = None
        if self.cache is not None:
            tag = {"sample": sampling.sample} if sampling is not None and sampling.sample else {}
            key = cache_key({"model": self.cfg.model, "api": self.cfg.api, **payload, "sampling": params, **tag})
            hit = self.cache.get(key)
            if hit is not None and isinstance(hit.get("text"), str):
                self.usage.add(cache_hits=1)
                return ChatResult(text=hit["text"], prompt_tokens=hit.get("prompt_tokens"),
                                  completion_tokens=hit.get("completion_tokens"),
                                  finish_reason=hit.get("finish_reason"), cached=True)
        try:
            result = self._with_retries(payload, params)
        except LLMError:
            self.usage.add(failures=1)
            raise
        self.usage.add(prompt_tokens=result.prompt_tokens or 0, completion_tokens=result.completion_tokens or 0)
        if key is not None:
            self.cache.put(key, {k: v for k, v in vars(result).items() if k != "cached"})
        return result

    def _with_retries(self, payload: dict[str, Any], params: dict[str, Any]) -> ChatResult:
        oa, cfg = self._openai, self.cfg
        last: Exception | None = None
        status: int | None = None
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                self.usage.add(retries=1)
            wait: float | None = None
            try:
                return self._parse(self._post(payload, params))
            except oa.APIStatusError as err:
                last, status = err, err.status_code
                if err.status_code not in RETRYABLE_STATUS:
                    raise LLMError(f"HTTP {err.status_code} from {cfg.url}: {str(err)[:300]}", status=status) from err
                wait = _retry_after(err.response.headers.get("retry-after"))
            except (oa.APIConnectionError, json.JSONDecodeError) as err:  # APITimeoutError is a connection error
                last, status = err, None
            if attempt < cfg.max_retries:
                delay = min(cfg.max_backoff_s, wait if wait is not None else cfg.backoff_s * 2**attempt)
                with self._rng_lock:
                    jitter = 0.75 + 0.5 * self._rng.random()
                self._sleep(delay * jitter)
        raise LLMError(f"{cfg.url}: giving up after {cfg.max_retries + 1} attempts: {last!r}", status=status)

    def _post(self, payload: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        known = {k: v for k, v in params.items() if k in _BODY_PARAMS}
        extra = {k: v for k, v in params.items() if k not in _BODY_PARAMS} or None
        with self._slots:
            self.usage.add(requests=1)
            if "messages" in payload:
                raw = self._client.chat.completions.with_raw_response.create(
                    model=self.cfg.model, messages=payload["messages"], extra_body=extra, **known)
            else:
                raw = self._client.completions.with_raw_response.create(
                    model=self.cfg.model, prompt=payload["prompt"], extra_body=extra, **known)
            return json.loads(raw.http_response.text)

    def _parse(self, reply: dict[str, Any]) -> ChatResult:
        try:
            choice = reply["choices"][0]
            if "message" in choice:
                message = choice["message"]
                text = message.get("content") or ""
                reasoning = message.get("reasoning_content") or ""  # vLLM/SGLang reasoning parsers
                if reasoning and not text.startswith("<think>"):
                    text = f"<think>{reasoning}</think>{text}"
            else:
                text = choice["text"]
            usage = reply.get("usage") or {}
            return ChatResult(text=text, prompt_tokens=usage.get("prompt_tokens"),
                              completion_tokens=usage.get("completion_tokens"),
                              finish_reason=choice.get("finish_reason"))
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise LLMError(f"unexpected reply shape from {self.cfg.url}: {str(reply)[:200]}") from err


def _retry_after(value: str | None) -> float | None:
    """Seconds of a numeric ``Retry-After`` header (HTTP-date forms are ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def strip_reasoning(text: str) -> str:
    """Drop ``<think>…</think>`` blocks, anything before a dangling ``</think>`` (servers that strip the
    opening tag) and everything after an unclosed ``<think>`` (reasoning cut off by max_tokens)."""
    text = THINK_RE.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text


def extract_json(text: str) -> Any | None:
    """The last top-level JSON object in ``text`` (after removing reasoning), or None.

    Tolerates reasoning prose, ``<think>`` blocks, markdown code fences and trailing chatter; the last
    parseable ``{…}`` wins because models often quote an example before their final answer. Objects
    nested inside a parsed object are not candidates.
    """
    body = strip_reasoning(text)
    decoder = json.JSONDecoder()
    found, pos = None, body.find("{")
    while pos >= 0:
        try:
            value, end = decoder.raw_decode(body, pos)
        except json.JSONDecodeError:
            pos = body.find("{", pos + 1)
            continue
        if isinstance(value, dict):
            found = value
        pos = body.find("{", end)
    return found

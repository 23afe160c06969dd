"""Minimal OpenAI-compatible client (stdlib ``urllib``) for the length-range predictor and prompt judge.

Talks to any server exposing ``/v1/chat/completions`` or ``/v1/completions`` (vLLM, SGLang, TGI, a
hosted API). Robustness rules:

* every request has a timeout (``timeout_s``);
* connection errors, timeouts, HTTP 408/409/429 and 5xx are retried ``max_retries`` times with
  exponential backoff ``backoff_s · 2^attempt`` (capped at ``max_backoff_s``, ±25% jitter); other 4xx
  errors fail at once (a bad request does not get better by repeating it);
* ``generate`` runs up to ``concurrency`` requests in threads and returns one text per prompt, or an
  ``LLMError`` instance in place of the text for prompts that failed for good (the batch never dies).

The API key, if the endpoint needs one, is read from the environment variable named by ``api_key_env``.
``extract_json`` pulls the last JSON object out of a reply that may start with reasoning text or a
``<think>…</think>`` block (QwQ-32B, the paper's predictor model, always reasons first).
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

from megatron_lwz.config.base import ConfigError

GenerateFn = Callable[[list[str]], list[str]]
"""A batched text generator: prompts in, one completion per prompt out (our rollout engine fits)."""

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)


class LLMError(RuntimeError):
    """A request failed for good (after retries) or the server's reply was unusable."""


@dataclass(kw_only=True)
class EndpointConfig:
    """An OpenAI-compatible HTTP endpoint (for the length predictor and the prompt judge)."""

    url: str
    """Base URL, e.g. http://host:8000/v1 (the /chat/completions or /completions path is appended)."""
    model: str
    """Model name sent in the request (e.g. Qwen/QwQ-32B, the paper's predictor)."""
    api: Literal["chat", "completions"] = "chat"
    """'chat' → POST {url}/chat/completions with one user message; 'completions' → raw prompt."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the bearer token (unset or empty = no Authorization header)."""
    temperature: float = 0.6
    """Sampling temperature (QwQ-32B's recommended 0.6)."""
    max_tokens: int = 8192
    """Completion token budget (reasoning models need room to think before the JSON)."""
    timeout_s: float = 300.0
    """Per-request timeout in seconds."""
    max_retries: int = 4
    """Retries after the first attempt for transient failures."""
    backoff_s: float = 2.0
    """First retry delay; doubles every retry."""
    max_backoff_s: float = 60.0
    """Upper bound of one retry delay."""
    concurrency: int = 8
    """Requests in flight at once in ``generate``."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint.url must start with http:// or https://, got {self.url!r}")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.concurrency < 1:
            raise ConfigError("endpoint: need timeout_s > 0, max_retries >= 0, concurrency >= 1")


class OpenAIClient:
    """Blocking client for one endpoint; thread-safe (no shared mutable state besides the RNG)."""

    def __init__(self, cfg: EndpointConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self._sleep = sleep
        self._rng = random.Random(0)

    def _request(self, prompt: str) -> dict[str, Any]:
        cfg = self.cfg
        base = cfg.url.rstrip("/")
        if cfg.api == "chat":
            url = f"{base}/chat/completions"
            body = {"model": cfg.model, "messages": [{"role": "user", "content": prompt}]}
        else:
            url = f"{base}/completions"
            body = {"model": cfg.model, "prompt": prompt}
        body.update(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(cfg.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=cfg.timeout_s) as response:
            return json.loads(response.read().decode("utf-8"))

    def _text_of(self, reply: dict[str, Any]) -> str:
        try:
            choice = reply["choices"][0]
            if self.cfg.api == "chat":
                message = choice["message"]
                text = message.get("content") or ""
                reasoning = message.get("reasoning_content") or ""  # vLLM/SGLang reasoning parsers
                return f"<think>{reasoning}</think>{text}" if reasoning and not text.startswith("<think>") else text
            return choice["text"]
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise LLMError(f"unexpected reply shape from {self.cfg.url}: {str(reply)[:200]}") from err

    def complete(self, prompt: str) -> str:
        """One completion with timeout and retries; raises LLMError when it fails for good."""
        last: Exception | None = None
        for attempt in range(self.cfg.max_retries + 1):
            try:
                return self._text_of(self._request(prompt))
            except urllib.error.HTTPError as err:
                last = err
                if err.code not in RETRYABLE_STATUS:
                    raise LLMError(f"HTTP {err.code} from {self.cfg.url}: {err.reason}") from err
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as err:
                last = err  # socket.timeout is TimeoutError since Python 3.10
            if attempt < self.cfg.max_retries:
                delay = min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2**attempt)
                self._sleep(delay * (0.75 + 0.5 * self._rng.random()))
        raise LLMError(f"{self.cfg.url}: giving up after {self.cfg.max_retries + 1} attempts: {last!r}")

    def generate(self, prompts: Sequence[str]) -> list[str | LLMError]:
        """Completions for ``prompts`` in order; a prompt that failed for good yields its LLMError."""

        def one(prompt: str) -> str | LLMError:
            try:
                return self.complete(prompt)
            except LLMError as err:
                return err

        if self.cfg.concurrency == 1 or len(prompts) <= 1:
            return [one(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(prompts))) as pool:
            return list(pool.map(one, prompts))


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

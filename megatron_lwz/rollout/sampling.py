"""Next-token sampling for the CPU rollout engine, with vLLM 0.33's semantics (pure torch).

Per decoding step and per sequence (logits ``z`` of the unmodified model, float32):

* temperature ``T < 1e-5`` → greedy ``argmax z`` (vLLM ``_SAMPLING_EPS``,
  vllm/v1/sample/sampler.py ``apply_temperature``);
* otherwise ``z / T``, then top-p (nucleus): sort ascending, drop the tokens whose cumulative
  probability is ``<= 1 - p``, always keep the most likely one — the algorithm of vLLM's
  ``apply_top_k_top_p_pytorch`` (vllm/v1/sample/ops/topk_topp_sampler.py:524-561) and of
  transformers' ``TopPLogitsWarper``;
* draw with the exponential race ``argmax(probs / q)``, ``q ~ Exp(1)`` i.i.d. (the Gumbel-max
  trick, vLLM ``random_sample``, topk_topp_sampler.py:606-628), one ``torch.Generator`` per
  sequence so a seeded sample does not depend on what else is in the batch.

Returned log-prob (the ``logprobs_mode`` option, same names and meaning as vLLM's
``ModelConfig.logprobs_mode``, vllm/config/model.py:291-300):

* ``"raw_logprobs"`` (default, vLLM's default): ``log_softmax(z)[token]`` — the log-prob of the
  sampled token under the *unmodified* policy (temperature 1, no top-p), computed before any
  processing (vllm/v1/sample/sampler.py:141-150). This is ``log π_θ(token)``, what the trainer
  recomputes and what the GRPO ratio / truncated importance sampling compare against.
* ``"processed_logprobs"``: ``log_softmax(process(z))[token]`` — the log-prob under the
  distribution actually sampled from (after temperature and top-p). For greedy decoding vLLM
  returns ``log_softmax(z)`` here too (sampler.py:326-334), and so do we.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

LogprobsMode = Literal["raw_logprobs", "processed_logprobs"]
LOGPROBS_MODES: tuple[str, ...] = ("raw_logprobs", "processed_logprobs")

SAMPLING_EPS = 1e-5
"""Temperatures below this are greedy (vLLM's ``_SAMPLING_EPS``)."""

_SEED_MIX = 0x9E3779B97F4A7C15  # 64-bit golden-ratio constant (splitmix64 increment)
_MASK63 = (1 << 63) - 1


def check_sampling_args(temperature: float, top_p: float, logprobs_mode: str = "raw_logprobs") -> None:
    """Raise ValueError naming the field when a sampling argument is out of range."""
    if not temperature >= 0.0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 means greedy)")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p} must be in (0, 1] (1.0 disables nucleus sampling)")
    if logprobs_mode not in LOGPROBS_MODES:
        raise ValueError(f"logprobs_mode={logprobs_mode!r} is not one of {list(LOGPROBS_MODES)}")


def is_greedy(temperature: float) -> bool:
    return temperature < SAMPLING_EPS


def request_seed(seed: int, prompt_index: int) -> int:
    """Seed of prompt ``prompt_index``'s request in a call seeded with ``seed`` (63-bit).

    Both engines give prompt ``i`` this seed and its ``j``-th sample ``request_seed + j``
    (vLLM's child seeds, vllm/v1/engine/parallel_sampling.py:69-81), so prompts in one call
    do not share random streams.
    """
    x = (seed * _SEED_MIX + (prompt_index + 1) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x ^= x >> 31
    return x & _MASK63


def make_generators(seeds: Sequence[int | None], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sequence; ``None`` seeds draw fresh entropy (non-reproducible)."""
    gens = []
    for s in seeds:
        g = torch.Generator(device=device)
        if s is None:
            g.seed()
        else:
            g.manual_seed(int(s) & _MASK63)
        gens.append(g)
    return gens


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask (to -inf) the tokens outside the top-p nucleus of each row; keeps at least one token.

    logits: (B, V) float32. Returns a new tensor.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_idx = logits.sort(dim=-1, descending=False)  # (B, V) ascending
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    drop_sorted = cum <= 1.0 - top_p
    drop_sorted[:, -1] = False  # the most likely token always stays
    drop = torch.zeros_like(drop_sorted).scatter(-1, sorted_idx, drop_sorted)  # (B, V)
    return logits.masked_fill(drop, float("-inf"))


def process_logits(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Logits of the distribution actually sampled from: ``top_p(z / T)``; greedy → ``z``."""
    logits = logits.float()
    if is_greedy(temperature):
        return logits
    return apply_top_p(logits / temperature, top_p)


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float = 1.0,
    generators: Sequence[torch.Generator] | None = None,
    logprobs_mode: LogprobsMode = "raw_logprobs",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row and return ``(tokens (B,) int64, logprobs (B,) float32)``.

    ``generators`` holds one generator per row (see :func:`make_generators`); without it a
    fresh unseeded generator is used. ``logprobs_mode`` chooses which distribution the returned
    log-prob is under (module docstring).
    """
    check_sampling_args(temperature, top_p, logprobs_mode)
    raw = logits.float()  # (B, V)
    raw_logprobs = raw.log_softmax(dim=-1)  # (B, V)
    if is_greedy(temperature):
        tokens = raw.argmax(dim=-1)  # (B,)
        return tokens, raw_logprobs.gather(-1, tokens[:, None]).squeeze(-1)
    processed = process_logits(raw, temperature, top_p)  # (B, V)
    probs = processed.softmax(dim=-1)  # (B, V)
    if generators is None:
        generators = make_generators([None])
        noise = torch.empty_like(probs).exponential_(generator=generators[0])
    else:
        if len(generators) != probs.shape[0]:
            raise ValueError(f"got {len(generators)} generators for {probs.shape[0]} rows")
        noise = torch.empty_like(probs)  # (B, V)
        for row, gen in enumerate(generators):
            noise[row].exponential_(generator=gen)
    tokens = (probs / noise).argmax(dim=-1)  # (B,)
    source = raw_logprobs if logprobs_mode == "raw_logprobs" else processed.log_softmax(dim=-1)
    return tokens, source.gather(-1, tokens[:, None]).squeeze(-1)

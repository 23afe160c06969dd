"""CPU rollout engine over a transformers causal LM (Qwen2 and friends), with vLLM's semantics.

Batched autoregressive sampling of all ``n × prompts`` sequences at once with a KV cache
(``transformers.DynamicCache``): prompts are left-padded, the attention mask covers the padding
and position ids are ``cumsum(mask) - 1``, so every sequence sees exactly the positions it would
see alone. Finished sequences are dropped from the batch (and from the cache) at once.

Per sequence the engine follows vLLM 0.33's ``LLM.generate`` contract, so the GRPO loop sees the
same data on CPU and GPU:

* next token: :func:`megatron_lwz.rollout.sampling.sample_next` (temperature / top-p / greedy,
  one generator per sequence seeded ``request_seed(seed, prompt) + sample_index`` as vLLM seeds
  its ``n`` children); log-probs in ``logprobs_mode`` (default ``raw_logprobs`` = log π_θ(token)
  of the unmodified model, what the trainer recomputes);
* EOS (``tokenizer.eod``): kept in the token ids (with its log-prob), not in the text;
  finish_reason ``'stop'``;
* stop strings: checked on the incrementally detokenized text of the generated tail only (vLLM's
  offset-window detokenization + ``check_stop_strings``, vllm/v1/engine/detokenizer.py:321-371),
  so cost is linear in the length; the earliest-completing stop string wins, the text is cut right
  after it (the stop string is kept, vLLM's ``include_stop_str_in_output=True``), the token that
  completed it is the last token; finish_reason ``'stop'``;
* ``max_tokens`` (or the model's ``max_position_embeddings``) reached: finish_reason ``'length'``.

Weights: :meth:`HFRolloutEngine.update_weights` copies an iterable of ``(hf_name, full tensor)``
into the parameters in place (strict names and shapes; tied ``lm_head.weight`` is ignored like
vLLM's Qwen2 loader does). ``sleep``/``wake`` are no-ops: on CPU there is no accelerator memory to
hand back to the trainer.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import torch

from megatron_lwz.rollout.sampling import (
    LogprobsMode, check_sampling_args, make_generators, request_seed, sample_next)
from megatron_lwz.rollout.text import decoder as response_decoder
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, Sample, SamplingParams
from megatron_lwz.rollout.verify import WeightSyncError

_DETOK_CONTEXT = 5  # prompt tokens decoded with the first response token (vLLM uses 5 too)


class TokenizerLike(Protocol):
    """What the rollout engines need from a tokenizer."""

    eod: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


# ---------------------------------------------------------------------------------------------
# Incremental detokenization and stop strings
# ---------------------------------------------------------------------------------------------

class IncrementalDetokenizer:
    """Append-only detokenization with a small offset window (vLLM's ``detokenize_incrementally``).

    Each :meth:`push` decodes only the last few tokens: the text is extended by
    ``decode(ids[prefix:]) - decode(ids[prefix:read])``; a token that ends in an incomplete
    character (U+FFFD) is held back until the character completes.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], context_ids: Sequence[int] = ()):
        self._decode = decode
        self._ids = list(context_ids)[-_DETOK_CONTEXT:] if context_ids else []
        self._prefix = 0
        self._read = len(self._ids)
        self.text = ""

    def push(self, token: int) -> int:
        """Add one token; return the number of characters appended to :attr:`text`."""
        self._ids.append(token)
        prefix_text = self._decode(self._ids[self._prefix:self._read])
        new_text = self._decode(self._ids[self._prefix:])
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return 0
        delta = new_text[len(prefix_text):]
        self.text += delta
        self._prefix, self._read = self._read, len(self._ids)
        if self._prefix > 4096:  # keep the id buffer bounded
            del self._ids[:self._prefix]
            self._read -= self._prefix
            self._prefix = 0
        return len(delta)


def find_stop(text: str, new_chars: int, stops: Sequence[str]) -> tuple[str, int] | None:
    """``(stop string, end offset)`` of the earliest stop string ending in the last ``new_chars``
    characters of ``text``, ties by list order (vLLM ``check_stop_strings``); None if none."""
    if not new_chars or not stops:
        return None
    best, best_end = None, sys.maxsize
    for stop in stops:
        idx = text.find(stop, max(0, len(text) - new_chars - len(stop) + 1))
        if idx != -1 and idx + len(stop) < best_end:
            best, best_end = stop, idx + len(stop)
    return None if best is None else (best, best_end)


@dataclass
class _Row:
    """Decoding state of one sequence."""

    detok: IncrementalDetokenizer
    limit: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: str | None = None

    def push(self, token: int, logprob: float, eod: int, stops: Sequence[str]) -> bool:
        """Record one sampled token; return True when the sequence is finished."""
        self.token_ids.append(token)
        self.logprobs.append(logprob)
        if token == eod:
            self.finish = "stop"
            return True
        new_chars = self.detok.push(token)
        hit = find_stop(self.detok.text, new_chars, stops) if stops else None
        if hit is not None:
            self.detok.text = self.detok.text[:hit[1]]
            self.finish = "stop"
        elif len(self.token_ids) >= self.limit:
            self.finish = "length"
        return self.finish is not None


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class WeightSyncReport:
    """What one :meth:`HFRolloutEngine.update_weights` call did."""

    num_tensors: int
    """Tensors copied into the model."""
    num_bytes: int
    """Bytes received (in the sender's dtype)."""
    seconds: float
    """Wall time of the update."""
    skipped: list[str]
    """Names received but deliberately ignored (``lm_head.weight`` with tied embeddings)."""
    missing: list[str]
    """Model parameters that this update did not set."""


def _is_tied(model: torch.nn.Module) -> bool:
    return bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))


@torch.no_grad()
def load_named_tensors(model: torch.nn.Module, named_tensors: Iterable[tuple[str, torch.Tensor]],
                       *, full_sync: bool = False) -> WeightSyncReport:
    """Copy ``(hf_name, full tensor)`` pairs into ``model``'s parameters in place (strict).

    Raises :class:`WeightSyncError` naming the tensor on an unknown name, a duplicate or a shape
    mismatch, and (``full_sync=True``) listing the parameters that were never set.
    """
    start = time.perf_counter()
    params = dict(model.named_parameters())  # tied lm_head.weight is deduplicated away
    tied = _is_tied(model)
    seen: set[str] = set()
    skipped: list[str] = []
    num_bytes = 0
    for name, tensor in named_tensors:
        if name in seen:
            raise WeightSyncError(f"weight update: tensor {name!r} was sent twice")
        seen.add(name)
        param = params.get(name)
        if param is None:
            if tied and name == "lm_head.weight":
                skipped.append(name)  # vLLM's loaders skip it too when embeddings are tied
                continue
            raise WeightSyncError(
                f"weight update: unknown tensor {name!r} (the rollout model "
                f"{type(model).__name__} has no such parameter; expected HF names like "
                f"{next(iter(params))!r})")
        if tuple(tensor.shape) != tuple(param.shape):
            raise WeightSyncError(f"weight update: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                  f"the rollout model expects {tuple(param.shape)}")
        param.copy_(tensor.detach())
        num_bytes += tensor.numel() * tensor.element_size()
    missing = [n for n in params if n not in seen]
    if full_sync and missing:
        raise WeightSyncError(f"weight update: {len(missing)} of {len(params)} parameters were never "
                              f"sent (full sync requested): {missing[:8]}{' …' if len(missing) > 8 else ''}")
    return WeightSyncReport(num_tensors=len(seen) - len(skipped), num_bytes=num_bytes,
                            seconds=time.perf_counter() - start, skipped=skipped, missing=missing)


def expected_hf_parameters(hf_config: Any) -> list[tuple[str, tuple[int, ...]]]:
    """``(hf_name, shape)`` of every parameter of the HF model for ``hf_config`` (meta device, free).

    Tied ``lm_head.weight`` is absent when ``tie_word_embeddings`` is set.
    """
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    return [(n, tuple(p.shape)) for n, p in model.named_parameters()]


# ---------------------------------------------------------------------------------------------
# Engine
# ---------------------------------------------------------------------------------------------

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def build_hf_model(hf_config: Any, *, dtype: str | torch.dtype = "float32", init_seed: int = 0,
                   attn_implementation: str = "sdpa") -> torch.nn.Module:
    """A causal LM from a transformers config, a config dir, or a checkpoint dir (weights loaded).

    A config without weights is randomly initialised with ``init_seed`` (the global RNG state is
    restored afterwards); the rollout weights normally arrive through ``update_weights``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype)
    if isinstance(hf_config, (str, Path)):
        path = Path(hf_config)
        if any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin")):
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype,
                                                         attn_implementation=attn_implementation)
            return model.eval()
        hf_config = AutoConfig.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = AutoModelForCausalLM.from_config(hf_config, attn_implementation=attn_implementation)
    return model.to(torch_dtype).eval()


class HFRolloutEngine:
    """RolloutEngine over a transformers causal LM on CPU (or any torch device), batched with a KV cache."""

    def __init__(self, model: torch.nn.Module, tokenizer: TokenizerLike, *,
                 logprobs_mode: LogprobsMode = "raw_logprobs", max_batch_size: int | None = None):
        check_sampling_args(1.0, 1.0, logprobs_mode)
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size} must be >= 1 (or None for all rows at once)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.logprobs_mode = logprobs_mode
        self.max_batch_size = max_batch_size

    @classmethod
    def from_config(cls, hf_config: Any, tokenizer: TokenizerLike, *, dtype: str | torch.dtype = "float32",
                    init_seed: int = 0, **kwargs: Any) -> "HFRolloutEngine":
        """Build the model with :func:`build_hf_model` and wrap it."""
        return cls(build_hf_model(hf_config, dtype=dtype, init_seed=init_seed), tokenizer, **kwargs)

    # -- RolloutEngine protocol ---------------------------------------------------------------

    def generate(self, prompts: Sequence[PromptRecord], prompt_texts: Sequence[str],
                 params: SamplingParams | Sequence[SamplingParams]) -> list[RolloutGroup]:
        """``n`` samples for every prompt; one RolloutGroup per prompt, in order.

        ``params``: one for all prompts (prompt ``i``'s request seed is ``request_seed(seed, i)``) or
        one per prompt as in vLLM's ``LLM.generate`` (own ``n``, ``max_tokens``, request seed
        ``params[i].seed``). Sample ``j`` of a request seeded ``s`` samples with ``s + j``."""
        if len(prompts) != len(prompt_texts):
            raise ValueError(f"{len(prompts)} prompts but {len(prompt_texts)} prompt texts")
        per, request_seeds = _per_prompt(params, len(prompts))
        prompt_ids = [list(self.tokenizer.encode(text)) for text in prompt_texts]
        limits = [self._token_limit(i, ids, per[i].max_tokens) for i, ids in enumerate(prompt_ids)]
        jobs = [(i, j) for i in range(len(prompts)) for j in range(per[i].n)]
        seeds = [None if request_seeds[i] is None else request_seeds[i] + j for i, j in jobs]
        step = self.max_batch_size or max(len(jobs), 1)
        rows: list[_Row] = []
        for lo in range(0, len(jobs), step):
            chunk = jobs[lo:lo + step]
            rows += self._decode([prompt_ids[i] for i, _ in chunk], [limits[i] for i, _ in chunk],
                                 seeds[lo:lo + step], per[0])
        groups, first = [], 0
        for i, (record, text) in enumerate(zip(prompts, prompt_texts)):
            samples = [Sample(prompt=record, prompt_text=text, prompt_token_ids=list(prompt_ids[i]),
                              response_token_ids=row.token_ids, response_text=row.detok.text,
                              finish_reason=row.finish,  # type: ignore[arg-type]
                              rollout_logprobs=row.logprobs if per[i].logprobs else None)
                       for row in rows[first:first + per[i].n]]
            first += per[i].n
            groups.append(RolloutGroup(prompt=record, samples=samples))
        return groups

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], *,
                       full_sync: bool = False) -> WeightSyncReport:
        """Copy ``(hf_name, full tensor)`` pairs into the model in place (see :func:`load_named_tensors`)."""
        return load_named_tensors(self.model, named_tensors, full_sync=full_sync)

    def sleep(self) -> None:
        """No-op: a CPU model holds no accelerator memory that the trainer could use."""

    def wake(self) -> None:
        """No-op (see :meth:`sleep`)."""

    # -- internals ----------------------------------------------------------------------------

    def _token_limit(self, index: int, ids: list[int], max_tokens: int) -> int:
        if not ids:
            raise ValueError(f"prompt {index} encodes to zero tokens")
        max_pos = getattr(self.model.config, "max_position_embeddings", None)
        if max_pos is None:
            return max_tokens
        if len(ids) >= max_pos:
            raise ValueError(f"prompt {index} has {len(ids)} tokens, the model's "
                             f"max_position_embeddings is {max_pos}")
        return min(max_tokens, max_pos - len(ids))

    @torch.no_grad()
    def _decode(self, prompt_ids: list[list[int]], limits: list[int], seeds: list[int | None],
                params: SamplingParams) -> list[_Row]:
        """Sample all rows of one batch to completion."""
        from transformers import DynamicCache

        device = next(self.model.parameters()).device
        batch, width = len(prompt_ids), max(len(p) for p in prompt_ids)
        ids = torch.zeros(batch, width, dtype=torch.long)  # (B, T) left-padded
        mask = torch.zeros(batch, width, dtype=torch.long)  # (B, T)
        for r, p in enumerate(prompt_ids):
            ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        cache = DynamicCache(config=self.model.config)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                            past_key_values=cache, use_cache=True).logits[:, -1]  # (B, V)
        next_pos = positions[:, -1] + 1  # (B,)
        rows = [_Row(detok=IncrementalDetokenizer(response_decoder(self.tokenizer), p), limit=lim)
                for p, lim in zip(prompt_ids, limits)]
        gens = make_generators(seeds)
        active = list(range(batch))  # row index of each batch position
        eod, stops = self.tokenizer.eod, list(params.stop)
        while active:
            tokens, logprobs = sample_next(logits, temperature=params.temperature, top_p=params.top_p,
                                           generators=[gens[r] for r in active],
                                           logprobs_mode=self.logprobs_mode)  # (B,), (B,)
            keep = [k for k, r in enumerate(active)
                    if not rows[r].push(int(tokens[k]), float(logprobs[k]), eod, stops)]
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(index)
                tokens, mask, next_pos = tokens[index], mask[index], next_pos[index]
                active = [active[k] for k in keep]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)  # (B, T+1)
            logits = self.model(input_ids=tokens[:, None].to(device), attention_mask=mask,
                                position_ids=next_pos[:, None], past_key_values=cache,
                                use_cache=True).logits[:, -1]  # (B, V)
            next_pos = next_pos + 1
        return rows


def _per_prompt(params: SamplingParams | Sequence[SamplingParams],
                count: int) -> tuple[list[SamplingParams], list[int | None]]:
    """(params of each prompt, request seed of each prompt); see :meth:`HFRolloutEngine.generate`."""
    if isinstance(params, SamplingParams):
        _check_params(params)
        return [params] * count, [None if params.seed is None else request_seed(params.seed, i) for i in range(count)]
    if len(per := list(params)) != count:
        raise ValueError(f"{count} prompts but {len(per)} SamplingParams")
    for i, p in enumerate(per):
        _check_params(p)
        shared = (p.temperature, p.top_p, p.stop, p.logprobs)
        if shared != (per[0].temperature, per[0].top_p, per[0].stop, per[0].logprobs):
            raise ValueError(f"SamplingParams of prompt {i} differ from prompt 0 in temperature/top_p/stop/"
                             "logprobs; only n, max_tokens and seed may vary per prompt")
    return per, [p.seed for p in per]


def _check_params(params: SamplingParams) -> None:
    check_sampling_args(params.temperature, params.top_p)
    if params.n < 1:
        raise ValueError(f"SamplingParams.n={params.n} must be >= 1")
    if params.max_tokens < 1:
        raise ValueError(f"SamplingParams.max_tokens={params.max_tokens} must be >= 1")
    if any(not s for s in params.stop):
        raise ValueError(f"SamplingParams.stop={params.stop!r} contains an empty string")


__all__ = ["HFRolloutEngine", "IncrementalDetokenizer", "TokenizerLike", "WeightSyncReport",
           "build_hf_model", "expected_hf_parameters", "find_stop", "load_named_tensors", "resolve_dtype"]


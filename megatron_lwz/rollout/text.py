"""One rule for the response text of every rollout engine (HF and vLLM). Stdlib only.

**Special tokens are kept in the text; a terminating EOD is a token, not text.** The Format RM
parses ``<think>…</think><answer>…</answer>`` from the text. In the tokenizers we train those tags
are single user-defined / added tokens; a tokenizer may mark them *special* (Qwen3 adds ``<think>``
as an added token, and an HF export of ours may flag it special), and skipping special tokens would
then delete the tags and zero every format reward. (Qwen2.5's tokenizer has no such token: its only
special tokens are ``<|endoftext|>``, ``<|im_start|>``/``<|im_end|>`` and the vision/object markers,
so there the tags are ordinary BPE text either way.)

* HF engine: :func:`decoder` — the tokenizer's ``decode`` with ``skip_special_tokens=False``
  (our ``data.tokenizer.Tokenizer`` and transformers tokenizers take the argument; a tokenizer
  without it must render special tokens, the ``TokenizerLike`` contract); the EOD token ends the
  sequence before it reaches the detokenizer.
* vLLM 0.33: :data:`VLLM_DETOKENIZE` — ``skip_special_tokens=False`` and
  ``spaces_between_special_tokens=False`` (with ``True`` the fast detokenizer may separate two
  adjacent added tokens, vllm/v1/engine/detokenizer.py:200-230, which ``tokenizers``' own decode does
  not); ``include_stop_str_in_output=True`` (stop strings such as ``</answer>`` stay in the text,
  as in the HF engine) also detokenizes a stop *token* (detokenizer.py:107-112), so
  :func:`strip_eod` removes the EOD's text from the end.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence

SKIP_SPECIAL_TOKENS = False
"""Whether special tokens are dropped from response texts: never (module docstring)."""

VLLM_DETOKENIZE = {"skip_special_tokens": SKIP_SPECIAL_TOKENS, "spaces_between_special_tokens": False,
                   "include_stop_str_in_output": True}
"""vLLM ``SamplingParams`` fields that make its text follow the rule (sampling_params.py:380-384)."""


def decoder(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """``ids -> text`` by the rule, for incremental detokenization in the HF engine."""
    try:
        takes_flag = "skip_special_tokens" in inspect.signature(tokenizer.decode).parameters
    except (TypeError, ValueError):  # builtins without a signature
        takes_flag = False
    if takes_flag:
        return functools.partial(tokenizer.decode, skip_special_tokens=SKIP_SPECIAL_TOKENS)
    return tokenizer.decode


def strip_eod(text: str, token_ids: Sequence[int], eod: int, eod_text: str) -> str:
    """``text`` without the rendered EOD when the sequence ended with the EOD token."""
    if token_ids and int(token_ids[-1]) == eod and eod_text and text.endswith(eod_text):
        return text[:-len(eod_text)]
    return text

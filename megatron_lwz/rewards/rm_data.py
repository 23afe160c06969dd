"""Preference pairs for the Bradley–Terry Writing RM: reading, tokenising, batching.

Input: JSONL lines ``{"prompt": str, "chosen": str, "rejected": str}``. Malformed lines (bad JSON,
missing or non-string fields, identical chosen/rejected) are counted and reported with file:line,
never fatal. The RM reads ``rm_input(prompt, answer)``: the same text at training and at GRPO
scoring time, so the two can never drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from megatron_lwz.data.stream import record_skip, shuffled_stream
from megatron_lwz.data.tokenizer import TokenizerConfig
from megatron_lwz.models.presets import round_up


def rm_input(prompt: str, answer: str) -> str:
    """The text the Writing RM scores (query + answer only: no think part, as the paper's RM)."""
    return f"<|user|>: {prompt.strip()} <|assistant|>: {answer.strip()}"


@dataclass(kw_only=True)
class RMDataConfig:
    """Where the preference pairs are and how they are tokenised."""

    train_path: str
    """JSONL with prompt/chosen/rejected per line."""
    valid_path: str | None = None
    """Held-out pairs for pairwise accuracy (optional)."""
    tokenizer: TokenizerConfig
    """Tokenizer of the backbone."""
    max_length: int = 1024
    """Tokens per scored sequence; longer ones keep the prompt's start and the answer's end."""
    max_prompt_tokens: int = 256
    """Prompt tokens kept when truncating."""
    seed: int = 1234
    """Shuffle seed (one permutation per epoch)."""


@dataclass
class PairSet:
    """Tokenised pairs plus the report of skipped lines."""

    chosen: list[list[int]]
    rejected: list[list[int]]
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.chosen)


def encode_pair_side(tokenizer, prompt: str, answer: str, max_length: int, max_prompt_tokens: int) -> list[int]:
    """Token ids of ``rm_input`` with the documented truncation (ends with the answer's last tokens)."""
    ids = tokenizer.encode(rm_input(prompt, answer))
    if len(ids) <= max_length:
        return ids
    head = tokenizer.encode(rm_input(prompt, ""))[:max_prompt_tokens]
    return head + ids[-(max_length - len(head)):]


def read_pairs(path: str | Path, tokenizer, cfg: RMDataConfig) -> PairSet:
    """Tokenise every valid line of ``path``; count and report the rest."""
    out = PairSet(chosen=[], rejected=[])
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            prompt, chosen, rejected = rec["prompt"], rec["chosen"], rec["rejected"]
            if not all(isinstance(x, str) for x in (prompt, chosen, rejected)):
                raise TypeError("prompt/chosen/rejected must be strings")
            if chosen.strip() == rejected.strip():
                raise ValueError("chosen and rejected are identical")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            record_skip(out.skipped, out.examples, f"{path}:{lineno}", err)
            continue
        out.chosen.append(encode_pair_side(tokenizer, prompt, chosen, cfg.max_length, cfg.max_prompt_tokens))
        out.rejected.append(encode_pair_side(tokenizer, prompt, rejected, cfg.max_length, cfg.max_prompt_tokens))
    if not out.chosen:
        raise ValueError(f"{path}: no valid preference pairs ({out.skipped or 'empty file'}); "
                         f"expected JSONL lines with prompt/chosen/rejected strings")
    return out


def pad_batch(seqs: Sequence[list[int]], pad_id: int, length: int | None = None,
              multiple: int = 1) -> dict[str, torch.Tensor]:
    """Right-pad to ``length`` (default: the longest, rounded up to ``multiple`` — TP under sequence
    parallelism): tokens (B, T), position_ids (B, T), lengths (B,)."""
    length = length or round_up(max(len(s) for s in seqs), multiple)
    tokens = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s[:length], dtype=torch.long)
    lengths = torch.tensor([min(len(s), length) for s in seqs], dtype=torch.long)
    return {"tokens": tokens, "position_ids": torch.arange(length).expand(len(seqs), length).contiguous(),
            "lengths": lengths}


def pair_microbatches(pairs: PairSet, indices: Sequence[int], micro_batch_size: int, pad_id: int,
                      fixed_length: int | None, multiple: int = 1) -> list[dict[str, torch.Tensor]]:
    """Micro-batches whose rows are [chosen_1..chosen_s, rejected_1..rejected_s] (s rows per side).

    With ``fixed_length`` (pipeline parallelism: every micro-batch must have one shape) a short last
    micro-batch is padded with dummy one-token pairs: ``num_pairs`` counts only the real ones and
    ``side`` = micro_batch_size tells where the rejected rows start.
    """
    out = []
    for start in range(0, len(indices), micro_batch_size):
        idx = list(indices[start:start + micro_batch_size])
        side = micro_batch_size if fixed_length else len(idx)
        dummy = [[pad_id]] * (side - len(idx))
        seqs = [pairs.chosen[i] for i in idx] + dummy + [pairs.rejected[i] for i in idx] + dummy
        batch = pad_batch(seqs, pad_id, fixed_length, multiple)
        batch["num_pairs"] = torch.tensor(len(idx))
        batch["side"] = torch.tensor(side)
        out.append(batch)
    return out


def epoch_order(num_pairs: int, seed: int, consumed: int, count: int) -> list[int]:
    """Pair indices ``consumed .. consumed+count`` of the endless epoch-shuffled stream (resumable)."""
    return shuffled_stream(num_pairs, seed, consumed, count)


def longest(pairs: PairSet, indices: Sequence[int], multiple: int = 1) -> int:
    """The longest chosen or rejected token list among ``indices``, rounded up to ``multiple``."""
    return round_up(max((max(len(pairs.chosen[i]), len(pairs.rejected[i])) for i in indices), default=1), multiple)


def step_microbatches(pairs: PairSet, indices: Sequence[int], micro_batch_size: int, pad_id: int, *,
                      pipelined: bool, multiple: int = 1) -> tuple[list[dict[str, torch.Tensor]], int]:
    """One step's micro-batches of the pairs ``indices`` and the ``seq_length`` the schedule gets.

    Without PP each micro-batch is trimmed to its own longest row (``seq_length`` 0: free shapes).
    With PP the p2p buffers need one (rows, length) for all micro-batches of the step, so every row
    is padded to the longest sequence among ``indices`` — this pipeline's share of the global batch,
    not ``data.max_length`` (at the paper's 3.5K-token mean and 16,384 cap that was ~4× the FLOPs).
    All stages of one pipeline have the same DP rank, hence the same ``indices`` (the epoch order is a
    pure function of the seed and the position), so they agree on the shape without a collective.
    """
    length = longest(pairs, indices, multiple) if pipelined else None
    return pair_microbatches(pairs, indices, micro_batch_size, pad_id, length, multiple), length or 0


def eval_microbatches(pairs: PairSet, micro_batch_size: int, pad_id: int, dp_rank: int, dp_size: int, *,
                      pipelined: bool, multiple: int = 1) -> tuple[list[dict[str, torch.Tensor]], int]:
    """This DP rank's contiguous share of all pairs, as :func:`step_microbatches`."""
    per = (len(pairs) + dp_size - 1) // dp_size
    mine = list(range(dp_rank * per, min(len(pairs), (dp_rank + 1) * per)))
    return step_microbatches(pairs, mine, micro_batch_size, pad_id, pipelined=pipelined, multiple=multiple)

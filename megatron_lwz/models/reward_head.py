"""Scalar reward head for the Bradley–Terry Writing RM on the GPTModel backbone.

The head *replaces* ``GPTModel.output_layer`` on the last pipeline stage: the model then returns
``(B, T, 1)`` scores instead of vocabulary logits, every TP/PP/DP layout and the dist-checkpoint
keys keep working (``output_layer.weight`` becomes ``[1, h]``, replicated over TP: its input — the
final-norm hidden state — is identical on every TP rank, so are its gradients), and the 152K×h
vocabulary projection is never allocated for the 72B RM.
"""

from __future__ import annotations

import torch


class ScalarHead(torch.nn.Module):
    """score = w·h + b. Called like megatron's output layer: ``head(h, weight=None, ...) -> (s, None)``."""

    def __init__(self, hidden_size: int, init_std: float, dtype: torch.dtype):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(1, hidden_size, dtype=dtype))
        self.bias = torch.nn.Parameter(torch.zeros(1, dtype=dtype))
        torch.nn.init.normal_(self.weight, std=init_std)
        self.sequence_parallel = False

    def forward(self, hidden: torch.Tensor, weight=None, runtime_gather_output=None):
        # hidden: (T, B, h) → scores (T, B, 1)
        return torch.nn.functional.linear(hidden, self.weight, self.bias), None


def attach_reward_head(chunks: list, hidden_size: int, init_std: float) -> None:
    """Swap the vocabulary output layer of the last-stage chunk for a :class:`ScalarHead`."""
    for chunk in chunks:
        if chunk.post_process:
            if chunk.share_embeddings_and_output_weights:
                raise ValueError("the reward model must be built with model.tie_word_embeddings=false")
            param = next(chunk.parameters())
            chunk.output_layer = ScalarHead(hidden_size, init_std, param.dtype).to(param.device)


def last_token_scores(scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """scores (B, T, 1), lengths (B,) → the score at each sequence's last real token (B,)."""
    index = (lengths - 1).clamp(min=0).to(scores.device)
    return scores.squeeze(-1).gather(1, index[:, None]).squeeze(1).float()

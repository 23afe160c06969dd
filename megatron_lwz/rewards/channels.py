"""Builds the judge-based reward channels (``pairwise``, ``rubric``) of a RewardConfig.

A channel scores groups of samples at once (``score(groups) -> (values per group, metrics)``); values
are floats or error strings. ``RewardScorer`` turns errors into failures and falls back to the other
components for those samples (see ``rewards/composite.py``).
"""

from __future__ import annotations

from typing import Any

from megatron_lwz.config.base import ConfigError
from megatron_lwz.rewards.judge import ChatClient, LLMPairJudge, RMPairJudge
from megatron_lwz.rewards.llm_client import EndpointConfig

JUDGE_CHANNELS = ("pairwise", "rubric")


def build_judge_client(endpoint: EndpointConfig | None) -> ChatClient:
    """The project's one judge client (``OpenAIClient``: concurrent, retried, disk-cached at ``cache_path``)."""
    if endpoint is None:
        raise ConfigError("reward.judge: the pairwise/rubric channels need a judge endpoint (url, model)")
    from megatron_lwz.rewards.llm_client import OpenAIClient

    return OpenAIClient(endpoint)


def build_channels(cfg, score_writing=None, judge_client: ChatClient | None = None) -> list[Any]:
    """The channels of ``cfg.components`` in component order (pairwise, rubric); [] when neither is on."""
    from megatron_lwz.rewards.pairwise import PairwiseChannel
    from megatron_lwz.rewards.rubric import RubricChannel

    wanted = [c for c in cfg.components if c in JUDGE_CHANNELS]
    needs_llm = "rubric" in wanted or ("pairwise" in wanted and cfg.pairwise.judge == "llm")
    client = judge_client if judge_client is not None or not needs_llm else build_judge_client(cfg.judge)
    channels = []
    for name in wanted:
        if name == "pairwise":
            if cfg.pairwise.judge == "writing_rm":
                if score_writing is None:
                    raise ValueError("reward.pairwise.judge='writing_rm' needs the Writing RM (writing_rm.checkpoint)")
                judge = RMPairJudge(score_writing)
            else:
                judge = LLMPairJudge(client)
            channels.append(PairwiseChannel(cfg.pairwise, judge))
        else:
            if cfg.rubric.cache_dir is None:
                raise ConfigError("reward.rubric.cache_dir: set a directory for generated rubrics")
            channels.append(RubricChannel(cfg.rubric, client, cfg.rubric.cache_dir))
    return channels

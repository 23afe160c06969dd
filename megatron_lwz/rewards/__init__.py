"""Pure, CPU-testable rewards of LongWriter-Zero (no megatron, no torch at import time).

Modules:
  length          count_words, extract_answer, Length RM (paper Eq. 3)
  format          Format RM: <think>/<answer> structure gate × (1 − repetition penalty)
  repetition      duplicate / near-duplicate / keyword-stuffing signals (linear time)
  semantic        optional MiniLM paraphrase check (extra 'embed')
  composite       RewardConfig + RewardScorer: fills sample.rewards for GRPO rollout groups
  length_parse    explicit length requests ("2,000-word", "不少于3000字") → ranges (±10% rules)
  length_predict  paper's range-predictor prompt, LLM reply parsing, dataset caching
  llm_client      the one OpenAI-compatible LLM client (chat, batching, retries, token counts, JSON)
  llm_cache       on-disk reply cache of llm_client (SQLite, keyed by model + messages + sampling)
  prompt_filter   WildChat / LMSYS dump → RL prompts (language, heuristics, MinHash dedup, judge)
  records_io      JSONL/parquet readers that count bad lines; read_prompt_records for GRPO
  minhash         MinHash + LSH banding
  bench           synthetic answers and the Format RM timing bench
  gate            constraint gates on the Eq. 5 advantage (beyond the paper; RLMR)
  pairwise        pairwise win-rate reward: group peers or a reference, both orders (beyond the paper)
  rubric          query-only rubric reward, rubrics cached on disk (beyond the paper; IP-GRM)
  judge           judge protocol + statistics, LLM and Writing-RM pairwise judges
  channels        builds the pairwise / rubric channels of a RewardConfig
  scripted_judge  deterministic loopback /v1/chat/completions judge (tests, CPU ablations)

The Writing RM (Bradley–Terry model) lives outside this package and is injected into
``RewardScorer(score_writing=...)``.
"""

from megatron_lwz.rewards.composite import OverlongConfig, RewardConfig, RewardScorer
from megatron_lwz.rewards.format import FormatResult, FormatReward, FormatRewardConfig, format_reward
from megatron_lwz.rewards.length import LengthRewardConfig, count_words, extract_answer, length_reward

__all__ = [
    "FormatResult", "FormatReward", "FormatRewardConfig", "LengthRewardConfig", "OverlongConfig", "RewardConfig",
    "RewardScorer", "count_words", "extract_answer", "format_reward", "length_reward",
]

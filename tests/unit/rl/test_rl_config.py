"""LossConfig / BatchingConfig: paper defaults, validation messages, loading through config.base."""

import dataclasses
import inspect

import pytest

from megatron_lwz.config.base import ConfigError, from_dict
from megatron_lwz.rl import config as rl_config
from megatron_lwz.rl.config import BatchingConfig, EvalConfig, LossConfig


def test_defaults_follow_the_paper():
    cfg = LossConfig()
    assert (cfg.clip_eps_low, cfg.clip_eps_high, cfg.kl_coef) == (0.2, 0.2, 0.0)  # paper Eq. 1–2: ε = 0.2, β = 0
    assert cfg.aggregation == "token-mean" and cfg.dual_clip is None and not cfg.tis
    assert not BatchingConfig().dynamic_sampling and BatchingConfig().num_minibatches == 1


@pytest.mark.parametrize("cls, data, match", [
    (LossConfig, {"clip_eps_low": 1.0}, "clip_eps_low"),
    (LossConfig, {"dual_clip": 1.0}, "dual_clip"),
    (LossConfig, {"kl_coef": -0.1}, "kl_coef"),
    (LossConfig, {"aggregation": "seq-mean-token-sum-norm"}, "norm_length"),
    (LossConfig, {"aggregation": "seq-mean"}, "aggregation"),
    (LossConfig, {"tis": True, "logprob_source": "rollout"}, "logprob_source='recompute'"),
    (LossConfig, {"tis_cap": 0}, "tis_cap"),
    (LossConfig, {"clip_eps": 0.2}, "did you mean"),
    (BatchingConfig, {"num_minibatches": 0}, "num_minibatches"),
    (BatchingConfig, {"overlong": "filter"}, "unknown field"),  # overlong lives in reward.overlong
    (BatchingConfig, {"micro_token_budget": 0}, "micro_token_budget"),
    (EvalConfig, {"interval": -1}, "rl.eval.interval"),
    (EvalConfig, {"samples_per_prompt": 0}, "rl.eval.samples_per_prompt"),
    (EvalConfig, {"temperature": -0.5}, "rl.eval.temperature"),
])
def test_validation_names_the_field(cls, data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(cls, data)


def test_loads_from_plain_data():
    cfg = from_dict(LossConfig, {"aggregation": "seq-mean-token-sum-norm", "norm_length": 14000, "tis": True})
    assert cfg.norm_length == 14000 and cfg.logprob_source == "recompute"
    batching = from_dict(BatchingConfig, {"dynamic_sampling": True, "micro_token_budget": 4096})
    assert batching.micro_token_budget == 4096 and batching.dynamic_sampling


def test_every_field_has_a_docstring():
    source = inspect.getsource(rl_config)
    for cls in (LossConfig, BatchingConfig):
        lines = source.splitlines()
        for f in dataclasses.fields(cls):
            i = next(k for k, line in enumerate(lines) if line.strip().startswith(f"{f.name}:"))
            assert lines[i + 1].strip().startswith('"""'), f"{cls.__name__}.{f.name} has no docstring"


def test_eval_is_due_before_the_first_update_every_interval_and_after_the_last():
    assert [s for s in range(21) if EvalConfig(path="p.jsonl", interval=5).due(s, 20)] == [0, 5, 10, 15, 20]
    assert [s for s in range(8) if EvalConfig(path="p.jsonl", interval=0).due(s, 7)] == [0, 7]
    assert [s for s in range(8) if EvalConfig(path="p.jsonl", interval=3).due(s, 7)] == [0, 3, 6, 7]
    assert not any(EvalConfig(interval=1).due(s, 5) for s in range(6))  # no path: never

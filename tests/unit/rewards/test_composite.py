"""Composite reward scoring of rollout groups: values, failure isolation, overlong policies, and the
hand-off to Eq. 5 advantages."""

import logging
import math

import pytest
import torch
from reward_texts import GREEN_CITY, wrap

from megatron_lwz.rewards.composite import OverlongConfig, RewardConfig, RewardScorer, soft_overlong_penalty
from megatron_lwz.rl.advantage import advantages_for_groups, balanced_advantages
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, Sample

PROMPT = PromptRecord(prompt_id="p0", question="Write about urban parks.", length_lower=100, length_upper=200)


def _sample(text, finish="stop", num_tokens=10, prompt=PROMPT):
    return Sample(prompt=prompt, prompt_text="T", prompt_token_ids=[1], response_token_ids=list(range(num_tokens)),
                  response_text=text, finish_reason=finish)


def _word(i):
    """A distinct letters-only word per i (count_words ignores tokens with digits)."""
    return "q" + "".join(chr(97 + int(d)) for d in str(i))


def _answer(words):
    return wrap(" ".join(_word(i) for i in range(words)))  # distinct words: no repetition penalty


def _writing(questions, answers):
    return [float(len(a.split())) / 100 for a in answers]


def test_scores_every_component():
    group = RolloutGroup(prompt=PROMPT, samples=[_sample(_answer(150)), _sample(_answer(50)), _sample("no tags")])
    scorer = RewardScorer(RewardConfig(), score_writing=_writing)
    metrics = scorer.score([group])
    s0, s1, s2 = group.samples
    assert s0.rewards == {"length": 1.0, "format": 1.0, "writing": 1.5}
    assert s1.rewards["length"] == pytest.approx(50 / 100)           # Eq. 3: len / L_lower
    assert s2.rewards == {"length": 0.0, "format": 0.0, "writing": 0.0}  # no <answer>: empty answer
    assert metrics["reward/length/mean"] == pytest.approx(0.5) and metrics["reward/format/failures"] == 0


def test_raising_reward_is_isolated(caplog):
    def flaky(sample):
        if _word(60) not in sample.response_text:  # only the 5-word answer lacks word 60
            raise RuntimeError("judge crashed")
        return 0.7

    cfg = RewardConfig(components=["length", "flaky"], failure_values={"flaky": -1.0})
    group = RolloutGroup(prompt=PROMPT, samples=[_sample(_answer(100)), _sample(_answer(5))])
    with caplog.at_level(logging.WARNING):
        metrics = RewardScorer(cfg, extra_rewards={"flaky": flaky}).score([group])
    ok, bad = group.samples
    assert ok.rewards["flaky"] == 0.7 and not ok.reward_failures
    assert bad.rewards["flaky"] == -1.0 and "judge crashed" in bad.reward_failures["flaky"]
    assert bad.rewards["length"] == pytest.approx(0.05)  # the other component is unaffected
    assert metrics["reward/flaky/failures"] == 1 and "judge crashed" in caplog.text


def test_batched_writing_failure_is_bisected():
    calls = []

    def writing(questions, answers):
        calls.append(len(answers))
        if any(f" {_word(7)}" in a for a in answers):
            raise ValueError("tokenizer overflow")
        return [1.0] * len(answers)

    samples = [_sample(_answer(n)) for n in (3, 3, 3, 8, 3, 3, 3, 3)]  # only the 8-word one has word 7
    group = RolloutGroup(prompt=PROMPT, samples=samples)
    RewardScorer(RewardConfig(), score_writing=writing).score([group])
    assert [s.rewards["writing"] for s in samples] == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert list(samples[3].reward_failures) == ["writing"]
    assert len(calls) <= 1 + 2 * 3  # one batch, then log2(8) levels of halves


def test_writing_non_finite_and_wrong_length():
    group = RolloutGroup(prompt=PROMPT, samples=[_sample(_answer(5)), _sample(_answer(6))])
    RewardScorer(RewardConfig(), score_writing=lambda q, a: [math.nan, 2.0]).score([group])
    assert "non-finite" in group.samples[0].reward_failures["writing"] and group.samples[1].rewards["writing"] == 2.0
    group = RolloutGroup(prompt=PROMPT, samples=[_sample(_answer(5)), _sample(_answer(6))])
    RewardScorer(RewardConfig(), score_writing=lambda q, a: [3.0]).score([group])  # 1 score per call only
    assert [s.rewards["writing"] for s in group.samples] == [3.0, 3.0] and not group.samples[0].reward_failures


def _overlong_group():
    return RolloutGroup(prompt=PROMPT, samples=[
        _sample(_answer(150), num_tokens=900), _sample(_answer(90), num_tokens=1900),
        _sample("<think>t</think><answer>" + "x " * 500, finish="length", num_tokens=2000)])


def test_overlong_worst_policy():
    group = _overlong_group()
    calls = []
    writing = lambda q, a: calls.append(len(a)) or [5.0, -2.0][: len(a)]  # noqa: E731
    RewardScorer(RewardConfig(), score_writing=writing).score([group])
    truncated = group.samples[2]
    assert calls == [2]  # the truncated sample is never sent to the Writing RM
    assert truncated.rewards == {"length": 0.0, "format": 0.0, "writing": -2.0}  # group minimum of writing


def test_overlong_soft_policy():
    cfg = RewardConfig(overlong=OverlongConfig(policy="soft", max_response_tokens=2000, buffer_tokens=500))
    group = _overlong_group()
    RewardScorer(cfg, score_writing=_writing).score([group])
    # DAPO: 900 tokens → 0; 1900 tokens → (2000 − 500 − 1900) / 500 = −0.8; 2000 → −1.0 (at T_max)
    assert soft_overlong_penalty(1900, 2000, 500) == pytest.approx(-0.8)
    assert soft_overlong_penalty(2001, 2000, 500) == -1.0
    assert group.samples[0].rewards["length"] == 1.0
    assert group.samples[1].rewards["length"] == pytest.approx(0.9 - 0.8)
    assert group.samples[2].rewards["length"] == pytest.approx(0.0 - 1.0)  # unterminated answer → length 0


def test_overlong_filter_policy_masks_advantages():
    cfg = RewardConfig(overlong=OverlongConfig(policy="filter"))
    group = _overlong_group()
    RewardScorer(cfg, score_writing=_writing).score([group])
    adv = advantages_for_groups([group], cfg)
    assert adv.shape == (1, 3) and adv[0, 2] == 0.0
    finished = {k: torch.tensor([[s.rewards[k] for s in group.samples[:2]]]) for k in cfg.components}
    assert torch.allclose(adv[:, :2], balanced_advantages(finished).float(), atol=1e-6)


def test_advantages_for_uneven_groups():
    cfg = RewardConfig(components=["length"])
    g1 = RolloutGroup(prompt=PROMPT, samples=[_sample(_answer(n)) for n in (100, 50, 0)])
    g2 = RolloutGroup(prompt=PROMPT, samples=[_sample(_answer(n)) for n in (10, 20)])
    RewardScorer(cfg).score([g1, g2])
    adv = advantages_for_groups([g1, g2], cfg)
    # g1 length rewards (1, .5, 0): mean .5, stdev .5 → (1, 0, −1)/(1 + 2e-6); g2 (.1, .2): ±0.7071
    assert torch.allclose(adv, torch.tensor([[1.0, 0.0, -1.0], [-0.70710678, 0.70710678, 0.0]]), atol=1e-5)
    with pytest.raises(ValueError, match="RewardScorer.score"):
        advantages_for_groups([RolloutGroup(prompt=PROMPT, samples=[_sample("x")])], cfg)


def test_config_validation():
    with pytest.raises(ValueError, match="extra_rewards"):
        RewardScorer(RewardConfig(components=["length", "judge"]))
    with pytest.raises(ValueError, match="score_writing"):
        RewardScorer(RewardConfig())
    with pytest.raises(ValueError, match="weights"):
        RewardConfig(weights={"style": 1.0})
    with pytest.raises(ValueError, match="soft"):
        RewardConfig(components=["format"], overlong=OverlongConfig(policy="soft"))
    assert RewardConfig(weights={"writing": 2.0}).weight_vector() == {"length": 0.25, "writing": 0.5, "format": 0.25}


def test_worker_processes_match_in_process():
    texts = [wrap("\n\n".join(GREEN_CITY + GREEN_CITY[:2])), _answer(120), "bad"]
    groups = [RolloutGroup(prompt=PROMPT, samples=[_sample(t) for t in texts])]
    RewardScorer(RewardConfig(components=["length", "format"])).score(groups)
    expected = [dict(s.rewards) for s in groups[0].samples]
    for s in groups[0].samples:
        s.rewards.clear()
    with RewardScorer(RewardConfig(components=["length", "format"], num_workers=2)) as scorer:
        scorer.score(groups)
    assert [s.rewards for s in groups[0].samples] == expected
    assert 0 < expected[0]["format"] < 1

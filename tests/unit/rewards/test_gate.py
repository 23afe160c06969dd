"""Constraint-gated advantages (reward.gate, RLMR) on top of Eq. 5: hand-computed cases, a property check
over random groups (a gated sample's advantage is never positive), and the scorer/config plumbing."""

import pytest
import torch

from megatron_lwz.config.base import ConfigError
from megatron_lwz.rewards.composite import RewardConfig
from megatron_lwz.rewards.gate import GateConfig, gate_metrics, violated_gates
from megatron_lwz.rl.advantage import advantages_for_groups, balanced_advantages, gate_advantages
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, Sample

# The groups of tests/unit/rewards/test_advantage.py; their Eq. 5 advantages were computed by hand there:
# group 1 (0.574914, −0.241581, 0.166667, −0.5), group 2 (−0.788674, 0.455341, −0.122008, 0.455341).
LENGTH = [[1.0, 0.5, 0.0, 0.5], [1.0, 1.0, 1.0, 1.0]]
WRITING = [[2.0, 1.0, 3.0, 2.0], [0.5, 1.5, 0.5, 1.5]]
FORMAT = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]]


def _eq5():
    rewards = {k: torch.tensor(v, dtype=torch.float64) for k, v in
               (("length", LENGTH), ("writing", WRITING), ("format", FORMAT))}
    return balanced_advantages(rewards)


def test_gate_hand_computed():
    adv = _eq5()
    violated = torch.tensor([[True, False, False, False], [False, True, False, False]])
    gated = gate_advantages(adv, violated)
    # the violating sample takes its group's lowest advantage; the others keep theirs
    expected = [[-0.499999, -0.241581457, 0.166666833, -0.499999],
                [-0.788673635, -0.788673635, -0.122008301, 0.455340968]]
    assert torch.allclose(gated, torch.tensor(expected, dtype=torch.float64), atol=1e-8)
    fixed = gate_advantages(adv, violated, value=-2.0)
    assert fixed[0, 0] == -2.0 and fixed[1, 1] == -2.0 and torch.equal(fixed[0, 1:], adv[0, 1:])
    # a constant group (all advantages 0): the gated sample gets 0, never a positive value
    flat = gate_advantages(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[False, True, False]]))
    assert torch.equal(flat, torch.zeros(1, 3, dtype=torch.float64))
    # masked entries are neither gated nor used for the minimum
    masked = gate_advantages(torch.tensor([[-5.0, 1.0, -1.0]]), torch.tensor([[True, True, False]]),
                             mask=torch.tensor([[False, True, True]]))
    assert masked.tolist() == [[-5.0, -1.0, -1.0]]
    with pytest.raises(ValueError, match="<= 0"):
        gate_advantages(adv, violated, value=0.5)


def test_gated_advantage_never_positive_over_random_groups():
    gen = torch.Generator().manual_seed(0)
    for trial in range(400):
        n, g = int(torch.randint(1, 5, (1,), generator=gen)), int(torch.randint(2, 9, (1,), generator=gen))
        rewards = {}
        for name in ("a", "b", "c"):
            r = torch.rand(n, g, generator=gen, dtype=torch.float64) * 10 - 5
            if torch.rand(1, generator=gen) < 0.3:  # some constant components / quantised values
                r = torch.round(r / 5)
            rewards[name] = r
        mask = torch.rand(n, g, generator=gen) < 0.85
        violated = torch.rand(n, g, generator=gen) < 0.4
        mode = "advantage_mean" if trial % 2 else "reward_mean"
        adv = balanced_advantages(rewards, weights={"a": float(trial % 3 + 1)}, mode=mode, mask=mask)
        value = None if trial % 4 else -float(trial % 7)
        gated = gate_advantages(adv, violated, mask, value)
        hit = violated & mask
        assert (gated[hit] <= 0).all(), f"trial {trial}: a gated sample got a positive advantage"
        assert torch.equal(gated[~hit], adv[~hit])
        if value is None:
            for i in range(n):
                if hit[i].any():
                    assert torch.all(gated[i][hit[i]] == min(0.0, float(adv[i][mask[i]].min())))


PROMPT = PromptRecord(prompt_id="p", question="q", length_lower=1, length_upper=3)


def _sample(length, fmt, failed=()):
    s = Sample(prompt=PROMPT, prompt_text="t", prompt_token_ids=[1], response_token_ids=[2], response_text="x",
               finish_reason="stop", rewards={"length": length, "format": fmt})
    s.reward_failures.update({name: "boom" for name in failed})
    return s


def test_advantages_for_groups_gates_length_and_format():
    gate = GateConfig(thresholds={"length": 1.0, "format": 0.5})
    cfg = RewardConfig(components=["length", "format"], gate=gate)
    samples = [_sample(1.0, 1.0), _sample(0.5, 1.0), _sample(1.0, 0.0), _sample(1.0, 0.9), _sample(0.2, 0.0, ["format"])]
    assert [violated_gates(s, gate) for s in samples] == [[], ["length"], ["format"], [], ["length"]]
    plain = advantages_for_groups([RolloutGroup(prompt=PROMPT, samples=samples)],
                                  RewardConfig(components=["length", "format"]))
    adv = advantages_for_groups([RolloutGroup(prompt=PROMPT, samples=samples)], cfg)
    lowest = float(plain.min())
    assert adv[0, [1, 2, 4]].tolist() == pytest.approx([lowest] * 3)
    assert adv[0, [0, 3]].tolist() == pytest.approx(plain[0, [0, 3]].tolist())
    metrics = gate_metrics(samples, gate)
    assert metrics == {"reward/gate/violated_frac": 0.6, "reward/gate/length/violated_frac": 0.4,
                       "reward/gate/format/violated_frac": 0.2}


def test_gate_config_validation():
    with pytest.raises(ConfigError, match="not in reward.components"):
        RewardConfig(components=["length"], gate=GateConfig(thresholds={"format": 0.5}))
    with pytest.raises(ConfigError, match="<= 0"):
        GateConfig(advantage=0.1)


def test_reward_mode_gate_keeps_advantages_centred():
    from megatron_lwz.rl.advantage import gate_rewards

    # hand case: violator 0 takes the minimum of each component, then Eq. 5 as usual
    r = torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.float64)
    assert gate_rewards(r, torch.tensor([[True, False, False]])).tolist() == [[1.0, 1.0, 2.0]]
    gen = torch.Generator().manual_seed(1)
    for trial in range(300):
        n, g = 3, int(torch.randint(2, 9, (1,), generator=gen))
        rewards = {k: torch.rand(n, g, generator=gen, dtype=torch.float64) for k in ("a", "b")}
        violated = torch.rand(n, g, generator=gen) < 0.5
        mode = "advantage_mean" if trial % 2 else "reward_mean"
        adv = balanced_advantages({k: gate_rewards(v, violated) for k, v in rewards.items()}, mode=mode)
        assert (adv[violated] <= 1e-12).all()
        assert torch.allclose(adv.sum(dim=-1), torch.zeros(n, dtype=torch.float64), atol=1e-9)


def test_reward_mode_through_advantages_for_groups():
    samples = [_sample(1.0, 1.0), _sample(0.5, 1.0), _sample(1.0, 0.0), _sample(1.0, 0.9)]
    cfg = RewardConfig(components=["length", "format"], gate=GateConfig(thresholds={"format": 0.5}, mode="reward"))
    adv = advantages_for_groups([RolloutGroup(prompt=PROMPT, samples=samples)], cfg)
    # format violator (sample 2) already holds the minimum of both components: length → 0.5, format 0
    gated = [_sample(1.0, 1.0), _sample(0.5, 1.0), _sample(0.5, 0.0), _sample(1.0, 0.9)]
    plain = advantages_for_groups([RolloutGroup(prompt=PROMPT, samples=gated)],
                                  RewardConfig(components=["length", "format"]))
    assert adv[0].tolist() == pytest.approx(plain[0].tolist()) and float(adv[0, 2]) < 0
    assert abs(float(adv.sum())) < 1e-5

"""Advantage balancing (paper Eq. 5) against numbers computed by hand with plain Python.

The expected values below were produced with the ``statistics`` module (``stdev`` = sample std,
``pstdev`` = population std), eps = 1e-6, independently of megatron_lwz:
A_k = (r − mean) / (stdev + eps) per group (0 for a constant group), then averaged over k.
"""

import pytest
import torch

from megatron_lwz.rl.advantage import balanced_advantages, group_normalize

# 2 groups × G = 4. Group 2 of 'length' is constant (zero variance → contributes 0).
LENGTH = [[1.0, 0.5, 0.0, 0.5], [1.0, 1.0, 1.0, 1.0]]
WRITING = [[2.0, 1.0, 3.0, 2.0], [0.5, 1.5, 0.5, 1.5]]
FORMAT = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]]

# Hand computation, group 1: length mean 0.5, stdev sqrt(0.5/3) = 0.408248 → A = ±1.224744;
# writing mean 2, stdev sqrt(2/3) → A = (0, −1.224744, 1.224744, 0); format mean .75, stdev .5 →
# (.5, .5, .5, −1.5). Average: (0.574914, −0.241581, 0.166667, −0.5).
EQ5_EXPECTED = [[0.574913624, -0.241581457, 0.166666833, -0.499999],
                [-0.788673635, 0.455340968, -0.122008301, 0.455340968]]
# Ablation: average raw rewards first ([4/3, 2.5/3, 4/3, 2.5/3] in group 1), then normalise once.
REWARD_MEAN_EXPECTED = [[0.866022404, -0.866022404, 0.866022404, -0.866022404],
                        [-1.305578329, 0.783346997, -0.261115666, 0.783346997]]
# Weights length:writing:format = 2:1:1 → (2 A_len + A_wri + A_fmt) / 4.
WEIGHTED_EXPECTED = [[0.737370686, -0.181186093, -0.181185343, -0.37499925],
                     [-0.591505226, 0.341505726, -0.091506226, 0.341505726]]


def _rewards(dtype=torch.float64):
    return {"length": torch.tensor(LENGTH, dtype=dtype), "writing": torch.tensor(WRITING, dtype=dtype),
            "format": torch.tensor(FORMAT, dtype=dtype)}


def test_eq5_matches_hand_computation():
    adv = balanced_advantages(_rewards())
    assert adv.shape == (2, 4)
    assert torch.allclose(adv, torch.tensor(EQ5_EXPECTED, dtype=torch.float64), atol=1e-8)


def test_zero_variance_group_contributes_exactly_zero():
    adv = group_normalize(torch.tensor(LENGTH, dtype=torch.float64))
    assert torch.equal(adv[1], torch.zeros(4, dtype=torch.float64))
    # identical non-representable values: the mean may round, a naive (r − mean) / eps would be noise
    noisy = torch.full((1, 4), 0.1 + 0.2, dtype=torch.float64)
    assert torch.equal(group_normalize(noisy), torch.zeros(1, 4, dtype=torch.float64))


def test_reward_mean_ablation_mode():
    adv = balanced_advantages(_rewards(), mode="reward_mean")
    assert torch.allclose(adv, torch.tensor(REWARD_MEAN_EXPECTED, dtype=torch.float64), atol=1e-8)


def test_weights_are_normalised():
    adv = balanced_advantages(_rewards(), weights={"length": 2.0, "writing": 1.0, "format": 1.0})
    assert torch.allclose(adv, torch.tensor(WEIGHTED_EXPECTED, dtype=torch.float64), atol=1e-8)
    # unlisted components weigh 1: {'length': 2} is the same 2:1:1
    assert torch.allclose(balanced_advantages(_rewards(), weights={"length": 2.0}), adv)
    with pytest.raises(ValueError, match="unknown"):
        balanced_advantages(_rewards(), weights={"lenght": 1.0})


def test_population_std_option():
    # statistics.pstdev([2, 1, 3, 2]) = sqrt(0.5) → (0, −1.414212, 1.414212, 0)
    adv = group_normalize(torch.tensor([WRITING[0]], dtype=torch.float64), unbiased=False)
    assert torch.allclose(adv, torch.tensor([[0.0, -1.414211562, 1.414211562, 0.0]], dtype=torch.float64), atol=1e-8)


def test_mask_excludes_samples():
    rewards = torch.tensor([[2.0, 1.0, 3.0, 100.0]])
    mask = torch.tensor([[True, True, True, False]])
    adv = group_normalize(rewards, mask=mask)
    # over [2, 1, 3]: mean 2, stdev 1 → (0, −1, 1) / (1 + 1e-6); the masked sample gets 0
    assert torch.allclose(adv, torch.tensor([[0.0, -1 / (1 + 1e-6), 1 / (1 + 1e-6), 0.0]]), atol=1e-6)
    one_valid = group_normalize(rewards, mask=torch.tensor([[True, False, False, False]]))
    assert torch.equal(one_valid, torch.zeros(1, 4))


def test_float32_and_shape_checks():
    adv = balanced_advantages(_rewards(torch.float32))
    assert adv.dtype == torch.float32
    assert torch.allclose(adv.double(), torch.tensor(EQ5_EXPECTED, dtype=torch.float64), atol=1e-6)
    with pytest.raises(ValueError, match="same"):
        balanced_advantages({"a": torch.zeros(2, 4), "b": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="num_groups"):
        group_normalize(torch.zeros(8))

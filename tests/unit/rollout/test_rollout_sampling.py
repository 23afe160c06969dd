"""sampling.py against transformers' logits warpers and against hand-computed distributions."""

import math

import pytest
import torch

from megatron_lwz.rollout import sampling as S


def test_top_p_matches_transformers_warper():
    from transformers.generation.logits_process import TopPLogitsWarper

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 300, generator=gen) * 3
    for p in (0.05, 0.5, 0.9, 0.999):
        ours = S.apply_top_p(logits, p)
        theirs = TopPLogitsWarper(top_p=p)(None, logits.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs)), p
        kept = ~torch.isinf(ours)
        assert torch.equal(ours[kept], logits[kept])


def test_top_p_keeps_at_least_one_and_hand_example():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert (~torch.isinf(S.apply_top_p(logits, 1e-6))).sum() == 1
    # p = 0.8: ascending cumsum [0.05, 0.2, 0.5, 1.0]; drop where <= 0.2 → keep {0.5, 0.3}
    kept = ~torch.isinf(S.apply_top_p(logits, 0.8))
    assert kept.tolist() == [[True, True, False, False]]
    assert S.apply_top_p(logits, 1.0) is logits


def test_greedy_and_raw_logprob():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    tokens, lps = S.sample_next(logits, temperature=0.0)
    assert tokens.tolist() == [1, 2]
    expected = logits.log_softmax(-1)[[0, 1], [1, 2]]
    assert torch.allclose(lps, expected)


def test_sampling_frequencies_follow_processed_distribution():
    """Exponential-race draws follow softmax(top_p(z / T)) (hand-computed target)."""
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(4000, 1)  # (4000, 4)
    gens = S.make_generators(range(4000))
    tokens, lps = S.sample_next(logits, temperature=0.5, top_p=0.9, generators=gens)
    # z / 0.5 → p^2 normalised: [0.25, 0.09, 0.0225, 0.0025] / 0.365; top-p 0.9 keeps tokens 0, 1
    target = torch.tensor([0.25, 0.09]) / 0.34
    freq = torch.bincount(tokens, minlength=4).double() / 4000
    assert freq[2:].sum() == 0
    assert torch.allclose(freq[:2], target.double(), atol=0.03)
    # raw_logprobs: log p of the unmodified distribution
    assert torch.allclose(lps, probs.log()[tokens])
    _, plps = S.sample_next(logits[:8], temperature=0.5, top_p=0.9, generators=S.make_generators(range(8)),
                            logprobs_mode="processed_logprobs")
    allowed = (math.log(0.25 / 0.34), math.log(0.09 / 0.34))
    assert all(any(math.isclose(v, a, rel_tol=1e-5) for a in allowed) for v in plps.tolist())


def test_seeded_generators_reproducible():
    logits = torch.randn(6, 50)
    a, _ = S.sample_next(logits, temperature=1.0, generators=S.make_generators([1, 2, 3, 4, 5, 6]))
    b, _ = S.sample_next(logits, temperature=1.0, generators=S.make_generators([1, 2, 3, 4, 5, 6]))
    assert torch.equal(a, b)
    # a row's draw depends only on its own generator, not on the other rows
    c, _ = S.sample_next(logits[2:3], temperature=1.0, generators=S.make_generators([3]))
    assert c.item() == a[2].item()


def test_request_seed_distinct_and_stable():
    seeds = {S.request_seed(7, i) for i in range(1000)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert S.request_seed(7, 3) == S.request_seed(7, 3) != S.request_seed(8, 3)


@pytest.mark.parametrize("kwargs, field", [({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"),
                                           ({"top_p": 1.5}, "top_p"), ({"logprobs_mode": "raw"}, "logprobs_mode")])
def test_bad_arguments(kwargs, field):
    args = {"temperature": 1.0, "top_p": 1.0, "logprobs_mode": "raw_logprobs"} | kwargs
    with pytest.raises(ValueError, match=field):
        S.check_sampling_args(**args)

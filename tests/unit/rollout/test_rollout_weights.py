"""update_weights (strict in-place HF-named copy) and the first-sync log-prob verification."""

import math

import pytest
import torch
from rollout_testlib import tiny_model

from megatron_lwz.rollout.hf_engine import HFRolloutEngine
from megatron_lwz.rollout.types import PromptRecord, SamplingParams
from megatron_lwz.rollout.verify import (
    WeightSyncError, WeightSyncMismatch, compare_logprobs, probe_from_groups, teacher_forced_logprobs,
    verify_logprobs)

IDS = torch.tensor([[1, 72, 105, 33, 200, 17, 5, 99]])


def logits_of(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def state(model):
    """The trainer's export stand-in: (HF name, full tensor) pairs, as an iterator (no disk)."""
    return ((n, p.detach().clone()) for n, p in model.state_dict().items())


@pytest.mark.parametrize("tied", [False, True])
def test_update_weights_makes_logits_equal_source(tokenizer, tied):
    engine = HFRolloutEngine(tiny_model(seed=10, tied=tied), tokenizer)
    source = tiny_model(seed=20, tied=tied)
    assert not torch.allclose(logits_of(engine.model), logits_of(source))
    report = engine.update_weights(state(source), full_sync=True)
    assert torch.equal(logits_of(engine.model), logits_of(source))
    assert report.missing == []
    # state_dict() of a tied model still lists lm_head.weight: it is skipped, like vLLM does
    assert report.skipped == (["lm_head.weight"] if tied else [])
    assert report.num_tensors == len(list(source.parameters()))


def test_update_weights_casts_dtype_in_place(tokenizer):
    engine = HFRolloutEngine(tiny_model(seed=10), tokenizer)
    before = {n: p.data_ptr() for n, p in engine.model.named_parameters()}
    source = tiny_model(seed=20)
    engine.update_weights((n, t.to(torch.bfloat16)) for n, t in state(source))
    assert {n: p.data_ptr() for n, p in engine.model.named_parameters()} == before  # same storage
    assert all(p.dtype == torch.float32 for p in engine.model.parameters())
    expected = source.model.embed_tokens.weight.to(torch.bfloat16).float()
    assert torch.equal(engine.model.model.embed_tokens.weight, expected)


def test_update_weights_strict_errors(tokenizer):
    engine = HFRolloutEngine(tiny_model(seed=10), tokenizer)
    good = dict(state(tiny_model(seed=20)))
    with pytest.raises(WeightSyncError, match=r"model\.layers\.0\.self_attn\.qkv_proj\.weight"):
        engine.update_weights([("model.layers.0.self_attn.qkv_proj.weight", torch.zeros(3))])
    bad_shape = good["model.layers.1.mlp.down_proj.weight"].T
    with pytest.raises(WeightSyncError, match=r"down_proj\.weight.*\(128, 64\).*\(64, 128\)"):
        engine.update_weights([("model.layers.1.mlp.down_proj.weight", bad_shape)])
    name = "model.norm.weight"
    with pytest.raises(WeightSyncError, match="twice"):
        engine.update_weights([(name, good[name]), (name, good[name])])
    partial = [(n, t) for n, t in good.items() if "layers.1." not in n]
    with pytest.raises(WeightSyncError, match=r"never sent.*layers\.1\."):
        engine.update_weights(partial, full_sync=True)
    report = engine.update_weights(partial)  # a partial update is allowed without full_sync
    assert report.missing and all("layers.1." in n for n in report.missing)


def test_compare_and_verify_logprobs():
    a = [torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-0.1])]
    b = [[-1.0, -2.1, -0.5], [-0.3]]
    d = compare_logprobs(a, b)
    assert d.num_tokens == 4
    assert d.max_abs == pytest.approx(0.2) and d.mean_abs == pytest.approx(0.075)
    assert d.mult_prob_error == pytest.approx((2 + math.exp(0.1) + math.exp(0.2)) / 4)
    assert verify_logprobs(a, b, threshold=0.25).max_abs == pytest.approx(0.2)
    with pytest.raises(WeightSyncMismatch, match=r"differ by up to 0\.2"):
        verify_logprobs(a, b, threshold=0.1, context="first sync")
    # padded tensors + mask: padding is ignored
    pa = torch.tensor([[-1.0, -2.0, 9.0], [-0.1, 5.0, 5.0]])
    pb = torch.tensor([[-1.0, -2.0, 0.0], [-0.1, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert compare_logprobs(pa, pb, mask).max_abs == 0.0
    with pytest.raises(WeightSyncMismatch):
        verify_logprobs([[float("nan")]], [[0.0]], threshold=1.0)
    with pytest.raises(ValueError, match="sequence 1"):
        compare_logprobs(a, [[-1.0, -2.0, -0.5], [-0.1, -0.2]])


def test_first_sync_check_end_to_end(tokenizer):
    """Rollout from engine weights, trainer recompute: passes after a sync, fails on a stale engine."""
    trainer_model = tiny_model(seed=30)
    engine = HFRolloutEngine(tiny_model(seed=31), tokenizer)
    recs = [PromptRecord(prompt_id="0", question="hello", length_lower=1, length_upper=9)]
    params = SamplingParams(n=3, temperature=1.0, max_tokens=8, seed=5)

    engine.update_weights(state(trainer_model), full_sync=True)
    seqs, starts, rollout = probe_from_groups(engine.generate(recs, ["hello"], params), num_samples=2)
    assert len(seqs) == 2
    trainer = teacher_forced_logprobs(trainer_model, seqs, starts)
    assert verify_logprobs(rollout, trainer, threshold=1e-4).max_abs < 1e-4

    stale = HFRolloutEngine(tiny_model(seed=31), tokenizer)  # never synced
    seqs, starts, rollout = probe_from_groups(stale.generate(recs, ["hello"], params), num_samples=2)
    with pytest.raises(WeightSyncMismatch):
        verify_logprobs(rollout, teacher_forced_logprobs(trainer_model, seqs, starts), threshold=1e-2)

"""rl.batching: alignment convention, dynamic sampling, mini-batches and micro-batch packing."""

import logging
import random

import pytest
import torch

from megatron_lwz.config.schema import PrecisionConfig
from megatron_lwz.rl.batching import (_equalise_counts, build_train_batch,
                                      pack_microbatches, split_minibatches,
                                      zero_variance_groups)
from megatron_lwz.rl.config import BatchingConfig
from megatron_lwz.rl.loss import logprobs_from_logits
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, Sample

PAD = 0


def _sample(prompt, response, *, reward=0.5, finish="stop", logprobs=True, pid="p0"):
    rec = PromptRecord(prompt_id=pid, question="q", length_lower=10, length_upper=20)
    lp = [-0.1 * (k + 1) for k in range(len(response))] if logprobs else None
    return Sample(prompt=rec, prompt_text="t", prompt_token_ids=list(prompt), response_token_ids=list(response),
                  response_text="r", finish_reason=finish, rollout_logprobs=lp,
                  rewards={"length": reward, "writing": 0.1})


def _group(samples, pid="p0"):
    return RolloutGroup(prompt=samples[0].prompt, samples=samples)


def test_alignment_convention_by_hand():
    groups = [_group([_sample([5, 6, 7], [8, 9, 10]), _sample([5], [11])])]
    batch = build_train_batch(groups, torch.tensor([[1.0, -1.0]]), BatchingConfig(), pad_token_id=PAD)
    assert batch.tokens.tolist() == [[5, 6, 7, 8, 9, 10], [5, 11, 0, 0, 0, 0]]
    assert batch.labels.tolist() == [[6, 7, 8, 9, 10, 0], [11, 0, 0, 0, 0, 0]]
    assert batch.loss_mask.tolist() == [[0, 0, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]]
    assert batch.rollout_logprobs[0].tolist() == pytest.approx([0, 0, -0.1, -0.2, -0.3, 0])
    assert batch.rollout_logprobs[1].tolist() == pytest.approx([-0.1, 0, 0, 0, 0, 0])
    assert batch.position_ids.tolist() == [list(range(6))] * 2
    assert batch.lengths.tolist() == [6, 2] and batch.response_lengths.tolist() == [3, 1]
    assert batch.advantages.tolist() == [1.0, -1.0]
    assert batch.group_index.tolist() == [0, 0] and batch.sample_index.tolist() == [0, 1]
    # the masked labels are exactly the response tokens, in order
    assert batch.labels[batch.loss_mask.bool()].tolist() == [8, 9, 10, 11]


def test_alignment_matches_a_causal_model_next_token_logprob():
    """logprobs_from_logits(logits, labels)[t] at mask positions = log p(response token | its prefix)."""
    torch.manual_seed(0)
    groups = [_group([_sample([3, 4], [5, 6, 7]), _sample([1, 2, 3, 4], [9])])]
    batch = build_train_batch(groups, torch.zeros(1, 2), BatchingConfig(), pad_token_id=PAD)
    emb, head = torch.nn.Embedding(12, 8), torch.nn.Linear(8, 12)

    def model(ids):  # causal toy: position t sees the running mean of tokens[:t+1]
        h = emb(ids).cumsum(1) / torch.arange(1, ids.shape[1] + 1)[None, :, None]
        return head(h)

    lp = logprobs_from_logits(model(batch.tokens), batch.labels)
    for i, group_sample in enumerate(groups[0].samples):
        ids = group_sample.prompt_token_ids + group_sample.response_token_ids
        expected = []
        for k in range(len(group_sample.prompt_token_ids), len(ids)):  # score response token k from ids[:k]
            logits = model(torch.tensor([ids[:k]]))[0, -1]
            expected.append(torch.log_softmax(logits, -1)[ids[k]].item())
        assert lp[i][batch.loss_mask[i].bool()].tolist() == pytest.approx(expected, abs=1e-6)


def test_dynamic_sampling_drops_zero_variance_groups():
    flat = _group([_sample([1], [2], reward=0.3), _sample([1], [3], reward=0.3)])
    varied = _group([_sample([1], [2], reward=0.3), _sample([1], [3], reward=0.9)])
    assert zero_variance_groups([flat, varied]) == [True, False]
    adv = torch.tensor([[0.0, 0.0], [-1.0, 1.0]])
    on = build_train_batch([flat, varied], adv, BatchingConfig(dynamic_sampling=True), pad_token_id=PAD)
    assert on.group_index.tolist() == [1, 1] and on.advantages.tolist() == [-1.0, 1.0]
    assert on.stats["groups_zero_variance_dropped"] == 1
    off = build_train_batch([flat, varied], adv, BatchingConfig(), pad_token_id=PAD)
    assert len(off) == 4


def test_bad_inputs_raise_clear_errors():
    group = _group([_sample([1], [2]), _sample([1], [3])])
    with pytest.raises(ValueError, match="2 samples but 3 advantages"):
        build_train_batch([group], [[0.0, 0.0, 0.0]], BatchingConfig(), pad_token_id=PAD)
    with pytest.raises(ValueError, match="1 groups"):
        build_train_batch([group], torch.zeros(2, 2), BatchingConfig(), pad_token_id=PAD)
    mixed = _group([_sample([1], [2]), _sample([1], [3], logprobs=False)])
    with pytest.raises(ValueError, match="rollout_logprobs"):
        build_train_batch([mixed], torch.zeros(1, 2), BatchingConfig(), pad_token_id=PAD)
    bad = _sample([1], [2, 3])
    bad.rollout_logprobs = [-0.1]
    with pytest.raises(ValueError, match="1 rollout log-probs for 2 response tokens"):
        build_train_batch([_group([bad])], torch.zeros(1, 1), BatchingConfig(), pad_token_id=PAD)
    none = build_train_batch([_group([_sample([1], [2], logprobs=False)])], [[0.5]], BatchingConfig(),
                             pad_token_id=PAD)
    assert none.rollout_logprobs is None


def test_select_and_split_minibatches():
    samples = [_sample([1] * (k + 1), [2] * (k + 1)) for k in range(7)]
    batch = build_train_batch([_group(samples)], [list(range(7))], BatchingConfig(), pad_token_id=PAD)
    sub = batch.select([1, 0])
    assert sub.tokens.shape == (2, 4) and sub.advantages.tolist() == [1.0, 0.0]
    assert sub.rollout_logprobs.shape == (2, 4)
    parts = split_minibatches(batch, 3)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert sorted(i for p in parts for i in p.sample_index.tolist()) == list(range(7))
    shuffled = split_minibatches(batch, 3, seed=7)
    assert [p.sample_index.tolist() for p in shuffled] == [p.sample_index.tolist()
                                                          for p in split_minibatches(batch, 3, seed=7)]
    assert sorted(i for p in shuffled for i in p.sample_index.tolist()) == list(range(7))
    with pytest.raises(ValueError, match="num_minibatches"):
        split_minibatches(batch, 8)


def _check_layout(layout, lengths, budget, dp):
    assert len(layout) == dp
    counts = {len(rank) for rank in layout}
    assert len(counts) == 1, f"unequal micro-batch counts {counts}"
    seen = sorted(i for rank in layout for mb in rank for i in mb)
    assert seen == list(range(len(lengths))), "every index exactly once"
    for rank in layout:
        for mb in rank:
            assert mb, "empty micro-batch"
            assert len(mb) == 1 or len(mb) * max(lengths[i] for i in mb) <= budget


@pytest.mark.parametrize("seed", range(6))
def test_pack_microbatches_random(seed):
    rng = random.Random(seed)
    n, dp = rng.choice([(256, 8), (64, 4), (33, 2), (16, 1)])
    lengths = [rng.randint(100, 14_000) for _ in range(n)]
    budget = rng.choice([16_384, 32_768, 60_000])
    layout = pack_microbatches(lengths, budget, dp)
    _check_layout(layout, lengths, budget, dp)
    loads = [sum(lengths[i] for mb in rank for i in mb) for rank in layout]
    mean = sum(loads) / dp
    assert max(loads) / mean < 1.01, loads  # Karmarkar–Karp: near-perfect balance on many rows
    assert layout == pack_microbatches(lengths, budget, dp)  # deterministic


def test_pack_oversized_and_budget_edges():
    layout = pack_microbatches([50, 10, 10, 10], token_budget=20, dp_size=1)
    assert layout == [[[0], [1, 2], [3]]]  # 50 > budget alone; 2 × 10 fits, a third would make 30
    _check_layout(pack_microbatches([7] * 9, 21, 3), [7] * 9, 21, 3)


def test_equalise_by_split_and_by_taking_rows():
    lens = [10] * 7
    ranks = [[[0, 1, 2, 3]], [[4], [5], [6]]]
    _equalise_counts(ranks, lens)
    assert ranks == [[[0], [1], [2, 3]], [[4], [5], [6]]]  # halves, then the first of two equal-cost halves
    # rank 0 holds one oversized row; rank 1's six short rows need three micro-batches → rank 0 takes two
    lengths = [3000, 500, 500, 500, 500, 500, 500]
    layout = pack_microbatches(lengths, token_budget=1000, dp_size=2)
    _check_layout(layout, lengths, 1000, 2)
    big = next(rank for rank in layout if [0] in rank)
    assert [len(r) for r in layout] == [3, 3] and all(len(mb) == 1 for mb in big)


def test_pack_infeasible_raises():
    with pytest.raises(ValueError, match="non-empty micro-batches"):
        pack_microbatches([3000, 1000, 1000, 1000], token_budget=1000, dp_size=2)
    with pytest.raises(ValueError, match="DP ranks"):
        pack_microbatches([10], token_budget=100, dp_size=2)


@pytest.mark.parametrize("sp, pp, widths", [(False, 1, {6, 3}), (True, 1, {8, 4}), (True, 2, {8})])
def test_microbatch_widths_are_multiples_of_tp_under_sequence_parallelism(sp, pp, widths):
    """SP scatters the sequence over TP ranks: every micro-batch width must divide by TP (here 4)."""
    from types import SimpleNamespace

    from megatron_lwz.rl.step import plan_minibatch

    samples = [_sample([1, 2], [3, 4, 5, 6]), _sample([1, 2], [3, 4, 5]), _sample([1], [2, 3])]
    batch = build_train_batch([_group(samples)], [[1.0, 0.5, -1.0]], BatchingConfig(), pad_token_id=PAD)
    cfg = SimpleNamespace(rl=SimpleNamespace(batching=BatchingConfig(micro_token_budget=12)),
                          parallel=SimpleNamespace(sequence_parallel=sp), precision=PrecisionConfig())
    ctx = SimpleNamespace(dp=1, dp_rank=0, tp=4, pp=pp)
    mbs = plan_minibatch(batch, cfg, ctx)
    assert {mb["tokens"].shape[1] for mb in mbs} == widths
    for mb in mbs:  # positions and labels cover the padded width
        assert mb["position_ids"].shape == mb["tokens"].shape == mb["labels"].shape == mb["loss_mask"].shape
    assert sum(int(mb["loss_mask"].sum()) for mb in mbs) == int(batch.loss_mask.sum())  # padding adds no loss tokens


@pytest.mark.parametrize("sp, pp, recipe, multiple", [(False, 1, "tensorwise", 16), (True, 1, "delayed", 64),
                                                      (False, 1, "mxfp8", 32), (True, 2, "blockwise", 128)])
def test_microbatch_widths_are_fp8_aligned(sp, pp, recipe, multiple):
    """Issue 11 defect 7: with FP8 every micro-batch width is a multiple of TE's GEMM alignment (16; 32 for
    MXFP8/blockwise), times TP under sequence parallelism (here TP 4); the loss tokens do not change."""
    from types import SimpleNamespace

    from megatron_lwz.rl.step import plan_minibatch

    samples = [_sample([1, 2], [3, 4, 5, 6]), _sample([1, 2], [3, 4, 5]), _sample([1], [2, 3])]
    batch = build_train_batch([_group(samples)], [[1.0, 0.5, -1.0]], BatchingConfig(), pad_token_id=PAD)
    cfg = SimpleNamespace(rl=SimpleNamespace(batching=BatchingConfig(micro_token_budget=12)),
                          parallel=SimpleNamespace(sequence_parallel=sp),
                          precision=PrecisionConfig(fp8="hybrid", fp8_recipe=recipe))
    mbs = plan_minibatch(batch, cfg, SimpleNamespace(dp=1, dp_rank=0, tp=4, pp=pp))
    assert all(mb["tokens"].shape[1] % multiple == 0 for mb in mbs)
    assert sum(int(mb["loss_mask"].sum()) for mb in mbs) == int(batch.loss_mask.sum())
    width = batch.tokens.shape[1]
    got = [tuple(row) for mb in mbs for row, mask in zip(mb["tokens"][:, :width].tolist(), mb["loss_mask"])
           if mask.any()]  # PP > 1 adds all-padding rows
    assert sorted(got) == sorted(map(tuple, batch.tokens[:, :width].tolist()))


def test_small_batch_is_never_trained_on_silently(caplog):
    """Fewer rows than DP × num_minibatches: as many updates as DP allows, or none — with a warning
    each time (the loop used to skip the whole iteration without a word)."""
    from megatron_lwz.rl.batching import minibatches_for_update

    samples = [_sample([1] * (k + 1), [2] * (k + 1)) for k in range(8)]
    batch = build_train_batch([_group(samples)], [list(range(8))], BatchingConfig(), pad_token_id=PAD)
    rows = len(batch)
    caplog.set_level(logging.WARNING, logger="megatron_lwz.rl.batching")
    assert len(minibatches_for_update(batch, 2, 1, seed=1)) == 2 and not caplog.records
    parts = minibatches_for_update(batch, 4, rows // 2, seed=1)
    assert len(parts) == 2 and sum(len(p) for p in parts) == rows
    assert "makes only 2 of 4 updates" in caplog.text
    caplog.clear()
    assert minibatches_for_update(batch, 1, rows + 1) == []
    assert "trains NOTHING" in caplog.text and f"{rows} rows < DP {rows + 1}" in caplog.text
    caplog.clear()
    assert minibatches_for_update(batch, 1, rows + 1, warn=False) == [] and not caplog.records

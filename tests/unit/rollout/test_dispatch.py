"""Length-aware / round-robin dispatch (rollout/dispatch.py): LPT against hand-worked schedules, and
per-sample seeds give the same samples whatever the number of engines (real HF engines)."""

import pytest
from rollout_testlib import ByteTokenizer

from megatron_lwz.rollout.dispatch import (
    Shard, engine_loads, generate_dispatched, merge_groups, plan_dispatch, predicted_tokens)
from megatron_lwz.rollout.hf_engine import HFRolloutEngine
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, SamplingParams


def test_lpt_matches_hand_schedule():
    # LPT by hand, 2 machines, jobs 10 7 5 3 1: 10→A, 7→B, 5→B (7<10), 3→A (10<12), 1→B (12<13)
    plan = plan_dispatch([10, 7, 5, 3, 1], 1, 2, "length_aware")
    assert [[s.prompt_index for s in shards] for shards in plan] == [[0, 3], [1, 2, 4]]
    assert engine_loads(plan) == [13, 13]
    rr = plan_dispatch([10, 7, 5, 3, 1], 1, 2, "round_robin")
    assert [[s.prompt_index for s in shards] for shards in rr] == [[0, 2, 4], [1, 3]]
    assert max(engine_loads(rr)) == 16 > max(engine_loads(plan))


def test_long_group_is_split_into_consecutive_samples():
    # group 0 costs 4 × 100 = 400 > fair share (400 + 4 + 4) / 2 = 204 → 2 shards of 2 samples
    plan = plan_dispatch([100, 1, 1], 4, 2, "length_aware")
    shards0 = sorted((s for e in plan for s in e if s.prompt_index == 0), key=lambda s: s.first_sample)
    assert [(s.first_sample, s.num_samples) for s in shards0] == [(0, 2), (2, 2)]
    assert sorted(engine_loads(plan)) == [204, 204]
    assert all(len([s for s in e if s.prompt_index == 0]) == 1 for e in plan)  # one half per engine
    assert plan_dispatch([100, 1, 1], 4, 2, "length_aware", split=False)[0][0] == Shard(0, 0, 4, 400)


def test_one_engine_is_the_plain_request_order():
    plan = plan_dispatch([5, 500, 50], 8, 1)
    assert plan == [[Shard(0, 0, 8, 40), Shard(1, 0, 8, 4000), Shard(2, 0, 8, 400)]]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_engines"):
        plan_dispatch([1.0], 2, 0)
    with pytest.raises(ValueError, match="policy"):
        plan_dispatch([1.0], 2, 1, "fifo")  # type: ignore[arg-type]


def test_predicted_tokens_caps_at_max_tokens():
    rec = PromptRecord(prompt_id="a", question="q", length_lower=1000, length_upper=3000)
    assert predicted_tokens(rec, max_tokens=14000, tokens_per_word=1.5, think_tokens=100) == 3100
    long = PromptRecord(prompt_id="b", question="q", length_lower=9000, length_upper=12000)
    assert predicted_tokens(long, max_tokens=14000) == 14000


QUESTIONS = ["hi", "Write a long story about a lighthouse.", "写一首诗", "x = {1, 2}", "short"]
LENGTHS = [(10, 20), (3000, 6000), (100, 200), (50, 60), (5, 10)]


def _ids(groups: list[RolloutGroup]):
    return [[(s.response_token_ids, s.finish_reason) for s in g.samples] for g in groups]


def _logprobs(groups: list[RolloutGroup]):
    return [x for g in groups for s in g.samples for x in s.rollout_logprobs]


def test_samples_do_not_depend_on_the_number_of_engines(model):
    tok = ByteTokenizer()
    recs = [PromptRecord(prompt_id=str(i), question=q, length_lower=lo, length_upper=hi)
            for i, (q, (lo, hi)) in enumerate(zip(QUESTIONS, LENGTHS))]
    texts = [r.question for r in recs]
    params = SamplingParams(n=4, temperature=1.0, top_p=0.9, max_tokens=10, seed=77)
    engine = HFRolloutEngine(model, tok)
    ref_groups = engine.generate(recs, texts, params)  # today's single-engine call
    reference, ref_logprobs = _ids(ref_groups), _logprobs(ref_groups)
    costs = [predicted_tokens(r, max_tokens=10_000, think_tokens=0) for r in recs]
    for engines in (1, 2, 3):
        for policy in ("length_aware", "round_robin"):
            plan = plan_dispatch(costs, params.n, engines, policy)
            if engines > 1 and policy == "length_aware":
                assert any(s.first_sample > 0 for e in plan for s in e), "the long group must be split"
            got = generate_dispatched([HFRolloutEngine(model, tok) for _ in range(engines)], recs, texts, params, plan)
            assert [g.prompt.prompt_id for g in got] == [r.prompt_id for r in recs]
            assert _ids(got) == reference, f"{engines} engines, {policy}"
            # log-probs: same tokens, other batch neighbours → equal up to float summation order
            assert max(abs(a - b) for a, b in zip(_logprobs(got), ref_logprobs)) < 1e-4


def test_merge_rejects_missing_samples(model):
    recs = [PromptRecord(prompt_id="0", question="hi", length_lower=1, length_upper=2)]
    plan = [[Shard(0, 0, 2, 2.0)]]
    with pytest.raises(RuntimeError, match="returned 0 samples"):
        merge_groups(recs, plan, [[RolloutGroup(prompt=recs[0], samples=[])]], 2)
    with pytest.raises(RuntimeError, match="returned 0 groups"):
        merge_groups(recs, plan, [[]], 2)


def test_per_prompt_params_must_share_sampling_fields(model):
    recs = [PromptRecord(prompt_id=str(i), question=q, length_lower=1, length_upper=2) for i, q in enumerate("ab")]
    engine = HFRolloutEngine(model, ByteTokenizer())
    with pytest.raises(ValueError, match="prompt 1 differ"):
        engine.generate(recs, ["a", "b"], [SamplingParams(temperature=1.0), SamplingParams(temperature=0.5)])
    with pytest.raises(ValueError, match="2 prompts but 1 SamplingParams"):
        engine.generate(recs, ["a", "b"], [SamplingParams()])
    out = engine.generate(recs, ["a", "b"], [SamplingParams(n=1, max_tokens=3, seed=1),
                                             SamplingParams(n=3, max_tokens=5, seed=2)])
    assert [len(g) for g in out] == [1, 3] and max(len(s.response_token_ids) for s in out[1].samples) <= 5


def test_ranks_per_engine_from_the_launcher():
    from megatron_lwz.config.base import ConfigError
    from megatron_lwz.parallel.rollout_groups import ranks_per_engine

    assert ranks_per_engine(0, 64, {"LOCAL_WORLD_SIZE": "8"}) == 8
    assert ranks_per_engine(0, 64, {"SLURM_NTASKS_PER_NODE": "8(x8)"}) == 8
    assert ranks_per_engine(0, 64, {"SLURM_TASKS_PER_NODE": "8(x8)"}) == 8
    assert ranks_per_engine(0, 64, {}, default=8) == 8 and ranks_per_engine(0, 4, {}) == 4
    assert ranks_per_engine(2, 4, {"LOCAL_WORLD_SIZE": "4"}) == 2
    with pytest.raises(ConfigError, match="engine_gpus"):
        ranks_per_engine(3, 4, {})

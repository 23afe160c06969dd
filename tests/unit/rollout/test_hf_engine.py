"""HFRolloutEngine against transformers' own generate() and a teacher-forced forward."""

import pytest
import torch
from rollout_testlib import EOD, ByteTokenizer

from megatron_lwz.rollout.hf_engine import HFRolloutEngine, IncrementalDetokenizer, find_stop
from megatron_lwz.rollout.sampling import process_logits
from megatron_lwz.rollout.types import PromptRecord, SamplingParams
from megatron_lwz.rollout.verify import teacher_forced_logprobs

QUESTIONS = ["hi", "Write a story about a lighthouse.", "写一首诗", "x = {1, 2}"]


def records(questions=QUESTIONS):
    return [PromptRecord(prompt_id=str(i), question=q, length_lower=10, length_upper=100)
            for i, q in enumerate(questions)]


def run(engine, params, questions=QUESTIONS):
    recs = records(questions)
    return engine.generate(recs, [r.question for r in recs], params)


def hf_greedy(model, prompts, max_new_tokens):
    """transformers generate(do_sample=False) on a left-padded batch, cut after the first EOD."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                         eos_token_id=EOD, pad_token_id=EOD)[:, width:]
    result = []
    for row in out.tolist():
        result.append(row[:row.index(EOD) + 1] if EOD in row else row)
    return result


def test_greedy_matches_transformers_generate(model, tokenizer):
    engine = HFRolloutEngine(model, tokenizer)
    groups = run(engine, SamplingParams(n=2, temperature=0.0, max_tokens=24))
    expected = hf_greedy(model, [tokenizer.encode(q) for q in QUESTIONS], 24)
    for group, want in zip(groups, expected):
        assert [s.response_token_ids for s in group.samples] == [want, want]
        for s in group.samples:
            assert s.finish_reason == ("stop" if want[-1] == EOD else "length")
            assert s.response_text == tokenizer.decode([t for t in want if t != EOD])


def test_batch_size_does_not_change_greedy(model, tokenizer):
    full = run(HFRolloutEngine(model, tokenizer), SamplingParams(temperature=0.0, max_tokens=16))
    chunked = run(HFRolloutEngine(model, tokenizer, max_batch_size=1), SamplingParams(temperature=0.0, max_tokens=16))
    assert [g.samples[0].response_token_ids for g in full] == [g.samples[0].response_token_ids for g in chunked]


def test_seeded_sampling_reproducible_and_seed_dependent(model, tokenizer):
    engine = HFRolloutEngine(model, tokenizer)
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_tokens=12, seed=1234)
    ids = lambda groups: [[s.response_token_ids for s in g.samples] for g in groups]  # noqa: E731
    a, b = ids(run(engine, params)), ids(run(engine, params))
    assert a == b
    c = ids(run(engine, SamplingParams(n=3, temperature=1.0, top_p=0.95, max_tokens=12, seed=4321)))
    assert a != c
    assert len({tuple(x) for x in a[1]}) > 1  # the n samples of a prompt differ from each other
    # a prompt's samples do not depend on what else is in the batch
    alone = ids(run(engine, params, QUESTIONS[:1]))
    assert alone[0] == a[0]


def test_rollout_logprobs_match_teacher_forced_forward(model, tokenizer):
    engine = HFRolloutEngine(model, tokenizer)
    groups = run(engine, SamplingParams(n=3, temperature=1.0, max_tokens=20, seed=7))
    samples = [s for g in groups for s in g.samples]
    seqs = [s.prompt_token_ids + s.response_token_ids for s in samples]
    ref = teacher_forced_logprobs(model, seqs, [len(s.prompt_token_ids) for s in samples], batch_size=5)
    for s, r in zip(samples, ref):
        assert len(s.rollout_logprobs) == len(s.response_token_ids)
        assert torch.allclose(torch.tensor(s.rollout_logprobs), r, atol=1e-4, rtol=0)


def test_processed_logprobs_mode(model, tokenizer):
    engine = HFRolloutEngine(model, tokenizer, logprobs_mode="processed_logprobs")
    groups = run(engine, SamplingParams(n=2, temperature=0.7, top_p=0.8, max_tokens=10, seed=3), QUESTIONS[:2])
    for s in (s for g in groups for s in g.samples):
        ids = torch.tensor([s.prompt_token_ids + s.response_token_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(s.prompt_token_ids) - 1:-1]  # (R, V)
        want = process_logits(logits, 0.7, 0.8).log_softmax(-1)
        want = want.gather(-1, torch.tensor(s.response_token_ids)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(s.rollout_logprobs), want, atol=1e-4, rtol=0)


def test_max_tokens_and_length_finish(model, tokenizer):
    groups = run(HFRolloutEngine(model, tokenizer), SamplingParams(n=4, temperature=1.0, max_tokens=5, seed=0))
    reasons = []
    for s in (s for g in groups for s in g.samples):
        assert 1 <= len(s.response_token_ids) <= 5
        ended_on_eod = s.response_token_ids[-1] == EOD
        assert s.finish_reason == ("stop" if ended_on_eod else "length")
        assert ended_on_eod or len(s.response_token_ids) == 5
        reasons.append(s.finish_reason)
    assert "length" in reasons
    no_lp = run(HFRolloutEngine(model, tokenizer), SamplingParams(max_tokens=3, logprobs=False), QUESTIONS[:1])
    assert no_lp[0].samples[0].rollout_logprobs is None


def test_eos_stops_and_is_kept_without_text(model):
    tok = ByteTokenizer()
    first = run(HFRolloutEngine(model, tok), SamplingParams(temperature=0.0, max_tokens=4), QUESTIONS[:1])
    t0 = first[0].samples[0].response_token_ids[0]
    tok.eod = t0  # make the greedy first token the end-of-document id
    s = run(HFRolloutEngine(model, tok), SamplingParams(temperature=0.0, max_tokens=4), QUESTIONS[:1])[0].samples[0]
    assert s.response_token_ids == [t0] and s.finish_reason == "stop" and s.response_text == ""
    assert len(s.rollout_logprobs) == 1


def test_stop_strings(model, tokenizer):
    engine = HFRolloutEngine(model, tokenizer)
    base = run(engine, SamplingParams(temperature=0.0, max_tokens=40), QUESTIONS[1:2])[0].samples[0]
    text = base.response_text
    # a printable 2-character stop string from the middle of the greedy text
    k = next(i for i in range(5, len(text) - 2) if "\ufffd" not in text[i:i + 2] and text[i:i + 2].strip())
    stop = text[k:k + 2]
    end = text.find(stop) + 2
    got = run(engine, SamplingParams(temperature=0.0, max_tokens=40, stop=["never-there", stop]), QUESTIONS[1:2])
    s = got[0].samples[0]
    assert s.finish_reason == "stop"
    assert s.response_text == text[:end] and s.response_text.endswith(stop)
    n = len(s.response_token_ids)
    assert s.response_token_ids == base.response_token_ids[:n]  # nothing generated after the stop
    assert stop not in IncrementalDetokenizer_text(tokenizer, s.response_token_ids[:-1])  # last token completed it


def IncrementalDetokenizer_text(tokenizer, ids):
    det = IncrementalDetokenizer(tokenizer.decode)
    for t in ids:
        det.push(t)
    return det.text


def test_incremental_detokenizer_multibyte(tokenizer):
    det = IncrementalDetokenizer(tokenizer.decode, tokenizer.encode("前缀"))
    added = [det.push(b) for b in "你好, world".encode("utf-8")]
    assert det.text == "你好, world"
    assert added[:6] == [0, 0, 1, 0, 0, 1]  # a CJK char appears only when its 3rd byte arrives


def test_find_stop_semantics():
    assert find_stop("abc</answer>", 3, ["</answer>"]) == ("</answer>", 12)
    assert find_stop("abc</answer>xyz", 3, ["</answer>"]) is None  # only the new tail is searched
    assert find_stop("ab<|user|>c</answer>", 18, ["</answer>", "<|user|>"]) == ("<|user|>", 10)  # earliest end
    assert find_stop("xxab", 2, ["ab", "b"]) == ("ab", 4)  # tie on the end: list order
    assert find_stop("abc", 0, ["c"]) is None


def test_bad_requests(model, tokenizer):
    engine = HFRolloutEngine(model, tokenizer)
    with pytest.raises(ValueError, match="max_tokens"):
        run(engine, SamplingParams(max_tokens=0))
    with pytest.raises(ValueError, match="stop"):
        run(engine, SamplingParams(stop=[""]))
    with pytest.raises(ValueError, match="prompt texts"):
        engine.generate(records(), ["only one"], SamplingParams())
    with pytest.raises(ValueError, match="max_position_embeddings"):
        run(engine, SamplingParams(), ["y" * 600])

"""VLLMRolloutEngine on a GPU: generate + in-memory weight sync, checked against transformers.

A tiny random Qwen2 (head_dim 64 so every vLLM attention backend accepts it) is saved as an HF
directory with a locally trained byte-level BPE tokenizer (nothing is downloaded). vLLM starts
with dummy weights; the trainer stand-in pushes model A's tensors through the IPC weight-transfer
path; vLLM's per-token log-probs must then equal a transformers teacher-forced forward of A, and
after sleep → sync of model B, of B (and no longer of A).
"""

from __future__ import annotations

import pytest
import torch

from megatron_lwz.rollout.config import RolloutConfig
from megatron_lwz.rollout.types import PromptRecord, SamplingParams
from megatron_lwz.rollout.verify import WeightSyncMismatch, probe_from_groups, teacher_forced_logprobs, verify_logprobs
from megatron_lwz.rollout.vllm_engine import vllm_available

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not vllm_available(), reason="needs CUDA and vllm==0.33.0")]

CORPUS = ["Write a story about a lighthouse keeper.", "<think>plan</think> <answer>text</answer>",
          "The quick brown fox jumps over the lazy dog."] * 20
THRESHOLD = 1e-2  # fp32 on both sides; a different model differs by O(1)


class HFTokenizer:
    """encode/decode/eod over a transformers fast tokenizer (special tokens kept: the rollout text rule,
    megatron_lwz/rollout/text.py)."""

    def __init__(self, tok):
        self.tok = tok
        self.eod = tok.eos_token_id

    def encode(self, text):
        return self.tok.encode(text, add_special_tokens=False)

    def decode(self, ids, skip_special_tokens=False):
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_model(seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=384, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=False, eos_token_id=0, bos_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # peaked distributions: greedy margins above kernel noise
    return model.float().eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from megatron_lwz.rollout.vllm_engine import VLLMRolloutEngine

    path = tmp_path_factory.mktemp("tiny_qwen2")
    hf_tok = build_tokenizer()
    model_a, model_b = tiny_model(1), tiny_model(2)
    model_a.config.eos_token_id = hf_tok.eos_token_id
    model_a.save_pretrained(path)
    hf_tok.save_pretrained(path)
    tok = HFTokenizer(hf_tok)
    cfg = RolloutConfig(engine="vllm", dtype="float32", gpu_memory_utilization=0.3, enforce_eager=True,
                        max_model_len=256, bucket_bytes=64 * 1024**2)
    engine = VLLMRolloutEngine(path, tok, cfg, seed=0)
    yield engine, tok, model_a.cuda(), model_b.cuda()
    engine.shutdown()


def prompts():
    qs = ["Write a story about a lighthouse.", "The quick brown fox", "<think>"]
    return [PromptRecord(prompt_id=str(i), question=q, length_lower=1, length_upper=9) for i, q in enumerate(qs)]


def sync(engine, model):
    return engine.update_weights((n, p.detach()) for n, p in model.state_dict().items())


def check_against(model, groups, threshold=THRESHOLD):
    seqs, starts, rollout = probe_from_groups(groups, num_samples=12)
    assert seqs, "no sample produced a response"
    return verify_logprobs(rollout, teacher_forced_logprobs(model, seqs, starts), threshold=threshold)


def test_generate_after_sync_matches_transformers(setup):
    engine, tok, model_a, _ = setup
    report = sync(engine, model_a)
    assert report.missing == [] and report.num_tensors == len(list(model_a.parameters()))
    recs = prompts()
    params = SamplingParams(n=4, temperature=1.0, max_tokens=32, seed=0, stop=["</answer>"])
    groups = engine.generate(recs, [r.question for r in recs], params)
    assert [len(g) for g in groups] == [4, 4, 4]
    for s in (s for g in groups for s in g.samples):
        assert s.finish_reason in ("stop", "length")
        assert s.finish_reason == "stop" or len(s.response_token_ids) == 32
        assert len(s.rollout_logprobs) == len(s.response_token_ids)
    check_against(model_a, groups)
    again = engine.generate(recs, [r.question for r in recs], params)
    assert [[s.response_token_ids for s in g.samples] for g in again] == \
        [[s.response_token_ids for s in g.samples] for g in groups]  # seeded → reproducible


def test_greedy_tokens_are_transformers_argmax(setup):
    engine, tok, model_a, _ = setup
    sync(engine, model_a)
    recs = prompts()
    groups = engine.generate(recs, [r.question for r in recs], SamplingParams(temperature=0.0, max_tokens=16))
    seqs, starts, _ = probe_from_groups(groups, num_samples=3)
    for seq, start in zip(seqs, starts):
        with torch.no_grad():
            logits = model_a(input_ids=torch.tensor([seq], device="cuda")).logits[0].float()
        lp = logits.log_softmax(-1)[start - 1:len(seq) - 1]  # (R, V)
        chosen = lp.gather(-1, torch.tensor(seq[start:], device="cuda")[:, None]).squeeze(-1)
        assert torch.all(chosen >= lp.max(-1).values - 1e-3)


def test_sleep_then_sync_other_weights(setup):
    engine, tok, model_a, model_b = setup
    sync(engine, model_a)
    engine.sleep()
    sync(engine, model_b)  # wakes weights → transfer → wakes KV cache → resets prefix cache
    recs = prompts()
    groups = engine.generate(recs, [r.question for r in recs],
                             SamplingParams(n=2, temperature=1.0, max_tokens=24, seed=1))
    check_against(model_b, groups)
    with pytest.raises(WeightSyncMismatch):
        check_against(model_a, groups, threshold=0.1)

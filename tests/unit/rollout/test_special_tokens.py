"""Issue 11 defect 12: one detokenization rule for both rollout engines (megatron_lwz/rollout/text.py).

Special tokens stay in the response text (the Format RM parses <think>/<answer>, which a tokenizer
may mark special); a terminating EOD is a token, not text. Checked for the HF engine end to end, and
for the vLLM SamplingParams builder against ``tokenizers``' own ``DecodeStream`` — the streaming
decoder vLLM 0.33's fast detokenizer runs with exactly the ``skip_special_tokens`` we pass
(vllm/v1/engine/detokenizer.py:178-230).
"""

from __future__ import annotations

import pytest
import torch
from rollout_testlib import EOD, ByteTokenizer

from megatron_lwz.rollout.hf_engine import HFRolloutEngine
from megatron_lwz.rollout.text import strip_eod
from megatron_lwz.rollout.types import PromptRecord, SamplingParams

TAGS = {257: "<think>", 258: "</think>", 259: "<answer>", 260: "</answer>"}


class TagTokenizer(ByteTokenizer):
    """ByteTokenizer whose ids 257-260 are the format tags, marked special; like many tokenizer
    adapters its ``decode`` skips special tokens unless told otherwise."""

    def decode(self, ids, skip_special_tokens=True):
        out = []
        for i in ids:
            i = int(i)
            if i in TAGS:
                out.append("" if skip_special_tokens else TAGS[i])
            else:
                out.append(super().decode([i]))
        return "".join(out)


def test_hf_engine_keeps_special_tokens(model):
    tok = TagTokenizer()
    bias = torch.zeros(model.config.vocab_size)
    bias[list(TAGS)] = 6.0  # make the tags likely so that every sample contains some
    handle = model.lm_head.register_forward_hook(lambda module, args, out: out + bias)
    try:
        rec = PromptRecord(prompt_id="p", question="q", length_lower=1, length_upper=2)
        group = HFRolloutEngine(model, tok).generate([rec], ["Write."], SamplingParams(n=2, max_tokens=20, seed=3))[0]
    finally:
        handle.remove()
    for s in group.samples:
        ids = [t for t in s.response_token_ids if t != EOD]
        assert any(t in TAGS for t in ids)  # precondition: tags were generated
        assert s.response_text == tok.decode(ids, skip_special_tokens=False)
        assert any(tag in s.response_text for tag in TAGS.values())


def _tag_tokenizer_json(tmp_path):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a story about a lighthouse", "写一首诗"] * 20, vocab_size=300, min_frequency=1,
                            show_progress=False)
    bpe.add_special_tokens(["<|endoftext|>", *TAGS.values()])
    bpe.save(str(tmp_path / "tokenizer.json"))
    return tmp_path


def test_vllm_params_keep_special_tokens_like_our_decode(tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.decoders import DecodeStream

    from megatron_lwz.data.tokenizer import load_tokenizer
    from megatron_lwz.rollout.vllm_engine import vllm_sampling_kwargs

    ours = load_tokenizer(str(_tag_tokenizer_json(tmp_path)))
    kw = vllm_sampling_kwargs(SamplingParams(n=2, seed=5, stop=("</answer>",)), 1, ours.eod)
    assert kw["skip_special_tokens"] is False and kw["spaces_between_special_tokens"] is False
    assert kw["include_stop_str_in_output"] and kw["stop_token_ids"] == [ours.eod]
    text = "<think>a plan</think><answer>a story 写诗</answer>"
    ids = ours.encode(text) + [ours.eod]
    raw = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    stream, streamed = DecodeStream(skip_special_tokens=kw["skip_special_tokens"]), ""
    for i in ids:
        streamed += stream.step(raw, i) or ""
    # vLLM's text (stop token detokenized: include_stop_str_in_output) after our EOD rule = our decode
    assert strip_eod(streamed, ids, ours.eod, ours.decode([ours.eod])) == ours.decode(ids[:-1]) == text
    assert ours.decode(ids[:-1], skip_special_tokens=True) == "a plana story 写诗"  # what skipping would give


@pytest.mark.parametrize("ids,text,want", [([5, EOD], "ab<|endoftext|>", "ab"), ([5, 6], "ab<|endoftext|>", "ab<|endoftext|>"),
                                           ([], "", "")])
def test_strip_eod(ids, text, want):
    assert strip_eod(text, ids, EOD, "<|endoftext|>") == want

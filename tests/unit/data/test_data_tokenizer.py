"""Tokenizer: exact template round trips, single-token tags, EOD/pad, HF parity, pickling, errors."""

from __future__ import annotations

import json
import pickle

import pytest

from megatron_lwz.data.templates import THINK_TEMPLATE_EN, THINK_TEMPLATE_ZH, format_think_prompt
from megatron_lwz.data.tokenizer import Tokenizer, TokenizerConfig, load_tokenizer

from data_testlib import PAPER_TEMPLATE_EN, PAPER_TEMPLATE_ZH, TEMPLATE_TOKENS

COMPLETION_EN = " <think>Plan: open with the river.</think> <answer>The river is  wide.\n\nIt ends.</answer>"
COMPLETION_ZH = " <think>先写河流。</think> <answer>河流很宽阔，真安静。</answer>"
ODD_TEXTS = ["", " leading and trailing ", "two  spaces\tand tab\n\nnewlines", "Ωmega café 😀 ½ \u00a0nbsp",
             "全角，标点！（括号）", "<think><think></answer>", "{question} braces {}"]


@pytest.fixture(params=["sp", "hf"])
def tok(request, sp_tokenizer, hf_tokenizer_dir) -> Tokenizer:
    return sp_tokenizer if request.param == "sp" else load_tokenizer(str(hf_tokenizer_dir))


def test_templates_are_the_papers_strings():
    assert THINK_TEMPLATE_EN == PAPER_TEMPLATE_EN
    assert THINK_TEMPLATE_ZH == PAPER_TEMPLATE_ZH
    assert "etc..</think> <answer>" in THINK_TEMPLATE_EN and "</answer>  <|user|>" in THINK_TEMPLATE_EN
    assert format_think_prompt("写一篇{x}短文") == PAPER_TEMPLATE_ZH.replace("{question}", "写一篇{x}短文")
    assert format_think_prompt("Write {x}") == PAPER_TEMPLATE_EN.replace("{question}", "Write {x}")


@pytest.mark.parametrize("template,completion,question", [
    (PAPER_TEMPLATE_EN, COMPLETION_EN, "Write a 40-word note about river towns."),
    (PAPER_TEMPLATE_ZH, COMPLETION_ZH, "请写一段四十字的短文，主题是河边小镇。"),
])
def test_template_round_trip_exact(tok, template, completion, question):
    for text in (template, template.replace("{question}", question), template.replace("{question}", question)
                 + completion):
        assert tok.decode(tok.encode(text)) == text


def test_tags_are_single_tokens(tok):
    for tag in TEMPLATE_TOKENS:
        ids = tok.encode(tag)
        assert len(ids) == 1, (tag, ids)
        assert tok.special_tokens[tag] == ids[0] == tok.token_to_id(tag)
        assert tok.decode(ids) == tag
    # inside a filled template + completion every tag occurrence is exactly its one id
    text = format_think_prompt("Write a note.") + COMPLETION_EN
    ids = tok.encode(text)
    for tag in ("<think>", "</think>", "<answer>", "</answer>", "<|user|>", "<|assistant|>"):
        assert ids.count(tok.special_tokens[tag]) == text.count(tag) > 0, tag


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_arbitrary_text_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_eod_and_pad(sp_tokenizer, hf_tokenizer_dir):
    assert sp_tokenizer.eod == sp_tokenizer.token_to_id("<|endoftext|>") and sp_tokenizer.eod_token == "<|endoftext|>"
    assert sp_tokenizer.pad == sp_tokenizer.token_to_id("<pad>") != sp_tokenizer.eod
    assert sp_tokenizer.pad_id == sp_tokenizer.pad
    assert sp_tokenizer.encode("<pad>") != [sp_tokenizer.pad]  # control piece: never produced from text
    hf = load_tokenizer(str(hf_tokenizer_dir))
    # pad_token == eos in tokenizer_config.json: no dedicated pad, so mcore must not mask EOD labels
    assert hf.eod == hf.token_to_id("<|endoftext|>") and hf.pad == -1 and hf.pad_id == hf.eod
    assert hf.special_tokens_dict == {"eod_token": hf.eod, "pad_token": -1}


def test_hf_matches_transformers(hf_tokenizer_dir, corpus_files):
    from transformers import PreTrainedTokenizerFast

    ours = load_tokenizer(f"hf:{hf_tokenizer_dir}")
    ref = PreTrainedTokenizerFast(tokenizer_file=str(hf_tokenizer_dir / "tokenizer.json"))
    texts = [json.loads(line)["text"] for line in open(corpus_files[3], encoding="utf-8")][:20]
    for text in texts:
        assert ours.encode(text) == ref.encode(text, add_special_tokens=False)
        assert ours.decode(ours.encode(text)) == ref.decode(ref.encode(text, add_special_tokens=False)) == text
    assert ours.vocab_size == len(ref)
    assert ours.encode_batch(texts[:4]) == [ours.encode(t) for t in texts[:4]]


def test_sentencepiece_vocab_and_batch(sp_tokenizer, sp_tokenizer_dir):
    import sentencepiece as spm

    ref = spm.SentencePieceProcessor(model_file=str(sp_tokenizer_dir / "tokenizer.model"))
    assert sp_tokenizer.vocab_size == ref.get_piece_size() == 1000
    texts = ["a b", "河流很宽阔", PAPER_TEMPLATE_EN]
    assert sp_tokenizer.encode_batch(texts) == [ref.encode(t) for t in texts]
    meta = json.loads((sp_tokenizer_dir / "lwz_tokenizer.json").read_text())
    assert meta["kind"] == "sentencepiece" and meta["eod_token"] == "<|endoftext|>"


def test_unique_identifiers_and_pickle(sp_tokenizer, hf_tokenizer_dir):
    hf = load_tokenizer(str(hf_tokenizer_dir))
    json.dumps(sp_tokenizer.unique_identifiers)  # megatron-core hashes it as JSON
    assert sp_tokenizer.unique_identifiers["sha256"] != hf.unique_identifiers["sha256"]
    clone = pickle.loads(pickle.dumps(sp_tokenizer))
    assert clone.encode(PAPER_TEMPLATE_ZH) == sp_tokenizer.encode(PAPER_TEMPLATE_ZH)
    assert clone.unique_identifiers == sp_tokenizer.unique_identifiers


def test_kind_detection_and_errors(tmp_path, sp_tokenizer_dir, hf_tokenizer_dir):
    assert load_tokenizer(str(sp_tokenizer_dir / "tokenizer.model")).kind == "sentencepiece"
    assert Tokenizer(TokenizerConfig(path=str(hf_tokenizer_dir))).kind == "hf"
    with pytest.raises(ValueError, match="neither tokenizer.json nor tokenizer.model"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(ValueError, match="no sentencepiece model"):
        Tokenizer(TokenizerConfig(path=str(hf_tokenizer_dir), kind="sentencepiece"))
    with pytest.raises(ValueError, match="eod_token"):
        Tokenizer(TokenizerConfig(path=str(sp_tokenizer_dir), eod_token="<|not-there|>"))


def test_trainer_rejects_tiny_vocab(tmp_path, corpus_files):
    from megatron_lwz.data.tokenizer_train import TokenizerTrainConfig

    with pytest.raises(ValueError, match="vocab_size"):
        TokenizerTrainConfig(inputs=corpus_files, output=str(tmp_path), vocab_size=100)


def test_cli_tokenizer_train(tmp_path, demo_dir, capsys):
    from megatron_lwz.cli.main import main

    out = tmp_path / "tok"
    args = ["tokenizer", "train", "--input", str(demo_dir / "reports.jsonl"), str(demo_dir / "cot.jsonl"),
            "--output", str(out), "--model-type", "unigram"]
    assert main(args + ["--vocab-size", "600"]) == 1  # fewer pieces than the corpus' characters need
    assert "vocab_size: 600 is too small" in capsys.readouterr().err
    assert main(args + ["--vocab-size", "1200"]) == 0
    assert "vocab_size=1200" in capsys.readouterr().out
    tok = load_tokenizer(str(out))
    text = format_think_prompt("请写一段短文。") + COMPLETION_ZH
    assert tok.decode(tok.encode(text)) == text and tok.bos is None
    assert main(["tokenizer", "train", "--input", str(tmp_path / "missing.jsonl"), "--vocab-size", "700",
                 "--output", str(out)]) == 1

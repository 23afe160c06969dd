"""``lwz eval generate`` on CPU with the HF rollout engine from a tiny HF checkpoint: output format,
resume after an interruption (a torn last line), same answers as an uninterrupted run, settings check."""

import json

import pytest

from megatron_lwz.config.base import ConfigError
from megatron_lwz.evaluation.generate import GenerateConfig, generate
from megatron_lwz.rollout.config import RolloutConfig


@pytest.fixture(scope="module")
def tiny_hf_dir(tmp_path_factory):
    """A 2-layer random Qwen2 + a byte-level BPE tokenizer with <|endoftext|>, saved as an HF directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny_hf")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["write an essay about the sea", "<think> plan </think> <answer> text </answer>"] * 20,
                            trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    Qwen2ForCausalLM(config).save_pretrained(out)
    return out


def _prompts(tmp_path, n=5):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps({"index": i, "query": f"write an essay {i}"}) for i in range(n)) + "\n")
    return path


def _cfg(model, prompts, output, **kw):
    return GenerateConfig(model=str(model), prompts=str(prompts), output=str(output), max_tokens=6, batch_size=2,
                          rollout=RolloutConfig(engine="hf"), progress=False, **kw)


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_generate_resumes_and_matches_an_uninterrupted_run(tiny_hf_dir, tmp_path):
    prompts = _prompts(tmp_path)
    out = tmp_path / "gen.jsonl"
    first = generate(_cfg(tiny_hf_dir, prompts, out, max_prompts=3))
    assert first["generated"] == 3 and first["engine"] == "hf"
    rows = _lines(out)
    assert [r["id"] for r in rows] == ["0", "1", "2"] and rows[1]["prompt"] == "write an essay 1"
    assert all(set(r) == {"id", "prompt", "response", "finish_reason", "response_tokens"} for r in rows)
    assert all(r["response_tokens"] <= 6 for r in rows)
    with open(out, "a") as handle:  # an interrupted append
        handle.write('{"id": "3", "prompt": "write an es')
    resumed = generate(_cfg(tiny_hf_dir, prompts, out))
    assert (resumed["already_done"], resumed["generated"]) == (3, 2)
    rows = _lines(out)
    assert [r["id"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert generate(_cfg(tiny_hf_dir, prompts, out))["generated"] == 0
    # Per-prompt seeds: one uninterrupted run with another batching samples the same answers.
    whole = tmp_path / "whole.jsonl"
    generate(GenerateConfig(**{**_cfg(tiny_hf_dir, prompts, whole).__dict__, "batch_size": 5}))
    assert [r["response"] for r in _lines(whole)] == [r["response"] for r in rows]
    meta = json.loads((tmp_path / "gen.jsonl.meta.json").read_text())
    assert meta["settings"]["template"] == "think" and meta["settings"]["max_tokens"] == 6


def test_generate_refuses_other_settings(tiny_hf_dir, tmp_path):
    prompts = _prompts(tmp_path, 2)
    out = tmp_path / "gen.jsonl"
    generate(_cfg(tiny_hf_dir, prompts, out))
    with pytest.raises(ConfigError, match="other settings"):
        generate(_cfg(tiny_hf_dir, prompts, out, temperature=1.0))


def test_generate_cli(tiny_hf_dir, tmp_path, capsys):
    from megatron_lwz.cli.main import main

    prompts = _prompts(tmp_path, 2)
    out = tmp_path / "cli.jsonl"
    code = main(["eval", "generate", "--model", str(tiny_hf_dir), "--prompts", str(prompts), "--output", str(out),
                 "--max-tokens", "4", "--engine", "hf", "--template", "direct", "progress=false"])
    assert code == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["generated"] == 2 and len(_lines(out)) == 2
    assert main(["eval", "generate", "--model", str(tmp_path), "--prompts", str(prompts),
                 "--output", str(tmp_path / "x.jsonl"), "--engine", "hf"]) == 2  # not a model directory

"""HF file I/O: the sharded writer's output loads with transformers' own ``from_pretrained``; the
lazy reader reads transformers' ``save_pretrained`` output (single file and sharded)."""

from __future__ import annotations

import json

import pytest
import torch

from megatron_lwz.checkpoint.hf_io import (
    HFReader, ShardedSafetensorsWriter, copy_hf_assets, parse_dtype, parse_size,
)


def tiny_qwen(tied=False):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).eval()


@pytest.mark.parametrize("shard", ["10MB", "20KB"])
def test_reader_reads_save_pretrained(tmp_path, shard):
    model = tiny_qwen()
    model.save_pretrained(tmp_path, max_shard_size=shard)
    with HFReader(tmp_path) as reader:
        state = model.state_dict()
        assert set(reader.names()) == set(state)
        assert all(torch.equal(reader.get(n), state[n]) for n in state)
        assert reader.dtype() == torch.float32
        with pytest.raises(KeyError, match="no tensor 'nope'"):
            reader.get("nope")


def test_writer_output_loads_with_from_pretrained(tmp_path):
    from transformers import Qwen2ForCausalLM

    model = tiny_qwen(tied=True)
    limit = 30_000
    writer = ShardedSafetensorsWriter(tmp_path, max_shard_bytes=limit)
    total = 0
    for name, tensor in model.named_parameters():
        writer.add(name, tensor)
        total += tensor.numel() * 4
    with pytest.raises(ValueError, match="written twice"):
        writer.add("model.norm.weight", model.model.norm.weight)
    index = writer.close()
    model.config.save_pretrained(tmp_path)
    files = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(files) == len(set(index["weight_map"].values())) > 1
    assert index["metadata"]["total_size"] == total
    biggest = max(p.numel() * 4 for p in model.parameters())
    for file in files:  # bounded: the limit, or one tensor larger than the limit on its own
        payload = file.stat().st_size - 8 - int.from_bytes(file.read_bytes()[:8], "little")
        assert payload <= limit or payload == biggest
    loaded = Qwen2ForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[1, 5, 200, 299, 7]])
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_writer_accepts_views_of_one_storage(tmp_path):
    """q/k/v come out of the fused QKV tensor as views of one storage (safetensors rejects shared storage)."""
    base = torch.randn(6, 4)
    writer = ShardedSafetensorsWriter(tmp_path)
    writer.add("q", base[:4])
    writer.add("k", base[4:5])
    writer.add("v", base[5:].T)  # non-contiguous too
    writer.close()
    with HFReader(tmp_path) as reader:
        assert torch.equal(reader.get("q"), base[:4]) and torch.equal(reader.get("v"), base[5:].T)


def test_assets_copy_skips_weights(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name in ("config.json", "tokenizer.json", "merges.txt", "chat_template.jinja", "LICENSE",
                 "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", ".hidden"):
        (src / name).write_text(name)
    (src / "subdir").mkdir()
    assert copy_hf_assets(src, dst) == ["LICENSE", "chat_template.jinja", "config.json", "merges.txt",
                                        "tokenizer.json"]
    assert json.dumps(sorted(p.name for p in dst.iterdir())) == json.dumps(
        ["LICENSE", "chat_template.jinja", "config.json", "merges.txt", "tokenizer.json"])


def test_parsers():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2GiB") == 2 * 2**30 and parse_size("100KB") == 100_000
    assert parse_size(1234) == 1234
    assert parse_dtype("bfloat16") is torch.bfloat16 and parse_dtype("fp32") is torch.float32
    with pytest.raises(ValueError, match="cannot parse size"):
        parse_size("lots")
    with pytest.raises(ValueError, match="unknown dtype"):
        parse_dtype("int8")

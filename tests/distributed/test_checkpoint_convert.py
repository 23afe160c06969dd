"""HF Qwen2 ⇄ megatron conversion against Hugging Face itself (issue #3 acceptance).

A random tiny ``Qwen2ForCausalLM`` (preset tiny-gqa3: 3 query heads per KV head, QKV bias,
vocab 300 — not a multiple of 128; tied and untied), saved as sharded safetensors:

* hf-to-mcore at TP=2, PP=2 (tied: the CLI in one process; untied: a 4-rank launch where each
  rank converts its shard) → loaded into megatron at TP=2 × PP=2 → logits on random tokens equal
  HF's within 1e-4 (fp32); also the tied checkpoint loaded into an untied model;
* mcore-to-hf of those checkpoints → every tensor ``torch.equal`` to the original, same names,
  config / generation config / tokenizer files carried over;
* hf-to-mcore at TP=1, PP=1 (``tools/convert_checkpoint.py``) → read by plain megatron-core
  (hand-built GPTModel + ``dist_checkpointing.load``) → logits equal HF's;
* ``--dtype bf16`` both ways;
* the other layouts the README claims: a model with 8 heads / 4 KV groups converted at TP=4 (a
  4-rank launch) and loaded at TP=4 and at interleaved TP=2 × PP=2 × VPP=2; the TP2×PP2 checkpoint
  loaded at TP2×PP2×VPP2; the TP=4 checkpoint converted back byte-identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.distributed.worker_ckpt_lib import ROOT, spawn_ranks, wait_ranks

pytestmark = pytest.mark.distributed
HERE = Path(__file__).parent
ASSETS = {"tokenizer_config.json": '{"model_max_length": 256}\n', "tokenizer.json": '{"version": "1.0"}\n',
          "chat_template.jinja": "{{ messages }}\n"}


def make_hf_model(path: Path, tied: bool, seed: int, heads: int | None = None, groups: int | None = None):
    """Random tiny-gqa3 Qwen2 with O(1) logits (norm weights and biases random too), sharded safetensors;
    ``heads`` / ``groups`` override the attention heads and KV groups."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from megatron_lwz.models.presets import PRESETS

    arch = PRESETS["tiny-gqa3"]
    config = Qwen2Config(vocab_size=arch.vocab_size, hidden_size=arch.hidden_size,
                         intermediate_size=arch.ffn_hidden_size, num_hidden_layers=arch.num_layers,
                         num_attention_heads=heads or arch.num_attention_heads,
                         num_key_value_heads=groups or arch.num_query_groups,
                         max_position_embeddings=arch.max_position_embeddings, rope_theta=arch.rope_theta,
                         rms_norm_eps=arch.norm_eps, tie_word_embeddings=tied)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
            else:
                param.normal_(0.0, 0.1 if name.endswith("bias") else 0.08)
    model.generation_config = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9)
    model.save_pretrained(path, max_shard_size="150KB")
    for name, text in ASSETS.items():
        (path / name).write_text(text)
    return model


def _env(**extra: str) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT), **extra)


def start(cmd: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=_env(**env), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> None:
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed:\n{out[-4000:]}"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """HF models, their reference logits, and every conversion output. Independent launches run
    two at a time (start-up dominates on a 2-core box)."""
    tmp = tmp_path_factory.mktemp("convert")
    torch.manual_seed(123)
    tokens = torch.randint(0, 300, (2, 16))
    torch.save(tokens, tmp / "tokens.pt")
    ref, models = {}, {}
    for name in ("tied", "untied"):
        models[name] = make_hf_model(tmp / f"hf_{name}", tied=name == "tied", seed=len(name))
    models["tp4"] = make_hf_model(tmp / "hf_tp4", tied=False, seed=4, heads=8, groups=4)  # TP4 divides both
    cli = [sys.executable, "-m", "megatron_lwz.cli.main", "convert"]
    jobs = [start([*cli, "hf-to-mcore", "--hf", str(tmp / "hf_tied"), "--out", str(tmp / "mc_tied"),
                   "--tp", "2", "--pp", "2", "--no-progress"]),
            start([sys.executable, "tools/convert_checkpoint.py", "hf-to-mcore", "--hf", str(tmp / "hf_untied"),
                   "--out", str(tmp / "mc_tp1"), "--verify", "--no-progress"])]
    with torch.no_grad():
        for name, model in models.items():
            ref[name] = model(input_ids=tokens).logits  # (B, T, 300)
    for job in jobs:
        finish(job)
    (tmp / "logits").mkdir()
    plain = spawn_ranks(HERE / "worker_convert_plain.py", 1, ["--ckpt", str(tmp / "mc_tp1" / "release"),
                                                             "--tokens", str(tmp / "tokens.pt"),
                                                             "--out", str(tmp / "plain.json")])
    four = spawn_ranks(HERE / "worker_convert.py", 4, [
        "--hf-untied", str(tmp / "hf_untied"), "--mc-untied", str(tmp / "mc_untied"), "--mc-tied", str(tmp / "mc_tied"),
        "--tokens", str(tmp / "tokens.pt"), "--logits-dir", str(tmp / "logits"), "--hf-back-dir", str(tmp / "hf_back"),
        "--hf-tp4", str(tmp / "hf_tp4"), "--mc-tp4", str(tmp / "mc_tp4"), "--out", str(tmp / "times.json")])
    for procs in (plain, four):
        codes, output = wait_ranks(procs)
        assert set(codes) == {0}, f"exit codes {codes}:\n{output}"
    times = json.loads((tmp / "times.json").read_text())
    print("conversion times:", times)
    return tmp, ref


@pytest.mark.parametrize("name", ["tied", "untied", "tied_into_untied"])
def test_tp2pp2_logits_equal_hf(converted, name):
    """``tied_into_untied``: the tied checkpoint loaded into an untied model (weights-only untying)."""
    tmp, ref = converted
    source = name.split("_into_")[0]
    meta = json.loads((tmp / f"mc_{source}" / "release" / "lwz_meta.json").read_text())
    assert meta["kind"] == "weights" and meta["padded_vocab_size"] == 512  # 300 → 128 × TP=2
    got = torch.load(tmp / "logits" / f"{name}.pt")  # (B, T, 512)
    assert got.shape == (2, 16, 512)
    assert ref[source].abs().max() > 1.0, "logits must be O(1) for the comparison to mean something"
    diff = (got[..., :300] - ref[source]).abs().max().item()
    assert diff <= 1e-4, f"{name}: megatron TP2×PP2 logits differ from HF by {diff:.2e}"


@pytest.mark.parametrize("name, source", [("tp4_at_tp4", "tp4"), ("tp4_at_tp2pp2vpp2", "tp4"),
                                          ("tied_at_tp2pp2vpp2", "tied")])
def test_tp4_and_interleaved_pipeline_logits_equal_hf(converted, name, source):
    """Converted at TP=4 / TP2×PP2, loaded at TP=4 and at interleaved TP2×PP2×VPP2."""
    tmp, ref = converted
    meta = json.loads((tmp / f"mc_{source}" / "release" / "lwz_meta.json").read_text())
    assert meta["padded_vocab_size"] == 512  # 300 → a multiple of 128 × TP (TP 2: 256, TP 4: 512)
    got = torch.load(tmp / "logits" / f"{name}.pt")
    assert got.shape == (2, 16, 512)
    diff = (got[..., :300] - ref[source]).abs().max().item()
    assert diff <= 1e-4, f"{name}: logits differ from HF by {diff:.2e}"


@pytest.mark.parametrize("name", ["tied", "untied", "tp4"])
def test_mcore_to_hf_is_byte_identical(converted, name):
    from safetensors import safe_open

    tmp, _ = converted
    src, back = tmp / f"hf_{name}", tmp / "hf_back" / name

    def tensors(directory: Path) -> dict[str, torch.Tensor]:
        out = {}
        for file in sorted(directory.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as fh:
                out.update({k: fh.get_tensor(k) for k in fh.keys()})
        return out

    original, converted_back = tensors(src), tensors(back)
    assert set(converted_back) == set(original)
    assert ("lm_head.weight" in original) == (name != "tied")
    for key, tensor in original.items():
        assert converted_back[key].dtype == tensor.dtype and torch.equal(converted_back[key], tensor), key
    index = json.loads((back / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(original)
    assert len(set(index["weight_map"].values())) > 1, "max_shard_size=100KB must give several shards"
    for asset, text in ASSETS.items():
        assert (back / asset).read_text() == text
    assert json.loads((back / "generation_config.json").read_text())["temperature"] == 0.7
    config = json.loads((back / "config.json").read_text())
    assert config["tie_word_embeddings"] == (name == "tied") and config["vocab_size"] == 300


def test_plain_megatron_reads_tp1_conversion(converted):
    """No megatron_lwz code involved in reading (only the CPU shims): GPTModel + dist_checkpointing.load."""
    tmp, ref = converted
    assert (tmp / "mc_tp1" / "latest_checkpointed_iteration.txt").read_text().strip() == "release"
    out = json.loads((tmp / "plain.json").read_text())
    assert out["padded_vocab"] == 384  # 300 → 128 × TP=1
    diff = (torch.tensor(out["logits"])[..., :300] - ref["untied"]).abs().max().item()
    assert diff <= 1e-4, f"plain megatron logits differ from HF by {diff:.2e}"


def test_bf16_round_trip(converted):
    """mcore-to-hf --dtype bf16 rounds every tensor like torch does; hf-to-mcore of that bf16 model
    (dtype auto → bf16 checkpoint) loads into an fp32 TP2×PP2 model with HF's logits."""
    from transformers import Qwen2ForCausalLM

    tmp, _ = converted
    bf16_dir = tmp / "hf_back" / "untied_bf16"
    assert json.loads((bf16_dir / "config.json").read_text())["dtype"] == "bfloat16"
    meta = json.loads((tmp / "mc_untied_bf16" / "release" / "lwz_meta.json").read_text())
    assert meta["dtype"] == "bfloat16"
    original = Qwen2ForCausalLM.from_pretrained(tmp / "hf_untied")
    rounded = Qwen2ForCausalLM.from_pretrained(bf16_dir, dtype=torch.float32).eval()
    for (name, a), (_, b) in zip(original.named_parameters(), rounded.named_parameters(), strict=True):
        assert torch.equal(a.to(torch.bfloat16).float(), b), name
    tokens = torch.load(tmp / "tokens.pt")
    with torch.no_grad():
        want = rounded(input_ids=tokens).logits
    got = torch.load(tmp / "logits" / "untied_bf16.pt")[..., :300]
    assert (got - want).abs().max().item() <= 1e-4

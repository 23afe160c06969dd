"""RolloutConfig, build_engine, and the CPU-checkable parts of the vLLM engine (vllm itself faked)."""

import subprocess
import sys
import types
from types import SimpleNamespace

import pytest
import torch
from rollout_testlib import tiny_config, tiny_model

from megatron_lwz.config.base import ConfigError, from_dict
from megatron_lwz.rollout import build_engine, resolve_engine_kind
from megatron_lwz.rollout.config import RolloutConfig
from megatron_lwz.rollout.hf_engine import HFRolloutEngine, expected_hf_parameters
from megatron_lwz.rollout.types import PromptRecord, SamplingParams
from megatron_lwz.rollout.verify import WeightSyncError


def test_config_from_dict_and_validation():
    cfg = from_dict(RolloutConfig, {"engine": "hf", "sleep_level": 1, "verify_every": 10})
    assert cfg.engine == "hf" and cfg.sleep_level == 1
    assert [cfg.should_verify(i) for i in (0, 1, 10, 11, 20)] == [True, False, True, False, True]
    assert not RolloutConfig(verify_every=-1).should_verify(0)
    assert [RolloutConfig().should_verify(i) for i in (0, 1, 5)] == [True, False, False]
    with pytest.raises(ConfigError, match="engine"):
        from_dict(RolloutConfig, {"engine": "sglang"})
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        RolloutConfig(gpu_memory_utilization=1.5)
    with pytest.raises(ConfigError, match="verify_threshold"):
        RolloutConfig(verify_threshold=0.0)


def test_nccl_weight_transfer_rejected_with_reason():
    """Issue 11 defect 5: the NCCL path needs HF parameter order and separate GPUs; refused in validation."""
    with pytest.raises(ConfigError, match=r"weight_transfer_backend=nccl is not supported yet; use ipc.*order"):
        from_dict(RolloutConfig, {"engine": "vllm", "weight_transfer_backend": "nccl"})
    assert RolloutConfig(weight_transfer_backend="ipc").weight_transfer_backend == "ipc"


def test_build_engine_hf_on_cpu(tokenizer):
    cfg = RolloutConfig(engine="auto", max_batch_size=3)
    if not torch.cuda.is_available():
        assert resolve_engine_kind(cfg) == "hf"
    engine = build_engine(RolloutConfig(engine="hf", max_batch_size=3), tiny_config(), tokenizer)
    assert isinstance(engine, HFRolloutEngine) and engine.max_batch_size == 3
    rec = PromptRecord(prompt_id="a", question="q", length_lower=1, length_upper=2)
    groups = engine.generate([rec], ["q"], SamplingParams(n=2, max_tokens=3, seed=0))
    assert len(groups) == 1 and len(groups[0]) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error path")
def test_build_engine_vllm_without_gpu_is_a_clear_error(tokenizer):
    with pytest.raises(RuntimeError, match="rollout.engine='hf'"):
        build_engine(RolloutConfig(engine="vllm"), tiny_config(), tokenizer)


def test_rollout_package_import_is_light():
    code = ("import sys, megatron_lwz.rollout, megatron_lwz.rollout.config, megatron_lwz.rollout.types, "
            "megatron_lwz.rollout.templates; bad = [m for m in ('torch', 'transformers', 'vllm') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_expected_hf_parameters_matches_real_model():
    for tied in (False, True):
        real = [(n, tuple(p.shape)) for n, p in tiny_model(seed=0, tied=tied).named_parameters()]
        assert expected_hf_parameters(tiny_config(tied)) == real
        assert ("lm_head.weight" in dict(real)) is not tied


# --- vLLM engine wiring, with a fake `vllm` package ------------------------------------------

class FakeLLM:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name == "generate":
                return self._outputs(*args)
        return record

    def _outputs(self, prompts, params):
        outs = []
        for prompt, sp in zip(prompts, params):
            comps = [SimpleNamespace(index=j, token_ids=[7, 8], text="ab</answer>", finish_reason="stop",
                                     logprobs=[{7: SimpleNamespace(logprob=-0.5)}, {8: SimpleNamespace(logprob=-1.5)}])
                     for j in reversed(range(sp.n))]
            outs.append(SimpleNamespace(outputs=comps, prompt_token_ids=prompt["prompt_token_ids"]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    """Minimal stand-ins for the vllm modules the engine imports (shapes of vllm 0.33.0's API)."""
    from megatron_lwz.rollout import vllm_engine

    class WeightSource:
        pass

    class Factory:
        @staticmethod
        def trainer_init(info, *, client, source):
            def send_weights():
                client.start_weight_update()
                items = list(source.iter_full())
                client.update_weights({"names": [n for n, _ in items]})
                client.finish_weight_update()
            return SimpleNamespace(info=info, send_weights=send_weights, shutdown=lambda: None)

    mods = {
        "vllm": types.ModuleType("vllm"),
        "vllm.distributed": types.ModuleType("vllm.distributed"),
        "vllm.distributed.weight_transfer": types.ModuleType("vllm.distributed.weight_transfer"),
        "vllm.distributed.weight_transfer.base": types.ModuleType("vllm.distributed.weight_transfer.base"),
        "vllm.distributed.weight_transfer.ipc_engine": types.ModuleType("vllm.distributed.weight_transfer.ipc_engine"),
    }
    mods["vllm"].SamplingParams = lambda **kw: SimpleNamespace(**kw)
    mods["vllm.distributed.weight_transfer"].WeightTransferTrainerFactory = Factory
    mods["vllm.distributed.weight_transfer.base"].WeightSource = WeightSource
    mods["vllm.distributed.weight_transfer.base"].ParamMeta = lambda n, d, s: (n, d, s)
    mods["vllm.distributed.weight_transfer.ipc_engine"].IPCTrainerInitInfo = lambda **kw: SimpleNamespace(**kw)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    vllm_engine._source_class.cache_clear()
    yield vllm_engine
    vllm_engine._source_class.cache_clear()


def make_vllm_engine(vllm_engine, tokenizer, **cfg):
    engine = vllm_engine.VLLMRolloutEngine("unused", tokenizer, RolloutConfig(engine="vllm", dtype="float32", **cfg),
                                           hf_config=tiny_config(), llm=FakeLLM())
    engine._core._device = "cpu"
    return engine


def test_vllm_engine_sync_lifecycle(fake_vllm, tokenizer, monkeypatch):
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    engine = make_vllm_engine(fake_vllm, tokenizer)
    rec = PromptRecord(prompt_id="p", question="q", length_lower=1, length_upper=2)
    with pytest.raises(RuntimeError, match="update_weights first"):
        engine.generate([rec], ["q"], SamplingParams())
    engine.sleep()
    source = tiny_model(seed=3)
    report = engine.update_weights((n, t.to(torch.bfloat16)) for n, t in source.state_dict().items())
    names = [c[0] for c in engine.llm.calls]
    assert names == ["sleep", "wake_up", "start_weight_update", "update_weights", "finish_weight_update",
                     "wake_up", "reset_prefix_cache"]
    assert engine.llm.calls[0][2] == {"level": 2}
    assert engine.llm.calls[1][2] == {"tags": ["weights"]} and engine.llm.calls[5][2] == {"tags": ["kv_cache"]}
    # the offline LLM wants the payload wrapped (vllm/entrypoints/rl/offline.py:41-54)
    assert set(engine.llm.calls[3][1][0]) == {"update_info"}
    assert report.num_tensors == len(list(source.parameters())) and report.missing == []

    groups = engine.generate([rec, rec], ["q", "r"], SamplingParams(n=3, seed=11, stop=["</answer>"]))
    sp = engine.llm.calls[-1][1][1]
    assert sp[0].seed != sp[1].seed and sp[0].include_stop_str_in_output
    assert sp[0].stop_token_ids == [tokenizer.eod] and sp[0].logprobs == 0
    s = groups[0].samples
    assert len(s) == 3 and s[0].rollout_logprobs == [-0.5, -1.5] and s[0].finish_reason == "stop"

    engine.sleep()
    with pytest.raises(RuntimeError, match="level 2"):
        engine.wake()


def test_vllm_engine_text_rule(fake_vllm, tokenizer, monkeypatch):
    """Issue 11 defect 12: vLLM keeps special tokens in the text (as the HF engine); EOD text is cut."""
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    engine = make_vllm_engine(fake_vllm, tokenizer)
    engine.update_weights((n, t.to(torch.bfloat16)) for n, t in tiny_model(seed=3).state_dict().items())
    rec = PromptRecord(prompt_id="p", question="q", length_lower=1, length_upper=2)
    engine.llm._outputs = lambda prompts, params: [SimpleNamespace(outputs=[SimpleNamespace(
        index=0, token_ids=[7, tokenizer.eod], text="<answer>a</answer><|endoftext|>", finish_reason="stop",
        logprobs=None)], prompt_token_ids=p["prompt_token_ids"]) for p in prompts]
    sample = engine.generate([rec], ["q"], SamplingParams(logprobs=False))[0].samples[0]
    sp = engine.llm.calls[-1][1][1][0]
    assert sp.skip_special_tokens is False and sp.spaces_between_special_tokens is False
    assert sample.response_text == "<answer>a</answer>"


def test_vllm_engine_rejects_bad_export_and_closes_session(fake_vllm, tokenizer):
    engine = make_vllm_engine(fake_vllm, tokenizer)
    good = dict(tiny_model(seed=3).state_dict())
    with pytest.raises(WeightSyncError, match="never sent"):
        engine.update_weights([(n, t) for n, t in good.items() if n != "model.norm.weight"])
    assert engine.llm.calls[-1][0] == "finish_weight_update"  # the aborted session is closed
    with pytest.raises(WeightSyncError, match="shape"):
        engine.update_weights([("model.norm.weight", torch.zeros(3))])
    with pytest.raises(ValueError, match="bucket_bytes"):
        make_vllm_engine(fake_vllm, tokenizer, bucket_bytes=1024**2)._check_bucket([("w", (1024, 1024))])

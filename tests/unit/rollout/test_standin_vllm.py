"""The stand-in vLLM enforces vLLM 0.33's rules, and ``sync_weights`` follows them (defect 1)."""

import sys

import pytest

from megatron_lwz.rollout import standin_vllm


@pytest.fixture
def standin(monkeypatch):
    before = set(sys.modules)
    standin_vllm.install()
    yield standin_vllm
    for name in set(sys.modules) - before:
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_level2_sleep_discards_weights_and_generate_refuses(tmp_path, standin):
    import json

    hf = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "vocab_size": 100,
          "num_attention_heads": 4, "num_key_value_heads": 2}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    llm = standin.LLM(model=str(tmp_path), enable_sleep_mode=True, load_format="dummy", max_model_len=16,
                      gpu_memory_utilization=0.5, weight_transfer_config={"backend": "ipc"})
    sp = standin.SamplingParams(n=2, max_tokens=8, seed=1, logprobs=0)
    with pytest.raises(standin.StandInError, match="dummy"):
        llm.generate([{"prompt_token_ids": [1]}], [sp])
    with pytest.raises(RuntimeError, match="outside start_weight_update"):
        llm.update_weights({})
    llm.sleep(level=2)
    llm.wake_up()  # vLLM allows it, but the weights are now uninitialised
    with pytest.raises(standin.StandInError, match="garbage"):
        llm.generate([{"prompt_token_ids": [1]}], [sp])
    llm.start_weight_update()
    llm.update_weights({})
    llm.finish_weight_update()
    out = llm.generate([{"prompt_token_ids": [1]}], [sp])
    assert [len(c.token_ids) for c in out[0].outputs] == [n for n, _ in standin.standin_lengths(1, 0, 2, 8)]


def test_kv_budget_taken_at_construction(tmp_path, standin):
    import json

    from megatron_lwz.parallel.rehearsal import GPU_TOTAL_BYTES, TRACKER

    hf = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "vocab_size": 100,
          "num_attention_heads": 4, "num_key_value_heads": 2}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    llm = standin.LLM(model=str(tmp_path), enable_sleep_mode=True, gpu_memory_utilization=0.5, max_model_len=16)
    llm.sleep(level=2)
    try:
        TRACKER.set_extra("later", int(GPU_TOTAL_BYTES * 0.6))  # e.g. a reward model allocated after vLLM
        with pytest.raises(standin.StandInError, match="out of memory"):
            llm.wake_up()
    finally:
        TRACKER.extra.clear()
    with pytest.raises(ValueError, match="less than desired GPU memory utilization"):
        TRACKER.set_extra("trainer", int(GPU_TOTAL_BYTES * 0.7))
        try:
            standin.LLM(model=str(tmp_path), gpu_memory_utilization=0.5, max_model_len=16)
        finally:
            TRACKER.extra.clear()


def test_sync_weights_after_level2_sleep_does_not_wake_discarded_weights():
    """Defect 1: sync_weights used to call engine.wake(), which raises after a level-2 sleep."""
    from megatron_lwz.rl import step

    calls = []

    class Engine:
        model = None

        def wake(self):
            raise RuntimeError("vLLM slept at level 2 (weights discarded)")

        def update_weights(self, it):
            calls.append("update")
            return None

    class Trainer:
        ctx = arch = None

        def unwrapped(self):
            return []

    class Cfg:
        dtype, bucket_bytes = "bfloat16", 1

    orig = step.iter_hf_weights
    step.iter_hf_weights = lambda *a, **k: iter(())
    try:
        step.sync_weights(Trainer(), Engine(), Cfg())
    finally:
        step.iter_hf_weights = orig
    assert calls == ["update"]

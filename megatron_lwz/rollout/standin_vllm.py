"""A stand-in for the parts of vLLM 0.33.0 that our GPU engine calls, for the GPU rehearsal.

``install()`` puts modules named ``vllm``, ``vllm.distributed.weight_transfer`` (+ ``.base``,
``.ipc_engine``, ``.nccl_engine``) into ``sys.modules`` so that ``rollout/vllm_engine.py`` runs
unmodified. The stand-in enforces vLLM's own rules, read from the wheel:

* construction takes its memory budget at once: ``requested = total × gpu_memory_utilization`` must be
  free on the GPU (``ValueError``, v1/worker/utils.py ``request_memory``), and the KV cache gets
  ``requested − weights − activation peak`` (v1/worker/gpu_worker.py:753); it must hold one
  ``max_model_len`` sequence. Whatever the trainer allocates later is not seen by that budget: a
  wake-up whose KV cache no longer fits raises an out-of-memory error here, as CUDA would there;
* ``sleep(level=2)`` discards weights and KV cache (gpu_worker.py:301-340); ``wake_up`` brings back
  *uninitialised* weights (gpu_worker.py:341-366) — generating before a full weight update is
  reported (vLLM would silently generate from garbage);
* ``update_weights`` only between ``start_weight_update`` and ``finish_weight_update``
  (gpu_worker.py:1592-1645 raise ``RuntimeError`` otherwise); IPC transfer needs device tensors;
* ``SamplingParams`` take only the keyword arguments vLLM's dataclass has that we use.

Samples come at the recipe's lengths (``standin_lengths``): prompt tokens as encoded; response
lengths, per sample deterministic in (seed, prompt, index), are 15 % truncated at ``max_tokens``,
35 % in [0.75, 1) × ``max_tokens`` and 50 % in [0.1, 0.75) × ``max_tokens`` — the long tail that
dominates memory and time in LongWriter-Zero's 14K-token rollouts. Log-probs are −1.0 per token.
"""

from __future__ import annotations

import functools
import importlib.machinery
import json
import random
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIVATION_PEAK_BYTES = 2 * 2**30
"""vLLM's profiled activation peak per GPU for a 32B model at 8K batched tokens (≈ 1–3 GiB)."""


class StandInError(RuntimeError):
    """A call that real vLLM would reject (or that would silently compute garbage there)."""


def _tracker():
    from megatron_lwz.parallel.rehearsal import GPU_TOTAL_BYTES, TRACKER

    return TRACKER, GPU_TOTAL_BYTES


def _num_params(hf: dict) -> int:
    h, inter, layers, vocab = hf["hidden_size"], hf["intermediate_size"], hf["num_hidden_layers"], hf["vocab_size"]
    kv = hf["num_key_value_heads"] * (h // hf["num_attention_heads"])
    per_layer = h * (h + 2 * kv) + (h + 2 * kv) + h * h + 3 * h * inter + 2 * h
    return layers * per_layer + vocab * h * (1 if hf.get("tie_word_embeddings") else 2) + h


def standin_lengths(seed: int, prompt_index: int, n: int, max_tokens: int) -> list[tuple[int, str]]:
    """(response tokens, finish reason) for the ``n`` samples of one prompt (module docstring mix)."""
    rng = random.Random(f"{seed}:{prompt_index}")
    out = []
    for _ in range(n):
        u = rng.random()
        if u < 0.15:
            out.append((max_tokens, "length"))
        elif u < 0.5:
            out.append((int(max_tokens * rng.uniform(0.75, 1.0)) or 1, "stop"))
        else:
            out.append((int(max_tokens * rng.uniform(0.1, 0.75)) or 1, "stop"))
    return out


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = 16
    stop: list[str] | None = None
    stop_token_ids: list[int] | None = None
    seed: int | None = None
    logprobs: int | None = None
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True


@dataclass
class _Logprob:
    logprob: float


@dataclass
class _Completion:
    index: int
    token_ids: list[int]
    text: str
    logprobs: list[dict[int, _Logprob]] | None
    finish_reason: str


@dataclass
class _RequestOutput:
    outputs: list[_Completion] = field(default_factory=list)


def _response(num_tokens: int, finish: str) -> tuple[list[int], str]:
    """A well-formed think/answer response of ``num_tokens`` stand-in tokens (one word each)."""
    think = max(1, num_tokens // 5)
    answer = max(1, num_tokens - think)
    words = [f"w{i % 997}" for i in range(think + answer)]
    text = "<think>" + " ".join(words[:think]) + "</think>\n<answer>" + " ".join(words[think:])
    text += "" if finish == "length" else "</answer>"
    return [11 + (i % 997) for i in range(num_tokens)], text


class LLM:
    """The offline engine surface ``rollout/vllm_engine.py`` uses, with vLLM's rules (module docstring)."""

    def __init__(self, model: str, tokenizer: str | None = None, dtype: str = "bfloat16", seed: int = 0,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9, max_model_len: int = 4096,
                 enable_prefix_caching: bool = True, enforce_eager: bool = False, enable_sleep_mode: bool = False,
                 load_format: str = "auto", logprobs_mode: str = "raw_logprobs",
                 weight_transfer_config: dict | None = None, **unknown: Any):
        if unknown:
            raise TypeError(f"LLM() got unexpected keyword arguments {sorted(unknown)} (not EngineArgs fields we use)")
        hf = json.loads((Path(model) / "config.json").read_text())
        tracker, total = _tracker()
        tracker.resync()
        itemsize = 4 if dtype in ("float32", "fp32") else 2
        self.weight_bytes = _num_params(hf) * itemsize // tensor_parallel_size
        requested = int(total * gpu_memory_utilization)
        free = total - tracker.resident()
        if free < requested:
            raise ValueError(f"Free memory on device ({free / 2**30:.2f}/{total / 2**30:.2f} GiB) on startup is less "
                             f"than desired GPU memory utilization ({gpu_memory_utilization}, "
                             f"{requested / 2**30:.2f} GiB) [vllm/v1/worker/utils.py request_memory]")
        self.kv_bytes = requested - self.weight_bytes - ACTIVATION_PEAK_BYTES
        head_dim = hf["hidden_size"] // hf["num_attention_heads"]
        per_token = 2 * hf["num_hidden_layers"] * max(1, hf["num_key_value_heads"] // tensor_parallel_size) * head_dim * itemsize
        self.kv_tokens = max(0, self.kv_bytes) // per_token
        if self.kv_tokens < max_model_len:
            raise ValueError(f"stand-in vLLM: KV cache of {self.kv_bytes / 2**30:.2f} GiB holds {self.kv_tokens} "
                             f"tokens, less than max_model_len={max_model_len} (gpu_worker.py:753)")
        self.enable_sleep_mode, self.load_format, self.seed = enable_sleep_mode, load_format, seed
        self.weight_transfer_config = weight_transfer_config
        self.weights, self.kv_awake, self._updating, self._discarded = "dummy", True, False, False
        self.events: list[str] = ["construct"]
        self._account()

    def _account(self) -> None:
        tracker, total = _tracker()
        tracker.resync()
        resident = (self.weight_bytes if self.weights != "asleep" else 0) + (self.kv_bytes + ACTIVATION_PEAK_BYTES if self.kv_awake else 0)
        tracker.set_extra("vllm", 0)
        if tracker.resident() + resident > total:
            raise StandInError(f"CUDA out of memory: vLLM needs {resident / 2**30:.2f} GiB resident but only "
                               f"{(total - tracker.resident()) / 2**30:.2f} GiB are free — its KV budget was fixed at "
                               "construction, before memory the trainer allocated later")
        tracker.set_extra("vllm", resident)

    def sleep(self, level: int = 1, mode: str = "abort") -> None:
        if not self.enable_sleep_mode:
            raise StandInError("LLM.sleep() needs enable_sleep_mode=True")
        self.weights = "asleep" if level >= 1 else self.weights
        self._discarded = level >= 2
        self.kv_awake = False
        self.events.append(f"sleep{level}")
        self._account()

    def wake_up(self, tags: list[str] | None = None) -> None:
        tags = tags or ["weights", "kv_cache", "scheduling"]
        if "weights" in tags and self.weights == "asleep":
            self.weights = "garbage" if self._discarded else "valid"
        if "kv_cache" in tags:
            self.kv_awake = True
        self.events.append("wake:" + ",".join(tags))
        self._account()

    def reset_prefix_cache(self) -> bool:
        return True

    def init_weight_transfer_engine(self, request: dict) -> None:
        if not self.weight_transfer_config:
            raise StandInError("init_weight_transfer_engine without weight_transfer_config")
        self.events.append("init_transfer")

    def start_weight_update(self) -> None:
        if self.weights == "asleep":
            raise StandInError("start_weight_update while the weights sleep: wake_up(tags=['weights']) first")
        self._updating = True
        self.events.append("start_update")

    def update_weights(self, request: dict) -> None:
        if not self._updating:
            raise RuntimeError("update_weights outside start_weight_update/finish_weight_update "
                               "(vllm/v1/worker/gpu_worker.py)")

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        if not self._updating:
            raise RuntimeError("finish_weight_update without start_weight_update (gpu_worker.py:1638)")
        self._updating = False
        self.weights = "valid"
        self.events.append("finish_update")

    def generate(self, prompts: list, sampling_params: list, use_tqdm: bool = False) -> list[_RequestOutput]:
        if self.weights != "valid":
            raise StandInError(f"generate with {self.weights} weights (after a level-2 sleep, wake_up restores "
                               "uninitialised weights: real vLLM would silently generate garbage)")
        if not self.kv_awake:
            raise StandInError("generate while the KV cache sleeps: wake_up(tags=['kv_cache']) first")
        return [_request_output(i, sp, self.seed) for i, sp in enumerate(sampling_params)]


def _request_output(prompt_index: int, sp: SamplingParams, seed: int) -> _RequestOutput:
    out = _RequestOutput()
    for index, (num, finish) in enumerate(standin_lengths(sp.seed if sp.seed is not None else seed, prompt_index,
                                                          sp.n, sp.max_tokens or 16)):
        ids, text = _response(num, finish)
        logprobs = [{tok: _Logprob(-1.0)} for tok in ids] if sp.logprobs is not None else None
        out.outputs.append(_Completion(index=index, token_ids=ids, text=text, logprobs=logprobs, finish_reason=finish))
    return out


# ------------------------------------------------------------------ weight transfer (trainer side)


@dataclass
class ParamMeta:
    name: str
    dtype: Any
    shape: tuple


class WeightSource:
    """Base class of a trainer weight source (base.py:215-273): ``metadata`` + ``iter_full``."""


@dataclass
class IPCTrainerInitInfo:
    rank: int
    packed: bool = False
    packed_buffer_size_bytes: int = 2**30


@dataclass
class NCCLTrainerInitInfo:
    rank: int
    master_address: str = "127.0.0.1"
    master_port: int = 0
    world_size: int = 1
    packed: bool = False
    packed_buffer_size_bytes: int = 2**30


class _Sender:
    """``IPCTrainerWeightTransferEngine.send_weights``: rank 0 drives start → update → finish; every
    rank iterates the full export (IPC: every trainer rank owns every parameter, ipc_engine.py)."""

    def __init__(self, info: Any, client: Any, source: Any):
        if not isinstance(type(source).__dict__.get("metadata"), functools.cached_property):
            raise StandInError("WeightSource.metadata must be a functools.cached_property (base.py:236-243)")
        self.info, self.client, self.source = info, client, source
        if info.rank == 0:
            client.init_weight_transfer_engine({"rank": info.rank})

    def send_weights(self) -> None:
        import torch

        sender = self.info.rank == 0
        names = [m.name for m in self.source.metadata]
        staging = None
        if self.info.packed:  # one reusable device buffer (packed_tensor.py)
            staging = torch.empty(self.info.packed_buffer_size_bytes, dtype=torch.uint8, device="cuda")
        if sender:
            self.client.start_weight_update()
        for name, tensor in self.source.iter_full():
            if tensor.device.type == "cpu":
                raise StandInError(f"IPC weight transfer got host tensor {name!r}: CUDA IPC handles need device tensors")
            if name not in names:
                raise StandInError(f"tensor {name!r} not in the source metadata")
            if sender:
                self.client.update_weights({"names": [name]})
        del staging
        if sender:
            self.client.finish_weight_update()

    def shutdown(self) -> None:
        return None


class WeightTransferTrainerFactory:
    @staticmethod
    def trainer_init(info: Any, client: Any, source: Any) -> _Sender:
        return _Sender(info, client, source)


def install() -> None:
    """Register the stand-in modules under vLLM's names (idempotent)."""
    if getattr(sys.modules.get("vllm"), "__standin__", False):
        return
    mods = {}
    for name in ("vllm", "vllm.distributed", "vllm.distributed.weight_transfer", "vllm.distributed.weight_transfer.base",
                 "vllm.distributed.weight_transfer.ipc_engine", "vllm.distributed.weight_transfer.nccl_engine"):
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mod.__standin__ = True
        mods[name] = mod
    mods["vllm"].LLM, mods["vllm"].SamplingParams = LLM, SamplingParams
    mods["vllm.distributed.weight_transfer"].WeightTransferTrainerFactory = WeightTransferTrainerFactory
    mods["vllm.distributed.weight_transfer.base"].ParamMeta = ParamMeta
    mods["vllm.distributed.weight_transfer.base"].WeightSource = WeightSource
    mods["vllm.distributed.weight_transfer.ipc_engine"].IPCTrainerInitInfo = IPCTrainerInitInfo
    mods["vllm.distributed.weight_transfer.nccl_engine"].NCCLTrainerInitInfo = NCCLTrainerInitInfo
    sys.modules.update(mods)

"""GPU rollout engine: vLLM 0.33 ``LLM`` colocated with the trainer, weights pushed in memory.

Lifecycle of one GRPO iteration (the order verl / NeMo-RL / slime use, reference peers.md §0.3):

1. ``update_weights(export)`` — if asleep, ``llm.wake_up(tags=["weights"])``; push the trainer's
   HF-named full tensors through vLLM's own RL weight-transfer API; free the staging buffers;
   ``llm.wake_up(tags=["kv_cache"])`` (scheduling resumes once everything is resident,
   vllm/v1/engine/core.py:1031-1056); ``llm.reset_prefix_cache()`` (cached KV came from the old
   weights).
2. ``generate(...)`` — ``LLM.generate`` from prompt token ids with
   ``SamplingParams(n, temperature, top_p, max_tokens, stop, stop_token_ids=[eod], seed,
   logprobs=0, include_stop_str_in_output=True)``.
3. ``sleep()`` — ``llm.sleep(level=cfg.sleep_level)`` before the trainer's forward/backward
   (level 2 discards weights and KV cache, vllm/entrypoints/llm.py:839-862; they are re-sent at 1).

Weight transfer (vllm/distributed/weight_transfer/): the export iterable is wrapped as a vLLM
``WeightSource`` (base.py:215-273) whose ``metadata`` (``ParamMeta`` per HF parameter, base.py:132-159)
comes from the HF config alone — identical on every rank, no communication — and whose
``iter_full`` validates each (name, shape) against it, casts to the rollout dtype and moves the
tensor to this rank's GPU. It is driven by ``IPCTrainerWeightTransferEngine`` (ipc_engine.py:251-472;
CUDA IPC, ``packed`` through one reusable buffer of ``bucket_bytes``) or
``NCCLTrainerWeightTransferEngine`` (nccl_engine.py:248-394; vLLM on GPUs other than the
trainer's), built by ``WeightTransferTrainerFactory.trainer_init`` (factory.py:166-215).

Colocated multi-GPU (IPC): every trainer rank of the default process group builds this engine with
its ``trainer_rank`` and calls ``update_weights`` with the same export in lockstep (every rank
exports every tensor on its own GPU; the handles are all-gathered and rank 0 ships them,
ipc_engine.py:339-376). Only rank 0 owns the ``LLM`` (``tensor_parallel_size`` GPUs) and can
``generate``; it broadcasts the groups itself.

vLLM facts this module relies on (checked against the vllm==0.33.0 wheel):

* ``LLM.init_weight_transfer_engine(request)`` / ``update_weights(request)`` unwrap
  ``request["init_info"]`` / ``request["update_info"]`` (entrypoints/rl/offline.py:12-54), while the
  trainer engines call their client with the *inner* dict (ipc_engine.py:315, 472): an ``LLM`` is
  not itself a ``VLLMWeightSyncClient``, so :class:`_LLMClient` wraps the payloads (as
  ``RayVLLMWeightSyncClient`` does, clients.py:109-129).
* CUDA IPC handles hold torch types that vLLM's msgpack encoder only pickles with
  ``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` (v1/serial_utils.py:220-233); the engine core is a
  separate local process that we start ourselves, so we set it before building the ``LLM``.
* A packed buffer must hold the largest single tensor (packed_tensor.py:305-350); vLLM's default
  is 1 GiB (packed_tensor.py:15), smaller than a 152k × 3584 bf16 embedding, hence our 2 GiB default.
* Child ``i`` of a request with ``seed=s`` samples with ``seed=s+i`` (v1/engine/parallel_sampling.py:69-81).
* Returned log-probs follow ``logprobs_mode`` (config/model.py:291-300): ``raw_logprobs`` =
  ``log_softmax`` of the unmodified logits (v1/sample/sampler.py:141-150).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from megatron_lwz.checkpoint.signals import shield_children
from megatron_lwz.rollout.config import RolloutConfig
from megatron_lwz.rollout.hf_engine import (
    TokenizerLike, WeightSyncReport, expected_hf_parameters, resolve_dtype)
from megatron_lwz.rollout.sampling import check_sampling_args, request_seed
from megatron_lwz.rollout.text import VLLM_DETOKENIZE, strip_eod
from megatron_lwz.rollout.text import decoder as response_decoder
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, Sample, SamplingParams
from megatron_lwz.rollout.verify import WeightSyncError

LOG = logging.getLogger(__name__)


def vllm_available() -> bool:
    """True when CUDA is usable and ``vllm`` is importable (without importing it)."""
    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


class _RoundSource:
    """Per-round export stream checked against the expected HF parameters (plain torch)."""

    def __init__(self, params: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype, *,
                 tied: bool, strict_order: bool, device: torch.device | str | None = None):
        self.params = params
        self.dtype = dtype
        self._device = device  # None: this rank's current CUDA device at send time
        self._shapes = dict(params)
        self._tied = tied
        self._strict_order = strict_order
        self._pending: Iterable[tuple[str, torch.Tensor]] | None = None
        self.last: WeightSyncReport | None = None

    def set_round(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        self._pending = named_tensors

    def iterate(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield validated (name, tensor on this GPU in the wire dtype); raise WeightSyncError."""
        if self._pending is None:
            raise RuntimeError("vLLM weight source iterated without a pending export")
        pending, self._pending = self._pending, None
        start = time.perf_counter()
        device = self._device or torch.device("cuda", torch.cuda.current_device())
        seen: set[str] = set()
        skipped: list[str] = []
        num_bytes = 0
        for name, tensor in pending:
            if self._tied and name == "lm_head.weight" and name not in self._shapes:
                skipped.append(name)
                continue
            expected = self._shapes.get(name)
            if expected is None:
                raise WeightSyncError(f"weight update: unknown tensor {name!r} (not a parameter of the "
                                      f"HF model for this config; expected names like {self.params[0][0]!r})")
            if name in seen:
                raise WeightSyncError(f"weight update: tensor {name!r} was sent twice")
            if self._strict_order and name != self.params[len(seen)][0]:
                raise WeightSyncError(f"weight update: the NCCL backend needs the HF parameter order; got "
                                      f"{name!r} where {self.params[len(seen)][0]!r} was expected")
            if tuple(tensor.shape) != expected:
                raise WeightSyncError(f"weight update: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                      f"the rollout model expects {expected}")
            seen.add(name)
            num_bytes += tensor.numel() * tensor.element_size()
            yield name, tensor.detach().to(device=device, dtype=self.dtype).contiguous()
        missing = [n for n, _ in self.params if n not in seen]
        if missing:
            raise WeightSyncError(f"weight update: {len(missing)} of {len(self.params)} parameters were never "
                                  f"sent: {missing[:8]}{' …' if len(missing) > 8 else ''}")
        self.last = WeightSyncReport(num_tensors=len(seen), num_bytes=num_bytes,
                                     seconds=time.perf_counter() - start, skipped=skipped, missing=[])


@functools.cache
def _source_class() -> type:
    """The vLLM ``WeightSource`` subclass over a :class:`_RoundSource` (built on first use)."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class HFExportSource(WeightSource):
        """HF-named full tensors; metadata from the HF config, identical on every rank."""

        def __init__(self, core: _RoundSource):
            self._core = core

        @functools.cached_property
        def metadata(self) -> list:  # base.py:236-243 requires a cached_property
            return [ParamMeta(name, self._core.dtype, shape) for name, shape in self._core.params]

        def iter_full(self) -> Iterator[tuple[str, torch.Tensor]]:
            yield from self._core.iterate()

    return HFExportSource


class _LLMClient:
    """``VLLMWeightSyncClient`` (base.py:617-642) over an offline ``LLM`` (offline.py:12-60)."""

    def __init__(self, llm: Any):
        self._llm = llm

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        self._llm.init_weight_transfer_engine({"init_info": init_info})

    def start_weight_update(self) -> None:
        self._llm.start_weight_update()

    def update_weights(self, update_info: Any) -> None:
        self._llm.update_weights({"update_info": update_info})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self._llm.finish_weight_update(weight_version)


class _NoClient:
    """Client of non-sender trainer ranks: the trainer engines never call it (is_sender is False)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"non-sender trainer rank tried to call the vLLM client ({name})")


class VLLMRolloutEngine:
    """RolloutEngine over vLLM 0.33 ``LLM`` (sleep mode, dummy load, native RL weight transfer)."""

    def __init__(self, model_path: str | Path, tokenizer: TokenizerLike, cfg: RolloutConfig, *,
                 hf_config: Any = None, trainer_rank: int = 0, seed: int = 0, llm: Any = None, group: Any = None):
        """``model_path``: HF dir with config.json and the tokenizer (weights are not read:
        ``load_format="dummy"``); ``trainer_rank``: this process's rank in the colocated default
        process group (rank 0 owns the ``LLM``); ``llm``: an already-built ``LLM`` to wrap; ``group``: the
        engine pool's group of colocated trainer ranks (``trainer_rank`` is the rank inside it), so the IPC
        handle exchange stays inside it (rollout/vllm_group_ipc.py; default: the default group)."""
        if hf_config is None:
            from transformers import AutoConfig

            hf_config = AutoConfig.from_pretrained(str(model_path))
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.trainer_rank = trainer_rank
        self._group = group
        self._dtype = resolve_dtype(cfg.dtype)
        params = expected_hf_parameters(hf_config)
        self._check_bucket(params)
        self._core = _RoundSource(params, self._dtype, tied=bool(getattr(hf_config, "tie_word_embeddings", False)),
                                  strict_order=cfg.weight_transfer_backend == "nccl")
        self.llm = llm if llm is not None or trainer_rank != 0 else self._build_llm(model_path, seed)
        self._sender: Any = None
        self._asleep = False
        self._weights_valid = False  # dummy weights until the first sync
        self.num_syncs = 0

    # -- construction -------------------------------------------------------------------------

    def _check_bucket(self, params: list[tuple[str, tuple[int, ...]]]) -> None:
        if not self.cfg.packed:
            return
        name, shape = max(params, key=lambda p: _numel(p[1]))
        need = _numel(shape) * self._dtype.itemsize
        if need > self.cfg.bucket_bytes:
            raise ValueError(f"rollout.bucket_bytes={self.cfg.bucket_bytes} cannot hold {name!r} "
                             f"({need} bytes); set rollout.bucket_bytes >= {need}")

    def _build_llm(self, model_path: str | Path, seed: int) -> Any:
        from vllm import LLM  # lazy: vllm is only needed on GPU machines

        # IPC handles cross the msgpack boundary to our own engine-core process (module docstring).
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        cfg = self.cfg
        with shield_children():  # the engine-core / worker processes must not die of the trainer's SIGUSR1
            return LLM(  # entrypoints/llm.py:177; EngineArgs fields engine/arg_utils.py:515-866
                model=str(model_path), tokenizer=str(model_path), dtype=cfg.dtype, seed=seed,
                tensor_parallel_size=cfg.tensor_parallel_size,
                gpu_memory_utilization=cfg.gpu_memory_utilization, max_model_len=cfg.max_model_len,
                enable_prefix_caching=cfg.enable_prefix_caching, enforce_eager=cfg.enforce_eager,
                enable_sleep_mode=True, load_format="dummy", logprobs_mode=cfg.logprobs_mode,
                weight_transfer_config={"backend": cfg.weight_transfer_backend})

    def _ensure_sender(self) -> Any:
        if self._sender is not None:
            return self._sender
        from vllm.distributed.weight_transfer import WeightTransferTrainerFactory

        cfg = self.cfg
        if cfg.weight_transfer_backend == "ipc":
            from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo

            info: Any = IPCTrainerInitInfo(rank=self.trainer_rank, packed=cfg.packed,
                                           packed_buffer_size_bytes=cfg.bucket_bytes)
        else:
            from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

            info = NCCLTrainerInitInfo(rank=self.trainer_rank, master_address=cfg.nccl_master_address,
                                       master_port=cfg.nccl_master_port,
                                       world_size=1 + cfg.tensor_parallel_size, packed=cfg.packed,
                                       packed_buffer_size_bytes=cfg.bucket_bytes)
        client = _LLMClient(self.llm) if self.llm is not None else _NoClient()
        if self._group is not None and cfg.weight_transfer_backend == "ipc":
            from megatron_lwz.rollout.vllm_group_ipc import group_ipc_trainer_init

            self._sender = group_ipc_trainer_init(info, client=client, source=_source_class()(self._core),
                                                  group=self._group)
            return self._sender
        self._sender = WeightTransferTrainerFactory.trainer_init(
            info, client=client, source=_source_class()(self._core))
        return self._sender

    # -- RolloutEngine protocol ---------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> WeightSyncReport:
        """Push one full set of HF-named tensors; every colocated trainer rank calls this in lockstep."""
        start = time.perf_counter()
        if self.llm is not None and self._asleep:
            self.llm.wake_up(tags=["weights"])
        sender = self._ensure_sender()
        self._core.set_round(named_tensors)
        try:
            sender.send_weights()  # start → update chunk(s) → finish (ipc_engine.py:318-329)
        except BaseException:
            self._weights_valid = False
            self._close_failed_update()
            raise
        torch.cuda.empty_cache()  # hand the staging buffers back before the KV cache returns
        if self.llm is not None:
            if self._asleep:
                self.llm.wake_up(tags=["kv_cache"])
            self.llm.reset_prefix_cache()  # entrypoints/llm.py:832
        self._asleep = False
        self._weights_valid = True
        self.num_syncs += 1
        report = self._core.last
        assert report is not None
        report.seconds = time.perf_counter() - start
        LOG.info("vLLM weight sync #%d: %d tensors, %.2f GiB in %.2fs", self.num_syncs,
                 report.num_tensors, report.num_bytes / 1024**3, report.seconds)
        return report

    def _close_failed_update(self) -> None:
        """End a weight-update session that our source aborted (vLLM refuses a new start otherwise)."""
        if self.llm is None:
            return
        try:
            self.llm.finish_weight_update()
        except Exception as err:  # the worker may already have closed it (gpu_worker.py:1620-1631)
            LOG.debug("finish_weight_update after a failed sync: %s", err)

    def sleep(self) -> None:
        """Release the GPU memory of vLLM (level ``cfg.sleep_level``) while the trainer runs."""
        if self.llm is not None and not self._asleep:
            self.llm.sleep(level=self.cfg.sleep_level)
        self._asleep = True
        if self.cfg.sleep_level >= 2:
            self._weights_valid = False

    def wake(self) -> None:
        """Re-acquire weights and KV cache (no-op when ``update_weights`` already woke the engine)."""
        if not self._asleep:
            return
        if not self._weights_valid:
            raise RuntimeError("vLLM slept at level 2 (weights discarded) and no update_weights followed; "
                               "sync the weights before waking for generation")
        if self.llm is not None:
            self.llm.wake_up()
        self._asleep = False

    def generate(self, prompts: Sequence[PromptRecord], prompt_texts: Sequence[str],
                 params: SamplingParams | Sequence[SamplingParams]) -> list[RolloutGroup]:
        """``n`` samples per prompt via ``LLM.generate`` (entrypoints/llm.py:417); ``params`` as in
        ``HFRolloutEngine.generate`` (one for all prompts, or one per prompt with its own request seed)."""
        if self.llm is None:
            raise RuntimeError(f"trainer rank {self.trainer_rank} holds no vLLM engine; generate on rank 0 "
                               "and broadcast the groups")
        if not self._weights_valid:
            raise RuntimeError("vLLM still holds dummy or discarded weights: call update_weights first")
        if self._asleep:
            self.wake()
        if len(prompts) != len(prompt_texts):
            raise ValueError(f"{len(prompts)} prompts but {len(prompt_texts)} prompt texts")
        per = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
        if len(per) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(per)} SamplingParams")
        for p in per:
            check_sampling_args(p.temperature, p.top_p)
        prompt_ids = [list(self.tokenizer.encode(t)) for t in prompt_texts]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids],
                                    [self._vllm_params(p, i, p is not params) for i, p in enumerate(per)],
                                    use_tqdm=False)
        eod = (self.tokenizer.eod, response_decoder(self.tokenizer)([self.tokenizer.eod]))
        return [RolloutGroup(prompt=rec, samples=_to_samples(out, rec, text, ids, p.logprobs, eod))
                for out, rec, text, ids, p in zip(outputs, prompts, prompt_texts, prompt_ids, per)]

    def _vllm_params(self, params: SamplingParams, prompt_index: int, own_seed: bool = False) -> Any:
        from vllm import SamplingParams as VLLMSamplingParams

        return VLLMSamplingParams(**vllm_sampling_kwargs(params, prompt_index, self.tokenizer.eod, own_seed))

    def shutdown(self) -> None:
        """Drop the trainer-side transfer state and the ``LLM`` (frees its GPU memory)."""
        if self._sender is not None:
            self._sender.shutdown()
            self._sender = None
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()  # stops the engine-core process (v1/engine/core_client.py)
        self.llm = None


def vllm_sampling_kwargs(params: SamplingParams, prompt_index: int, eod: int, own_seed: bool = False) -> dict[str, Any]:
    """Keyword arguments of vLLM's ``SamplingParams`` (sampling_params.py:285-384) for one prompt;
    the text fields follow the one detokenization rule of both engines (``rollout.text``). ``own_seed``:
    ``params.seed`` is already this request's seed (per-prompt params of the engine pool)."""
    seed = params.seed if params.seed is None or own_seed else request_seed(params.seed, prompt_index)
    return dict(
        n=params.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
        stop=list(params.stop) or None, stop_token_ids=[eod], seed=seed,
        logprobs=0 if params.logprobs else None, **VLLM_DETOKENIZE)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _to_samples(out: Any, record: PromptRecord, text: str, prompt_ids: list[int], want_logprobs: bool,
                eod: tuple[int, str]) -> list[Sample]:
    """vLLM ``RequestOutput`` → our Samples (``CompletionOutput`` fields: outputs.py:59-98);
    ``eod``: (id, text) of the EOD token, whose text is not part of a response (``rollout.text``)."""
    samples = []
    for comp in sorted(out.outputs, key=lambda c: c.index):
        if comp.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM request for prompt {record.prompt_id!r} ended with "
                               f"finish_reason={comp.finish_reason!r}")
        token_ids = list(comp.token_ids)
        logprobs = None
        if want_logprobs:
            if comp.logprobs is None or len(comp.logprobs) != len(token_ids):
                raise RuntimeError("vLLM returned no per-token log-probs although logprobs=0 was requested")
            logprobs = [float(pos[tok].logprob) for pos, tok in zip(comp.logprobs, token_ids)]
        samples.append(Sample(prompt=record, prompt_text=text, prompt_token_ids=list(prompt_ids),
                              response_token_ids=token_ids, response_text=strip_eod(comp.text, token_ids, *eod),
                              finish_reason=comp.finish_reason, rollout_logprobs=logprobs))
    return samples

"""Rollout: prompt templates, sampling and the generation engines (HF on CPU, vLLM on GPU).

Import-light: this module imports nothing heavy; :func:`build_engine` imports torch /
transformers / vllm only when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from megatron_lwz.rollout.config import RolloutConfig
    from megatron_lwz.rollout.types import RolloutEngine


def resolve_engine_kind(cfg: "RolloutConfig") -> str:
    """'hf' or 'vllm' for ``cfg.engine`` ('auto' = vllm when CUDA and vllm are present)."""
    if cfg.engine != "auto":
        return cfg.engine
    from megatron_lwz.rollout.vllm_engine import vllm_available

    return "vllm" if vllm_available() else "hf"


def build_engine(cfg: "RolloutConfig", hf_config: Any, tokenizer: Any, *, model: Any = None,
                 trainer_rank: int = 0, seed: int = 0) -> "RolloutEngine":
    """Build the rollout engine chosen by ``cfg``.

    ``hf_config``: a transformers config object, or a HF directory (config.json + tokenizer files;
    the vLLM engine needs a directory, it reads the tokenizer and config from it). ``tokenizer``:
    an object with ``encode(text) -> list[int]``, ``decode(ids) -> str`` and ``eod``. ``model``:
    (HF engine) an existing transformers model to wrap instead of building one. ``trainer_rank``:
    (vLLM engine) rank in the colocated trainer group; rank 0 owns the ``LLM``.
    """
    kind = resolve_engine_kind(cfg)
    if kind == "hf":
        from megatron_lwz.rollout.hf_engine import HFRolloutEngine, build_hf_model

        if model is None:
            model = build_hf_model(hf_config, dtype="float32", init_seed=seed)
        return HFRolloutEngine(model, tokenizer, logprobs_mode=cfg.logprobs_mode,
                               max_batch_size=cfg.max_batch_size)
    from megatron_lwz.rollout.vllm_engine import VLLMRolloutEngine, vllm_available

    if not vllm_available():
        raise RuntimeError("rollout.engine='vllm' needs CUDA and the vllm package (pip install "
                           "vllm==0.33.0); use rollout.engine='hf' on CPU")
    if not isinstance(hf_config, (str,)) and not hasattr(hf_config, "__fspath__"):
        raise ValueError("rollout.engine='vllm' needs hf_config to be a HF directory (config.json and "
                         "tokenizer files), not a config object")
    return VLLMRolloutEngine(hf_config, tokenizer, cfg, trainer_rank=trainer_rank, seed=seed)


__all__ = ["build_engine", "resolve_engine_kind"]

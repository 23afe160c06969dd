"""``lwz eval generate``: answer a prompt file from a checkpoint with the rollout engine, resumably.

Model: an HF directory (``config.json`` + safetensors + tokenizer files) or a megatron_lwz checkpoint
(a save directory — its ``latest`` marker is followed — or one checkpoint directory), which is first
exported once to ``<output>.hf/`` with ``lwz convert mcore-to-hf``'s code (``checkpoint.convert``; the
tokenizer comes from the checkpoint's ``hf/`` assets or ``tokenizer``). Engine: ``rollout.engine``
(``auto`` = vLLM on GPU, the HF engine on CPU; the same engines GRPO samples with).

Prompts: the LongWriter-Zero ``think`` template (paper §3.1, the released strings), the ``direct``
(no-think) template, or ``raw`` (the text as is); sampling defaults are the released model's decoding
(paper.md §6.3: T 0.6, top-p 0.95, 15,500 tokens, stop at ``</answer>`` / ``<|user|>`` /
``<|endoftext|>``). HF engine: prompt ``i`` of the file is seeded ``request_seed(seed, i)`` whatever the
batching, so a resumed run samples exactly what an uninterrupted one would. vLLM engine (one sampling
setting per call): a batch is seeded by its first prompt's position, reproducible for the same
``batch_size`` and resume points. vLLM starts from dummy weights in our engine (GRPO syncs them), so
the checkpoint's tensors are pushed through ``update_weights`` once before generating.

Output: JSONL ``{"id", "prompt", "response", "finish_reason", "response_tokens"}`` (``prompt`` = the
question as given, not the templated text), appended after every batch of ``batch_size`` prompts; a
rerun skips ids already present (a torn last line is dropped first). ``<output>.meta.json`` records the
model, template and sampling; a rerun with different settings is refused (write elsewhere).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from megatron_lwz.config.base import ConfigError, to_dict
from megatron_lwz.evaluation.data import read_prompts, record_text
from megatron_lwz.rewards.records_io import BadRecords, iter_records, write_jsonl_atomic
from megatron_lwz.rollout.config import RolloutConfig


@dataclass(kw_only=True)
class GenerateConfig:
    """``lwz eval generate``."""

    model: str
    """HF model directory, or a megatron_lwz checkpoint (save dir or one checkpoint dir)."""
    prompts: str
    """Prompt JSONL (id: id/index/idx; text: prompt/query/question, or ``text_key``)."""
    output: str
    """Generations JSONL (appended; resumable)."""
    tokenizer: str | None = None
    """Tokenizer directory / .model; default: the HF directory (or the checkpoint's hf/ assets)."""
    text_key: str | None = None
    """Field holding the prompt text (default: the first of prompt / query / question)."""
    template: Literal["think", "direct", "raw"] = "think"
    """Prompt format: think (RL format), direct (no-think ablation) or raw."""
    temperature: float = 0.6
    """Sampling temperature (released decoding: 0.6)."""
    top_p: float = 0.95
    """Nucleus mass (released decoding: 0.95)."""
    max_tokens: int = 15500
    """Response budget in tokens (released decoding: 15,500)."""
    stop: list[str] | None = None
    """Stop strings; None = the template's (</answer>, <|user|>, <|endoftext|>; none for raw)."""
    seed: int = 0
    """Sampling seed (prompt i uses request_seed(seed, i))."""
    batch_size: int = 16
    """Prompts per engine call; the output is appended after each."""
    max_prompts: int | None = None
    """Answer only the first N prompts."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Engine (auto / hf / vllm) and its settings."""
    progress: bool = True
    """tqdm progress bar."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_tokens < 1:
            raise ConfigError("eval generate: need batch_size >= 1 and max_tokens >= 1")


def _meta(cfg: GenerateConfig) -> dict[str, Any]:
    keys = ("model", "prompts", "tokenizer", "text_key", "template", "temperature", "top_p", "max_tokens",
            "stop", "seed")
    return {k: getattr(cfg, k) for k in keys} | {"engine": cfg.rollout.engine}


def _done_ids(cfg: GenerateConfig) -> set[str]:
    """Ids already answered; rewrites the output without malformed (torn) lines first."""
    out = Path(cfg.output)
    if not out.is_file():
        return set()
    bad = BadRecords()
    good = [r for _, r in iter_records(out, bad) if isinstance(r.get("response"), str) and "id" in r]
    if bad.count:
        write_jsonl_atomic(out, good)
    return {str(r["id"]) for r in good}


def _check_meta(cfg: GenerateConfig) -> None:
    path = Path(f"{cfg.output}.meta.json")
    wanted = _meta(cfg)
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8")).get("settings", {})
        diff = {k: (stored.get(k), v) for k, v in wanted.items() if stored.get(k) != v}
        if diff:
            raise ConfigError(f"{cfg.output} was generated with other settings {diff} (stored, now); "
                              "use another output file")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": wanted, "config": to_dict(cfg),
                                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2) + "\n", encoding="utf-8")


def _hf_model_dir(cfg: GenerateConfig) -> tuple[str, str]:
    """(HF model dir, tokenizer path); a megatron_lwz checkpoint is exported to ``<output>.hf`` once."""
    model = Path(cfg.model)
    if (model / "config.json").is_file():
        return str(model), cfg.tokenizer or str(model)
    from megatron_lwz.checkpoint.convert import McoreToHfConfig, mcore_to_hf
    from megatron_lwz.checkpoint.state import resolve_checkpoint

    if resolve_checkpoint(model) is None:
        raise ConfigError(f"eval generate: model {cfg.model} is neither an HF directory (config.json) nor a "
                          "megatron_lwz checkpoint")
    target = Path(f"{cfg.output}.hf")
    if not list(target.glob("*.safetensors")):
        mcore_to_hf(McoreToHfConfig(ckpt=str(model), out_dir=str(target), hf_assets=cfg.tokenizer, force=True,
                                    progress=cfg.progress))
    return str(target), cfg.tokenizer or str(target)


def _prompt_text(question: str, template: str) -> str:
    from megatron_lwz.rollout.templates import format_prompt

    return question if template == "raw" else format_prompt(question, template)  # type: ignore[arg-type]


def generate(cfg: GenerateConfig) -> dict[str, Any]:
    """Answer the prompts not yet in ``cfg.output``; returns counts and timing."""
    from tqdm import tqdm

    bad = BadRecords()
    prompts = read_prompts(cfg.prompts, bad, text_key=cfg.text_key)[: cfg.max_prompts]
    _check_meta(cfg)
    done = _done_ids(cfg)
    todo = [(i, pid, record) for i, (pid, record) in enumerate(prompts) if pid not in done]
    summary = {"prompts": len(prompts), "already_done": len(prompts) - len(todo), "generated": 0,
               "bad_records": bad.count, "output": cfg.output}
    if not todo:
        return summary
    engine, kind = _engine(cfg)
    per_prompt = kind == "hf"
    start, tokens = time.perf_counter(), 0
    with tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc="generate", disable=not cfg.progress) as bar:
        for lo in range(0, len(todo), cfg.batch_size):
            rows = _answer(engine, cfg, todo[lo:lo + cfg.batch_size], per_prompt)
            with open(cfg.output, "a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            tokens += sum(r["response_tokens"] for r in rows)
            summary["generated"] += len(rows)
            bar.update(len(rows))
    seconds = time.perf_counter() - start
    return summary | {"engine": kind, "seconds": seconds, "response_tokens": tokens,
                      "tokens_per_s": tokens / seconds if seconds > 0 else None}


def _engine(cfg: GenerateConfig):
    from megatron_lwz.data.tokenizer import load_tokenizer
    from megatron_lwz.rollout import build_engine, resolve_engine_kind

    model_dir, tokenizer_path = _hf_model_dir(cfg)
    tokenizer = load_tokenizer(tokenizer_path)
    kind = resolve_engine_kind(cfg.rollout)
    engine = build_engine(cfg.rollout, model_dir, tokenizer, seed=cfg.seed)
    if kind == "vllm":  # our vLLM engine starts from dummy weights (GRPO syncs them): push the checkpoint's
        from megatron_lwz.checkpoint.hf_io import HFReader

        reader = HFReader(model_dir)
        engine.update_weights((name, reader.get(name)) for name in reader.names())
    return engine, kind


def _answer(engine, cfg: GenerateConfig, batch: list[tuple[int, str, dict]], per_prompt: bool) -> list[dict[str, Any]]:
    """Answers of one batch. HF engine: one SamplingParams per prompt (seed of its file position); the
    vLLM engine takes one for the batch (seeded by its first prompt's position)."""
    from megatron_lwz.rewards.length import detect_language
    from megatron_lwz.rollout.sampling import request_seed
    from megatron_lwz.rollout.templates import default_stop
    from megatron_lwz.rollout.types import PromptRecord, SamplingParams

    stop = cfg.stop if cfg.stop is not None else ([] if cfg.template == "raw" else default_stop(cfg.template))
    questions = [record_text(record, cfg.text_key) or "" for _, _, record in batch]
    records = [PromptRecord(prompt_id=pid, question=q, length_lower=0, length_upper=0, language=detect_language(q))
               for (_, pid, _), q in zip(batch, questions)]
    params = [SamplingParams(n=1, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                             stop=list(stop), seed=request_seed(cfg.seed, index), logprobs=False)
              for index, _, _ in batch]
    if not per_prompt:
        params = params[0]
    groups = engine.generate(records, [_prompt_text(q, cfg.template) for q in questions], params)
    return [{"id": pid, "prompt": q, "response": g.samples[0].response_text,
             "finish_reason": g.samples[0].finish_reason, "response_tokens": len(g.samples[0].response_token_ids)}
            for (_, pid, _), q, g in zip(batch, questions, groups)]

"""Stand-ins for what a rehearsal cannot have: the recipe's inputs and the GPU-only engines.

Everything here replaces an *input* or an *engine*, never job logic; ``install`` returns the list of
what it replaced, printed with the report. Sizes are the recipe's: vocabulary = the model's,
sequences at ``seq_length`` / ``max_length`` / ``max_tokens``, the Writing RM at its preset's size.
"""

from __future__ import annotations

import os
import random
import tempfile
from typing import Any

import torch

STANDIN_VOCAB_WORDS = 997  # stand-in token ids cycle through a small range (values are not rehearsed)


class StandInTokenizer:
    """Whitespace "tokenizer" (one id per word) with the recipe model's vocabulary size."""

    def __init__(self, vocab_size: int):
        self.vocab_size, self.eod, self.pad, self.bos = vocab_size, 2, 0, None
        self.pad_id = self.eos = 0

    def encode(self, text: str) -> list[int]:
        return [11 + (hash(w) % STANDIN_VOCAB_WORDS) for w in text.split()]

    def encode_batch(self, texts, num_threads: int = 1) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        return " ".join(f"w{int(i)}" for i in ids)

    def __len__(self) -> int:
        return self.vocab_size


def _lm_batch(rows: int, seq: int) -> dict[str, torch.Tensor]:
    tokens = torch.randint(11, 11 + STANDIN_VOCAB_WORDS, (rows, seq))  # host, as the real loader builds them
    return {"tokens": tokens, "labels": tokens.roll(-1, 1), "loss_mask": torch.ones(rows, seq),
            "position_ids": torch.arange(seq).expand(rows, seq).contiguous()}


class _Batches:
    """``GlobalBatchIterator`` stand-in: this DP rank's micro-batches of one global batch."""

    def __init__(self, cfg, ctx):
        t = cfg.train
        self.n = t.global_batch_size // (t.micro_batch_size * ctx.dp)
        self.mbs, self.seq = t.micro_batch_size, cfg.data.seq_length
        self.consumed_samples = 0
        self.gbs = t.global_batch_size

    def __next__(self) -> list[dict[str, torch.Tensor]]:
        self.consumed_samples += self.gbs
        return [_lm_batch(self.mbs, self.seq) for _ in range(self.n)]


def _pretrain_data(cfg, ctx, consumed_samples: int):
    from megatron_lwz.pretrain.steps import PretrainData

    return PretrainData(train=_Batches(cfg, ctx), valid=None, source_names=["standin"])


def _rm_pairs(path, tokenizer, cfg):
    """Pairs at the recipe's lengths: a quarter at ``max_length`` (the padding case), the rest spread."""
    from megatron_lwz.rewards.rm_data import PairSet

    rng = random.Random(0)
    lengths = [cfg.max_length if i % 4 == 0 else rng.randint(cfg.max_length // 8, cfg.max_length) for i in range(512)]
    side = [[11 + (j % STANDIN_VOCAB_WORDS) for j in range(n)] for n in lengths]
    return PairSet(chosen=side, rejected=side[1:] + side[:1])


def _prompts(cfg, field: str = "prompts.path"):
    from megatron_lwz.rl.prompts import PromptSet
    from megatron_lwz.rollout.types import PromptRecord

    rng = random.Random(field)
    records = [PromptRecord(prompt_id=f"standin-{field}-{i}", question=" ".join(["word"] * rng.randint(30, 400)),
                            length_lower=1000, length_upper=4000) for i in range(256)]
    return PromptSet(records=records)


def scale_overrides(job: str, cfg, world_size: int, steps: int) -> tuple[list[str], list[str]]:
    """Fewer micro-batches per step, the same shapes: (overrides, what changed in words).

    Pretraining / RM: PP × VPP micro-batches per DP rank reach the 1F1B warm-up depth (the most
    micro-batches a stage holds in flight), so the activation peak is the full run's. GRPO: one
    mini-batch row per DP rank and mini-batch at least; micro-batches keep the token budget."""
    p = cfg.parallel
    dp = world_size // (p.tensor_parallel * p.pipeline_parallel * p.context_parallel)
    if job in ("pretrain", "train-rm"):
        t = cfg.train
        per_rank = t.global_batch_size // (t.micro_batch_size * dp)
        n = max(1, min(per_rank, p.pipeline_parallel * (p.virtual_pipeline_parallel or 1)))
        gbs = n * t.micro_batch_size * dp
        return ([f"train.global_batch_size={gbs}", f"train.train_steps={steps}", "scheduler.warmup_steps=0",
                 "scheduler.decay_steps=null"],
                [f"global batch {t.global_batch_size} → {gbs} ({n} micro-batches per DP rank: the pipeline's "
                 "in-flight depth, so the activation peak is the full run's); "
                 f"{steps} step(s)"])
    rows = dp * cfg.rl.batching.num_minibatches
    prompts = -(-rows // cfg.rl.group_size)
    if cfg.rollout.engine == "hf":  # each DP replica generates its own share: give every replica one
        prompts = max(prompts, dp)
    return ([f"rl.prompts_per_step={prompts}", f"rl.num_steps={steps}"],
            [f"prompts per step {cfg.rl.prompts_per_step} → {prompts} ({prompts * cfg.rl.group_size} samples ≥ "
             f"DP {dp} × {cfg.rl.batching.num_minibatches} mini-batches; micro-batches keep the token budget); "
             f"{steps} iteration(s)"])


def overrides(job: str) -> list[str]:
    """Config overrides that turn inputs into stand-ins (the recipe's shapes are kept). The run
    directory is shared by the rehearsed ranks of one rehearsal (``LWZ_REHEARSE_DIR``), as on a cluster."""
    tmp = os.environ.get("LWZ_REHEARSE_DIR") or tempfile.mkdtemp(prefix="lwz_rehearse_")
    out = [f"logging.run_dir={tmp}/run", f"checkpoint.save_dir={tmp}/ckpt", "checkpoint.load_dir=null",
           "checkpoint.save_interval=0", "checkpoint.save_on_signal=false", "logging.progress=false",
           "precision.fp8=null"]
    if job == "pretrain":
        out += ["train.eval_interval=0"]
    if job == "grpo":  # rollout log-prob *values* are not rehearsed: the gap check cannot pass or fail
        out += ["rollout.verify_every=-1"]
    return out


def env_defaults() -> None:
    """Directory variables the recipes use may point at nothing (values only appear in paths)."""
    for var in ("MODELS_DIR", "DATA_DIR", "CKPT_DIR", "RUNS_DIR"):
        os.environ.setdefault(var, f"/nonexistent/{var.lower()}")


def install(job: str, cfg) -> list[str]:
    """Patch the job modules' input loaders and engines; returns what was replaced, in words."""
    from megatron_lwz.engine import session as session_mod
    from megatron_lwz.models.presets import resolve

    replaced = ["TE layer spec → megatron's local spec, precision.fp8 → off (Transformer Engine cannot be installed "
                "without CUDA; the recipe's TE/FP8 settings are validated as for a GPU node, FP8 kernels and "
                "TE fused kernels are not run)", "initial checkpoint: random init on the stand-in device; "
                "checkpoint saves skipped (host-side I/O)"]
    session_mod.Session.save = lambda self, *a, **k: None
    _te_norm_standin()
    _flash_attention_standin()
    replaced.append("core attention, RMSNorm, RoPE: stand-ins that keep for backward what TE's fused kernels "
                    "keep (attention: output + log-sum-exp, not S × S scores; norm: input + fp32 rsigma; RoPE: "
                    "nothing extra), so activation memory is the TE run's, not the local spec's")
    fused = _fusions_off(cfg)
    if fused:
        replaced.append("TE/apex-only fusions off (kernels, not shapes): " + ", ".join(fused))
    vocab = resolve(cfg.model).vocab_size
    if job == "pretrain":
        import megatron_lwz.pretrain.loop as loop

        loop.build_data = _pretrain_data
        replaced.append(f"data: random token batches (rows × {cfg.data.seq_length}) instead of the indexed datasets")
    elif job == "train-rm":
        import megatron_lwz.rewards.rm_train as rm_train

        rm_train.Tokenizer = lambda _cfg: StandInTokenizer(vocab)
        rm_train.read_pairs = _rm_pairs
        replaced.append(f"RM pairs: 512 token pairs up to max_length={cfg.data.max_length} (¼ at the maximum)")
    else:
        replaced += _install_grpo(cfg, vocab)
    return replaced


class _FlashAttention(torch.autograd.Function):
    """What TE's fused (flash) attention keeps: output + log-sum-exp, never the S × S scores."""

    @staticmethod
    def forward(ctx, q, k, v):  # q (sq, b, np, hn), k/v (sk, b, ng, hn) → (sq, b, np·hn)
        sq, b, heads, hn = q.shape
        lse = q.new_empty((b, heads, sq), dtype=torch.float32)
        out = q.new_empty((sq, b, heads * hn))
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, _, _ = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


class _FusedRMSNorm(torch.autograd.Function):
    """What TE's fused RMSNorm keeps for backward: the input and one fp32 rsigma per row."""

    @staticmethod
    def forward(ctx, x, weight):
        rsigma = x.new_empty(x.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(x, weight, rsigma)
        return torch.empty_like(x)

    @staticmethod
    def backward(ctx, grad):
        x, weight, _ = ctx.saved_tensors
        return torch.empty_like(x), torch.empty_like(weight)


class _FusedRoPE(torch.autograd.Function):
    """TE's fused RoPE keeps only the (shared) frequencies; the unfused path keeps copies of q and k."""

    @staticmethod
    def forward(ctx, t):
        return torch.empty_like(t)

    @staticmethod
    def backward(ctx, grad):
        return torch.empty_like(grad)


def _flash_attention_standin() -> None:
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    DotProductAttention.forward = lambda self, query, key, value, *a, **k: _FlashAttention.apply(query, key, value)


def _fusions_off(cfg) -> list[str]:
    """Switch off fields that need TE/apex kernels (fusions, TP-communication overlap) in place."""
    import dataclasses

    off = []
    for section in ("model", "parallel", "precision"):
        sub = getattr(cfg, section, None)
        for f in dataclasses.fields(sub) if dataclasses.is_dataclass(sub) else ():
            name = f.name
            te_only = name in ("rope_fusion", "gradient_accumulation_fusion") or name.startswith("tp_comm_overlap")
            if te_only and getattr(sub, name) is True:
                setattr(sub, name, False)
                off.append(f"{section}.{name}")
    return off


def _te_norm_standin() -> None:
    """TE's RMSNorm in the local spec: sequence parallelism allowed, weights tagged for the TP
    all-reduce of their grads (what TE's norm does); the recipe was validated as on a TE node."""
    from megatron.core.transformer import torch_norm

    import megatron_lwz.config.validate as validate

    import megatron_lwz.models.gpt as gpt

    validate.environment = lambda: (True, True)
    try:  # TE userbuffers (TP-communication overlap) need TE and CUDA IPC: not rehearsed
        import megatron_lwz.parallel.tp_overlap as tp_overlap

        tp_overlap.init_tp_comm_overlap = lambda *a, **k: None
    except ImportError:
        pass
    gpt.use_transformer_engine = lambda model: False  # the local spec stands in for TE's

    def new(cls, config, hidden_size: int, eps: float = 1e-5, **_: Any):
        norm = torch.nn.RMSNorm(normalized_shape=hidden_size, eps=eps)
        norm.forward = lambda x: _FusedRMSNorm.apply(x, norm.weight)  # TE's saved tensors, not torch's
        if config.sequence_parallel:
            norm.weight.sequence_parallel = True
        return norm

    torch_norm.WrappedTorchNorm.__new__ = new
    from megatron.core.transformer import attention

    attention.apply_rotary_pos_emb = lambda t, *a, **k: _FusedRoPE.apply(t)


class _PeerLLM:
    """The stand-in engine's outputs without its rules: what the source rank generated and sent."""

    def generate(self, prompts, sampling_params, use_tqdm=False):
        from megatron_lwz.rollout import standin_vllm

        return [standin_vllm._request_output(i, sp, 0) for i, sp in enumerate(sampling_params)]


def _peer_generate(engine, prompts, texts, params):
    """The groups a rehearsed non-source rank receives: the engine's own ``generate`` (so the
    conversion code is the real one) over the stand-in outputs, as the source rank computed them."""
    saved = engine.llm, engine._weights_valid, engine._asleep
    engine.llm, engine._weights_valid, engine._asleep = _PeerLLM(), True, False
    try:
        return type(engine).generate(engine, prompts, texts, params)
    finally:
        engine.llm, engine._weights_valid, engine._asleep = saved


def _vllm_workers_on_every_gpu(cls) -> None:
    """vLLM's TP workers hold weights + KV on *every* GPU of an engine, not only the driving rank's:
    the other ranks get a stand-in worker (same construction checks on their GPU, same sleep / wake
    in lockstep), used for memory only — generation stays with the driving rank."""
    init, sleep, update = cls.__init__, cls.sleep, cls.update_weights

    def __init__(self, model_path, *a, **k):
        init(self, model_path, *a, **k)
        self._worker = self._build_llm(model_path, k.get("seed", 0)) if self.llm is None else None

    def sleep_(self):
        if self._worker is not None and not self._asleep:
            self._worker.sleep(level=self.cfg.sleep_level)
        sleep(self)

    def update_(self, named_tensors):
        worker, was_asleep = self._worker, self._asleep
        if worker is not None and was_asleep:
            worker.wake_up(tags=["weights"])
        report = update(self, named_tensors)
        if worker is not None:
            worker.start_weight_update()
            worker.finish_weight_update()
            if was_asleep:
                worker.wake_up(tags=["kv_cache"])
        return report

    cls.__init__, cls.sleep, cls.update_weights = __init__, sleep_, update_


def _install_grpo(cfg, vocab: int) -> list[str]:
    import megatron_lwz.rl.evaluate as evaluate
    import megatron_lwz.rl.runtime as runtime
    import megatron_lwz.rollout.vllm_engine as vllm_engine
    from megatron_lwz.parallel import rehearsal
    from megatron_lwz.parallel.rehearsal import TRACKER
    from megatron_lwz.rollout import standin_vllm

    standin_vllm.install()
    runtime.Tokenizer = lambda _cfg: StandInTokenizer(vocab)
    runtime.load_prompts = lambda c, field="prompts.path": _prompts(c, field)
    evaluate.load_prompts = lambda c, field="rl.eval.path": _prompts(c, field)
    runtime._load_weights = lambda model, path, what: None
    original = vllm_engine.expected_hf_parameters

    def shapes_only(hf_config):  # a meta HF model for shapes is not GPU memory
        with TRACKER.paused():
            return original(hf_config)

    vllm_engine.expected_hf_parameters = shapes_only
    rehearsal.register_peer("VLLMRolloutEngine.generate", _peer_generate)
    _vllm_workers_on_every_gpu(vllm_engine.VLLMRolloutEngine)
    return ["vLLM: stand-in engine enforcing vLLM 0.33's sleep/wake/update/KV-budget rules (rollout/standin_vllm.py); "
            f"responses up to rl.max_tokens={cfg.rl.max_tokens} (15% truncated, 35% ≥ 0.75×, 50% 0.1–0.75×)",
            "tokenizer: whitespace stand-in with the policy's vocabulary",
            "prompts / eval prompts: 256 stand-ins of 30–400 words", "Writing RM: real model at its preset's size, "
            "random weights (checkpoint not read)"]

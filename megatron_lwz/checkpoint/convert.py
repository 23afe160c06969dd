"""Hugging Face Qwen2 ⇄ megatron-core GPTModel dist checkpoints, streamed layer by layer.

**hf-to-mcore** builds this rank's GPTModel shard (TP=PP=1 in one process, or TP×PP ranks under
``torchrun`` where each rank holds only its shard), fills it layer by layer from lazily opened
safetensors through :mod:`megatron_lwz.checkpoint.mapping`, and saves it with
``dist_checkpointing`` as ``OUT/release`` + marker ``release`` — an ordinary Megatron dist
checkpoint of a GPTModel (model only, ``lwz_meta.json`` kind ``weights``) that loads at any
TP / PP. ``--tp`` / ``--pp`` are checked against the architecture (heads, KV groups, FFN width,
layers) and set the vocabulary padding (``make_vocab_size_divisible_by × TP``, what Megatron-LM
expects at that TP; other TPs load it too, the padded rows are zero). Peak memory: the model
(shard) once plus one layer of HF tensors.

**mcore-to-hf** needs no model and no parallel launch: :class:`McoreCheckpointReader` loads one
layer at a time (a partial sharded state dict over the layer axis) and
:class:`ShardedSafetensorsWriter` flushes shards of bounded size, so memory stays at about one
layer plus one output shard, for any model size. ``config.json``, ``generation_config.json`` and
tokenizer files come from the checkpoint's ``hf/`` directory (stored by hf-to-mcore) or
``--hf-assets``.

``verify`` re-reads the written result and compares it tensor by tensor with the source
(``torch.equal`` after casting both to the lower-precision dtype of the two).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from megatron_lwz.checkpoint import layout
from megatron_lwz.checkpoint.dist import CHECKPOINT_VERSION, McoreCheckpointReader, model_sharded_state_dict
from megatron_lwz.checkpoint.hf_io import (
    HFReader, ShardedSafetensorsWriter, copy_hf_assets, dtype_name, parse_dtype, parse_size,
)
from megatron_lwz.checkpoint.layout import CheckpointError, CheckpointMeta
from megatron_lwz.checkpoint.mapping import (
    NON_LAYER_NAMES, checkpoint_key, hf_names, hf_to_megatron, megatron_to_hf, split_layer_name, tp_shard,
)
from megatron_lwz.models.presets import ModelArch, arch_from_hf_config

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class HfToMcoreConfig:
    """``lwz convert hf-to-mcore``."""

    hf_dir: str
    """HF model directory (config.json + safetensors)."""
    out_dir: str
    """Output save directory: gets ``release/`` and the ``latest`` marker."""
    tp: int = 1
    """Target tensor parallelism (validated; sets vocab padding; = launch TP under torchrun)."""
    pp: int = 1
    """Target pipeline stages (validated; = launch PP under torchrun)."""
    dtype: str = "auto"
    """Stored dtype: auto (config.json's, else the tensors'), fp32, bf16, fp16."""
    make_vocab_size_divisible_by: int = 128
    """Vocab padding multiple (× TP), as in ModelConfig."""
    verify: bool = False
    """Re-read the result and compare every tensor with the HF source."""
    force: bool = False
    """Replace an existing ``release`` checkpoint in out_dir."""
    progress: bool = True
    """Progress bar on rank 0."""


@dataclass(kw_only=True)
class McoreToHfConfig:
    """``lwz convert mcore-to-hf``."""

    ckpt: str
    """A save directory (its marker is followed) or one checkpoint directory."""
    out_dir: str
    """HF output directory."""
    dtype: str = "auto"
    """Output dtype: auto (the checkpoint's), fp32, bf16, fp16."""
    max_shard_size: str = "5GB"
    """Largest safetensors shard."""
    hf_assets: str | None = None
    """Directory with config / tokenizer files when the checkpoint stores none."""
    verify: bool = False
    """Re-read the output and compare every tensor with the checkpoint."""
    force: bool = False
    """Overwrite safetensors already in out_dir."""
    progress: bool = True
    """Progress bar."""


def _bar(iterable, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit="layer", disable=not enabled)


def validate_layout(arch: ModelArch, tp: int, pp: int) -> None:
    """Raise ValueError naming the first dimension that TP / PP does not divide."""
    if tp < 1 or pp < 1:
        raise ValueError(f"--tp and --pp must be ≥ 1, got tp={tp} pp={pp}")
    checks = [("num_attention_heads", arch.num_attention_heads, tp), ("ffn_hidden_size", arch.ffn_hidden_size, tp),
              ("num_layers", arch.num_layers, pp)]
    for field, value, size in checks:
        if value % size:
            raise ValueError(f"{field}={value} is not divisible by {'TP' if size == tp else 'PP'}={size}")
    groups = arch.num_query_groups
    if groups % tp and tp % groups:
        raise ValueError(f"num_query_groups={groups} and TP={tp}: one must divide the other")


def _resolve_dtype(name: str, hf_dir: Path, reader: HFReader) -> torch.dtype:
    if name != "auto":
        return parse_dtype(name)
    cfg = json.loads((hf_dir / "config.json").read_text())
    stated = cfg.get("dtype") or cfg.get("torch_dtype")
    try:
        return parse_dtype(stated) if stated else reader.dtype()
    except ValueError:  # e.g. "auto": use what the files hold
        return reader.dtype()


def _check_hf_names(reader: HFReader, arch: ModelArch) -> None:
    expected, present = set(hf_names(arch)), set(reader.names())
    extra = sorted(present - expected - ({"lm_head.weight"} if arch.tie_word_embeddings else set()))
    missing = sorted(expected - present)
    if extra or missing:
        raise CheckpointError(f"{reader.directory}: tensors do not match a Qwen2 model with this config.json: "
                              f"unexpected {extra[:8]}{'…' if len(extra) > 8 else ''}, missing {missing[:8]}")


@torch.no_grad()
def fill_chunk(chunk, reader: HFReader, arch: ModelArch, padded_vocab: int, ctx, progress: bool) -> None:
    """Copy this rank's TP shard of every HF tensor into one (unwrapped) GPTModel chunk."""
    from megatron_lwz.checkpoint.full_state import global_named_parameters

    params = dict(global_named_parameters(chunk))
    layers = sorted({split_layer_name(n)[0] for n in params} - {None})
    non_layer = [n for n in NON_LAYER_NAMES if n in params]
    filled = set()
    stream = hf_to_megatron(reader.get, arch, padded_vocab, layers=_bar(layers, progress, "hf→mcore"),
                            non_layer=non_layer)
    for name, full in stream:
        if name not in params:
            raise CheckpointError(f"model has no parameter {name!r} (arch/spec mismatch)")
        param = params[name]
        shard = tp_shard(name, full, ctx.tp, ctx.tp_rank)
        if shard.shape != param.shape:
            raise CheckpointError(f"{name}: converted shard {tuple(shard.shape)} != parameter {tuple(param.shape)}")
        param.copy_(shard.to(param.dtype))
        filled.add(name)
    if set(params) - filled:
        raise CheckpointError(f"parameters not filled from the HF checkpoint: {sorted(set(params) - filled)}")


_PRECISION = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _build_filled_model(cfg: HfToMcoreConfig, arch: ModelArch, pcfg, ctx, split: bool):
    """This rank's GPTModel shard, filled from the HF files; returns (BuiltModel, dtype)."""
    from megatron_lwz.config.schema import ModelConfig, PrecisionConfig
    from megatron_lwz.models.gpt import build_model

    hf_dir = Path(cfg.hf_dir)
    with HFReader(hf_dir) as reader:
        _check_hf_names(reader, arch)
        dtype = _resolve_dtype(cfg.dtype, hf_dir, reader)
        # One process builds TP=1 but pads the vocab for the target TP (the stored shapes match).
        divisible = cfg.make_vocab_size_divisible_by * (1 if split else cfg.tp)
        model_cfg = ModelConfig(hf_config=str(hf_dir), make_vocab_size_divisible_by=divisible, layer_spec="local")
        built = build_model(model_cfg, pcfg, PrecisionConfig(dtype=_PRECISION[dtype]), ctx, arch=arch,
                            initialize=False)  # every tensor is filled from the HF files below
        for chunk in built.chunks:
            fill_chunk(chunk, reader, arch, built.padded_vocab_size, ctx, cfg.progress and ctx.is_rank0)
    return built, dtype


def hf_to_mcore(cfg: HfToMcoreConfig) -> Path:
    """Convert; collective under torchrun (world = TP×PP), else one process. Returns ``out/release``."""
    from megatron_lwz import parallel
    from megatron_lwz.checkpoint.dist import save_sharded
    from megatron_lwz.checkpoint.state import staged_save
    from megatron_lwz.config.schema import ParallelConfig

    hf_dir, out = Path(cfg.hf_dir), Path(cfg.out_dir)
    arch = arch_from_hf_config(hf_dir)
    validate_layout(arch, cfg.tp, cfg.pp)
    world = parallel.detect().world_size
    if world > 1 and world != cfg.tp * cfg.pp:
        raise ValueError(f"launched with {world} processes; a parallel conversion needs exactly TP×PP = "
                         f"{cfg.tp * cfg.pp} (or run it in one process)")
    if (out / layout.RELEASE).exists() and not cfg.force:
        raise FileExistsError(f"{out / layout.RELEASE} exists; pass --force to replace it")
    split = world > 1
    pcfg = ParallelConfig(tensor_parallel=cfg.tp if split else 1, pipeline_parallel=cfg.pp if split else 1,
                          distributed_optimizer=False)
    owns_group = not torch.distributed.is_initialized()  # else: the caller's launch; leave it up
    ctx = parallel.init(pcfg) if owns_group else parallel.init_model_parallel(pcfg)
    try:
        built, dtype = _build_filled_model(cfg, arch, pcfg, ctx, split)
        meta = CheckpointMeta(kind="weights", arch=asdict(arch), padded_vocab_size=built.padded_vocab_size,
                              dtype=dtype_name(dtype), hf_assets=True,
                              layout={"tp": cfg.tp, "pp": cfg.pp, "dp": 1, "cp": 1, "vpp": None,
                                      "world_size": cfg.tp * cfg.pp})

        chunks = built.chunks

        def save_fn(tmp: Path) -> None:
            sd = model_sharded_state_dict(chunks)
            sd.update(iteration=0, checkpoint_version=CHECKPOINT_VERSION)
            save_sharded(sd, tmp)

        def finish_fn(tmp: Path) -> None:
            copy_hf_assets(hf_dir, tmp / "hf")
            layout.write_meta(tmp, meta)

        final = staged_save(out, layout.RELEASE, layout.RELEASE, save_fn, finish_fn)
        built = chunks = None  # free the model before verification re-reads everything
        if cfg.verify and ctx.is_rank0:
            report_verification(compare_hf_mcore(hf_dir, final, arch, progress=cfg.progress), hf_dir, final)
        ctx.barrier()
    finally:
        parallel.shutdown() if owns_group else parallel.destroy_model_parallel()
    return final


def _lower_precision(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    return a if torch.finfo(a).eps >= torch.finfo(b).eps else b


def compare_hf_mcore(hf_dir: Path, ckpt_dir: Path, arch: ModelArch, progress: bool = False) -> list[str]:
    """Every HF tensor vs the checkpoint's (mapped with ``megatron_to_hf``); returns mismatches."""
    ckpt = McoreCheckpointReader(ckpt_dir)
    problems: list[str] = []
    seen: set[str] = set()
    with HFReader(hf_dir) as hf:

        def check(name: str, full: torch.Tensor) -> None:
            for hf_name, tensor in megatron_to_hf(name, full, arch):
                seen.add(hf_name)
                if hf_name not in hf:
                    problems.append(f"{hf_name}: missing in {hf_dir}")
                    continue
                ref = hf.get(hf_name)
                dtype = _lower_precision(ref.dtype, tensor.dtype)
                if ref.shape != tensor.shape or not torch.equal(ref.to(dtype), tensor.to(dtype)):
                    problems.append(f"{hf_name}: differs ({tuple(ref.shape)} {ref.dtype} vs "
                                    f"{tuple(tensor.shape)} {tensor.dtype})")

        for name in ("embedding.word_embeddings.weight", "decoder.final_layernorm.weight", "output_layer.weight"):
            key, _ = checkpoint_key(name)
            if ckpt.has(key):
                check(name, ckpt.tensor(key))
        for i in _bar(range(ckpt.num_layers), progress, "verify"):
            for name, full in ckpt.layer(i).items():
                check(name, full)
        extra = sorted(set(hf.names()) - seen - ({"lm_head.weight"} if arch.tie_word_embeddings else set()))
        problems += [f"{name}: in {hf_dir} but not in the checkpoint" for name in extra]
    return problems


def report_verification(problems: list[str], hf_dir: Path, ckpt_dir: Path) -> None:
    if problems:
        raise CheckpointError(f"verification failed ({len(problems)} tensors) between {hf_dir} and {ckpt_dir}:\n  "
                              + "\n  ".join(problems[:20]))
    log.info("verified: every tensor of %s equals %s", hf_dir, ckpt_dir)
    print(f"verify: OK — all tensors equal ({hf_dir} vs {ckpt_dir})")


def _hf_config(arch: ModelArch, dtype: torch.dtype, source: Path | None) -> dict:
    """config.json for the output: the stored one (dtype updated) if it matches ``arch``, else generated."""
    if source is not None and (source / "config.json").is_file():
        try:
            stored_arch = arch_from_hf_config(source / "config.json")
        except ValueError as err:
            log.warning("ignoring %s/config.json: %s", source, err)
        else:
            if stored_arch == arch:
                cfg = json.loads((source / "config.json").read_text())
                keys = [k for k in ("dtype", "torch_dtype") if k in cfg] or ["torch_dtype"]
                cfg.update({k: dtype_name(dtype) for k in keys})
                return cfg
            log.warning("%s/config.json does not match the checkpoint's arch; writing a generated one", source)
    return {**arch.to_hf_config(), "torch_dtype": dtype_name(dtype)}


def _prepare_out(out: Path, force: bool) -> None:
    existing = sorted(out.glob("*.safetensors")) + sorted(out.glob("*.safetensors.index.json"))
    if existing and not force:
        raise FileExistsError(f"{out} already holds safetensors ({existing[0].name}, ...); pass --force to replace")
    for path in existing:
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def mcore_to_hf(cfg: McoreToHfConfig) -> Path:
    """Convert a dist checkpoint's model to an HF Qwen2 directory in one process; returns ``out_dir``."""
    from megatron_lwz.checkpoint.state import resolve_checkpoint

    path = resolve_checkpoint(cfg.ckpt)
    if path is None:
        raise CheckpointError(f"{cfg.ckpt}: no complete checkpoint found")
    meta = layout.read_meta(path)
    arch = ModelArch(**meta.arch)
    reader = McoreCheckpointReader(path)
    if reader.num_layers != arch.num_layers:
        raise CheckpointError(f"{path}: {reader.num_layers} layers stored, metadata says {arch.num_layers}")
    if reader.has("output_layer.weight") and reader.shape("output_layer.weight")[0] < arch.vocab_size:
        raise CheckpointError(f"{path}: the output layer {reader.shape('output_layer.weight')} is not a "
                              "vocabulary projection (a reward model?); only language models export to HF")
    dtype = reader.dtype() if cfg.dtype == "auto" else parse_dtype(cfg.dtype)
    out = Path(cfg.out_dir)
    _prepare_out(out, cfg.force)
    writer = ShardedSafetensorsWriter(out, parse_size(cfg.max_shard_size))

    def emit(name: str, full: torch.Tensor) -> None:
        for hf_name, tensor in megatron_to_hf(name, full, arch):
            writer.add(hf_name, tensor.to(dtype))

    emit("embedding.word_embeddings.weight", reader.tensor(checkpoint_key("embedding.word_embeddings.weight")[0]))
    for i in _bar(range(arch.num_layers), cfg.progress, "mcore→hf"):
        for name, full in sorted(reader.layer(i).items()):
            emit(name, full)
    emit("decoder.final_layernorm.weight", reader.tensor("decoder.final_layernorm.weight"))
    if not arch.tie_word_embeddings:
        emit("output_layer.weight", reader.tensor("output_layer.weight"))
    writer.close()
    assets = path / "hf" if (path / "hf").is_dir() else (Path(cfg.hf_assets) if cfg.hf_assets else None)
    if assets is not None:
        copy_hf_assets(assets, out)
    else:
        log.warning("%s stores no HF config/tokenizer files and --hf-assets was not given: writing "
                    "config.json only (copy the tokenizer files yourself)", path)
    (out / "config.json").write_text(json.dumps(_hf_config(arch, dtype, assets), indent=2) + "\n")
    if cfg.verify:
        report_verification(compare_hf_mcore(out, path, arch, progress=cfg.progress), out, path)
    return out

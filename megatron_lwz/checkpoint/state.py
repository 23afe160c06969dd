"""Training checkpoints: save / resume everything a job needs, at any TP / PP / DP.

A checkpoint is one megatron ``dist_checkpointing`` (torch_dist) save holding

* ``model`` (``model0``.. with virtual stages): ``GPTModel.sharded_state_dict()`` — the keys
  Megatron-LM and NeMo use;
* ``optimizer``: the DistributedOptimizer in ``fully_reshardable`` form (fp32 main params, Adam
  moments, param groups with the step count) — reshardable to any layout; written and read by
  every rank for its own slice only (``distopt_io``), or by megatron's gathering code
  (``SaveIO.distopt_io='gather'``);
* ``opt_param_scheduler`` (``trainer.scheduler.state_dict()``), ``iteration``,
  ``checkpoint_version`` (Megatron-LM's names);

Saves can be asynchronous (``SaveIO.saver``, see ``async_save``): the directory is renamed into
place and the marker moved only when every rank's writer has finished. Plus, next to it, ``lwz_meta.json`` (step, consumed samples / tokens, the job's data-iterator
state, arch, layout), ``config.yaml`` and per-rank RNG files (see ``layout`` for the tree and the
atomic publish protocol, ``rng`` for when RNG states are restored).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from megatron_lwz.checkpoint import layout, rng
from megatron_lwz.checkpoint.dist import (
    CHECKPOINT_VERSION, SHARDING_METADATA, load_sharded, model_keys, model_sharded_state_dict, restrict_to_checkpoint,
    save_sharded,
)
from megatron_lwz.checkpoint.extra_state import drop_absent_extra_state, load_model_chunk
from megatron_lwz.checkpoint.distopt_io import sharded_io
from megatron_lwz.checkpoint.layout import CheckpointError, CheckpointMeta
from megatron_lwz.checkpoint.mcore_fixes import allocate_optimizer_state, distopt_load_fixes, distributed_optimizers
from megatron_lwz.models.presets import ModelArch

log = logging.getLogger(__name__)

# Arch fields that change tensor shapes or the function computed: a mismatch is an error.
_STRICT_ARCH = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
                "vocab_size", "tie_word_embeddings", "qkv_bias", "rope_theta", "norm_eps")


@dataclass(kw_only=True)
class TrainState:
    """Loop position saved with a checkpoint (identical on every rank)."""

    step: int = 0
    """Optimizer steps completed."""
    consumed_samples: int = 0
    """Samples consumed over all DP ranks."""
    consumed_tokens: int = 0
    """Tokens consumed over all DP ranks."""
    data_state: dict = field(default_factory=dict)
    """Opaque, JSON-serialisable data-iterator position (e.g. {"consumed_samples": ...})."""
    extra: dict = field(default_factory=dict)
    """Opaque, JSON-serialisable job extras (best reward so far, ...)."""


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _layout_of(trainer) -> dict[str, Any]:
    ctx = trainer.ctx
    return {"tp": ctx.tp, "pp": ctx.pp, "dp": ctx.dp, "cp": ctx.cp, "vpp": ctx.vpp, "world_size": ctx.world_size}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        mcore = version("megatron-core")
    except PackageNotFoundError:
        mcore = "unknown"
    return {"megatron_core": mcore, "torch": torch.__version__}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _optimizer_format(optimizer: Any) -> str:
    if distributed_optimizers(optimizer):
        return f"distributed/{SHARDING_METADATA['distrib_optim_sharding_type']}"
    return "megatron"


def _full_sharded_state_dict(trainer, *, is_loading: bool, with_optimizer: bool) -> dict:
    chunks = trainer.unwrapped()
    sd = model_sharded_state_dict(chunks)
    if with_optimizer:
        allocate_optimizer_state(trainer.optimizer)  # P2 (fresh optimizer, or a save before step 1)
        sd["optimizer"] = trainer.optimizer.sharded_state_dict(dict(sd), is_loading=is_loading,
                                                               metadata=dict(SHARDING_METADATA))
    return sd


@dataclass(frozen=True)
class SaveIO:
    """How a checkpoint is written / read (the files are the same either way)."""

    distopt_io: str = "sharded"
    """'sharded': each rank writes / reads only its DistOpt slice (``distopt_io``); 'gather':
    megatron's fully_reshardable code (each TP×PP shard gathered on every rank)."""
    fully_parallel: bool = True
    """megatron's fully-parallel save / load wrappers over the DP (× CP) group."""
    saver: Any = None
    """An ``AsyncSaver``: the save is scheduled asynchronously (published when finalized)."""

    @classmethod
    def from_config(cls, ckpt, saver=None) -> "SaveIO":
        return cls(distopt_io=ckpt.distopt_io, fully_parallel=ckpt.fully_parallel, saver=saver)

    def group(self, trainer):
        return trainer.ctx.dp_cp_group if self.fully_parallel and trainer.ctx.dp * trainer.ctx.cp > 1 else None

    def optimizer_io(self, trainer, loading: bool):
        if self.distopt_io == "sharded" and trainer.optimizer is not None:
            return sharded_io(trainer.optimizer, loading=loading)
        return contextlib.nullcontext([])


def _write_sidecar(tmp: Path, trainer, state: TrainState, config_dict: dict, hf_assets) -> None:
    """Rank 0: config.yaml, hf/ assets, then lwz_meta.json (the last file written)."""
    (tmp / "config.yaml").write_text(yaml.safe_dump(config_dict, sort_keys=False), encoding="utf-8")
    if hf_assets is not None:
        from megatron_lwz.checkpoint.hf_io import copy_hf_assets

        copy_hf_assets(Path(hf_assets), tmp / "hf")
    meta = CheckpointMeta(
        kind="train", step=state.step, consumed_samples=state.consumed_samples,
        consumed_tokens=state.consumed_tokens, data_state=state.data_state, extra=state.extra,
        arch=asdict(trainer.arch), padded_vocab_size=trainer.built.padded_vocab_size,
        dtype=_dtype_name(trainer.dtype), layout=_layout_of(trainer), optimizer=_optimizer_format(trainer.optimizer),
        rng=True, hf_assets=hf_assets is not None, versions=_versions(),
    )
    layout.write_meta(tmp, meta)


def staged_save(root: Path, name: str, marker_value: str, save_fn, finish_fn, keep_last: int = 0) -> Path:
    """Collective publish protocol shared by training saves and conversions.

    Rank 0 clears stale ``.tmp.*`` directories and creates ``root/.tmp.<name>``; every rank runs
    ``save_fn(tmp)`` (the collective dist_checkpointing save plus per-rank files); rank 0 runs
    ``finish_fn(tmp)`` (sidecar files, ``lwz_meta.json`` last), renames the directory to
    ``root/<name>``, replaces the marker and prunes to ``keep_last``.
    """
    tmp, final = _begin_save(root, name)
    save_fn(tmp)
    _publish(root, tmp, final, marker_value, finish_fn, keep_last)
    return final


def _begin_save(root: Path, name: str) -> tuple[Path, Path]:
    tmp, final = layout.tmp_dir_for(root, name), root / name
    if _rank() == 0:
        root.mkdir(parents=True, exist_ok=True)
        layout.remove_stale_tmp(root)
        tmp.mkdir()
    _barrier()
    return tmp, final


def _publish(root: Path, tmp: Path, final: Path, marker_value: str, finish_fn, keep_last: int) -> None:
    """Collective, after every rank's files are written: sidecar, rename, marker, prune (rank 0)."""
    _barrier()
    error = None
    if _rank() == 0:
        try:
            finish_fn(tmp)
            layout.publish(tmp, final, marker_value)
            for old in layout.prune(root, keep_last, protect=final):
                log.info("deleted old checkpoint %s (keep_last=%d)", old, keep_last)
        except Exception as err:  # every rank must learn of it, or the others wait forever
            error = f"{type(err).__name__}: {err}"
    error = _from_rank0(error)
    if error is not None:
        raise CheckpointError(f"saving {final} failed on rank 0: {error}")


def _from_rank0(value):
    """``value`` of rank 0 on every rank (also a barrier)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def save_checkpoint(trainer, state: TrainState, save_dir: str | Path, *, config_dict: dict, keep_last: int,
                    hf_assets: str | Path | None = None, io: SaveIO = SaveIO()) -> Path:
    """Collective: save model, optimizer, scheduler, RNG and ``state`` as ``save_dir/iter_{step:07d}``.

    Written into ``save_dir/.tmp.iter_*``, renamed into place, then the ``latest`` marker is
    replaced and all but the ``keep_last`` newest checkpoints are deleted (``keep_last ≤ 0``
    keeps all). ``hf_assets``: a directory whose HF config / tokenizer files are stored under
    ``hf/`` (so ``mcore-to-hf`` can restore them). ``io.saver``: the save is only scheduled; the
    rename and the marker happen when the saver finalizes it on every rank (a pending save is
    finalized first). Returns the directory the checkpoint is (or will be) published as.
    """
    try:  # checked on every rank before any collective work (the state is the same everywhere)
        json.dumps({"data_state": state.data_state, "extra": state.extra})
        yaml.safe_dump(config_dict)
    except (TypeError, yaml.YAMLError) as err:
        raise CheckpointError(f"TrainState.data_state / extra must be JSON-serialisable and config_dict "
                              f"plain YAML data: {err}") from None
    state, config_dict = copy.deepcopy(state), copy.deepcopy(config_dict)  # the loop goes on changing them
    if io.saver is not None:
        io.saver.finalize()
    root = Path(save_dir)
    tmp, final = _begin_save(root, layout.iteration_name(state.step))
    with io.optimizer_io(trainer, loading=False):
        sd = _full_sharded_state_dict(trainer, is_loading=False, with_optimizer=True)
        sd["opt_param_scheduler"] = trainer.scheduler.state_dict()
        sd["iteration"] = state.step
        sd["checkpoint_version"] = CHECKPOINT_VERSION
        request = save_sharded(sd, tmp, parallel_group=io.group(trainer), async_save=io.saver is not None)
    rng.save(tmp, _rank())

    def publish() -> None:
        _publish(root, tmp, final, str(state.step), lambda t: _write_sidecar(t, trainer, state, config_dict, hf_assets),
                 keep_last)

    if io.saver is None:
        publish()
    else:
        request.add_finalize_fn(publish)
        io.saver.schedule(request)
    return final


def read_checkpoint_meta(path: str | Path) -> CheckpointMeta:
    """Metadata of a checkpoint directory or of the latest checkpoint under a save directory."""
    found = layout.latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"{path}: no complete checkpoint found")
    return layout.read_meta(found)


def read_checkpoint_config(path: str | Path) -> dict:
    """The resolved job config stored with a checkpoint."""
    found = layout.latest_checkpoint(path)
    if found is None or not (found / "config.yaml").is_file():
        raise CheckpointError(f"{path}: no checkpoint with a config.yaml")
    return yaml.safe_load((found / "config.yaml").read_text()) or {}


def check_arch(meta: CheckpointMeta, arch: ModelArch, where: Path, weights_only: bool = False) -> None:
    """Raise :class:`CheckpointError` listing every arch field that differs (checkpoint vs model).

    Weights-only loads may (un)tie the embeddings: the output layer is then re-initialised."""
    stored = meta.arch
    if not stored:
        raise CheckpointError(f"{where}: checkpoint metadata has no model arch")
    lenient = ("tie_word_embeddings",) if weights_only else ()
    for name in lenient:
        if stored.get(name) != getattr(arch, name):
            log.warning("%s: %s %r (checkpoint) vs %r (model)", where, name, stored.get(name), getattr(arch, name))
    diffs = [f"{name} {stored.get(name)!r} vs {getattr(arch, name)!r}"
             for name in _STRICT_ARCH if name not in lenient and stored.get(name) != getattr(arch, name)]
    if diffs:
        raise CheckpointError(f"{where}: config mismatch: {'; '.join(diffs)} (checkpoint vs model)")
    if stored.get("max_position_embeddings") != arch.max_position_embeddings:
        log.warning("%s: max_position_embeddings %s (checkpoint) vs %s (model)", where,
                    stored.get("max_position_embeddings"), arch.max_position_embeddings)


def resolve_checkpoint(load_dir: str | Path) -> Path | None:
    """The checkpoint directory to load: ``load_dir`` itself, its marker's target, or None if
    ``load_dir`` holds no complete checkpoint. Raises for a checkpoint-like but partial directory
    named explicitly."""
    load_dir = Path(load_dir)
    found = layout.latest_checkpoint(load_dir)
    if found is None and load_dir.is_dir() and layout.step_of(load_dir) is not None:
        raise CheckpointError(f"{load_dir} is not a complete checkpoint: missing "
                              f"{', '.join(layout.missing_files(load_dir))} (a save was interrupted?)")
    if found is None and load_dir.is_dir():
        partial = sorted(p.name for p in load_dir.iterdir() if p.name.startswith(layout.TMP_PREFIX)
                         or (layout.step_of(p) is not None and not layout.is_complete(p)))
        if partial:
            log.warning("%s: ignoring incomplete checkpoint directories %s", load_dir, partial)
    return found


def _load_scheduler(trainer, stored: dict, where: Path) -> None:
    scheduler = trainer.scheduler
    current = scheduler.state_dict()
    changed = {k: (stored.get(k), v) for k, v in current.items() if k != "num_steps" and stored.get(k) != v}
    if changed:
        log.warning("%s: LR schedule differs from the checkpoint, using the current config: %s", where, changed)
    scheduler.num_steps = 0
    previous = scheduler.override_opt_param_scheduler
    scheduler.override_opt_param_scheduler = True  # config wins; only the step count comes from the checkpoint
    try:
        scheduler.load_state_dict(stored)
    finally:
        scheduler.override_opt_param_scheduler = previous


def _restore_rng(trainer, path: Path, meta: CheckpointMeta) -> None:
    if not meta.rng:
        return
    if meta.layout != _layout_of(trainer):
        if _rank() == 0:
            log.warning("%s: parallel layout changed %s -> %s; RNG states not restored (fresh seeds)",
                        path, meta.layout, _layout_of(trainer))
        return
    rng.restore(rng.load(path, _rank()))


def _load_model_only(trainer, path: Path) -> None:
    """Model weights only; tensors the checkpoint lacks keep their init (see ``restrict_to_checkpoint``)."""
    chunks = trainer.unwrapped()
    sd = model_sharded_state_dict(chunks)
    fresh, untied = restrict_to_checkpoint(sd, path, trainer.arch.vocab_size)
    no_extra = drop_absent_extra_state(sd.values(), path, log_rank0=_rank() == 0)  # TE model, non-TE checkpoint
    loaded = load_sharded(sd, path)
    for key, chunk in zip(model_keys(len(chunks)), chunks):
        result = chunk.load_state_dict(loaded[key], strict=False)
        unexpected = set(result.unexpected_keys)
        missing = set(result.missing_keys) - set(fresh) - set(no_extra)
        if missing or unexpected:
            raise CheckpointError(f"{path}: weights do not fit the model: missing {sorted(missing)}, "
                                  f"unexpected {sorted(unexpected)}")
    if _rank() == 0 and fresh:
        log.warning("%s: kept freshly initialised (absent from the checkpoint or shaped differently): %s",
                    path, sorted(set(fresh)))
    if _rank() == 0 and untied:
        log.warning("%s: tied checkpoint, untied model: output layer initialised from the input embedding", path)
    if trainer.optimizer is not None:  # forward-only models (Writing RM, KL reference) have none
        trainer.optimizer.reload_model_params()  # separate fp32 main params (bf16) follow the new weights


def _load_full(trainer, path: Path, meta: CheckpointMeta, io: SaveIO) -> None:
    chunks = trainer.unwrapped()
    if meta.optimizer != _optimizer_format(trainer.optimizer):
        raise CheckpointError(f"{path}: optimizer state is {meta.optimizer!r} but the trainer uses "
                              f"{_optimizer_format(trainer.optimizer)!r}; load with weights_only=True "
                              "(fresh optimizer) or match parallel.distributed_optimizer")
    with io.optimizer_io(trainer, loading=True):
        sd = _full_sharded_state_dict(trainer, is_loading=True, with_optimizer=True)
        no_extra = drop_absent_extra_state([sd[k] for k in model_keys(len(chunks))], path, log_rank0=_rank() == 0)
        loaded = load_sharded(sd, path, parallel_group=io.group(trainer))
        for key, chunk in zip(model_keys(len(chunks)), chunks):
            load_model_chunk(chunk, loaded[key], allowed_missing=no_extra, where=path)
        with distopt_load_fixes(trainer.optimizer):  # P3 + P4
            trainer.optimizer.load_state_dict(loaded["optimizer"])
    _load_scheduler(trainer, loaded["opt_param_scheduler"], path)


def load_checkpoint(trainer, load_dir: str | Path, *, weights_only: bool = False,
                    expected_arch: ModelArch | None = None, io: SaveIO = SaveIO()) -> TrainState | None:
    """Collective: restore ``trainer`` (built fresh, any layout) from ``load_dir``.

    ``load_dir`` is a save directory (its ``latest`` marker is followed) or one checkpoint
    directory. Returns the saved :class:`TrainState`, or None when ``load_dir`` holds no
    checkpoint yet (a fresh run; not allowed with ``weights_only``). ``weights_only`` (or a
    weights-only checkpoint such as an ``hf-to-mcore`` output) loads the model only and returns
    step 0; model tensors the checkpoint lacks (a new head) keep their initialisation, and an
    untied model takes its output layer from a tied checkpoint's embedding. Raises
    :class:`CheckpointError` naming the problem: partial directory, arch mismatch (stored arch vs
    ``expected_arch`` or the trainer's), optimizer format.
    """
    path = resolve_checkpoint(load_dir)
    if path is None:
        if weights_only:
            raise CheckpointError(f"{load_dir}: no checkpoint to load weights from "
                                  "(convert one with `lwz convert hf-to-mcore`)")
        return None
    meta = layout.read_meta(path)
    model_only = weights_only or meta.kind == "weights" or meta.optimizer is None
    check_arch(meta, expected_arch or trainer.arch, path, weights_only=model_only)
    if model_only:
        if not weights_only and _rank() == 0:
            log.info("%s holds weights only: fresh optimizer and schedule, step 0", path)
        _load_model_only(trainer, path)
        return TrainState()
    _load_full(trainer, path, meta, io)
    _restore_rng(trainer, path, meta)
    _barrier()
    return TrainState(step=meta.step, consumed_samples=meta.consumed_samples, consumed_tokens=meta.consumed_tokens,
                      data_state=dict(meta.data_state), extra=dict(meta.extra))

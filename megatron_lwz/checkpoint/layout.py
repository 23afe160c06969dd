"""On-disk layout of checkpoints: naming, atomic publish, the ``latest`` marker, discovery, pruning.

Pure standard library (no torch), so tools and tests can inspect checkpoint directories cheaply::

    SAVE_DIR/
      latest_checkpointed_iteration.txt   the marker: "6" or "release"; replaced atomically, last
      iter_0000003/                       one complete checkpoint (Megatron-LM's naming)
        .metadata  __*_*.distcp  metadata.json   megatron dist_checkpointing (torch_dist) files
        lwz_meta.json                     ours: step, consumed counts, data state, arch, layout
        config.yaml                       the resolved job config
        rng/rank_00000.pt ...             per-rank RNG states
        hf/                               optional: config.json, generation_config.json, tokenizer
      iter_0000006/
      release/                            a converted (weights-only) checkpoint: marker "release"
      .tmp.iter_0000009/                  a save in progress (or killed): never picked up

A directory is *complete* when it holds megatron's ``.metadata`` and ``metadata.json`` and our
``lwz_meta.json`` (written last, before the rename). Saves write into ``.tmp.<name>``, rename it
into place, then replace the marker; a save killed at any point leaves the marker on the
previous checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MARKER = "latest_checkpointed_iteration.txt"
META = "lwz_meta.json"
RELEASE = "release"
TMP_PREFIX = ".tmp."
FORMAT = "megatron_lwz.checkpoint/1"
_ITER_RE = re.compile(r"^iter_(\d{7,})$")
_REQUIRED = (".metadata", "metadata.json", META)


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or incompatible; the message names what and where."""


@dataclass(kw_only=True)
class CheckpointMeta:
    """Contents of ``lwz_meta.json``: everything besides tensors needed to resume or convert."""

    format: str = FORMAT
    """Layout version of this metadata."""
    kind: str = "train"
    """'train' (model + optimizer + scheduler + RNG) or 'weights' (model only, e.g. converted)."""
    step: int = 0
    """Optimizer steps completed."""
    consumed_samples: int = 0
    """Training samples consumed so far (all DP ranks)."""
    consumed_tokens: int = 0
    """Training tokens consumed so far (all DP ranks)."""
    data_state: dict = field(default_factory=dict)
    """Opaque data-iterator position from the job (rank 0's copy)."""
    extra: dict = field(default_factory=dict)
    """Opaque job extras (rank 0's copy)."""
    arch: dict = field(default_factory=dict)
    """The ModelArch (Qwen2 dimensions) the weights belong to."""
    padded_vocab_size: int = 0
    """Rows of the stored embedding / output layer (vocab padded for the saving TP)."""
    dtype: str = "float32"
    """dtype of the stored model weights."""
    layout: dict = field(default_factory=dict)
    """Parallel layout at save time: tp, pp, dp, cp, vpp, world_size."""
    optimizer: str | None = None
    """Optimizer state format ('distributed/fully_reshardable', 'fp32'), None if absent."""
    rng: bool = False
    """Per-rank RNG states stored under rng/."""
    hf_assets: bool = False
    """Hugging Face config / tokenizer files stored under hf/."""
    versions: dict = field(default_factory=dict)
    """megatron-core / torch versions that wrote the checkpoint."""


def iteration_name(step: int) -> str:
    return f"iter_{step:07d}"


def step_of(path: Path) -> int | None:
    """Step of an ``iter_NNNNNNN`` directory (0 for ``release``), None for anything else."""
    if path.name == RELEASE:
        return 0
    match = _ITER_RE.match(path.name)
    return int(match.group(1)) if match else None


def missing_files(path: Path) -> list[str]:
    """Files that a complete checkpoint directory has and ``path`` lacks."""
    if not path.is_dir():
        return ["(directory does not exist)"]
    return [name for name in _REQUIRED if not (path / name).is_file()]


def is_complete(path: Path) -> bool:
    return not path.name.startswith(TMP_PREFIX) and not missing_files(path)


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints directly under ``root`` (``iter_*`` and ``release``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if step_of(p) is not None and is_complete(p)]
    return sorted(found, key=lambda p: (p.name != RELEASE, step_of(p)))


def read_marker(root: Path) -> Path | None:
    """The checkpoint directory the marker names (whether or not it is complete)."""
    marker = root / MARKER
    if not marker.is_file():
        return None
    text = marker.read_text().strip()
    if text == RELEASE:
        return root / RELEASE
    if not text.isdigit():
        raise CheckpointError(f"{marker}: expected an iteration number or 'release', got {text!r}")
    return root / iteration_name(int(text))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint to resume from: ``root`` itself if it is one, else the marker's target,
    else (marker missing or stale) the newest complete checkpoint. Never a partial directory."""
    root = Path(root)
    if not root.is_dir():
        return None
    if is_complete(root):
        return root
    target = read_marker(root)
    if target is not None:
        if is_complete(target):
            return target
        log.warning("%s names %s, which is incomplete (missing %s); using the newest complete checkpoint",
                    root / MARKER, target.name, ", ".join(missing_files(target)))
    complete = list_checkpoints(root)
    return complete[-1] if complete else None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` via a temporary file + fsync + ``os.replace`` (readers see old or new)."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_meta(path: Path, meta: CheckpointMeta) -> None:
    try:
        text = json.dumps(asdict(meta), indent=2, sort_keys=False)
    except TypeError as err:
        raise CheckpointError(f"checkpoint metadata must be JSON-serialisable (data_state / extra): {err}") from None
    write_text_atomic(path / META, text + "\n")


def read_meta(path: str | Path) -> CheckpointMeta:
    """``lwz_meta.json`` of a checkpoint directory (unknown keys from newer versions are ignored)."""
    path = Path(path)
    file = path / META
    if not file.is_file():
        raise CheckpointError(f"{path}: not a megatron_lwz checkpoint (no {META})")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file}: invalid JSON: {err}") from None
    known = set(CheckpointMeta.__dataclass_fields__)
    return CheckpointMeta(**{k: v for k, v in data.items() if k in known})


def tmp_dir_for(root: Path, name: str) -> Path:
    return root / f"{TMP_PREFIX}{name}"


def remove_stale_tmp(root: Path) -> list[Path]:
    """Delete leftovers of killed saves (``.tmp.*`` directories); returns what was removed."""
    removed = []
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(TMP_PREFIX) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def publish(tmp: Path, final: Path, marker_value: str) -> None:
    """Rename a finished ``tmp`` directory to ``final`` and point the marker at it (last step)."""
    if final.exists():  # re-saving the same step: move the old copy aside first
        trash = final.with_name(f"{TMP_PREFIX}old.{final.name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)
    write_text_atomic(final.parent / MARKER, marker_value + "\n")


def prune(root: Path, keep_last: int, protect: Path | None = None) -> list[Path]:
    """Delete all but the ``keep_last`` newest complete ``iter_*`` checkpoints (≤ 0 keeps all).

    ``release`` and the marker's target are never deleted. Returns the deleted directories.
    """
    if keep_last <= 0:
        return []
    keep = {p.resolve() for p in (protect, read_marker(root)) if p is not None}
    iters = [p for p in list_checkpoints(root) if p.name != RELEASE]
    doomed = [p for p in iters[:-keep_last] if p.resolve() not in keep]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def describe(path: Path) -> dict[str, Any]:
    """A short summary of one checkpoint directory (for tools and error messages)."""
    meta = read_meta(path)
    return {"path": str(path), "kind": meta.kind, "step": meta.step, "layout": meta.layout,
            "dtype": meta.dtype, "optimizer": meta.optimizer, "arch": meta.arch}

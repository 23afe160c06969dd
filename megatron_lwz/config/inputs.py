"""Every input path of a job, checked before any process group or model exists. Stdlib only.

``check_input_paths(cfg)`` runs at job start (``lwz pretrain | train-rm | grpo``, cli/jobs.py) and in
``slurm/launch.sh --check`` (slurm/check_recipe.py), so a recipe pointing at data or checkpoints that
are not there fails on the login node or in the job's first second, with the field and the path,
instead of after minutes of model building on 64 GPUs. ``lwz rehearse`` does not call it (it replaces
the inputs by stand-ins on purpose).

The inputs are listed in :data:`INPUTS` by dotted field name; a field the job's config does not have
is skipped, a field set to null is not an input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from megatron_lwz.config.base import ConfigError


@dataclass(frozen=True)
class InputPath:
    """One input field: its dotted name, what must exist there, and when it is needed."""

    field: str
    kind: str
    """'file', 'dir', 'file_or_dir', 'tokenizer' (file, dir or hub id), 'prefix' (PREFIX.bin + PREFIX.idx),
    'checkpoint' (a complete checkpoint, or a save directory holding one)."""
    needed: Callable[[Any], bool] = lambda cfg: True


def _resume_missing(cfg: Any) -> bool:
    """``checkpoint.load_dir`` is read unless the run resumes from its own save_dir (engine/session.py),
    and always by GRPO's frozen KL reference (rl/runtime.py)."""
    from megatron_lwz.checkpoint.layout import latest_checkpoint

    ckpt = cfg.checkpoint
    save_dir = Path(ckpt.save_dir or Path(cfg.logging.run_dir) / "checkpoints")
    kl_reference = getattr(getattr(getattr(cfg, "rl", None), "loss", None), "kl_coef", 0) > 0
    return kl_reference or latest_checkpoint(save_dir) is None


INPUTS = (
    InputPath("model.hf_config", "file_or_dir"),
    InputPath("tokenizer.path", "tokenizer"),
    InputPath("data.tokenizer.path", "tokenizer"),
    InputPath("data.sources[].prefix", "prefix"),
    InputPath("data.train_path", "file"),
    InputPath("data.valid_path", "file"),
    InputPath("prompts.path", "file"),
    InputPath("rl.eval.path", "file"),
    InputPath("writing_rm.checkpoint", "checkpoint"),
    InputPath("writing_rm.model.hf_config", "file_or_dir"),
    InputPath("reward.format.semantic.model_path", "dir", lambda cfg: cfg.reward.format.semantic.enabled),
    InputPath("checkpoint.load_dir", "checkpoint", _resume_missing),
)
"""The input fields of the three jobs (pretrain, train-rm, grpo)."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _values(cfg: Any, dotted: str) -> list[tuple[str, Any]]:
    """``[(concrete field name, value)]`` of a dotted name; ``a[].b`` expands over the list ``a``."""
    found = [("", cfg)]
    for part in dotted.split("."):
        many = part.endswith("[]")
        name = part[:-2] if many else part
        nxt = []
        for prefix, obj in found:
            if obj is None or not hasattr(obj, name):
                continue
            value = getattr(obj, name)
            where = f"{prefix}.{name}" if prefix else name
            nxt += [(f"{where}[{i}]", v) for i, v in enumerate(value)] if many else [(where, value)]
        found = nxt
    return found


def _problem(kind: str, value: str) -> str | None:
    """Why ``value`` is not a usable input of ``kind``; None when it is."""
    path = Path(value)
    if kind == "prefix":
        missing = [s for s in (".bin", ".idx") if not Path(value + s).is_file()]
        return f"{', '.join(value + s for s in missing)} not found (run `lwz preprocess`)" if missing else None
    if kind == "tokenizer" and not path.exists() and _HUB_ID.match(value):
        return None  # a Hugging Face hub id, fetched by the tokenizer loader
    if not path.exists():
        return f"{value} does not exist"
    if kind == "file" and not path.is_file():
        return f"{value} is not a file"
    if kind == "dir" and not path.is_dir():
        return f"{value} is not a directory"
    if kind == "checkpoint":
        from megatron_lwz.checkpoint.layout import latest_checkpoint

        if latest_checkpoint(path) is None:
            return f"{value} holds no complete checkpoint"
    return None


def check_input_paths(cfg: Any) -> list[str]:
    """Raise :class:`ConfigError` listing every missing input as ``field: path …``; returns the
    ``field=path`` of every input checked."""
    checked, problems = [], []
    for spec in INPUTS:
        for field, value in _values(cfg, spec.field):
            if value is None or value == "" or not spec.needed(cfg):
                continue
            checked.append(f"{field}={value}")
            why = _problem(spec.kind, str(value))
            if why is not None:
                problems.append(f"{field}: {why}")
    if problems:
        raise ConfigError("input paths missing (checked before building any model): " + "; ".join(problems))
    return checked

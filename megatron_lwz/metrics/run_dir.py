"""Run directory bookkeeping: resolved config, package versions and git SHA, written on rank 0."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from megatron_lwz.config.base import dump_yaml

PACKAGES = ("torch", "megatron-core", "transformers", "tokenizers", "sentencepiece", "safetensors",
            "transformer-engine", "vllm", "numpy")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on (None = not installed)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha(root: Path | None = None) -> str | None:
    root = root or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def prepare_run_dir(run_dir: str | Path, config: Any, *, is_rank0: bool, extra: dict | None = None) -> Path:
    """Create ``run_dir``; on rank 0 write ``config.yaml`` (resolved) and ``versions.json``."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    if is_rank0:
        dump_yaml(config, path / "config.yaml")
        info = {"versions": package_versions(), "git_sha": git_sha(), "argv": sys.argv,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})}
        (path / "versions.json").write_text(json.dumps(info, indent=2))
    return path

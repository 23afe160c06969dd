"""Known console noise of the pinned stack, filtered once at CLI start; every other warning stays.

A demo run used to print megatron-core's "GPTModel IS DEPRECATED" for every model built (policy,
reference, Writing RM, each virtual-pipeline chunk) and torch's "No CUDA runtime is found" on every
rank. Each rule names the exact logger (or warning category + module) and the message prefix, so a
new or differently worded warning from the same place still shows. ``tests/unit/cli/test_noise.py``
checks that every rule still matches a message in the installed source, so a rule cannot outlive the
warning it was written for unnoticed. ``LWZ_SHOW_KNOWN_NOISE=1`` turns the filter off.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Noise:
    """One known, harmless message."""

    source: str
    """Logger name (``kind='log'``) or the warning's module (``kind='warning'``)."""
    prefix: str
    """Start of the message text."""
    reason: str
    """Why it is harmless for megatron_lwz."""
    kind: str = "log"
    """'log' (a ``logging`` record) or 'warning' (``warnings.warn``)."""
    cpu_only: bool = False
    """Harmless only without a GPU (on a GPU node the same message means a broken install)."""


KNOWN_NOISE: tuple[Noise, ...] = (
    Noise("megatron.core.models.gpt.gpt_model", "GPTModel IS DEPRECATED",
          "megatron-core 0.19 logs it per GPTModel built; the pinned GPTModel is what we use on purpose"),
    Noise("megatron.core.distributed.distributed_data_parallel",
          "DistributedDataParallel: full_param_layout not provided",
          "advice to callers of DDP; the layout it auto-computes is the one the optimizer uses"),
    Noise("torch.utils.cpp_extension", "No CUDA runtime is found",
          "a CPU box with a CUDA_HOME directory; nothing is compiled", cpu_only=True),
    Noise("megatron.core", "Transformer Engine and Apex are not installed",
          "CPU boxes must not install Transformer Engine; torch fallbacks are used", "warning", cpu_only=True),
    Noise("megatron.core", "Apex is not installed. Falling back to Torch Norm",
          "the local layer spec uses torch's RMSNorm", "warning", cpu_only=True),
    Noise("megatron.core.transformer.transformer_config", "full scope is deprecated",
          "megatron-core's own default cuda_graph_scope; CUDA graphs are off", "warning"),
)


class _PrefixFilter(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__("megatron_lwz.noise")
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def _has_gpu() -> bool:
    """An NVIDIA driver is loaded (checked without importing torch, so ``lwz --help`` stays light)."""
    return Path("/proc/driver/nvidia").exists()


def active_rules(has_gpu: bool | None = None) -> list[Noise]:
    """The rules that apply on this machine."""
    gpu = _has_gpu() if has_gpu is None else has_gpu
    return [rule for rule in KNOWN_NOISE if not (rule.cpu_only and gpu)]


def install(rules: list[Noise] | None = None) -> int:
    """Install the filters (idempotent); returns how many rules are active."""
    if os.environ.get("LWZ_SHOW_KNOWN_NOISE") == "1":
        return 0
    rules = active_rules() if rules is None else rules
    by_logger: dict[str, tuple[str, ...]] = {}
    for rule in rules:
        if rule.kind == "log":
            by_logger[rule.source] = by_logger.get(rule.source, ()) + (rule.prefix,)
        else:
            warnings.filterwarnings("ignore", message=re.escape(rule.prefix), module=re.escape(rule.source))
    for name, prefixes in by_logger.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _PrefixFilter)]:
            logger.removeFilter(old)
        logger.addFilter(_PrefixFilter(prefixes))
    return len(rules)

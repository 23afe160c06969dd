"""Known console noise is filtered, real warnings from the same places still show, and every rule
matches a message that the installed megatron-core / torch actually contain."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import pytest

from megatron_lwz.cli import noise


@pytest.fixture
def installed():
    saved = warnings.filters[:]
    noise.install(noise.active_rules(has_gpu=False))
    yield
    warnings.filters[:] = saved
    for rule in noise.KNOWN_NOISE:
        logger = logging.getLogger(rule.source)
        for f in list(logger.filters):
            if isinstance(f, noise._PrefixFilter):
                logger.removeFilter(f)


def test_log_noise_dropped_real_warnings_kept(installed, caplog):
    caplog.set_level(logging.WARNING)
    gpt = logging.getLogger("megatron.core.models.gpt.gpt_model")
    gpt.warning("GPTModel IS DEPRECATED. GPTModel is only accepting critical bug fixes")
    gpt.warning("something real went wrong")
    logging.getLogger("torch.utils.cpp_extension").warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/x")
    logging.getLogger("megatron.core.other").warning("GPTModel IS DEPRECATED (other logger: kept)")
    assert [r.getMessage() for r in caplog.records] == ["something real went wrong",
                                                        "GPTModel IS DEPRECATED (other logger: kept)"]


def test_install_is_idempotent(installed):
    noise.install(noise.active_rules(has_gpu=False))
    assert len([f for f in logging.getLogger("megatron.core.models.gpt.gpt_model").filters
                if isinstance(f, noise._PrefixFilter)]) == 1


def test_warning_noise_dropped_real_warnings_kept(installed):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        noise.install(noise.active_rules(has_gpu=False))  # catch_warnings reset the filters: install again
        warnings.warn_explicit("Apex is not installed. Falling back to Torch Norm", UserWarning, "backends.py", 34,
                               module="megatron.core.models.backends")
        warnings.warn_explicit("Apex is not installed. Falling back to Torch Norm", UserWarning, "mine.py", 1,
                               module="mypackage")
        warnings.warn_explicit("a real megatron warning", UserWarning, "backends.py", 35,
                               module="megatron.core.models.backends")
    assert [(str(w.message), w.filename) for w in caught] == [
        ("Apex is not installed. Falling back to Torch Norm", "mine.py"), ("a real megatron warning", "backends.py")]


def test_gpu_keeps_cpu_only_messages():
    gpu = {r.prefix for r in noise.active_rules(has_gpu=True)}
    assert "No CUDA runtime is found" not in gpu and "GPTModel IS DEPRECATED" in gpu


def _source_files(module: str) -> list[Path]:
    """The module's file (or a package's tree), located without importing it."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    assert spec is not None and spec.submodule_search_locations, top
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*rest)
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


@pytest.mark.parametrize("rule", noise.KNOWN_NOISE, ids=lambda r: r.prefix[:24])
def test_every_rule_matches_the_installed_source(rule):
    """A rule whose message disappeared (or changed wording) from the pinned package fails here."""
    texts = (p.read_text(encoding="utf-8", errors="replace") for p in _source_files(rule.source))
    needle = rule.prefix.split(". ")[0][:40]
    assert any(needle in t for t in texts), f"{rule.source} no longer contains {needle!r}"

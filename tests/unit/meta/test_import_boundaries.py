"""Import boundaries (style rule 3), checked on the source text of every module.

* process-group state (``megatron.core.parallel_state``) only in megatron_lwz/parallel/;
* ``vllm`` only in megatron_lwz/rollout/;
* ``megatron.core`` only in parallel/, models/, engine/, checkpoint/, data/, rehearse/ (the GPU
  rehearsal swaps TE-only megatron modules for stand-ins) and config/megatron.py (the translators);
* Megatron-LM's training package (``megatron`` + ``.training``) nowhere (package, tools, tests);
* importing the package, its config, its CLI entry, the rewards and the RL math loads no megatron/vllm.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PKG = ROOT / "megatron_lwz"
MEGATRON_OK = ("parallel", "models", "engine", "checkpoint", "data", "rehearse")
TRAINING = "megatron." + "training"  # spelled so that a text search for the import finds only real ones


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _package_files():
    for path in PKG.rglob("*.py"):
        yield path, path.relative_to(PKG).parts[0] if len(path.relative_to(PKG).parts) > 1 else ""


def test_parallel_state_only_in_parallel():
    bad = [f"{p.relative_to(ROOT)}: {n}" for p, area in _package_files() if area != "parallel"
           for n in _imports(p) if n.startswith("megatron.core.parallel_state") or n == "megatron.core.mpu"]
    assert not bad, f"process-group state touched outside megatron_lwz/parallel/: {bad}"


def test_vllm_only_in_rollout():
    bad = [f"{p.relative_to(ROOT)}: {n}" for p, area in _package_files() if area != "rollout"
           for n in _imports(p) if n == "vllm" or n.startswith("vllm.")]
    assert not bad, f"vllm imported outside megatron_lwz/rollout/: {bad}"


def test_megatron_core_only_in_allowed_packages():
    bad = []
    for path, area in _package_files():
        rel = str(path.relative_to(ROOT))
        if area in MEGATRON_OK or rel == "megatron_lwz/config/megatron.py":
            continue
        bad += [f"{rel}: {n}" for n in _imports(path) if n == "megatron" or n.startswith("megatron.core")]
    assert not bad, f"megatron.core imported outside {MEGATRON_OK}: {bad}"


def test_never_megatron_training():
    bad = []
    for area in ("megatron_lwz", "tools", "tests"):
        for path in (ROOT / area).rglob("*.py"):
            bad += [f"{path.relative_to(ROOT)}: {n}" for n in _imports(path) if n.startswith(TRAINING)]
    assert not bad, f"{TRAINING} must never be imported: {bad}"


def _loaded(module: str) -> set[str]:
    code = (f"import sys, {module}; print(' '.join(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('megatron', 'vllm', 'torch', 'transformers'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(out.stdout.split())


def test_light_modules_import_no_heavy_stack():
    for module in ("megatron_lwz", "megatron_lwz.config", "megatron_lwz.cli.main"):
        heavy = _loaded(module)
        assert not heavy, f"import {module} loaded {sorted(heavy)[:5]}"
    for module in ("megatron_lwz.rewards.length", "megatron_lwz.rewards.format", "megatron_lwz.rl.advantage",
                   "megatron_lwz.rl.loss"):
        heavy = {m for m in _loaded(module) if m.split(".")[0] in ("megatron", "vllm")}
        assert not heavy, f"import {module} loaded {sorted(heavy)[:5]}"

"""Issue 11 defect 13: every input path of a job is checked before any model is built — at job start
(cli/jobs.py) and in ``slurm/launch.sh --check`` (check_recipe.py) — naming the field and the path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_lwz.config import inputs
from megatron_lwz.config.base import ConfigError, load_config
from megatron_lwz.pretrain.config import PretrainJobConfig
from megatron_lwz.rewards.rm_config import RMJobConfig
from megatron_lwz.rl.job_config import GRPOJobConfig

ROOT = Path(__file__).resolve().parents[3]
RECIPES = {"pretrain": (PretrainJobConfig, "pretrain/qwen2.5-32b_cpt.yaml"),
           "train-rm": (RMJobConfig, "rm/qwen2.5-72b_writing_rm.yaml"),
           "grpo": (GRPOJobConfig, "grpo/qwen2.5-32b_longwriter.yaml")}
EXPECTED = {"pretrain": {"data.tokenizer.path", "data.sources[0].prefix", "checkpoint.load_dir"},
            "train-rm": {"data.tokenizer.path", "data.train_path", "data.valid_path", "checkpoint.load_dir"},
            "grpo": {"tokenizer.path", "prompts.path", "rl.eval.path", "writing_rm.checkpoint", "checkpoint.load_dir"}}


def fake_checkpoint(root: Path) -> None:
    ckpt = root / "iter_0000010"
    ckpt.mkdir(parents=True, exist_ok=True)
    for name in (".metadata", "metadata.json", "lwz_meta.json"):
        (ckpt / name).write_text("{}")
    (root / "latest_checkpointed_iteration.txt").write_text("10")


def make_inputs(cfg) -> None:
    """Create every input the check asks for (stand-in files of the right kind)."""
    for spec in inputs.INPUTS:
        for _, value in inputs._values(cfg, spec.field):
            if value is None:
                continue
            path = Path(value)
            if spec.kind == "prefix":
                path.parent.mkdir(parents=True, exist_ok=True)
                for suffix in (".bin", ".idx"):
                    Path(value + suffix).write_bytes(b"")
            elif spec.kind == "checkpoint":
                fake_checkpoint(path)
            elif spec.kind in ("dir", "tokenizer"):
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}\n")


@pytest.fixture
def cluster_env(tmp_path, monkeypatch):
    for key in ("DATA_DIR", "MODELS_DIR", "CKPT_DIR", "RUNS_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    monkeypatch.delenv("RM_INIT", raising=False)
    return tmp_path


@pytest.mark.parametrize("job", sorted(RECIPES))
def test_recipe_inputs_checked_and_named(job, cluster_env):
    cls, rel = RECIPES[job]
    cfg = load_config(cls, ROOT / "examples" / rel)
    with pytest.raises(ConfigError) as err:
        inputs.check_input_paths(cfg)
    for field in EXPECTED[job]:
        assert f"{field}: " in str(err.value)
    make_inputs(cfg)
    checked = {item.split("=")[0] for item in inputs.check_input_paths(cfg)}
    assert EXPECTED[job] <= checked
    for field in sorted(EXPECTED[job]):  # each input missing alone: the error names it and its path
        spec = next(x for x in inputs.INPUTS if x.field == field.replace("[0]", "[]"))
        value = str(dict(inputs._values(cfg, spec.field))[field])
        _remove(value, spec.kind)
        with pytest.raises(ConfigError, match=r"input paths missing .*: " + re.escape(f"{field}: {value}")):
            inputs.check_input_paths(cfg)
        make_inputs(cfg)
    inputs.check_input_paths(cfg)


def _remove(value: str, kind: str) -> None:
    if kind == "prefix":
        Path(value + ".idx").unlink()
    elif kind == "checkpoint":
        Path(value, "latest_checkpointed_iteration.txt").unlink()
        for sub in Path(value).glob("iter_*"):
            (sub / "lwz_meta.json").unlink()
    elif Path(value).is_dir():
        Path(value).rmdir()
    else:
        Path(value).unlink()


def test_load_dir_not_needed_once_the_run_has_its_own_checkpoint(cluster_env):
    cfg = load_config(PretrainJobConfig, ROOT / "examples" / RECIPES["pretrain"][1])
    make_inputs(cfg)
    Path(cfg.checkpoint.load_dir, "latest_checkpointed_iteration.txt").unlink()
    for sub in Path(cfg.checkpoint.load_dir).glob("iter_*"):
        (sub / "lwz_meta.json").unlink()
    with pytest.raises(ConfigError, match="checkpoint.load_dir: .* holds no complete checkpoint"):
        inputs.check_input_paths(cfg)
    fake_checkpoint(Path(cfg.checkpoint.save_dir))  # a requeued run resumes from save_dir
    assert not any(x.startswith("checkpoint.load_dir") for x in inputs.check_input_paths(cfg))


def test_hub_tokenizer_id_is_not_a_path(cluster_env):
    assert inputs._problem("tokenizer", "Qwen/Qwen2.5-32B") is None
    assert inputs._problem("tokenizer", "/models/Qwen2.5-32B") == "/models/Qwen2.5-32B does not exist"


def _cli_env(tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for key in ("DATA_DIR", "MODELS_DIR", "CKPT_DIR", "RUNS_DIR"):
        env[key] = str(tmp_path / key.lower())
    return env


def test_job_start_and_check_mode_stop_on_a_missing_input(cluster_env):
    """``lwz grpo`` exits 2 naming rl.eval.path before any process group or model exists; so does --check."""
    cfg = load_config(GRPOJobConfig, ROOT / "examples" / RECIPES["grpo"][1])
    make_inputs(cfg)
    Path(cfg.rl.eval.path).unlink()
    recipe = str(ROOT / "examples" / RECIPES["grpo"][1])
    job = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", "grpo", "--config", recipe],
                         env=_cli_env(cluster_env), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert job.returncode == 2, job.stderr[-2000:]
    assert f"rl.eval.path: {cfg.rl.eval.path} does not exist" in job.stderr
    check = subprocess.run([sys.executable, str(ROOT / "slurm" / "check_recipe.py"), "grpo", recipe, "64"],
                           env=_cli_env(cluster_env), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert check.returncode == 2 and f"rl.eval.path: {cfg.rl.eval.path} does not exist" in check.stderr
    Path(cfg.rl.eval.path).write_text("{}\n")
    check = subprocess.run([sys.executable, str(ROOT / "slurm" / "check_recipe.py"), "grpo", recipe, "64"],
                           env=_cli_env(cluster_env), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert check.returncode == 0 and "5 input paths found" in check.stdout, check.stderr

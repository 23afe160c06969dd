"""The shipped recipes (examples/**/*.yaml) and SLURM scripts (slurm/).

* every recipe loads into its job config class with the cluster env vars set, and passes the
  structural rules of ``config.validate`` at its intended size (CPU demos: 1 process; cluster
  recipes: 8 nodes × 8 GPUs, with CUDA + TE assumed for the precision rules);
* the cluster recipes match the paper's numbers (paper.md §5, §7), the stages are wired to each
  other (CPT → GRPO policy, RM → GRPO Writing RM, one tokenizer), and the memory arithmetic
  written in their comments holds for the configured layout;
* the scripts are valid bash (``bash -n``, shellcheck when installed) and the launcher's
  preemption path works end to end with fake ``srun`` / ``scontrol`` / trainer processes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from megatron_lwz.config.base import load_config, to_dict
from megatron_lwz.config.validate import validate_batch, validate_kernels, validate_parallel, validate_precision
from megatron_lwz.models.presets import resolve
from megatron_lwz.pretrain.config import PretrainJobConfig
from megatron_lwz.rewards.length import PREDICTOR_MAX_UPPER
from megatron_lwz.rewards.rm_config import RMJobConfig
from megatron_lwz.rl.job_config import GRPOJobConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES, SLURM = ROOT / "examples", ROOT / "slurm"
JOB_CLASSES = {"pretrain": PretrainJobConfig, "rm": RMJobConfig, "grpo": GRPOJobConfig}
CPT, RM, GRPO = "pretrain/qwen2.5-32b_cpt.yaml", "rm/qwen2.5-72b_writing_rm.yaml", "grpo/qwen2.5-32b_longwriter.yaml"
CLUSTER_WORLD = 64  # 8 nodes × 8 GPUs (paper: 8 × 8 H800)
ENV = {"DATA_DIR": "/lustre/lwz/data", "MODELS_DIR": "/lustre/lwz/models", "CKPT_DIR": "/lustre/lwz/ckpt",
       "RUNS_DIR": "/lustre/lwz/runs"}
RECIPES = sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.yaml")
                 if p.relative_to(EXAMPLES).parts[0] != "ablations")  # studies: tests/unit/ablation
SCRIPTS = sorted(str(p.relative_to(ROOT)) for p in [*SLURM.glob("*.sh"), *SLURM.glob("*.sbatch")])
GIB = 1024**3
GPU_GIB = 79.6  # usable memory of an 80 GB H100/H800 (nvidia-smi: 81,559 MiB)


@pytest.fixture
def env(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("RM_INIT", "DEMO_DIR"):
        monkeypatch.delenv(key, raising=False)


def load(rel: str):
    return load_config(JOB_CLASSES[rel.split("/")[0]], EXAMPLES / rel)


def test_cluster_recipes_exist():
    assert {CPT, RM, GRPO} <= set(RECIPES)
    assert all(rel.split("/")[0] in JOB_CLASSES for rel in RECIPES), RECIPES


@pytest.mark.parametrize("rel", RECIPES)
def test_recipe_loads_and_validates(rel, env):
    cfg, kind = load(rel), rel.split("/")[0]
    cluster = rel in (CPT, RM, GRPO)
    world = CLUSTER_WORLD if cluster else 1
    arch, par = resolve(cfg.model), cfg.parallel
    dp = validate_parallel(arch, par, world)
    validate_precision(cfg.model, par, cfg.precision, cuda=cluster, te=cluster)
    validate_kernels(cfg.model, par, cuda=cluster, te=cluster)
    assert "${" not in yaml.safe_dump(to_dict(cfg)), "an env var was not expanded"
    if kind == "grpo":
        if cfg.writing_rm.checkpoint:
            validate_parallel(resolve(cfg.writing_rm.model), par, world)  # the RM shares the policy layout
        if par.sequence_parallel:  # micro-batches are padded to a multiple of TP (rl.step.plan_minibatch,
            # tests/unit/rl/test_batching.py): a budget-filling micro-batch must stay within the budget
            from megatron_lwz.config.alignment import sequence_multiple

            multiple = sequence_multiple(par.tensor_parallel, True, cfg.precision.fp8, cfg.precision.fp8_recipe)
            assert cfg.rl.batching.micro_token_budget % multiple == 0
        return
    seq = cfg.data.seq_length if kind == "pretrain" else cfg.data.max_length
    validate_batch(dp, cfg.train.micro_batch_size, cfg.train.global_batch_size, seq, arch,
                   par.virtual_pipeline_parallel, par.pipeline_parallel)
    if par.sequence_parallel:  # megatron's SP scatter needs every sequence length divisible by TP
        assert seq % par.tensor_parallel == 0
        if kind == "rm":
            assert par.pipeline_parallel > 1, "with PP = 1 RM micro-batches are not padded to data.max_length"


def test_cpt_matches_paper(env):
    cfg = load(CPT)
    assert cfg.model.preset == "qwen2.5-32b"
    assert cfg.train.global_batch_size == 512 and cfg.data.seq_length == 32 * 1024
    tokens_per_step = 512 * 32768
    assert cfg.train.train_steps == round(30e9 / tokens_per_step) == 1788  # 30B tokens
    assert abs(cfg.train.train_steps * tokens_per_step - 30e9) < 0.001 * 30e9
    weights = {s.name: s.weight for s in cfg.data.sources}
    assert weights["cot"] / sum(weights.values()) == pytest.approx(0.01)  # 1% distilled long CoT
    for domain in ("books", "reports", "papers"):
        assert {f"{domain}_en", f"{domain}_zh"} <= set(weights)
    assert all(s.prefix.startswith(ENV["DATA_DIR"] + "/") for s in cfg.data.sources)
    assert cfg.data.tokenizer.path == f"{ENV['MODELS_DIR']}/Qwen2.5-32B"
    ck = cfg.checkpoint
    assert ck.load_dir == f"{ENV['CKPT_DIR']}/qwen2.5-32b-mcore" and ck.load_weights_only
    assert ck.save_dir.startswith(ENV["CKPT_DIR"]) and 0 < ck.save_interval < cfg.train.train_steps
    assert cfg.scheduler.decay_style == "cosine" and 0 < cfg.scheduler.warmup_steps < 0.05 * cfg.train.train_steps
    assert 0 < cfg.optim.min_lr < cfg.optim.lr


def test_grpo_matches_paper(env):
    cfg = load(GRPO)
    rl = cfg.rl
    assert (rl.group_size, rl.temperature, rl.top_p, rl.max_tokens, rl.num_steps) == (32, 0.8, 1.0, 14000, 150)
    assert (rl.loss.clip_eps_low, rl.loss.clip_eps_high, rl.loss.kl_coef) == (0.2, 0.2, 0.0)
    assert rl.loss.aggregation == "token-mean" and cfg.prompts.template == "think"
    assert set(cfg.reward.components) == {"length", "writing", "format"}
    assert cfg.reward.combine == "advantage_mean"  # Eq. 5: average of per-reward advantages
    assert all(w == pytest.approx(1 / 3) for w in cfg.reward.weight_vector().values())
    assert cfg.reward.overlong.max_response_tokens == rl.max_tokens
    assert cfg.reward.length.l_max > PREDICTOR_MAX_UPPER  # Eq. 3 needs L_max > every L_upper
    rows = rl.prompts_per_step * rl.group_size
    assert rows % rl.batching.num_minibatches == 0
    assert rows // rl.batching.num_minibatches >= CLUSTER_WORLD // cfg.parallel.tensor_parallel  # a row per DP rank
    ro, arch = cfg.rollout, resolve(cfg.model)
    assert (ro.engine, ro.weight_transfer_backend, ro.sleep_level) == ("vllm", "ipc", 2)
    assert rl.max_tokens + 1024 <= ro.max_model_len <= arch.max_position_embeddings
    assert rl.batching.micro_token_budget >= ro.max_model_len  # every sample fits one micro-batch
    assert ro.bucket_bytes >= arch.vocab_size * arch.hidden_size * 2  # largest bf16 tensor: the embedding


def test_stages_are_wired_together(env):
    cpt, rm, grpo = load(CPT), load(RM), load(GRPO)
    assert grpo.checkpoint.load_dir == cpt.checkpoint.save_dir  # GRPO starts from the CPT policy
    assert grpo.writing_rm.checkpoint == rm.checkpoint.save_dir
    assert grpo.writing_rm.model.preset == rm.model.preset == "qwen2.5-72b"  # the paper's RM backbone
    assert grpo.writing_rm.model.tie_word_embeddings is rm.model.tie_word_embeddings is False
    assert (grpo.writing_rm.max_length, grpo.writing_rm.max_prompt_tokens) == (rm.data.max_length,
                                                                                rm.data.max_prompt_tokens)
    assert grpo.writing_rm.max_length >= grpo.rl.max_tokens  # a full answer is scored untruncated
    assert grpo.model.preset == cpt.model.preset
    assert cpt.data.tokenizer.path == rm.data.tokenizer.path == grpo.tokenizer.path
    launcher_code = re.search(r"LWZ_REQUEUE_EXIT_CODE:-(\d+)", (SLURM / "launch.sh").read_text()).group(1)
    for cfg in (cpt, rm, grpo):
        assert cfg.checkpoint.save_on_signal and cfg.checkpoint.exit_code_on_signal == int(launcher_code)


# ---- memory arithmetic of the recipe comments, recomputed from the architecture and the layout ----

def _params_per_gpu(arch, tp: int, pp: int) -> float:
    """Largest per-GPU parameter count: L/PP layers + one vocab matrix (two with PP = 1), padded vocab."""
    vocab = -(-arch.vocab_size // (128 * tp)) * 128 * tp
    embed = arch.vocab_size * arch.hidden_size
    layer = (arch.num_params() - embed * (1 if arch.tie_word_embeddings else 2) - arch.hidden_size) / arch.num_layers
    return (arch.num_layers // pp * layer + vocab * arch.hidden_size * (1 if pp > 1 else 2)) / tp


def _train_state_gib(arch, tp, pp, dp) -> float:
    """bf16 weights + fp32 main grads + Adam (fp32 master, m, v) sharded over DP."""
    return _params_per_gpu(arch, tp, pp) * (2 + 4 + 12 / dp) / GIB


def test_cpt_memory_fits(env):
    cfg = load(CPT)
    arch, par = resolve(cfg.model), cfg.parallel
    tp, pp, s = par.tensor_parallel, par.pipeline_parallel, cfg.data.seq_length
    dp = CLUSTER_WORLD // (tp * pp * par.context_parallel)
    assert _params_per_gpu(arch, tp, pp) == pytest.approx(1.07e9, rel=0.01)
    state = _train_state_gib(arch, tp, pp, dp) + _params_per_gpu(arch, tp, pp) * 2 / GIB  # + FP8 copies
    assert par.sequence_parallel and cfg.model.recompute == "none" and cfg.precision.fp8
    h, f = arch.hidden_size, arch.ffn_hidden_size
    # saved per token and layer, SP-sharded: 12h + 4·kv + 6f, minus the FP8-saved GEMM inputs (2h + f)
    per_layer = s * (12 * h + 4 * 1024 + 6 * f - (2 * h + f)) / tp / GIB
    # CUDA context + NCCL 1.5 (the rehearsal's assumption); TE userbuffers: 12 [s, h] buffers, the 8
    # all-gather ones in FP8 (1 B), the 4 reduce-scatter ones bf16 (TE initialize_ub)
    fixed = 1.5 + s * h * (8 * 1 + 4 * 2) / GIB
    first = state + (arch.num_layers // pp) * pp * per_layer + fixed  # 1F1B: PP micro-batches on stage 0
    last = state + (arch.num_layers // pp) * per_layer + s * (152576 / tp) * 10 / GIB + fixed
    assert max(first, last) == pytest.approx(65.3, abs=0.5) and max(first, last) < 0.85 * GPU_GIB
    from megatron_lwz.plan.memory import memory_breakdown
    from megatron_lwz.plan.shape import from_arch
    from megatron_lwz.plan.spec import Job, Layout

    lay = Layout(tp=tp, pp=pp, vpp=par.virtual_pipeline_parallel, dp=dp, sp=True, recompute="none", fp8=True)
    planned = memory_breakdown(from_arch(arch), lay, Job(kind="cpt", seq_length=s, global_batch=512))
    assert sum(planned.values()) == pytest.approx(max(first, last), rel=0.01)  # planner = this arithmetic


def test_grpo_memory_and_kv_arithmetic(env):
    cfg = load(GRPO)
    arch, rm_arch, par, ro = resolve(cfg.model), resolve(cfg.writing_rm.model), cfg.parallel, cfg.rollout
    tp = par.tensor_parallel
    dp = CLUSTER_WORLD // (tp * par.pipeline_parallel)
    resident = (_train_state_gib(arch, tp, par.pipeline_parallel, dp)
                + _params_per_gpu(rm_arch, tp, par.pipeline_parallel) * 2 / GIB + 1.5)  # + CUDA context, NCCL
    assert resident == pytest.approx(47.0, abs=0.5)
    assert resident + ro.gpu_memory_utilization * GPU_GIB < 0.92 * GPU_GIB  # rollout: every node's engine awake
    budget = cfg.rl.batching.micro_token_budget
    acts = budget * arch.hidden_size * 2 * arch.num_layers / (tp if par.sequence_parallel else 1) / GIB
    assert resident + 1 + acts + 2.0 + budget * (152576 / tp) * 16 / GIB < GPU_GIB - 5  # training, vLLM asleep
    kv_per_token = arch.num_layers * arch.num_query_groups * arch.head_dim * 2 * 2
    assert kv_per_token == 256 * 1024  # 64 layers × 8 KV heads × 128 × (K, V) × bf16
    assert 14336 * kv_per_token / GIB == pytest.approx(3.5)  # one full 14K-token sample
    vllm_weights = arch.num_params() * 2 / ro.tensor_parallel_size / GIB
    kv_gib = ro.gpu_memory_utilization * GPU_GIB - vllm_weights - 3.0
    full_length_seqs = kv_gib * GIB / (kv_per_token / ro.tensor_parallel_size) / (ro.max_model_len - 2048)
    assert full_length_seqs >= cfg.rl.group_size  # a whole group of max-length samples decodes at once


# ---- SLURM scripts --------------------------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_valid_bash(script):
    out = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    out = subprocess.run(["shellcheck", "-x", "-s", "bash", *SCRIPTS], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize("name,job,config,lead", [
    ("pretrain.sbatch", "pretrain", CPT, 600), ("train_rm.sbatch", "train-rm", RM, 900),
    ("grpo.sbatch", "grpo", GRPO, 1800)])
def test_sbatch_headers(name, job, config, lead):
    text = (SLURM / name).read_text()
    opts = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, flags=re.M))
    assert (opts["nodes"], opts["ntasks-per-node"], opts["gpus-per-node"]) == ("8", "8", "8")
    assert "requeue" in opts and opts["signal"] == f"B:USR1@{lead}"
    assert f"launch.sh {job} \"${{CONFIG:-examples/{config}}}\"" in text


def _fake_cluster(tmp: Path) -> dict[str, str]:
    """PATH with fake srun (runs the task command twice as ranks 0, 1) and scontrol, plus a fake trainer
    that exits with checkpoint.exit_code_on_signal on SIGUSR1, else with $FAKE_RC after $FAKE_STEPS × 0.1 s."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    scripts = {
        "bin/srun": 'echo "srun $*" >> "$FAKE_LOG"\nwhile [[ $1 == -* ]]; do shift; done\npids=()\n'
                    'for r in 0 1; do SLURM_PROCID=$r "$@" & pids+=($!); done\nrc=0\n'
                    'for p in "${pids[@]}"; do wait "$p" || { c=$?; (( c > rc )) && rc=$c; }; done\nexit $rc\n',
        "bin/scontrol": 'echo "scontrol $*" >> "$FAKE_LOG"\n',
        "trainer": 'code=0\nfor a in "$@"; do case $a in checkpoint.exit_code_on_signal=*) code=${a#*=} ;; esac; done\n'
                   'trap \'echo "usr1 $SLURM_PROCID" >> "$FAKE_LOG"; exit $code\' USR1\n'
                   'echo "start $SLURM_PROCID $*" >> "$FAKE_LOG"\n'
                   'for ((i = 0; i < FAKE_STEPS; i++)); do sleep 0.1; done\nexit "$FAKE_RC"\n'}
    for rel, body in scripts.items():
        (tmp / rel).write_text("#!/bin/bash\n" + body)
        (tmp / rel).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LWZ_"))}
    env.update(ENV, PATH=f"{bin_dir}:{env['PATH']}", FAKE_LOG=str(tmp / "log"), LWZ_PYTHON=str(tmp / "trainer"),
               LWZ_HOME=str(ROOT), LWZ_STATE_DIR=str(tmp / "state"), LWZ_POLL_SECONDS="0.1", OMP_NUM_THREADS="1",
               SLURM_JOB_ID="777", SLURM_JOB_NUM_NODES="1", LWZ_GPUS_PER_NODE="2", FAKE_STEPS="5", FAKE_RC="0")
    return env


def _log(tmp: Path) -> str:
    path = tmp / "log"
    return path.read_text() if path.exists() else ""


def test_launcher_requeues_after_signal_save(tmp_path):
    env = _fake_cluster(tmp_path)
    env["FAKE_STEPS"] = "300"
    proc = subprocess.Popen(["bash", str(SLURM / "pretrain.sbatch"), "optim.lr=1e-5"], env=env, cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while _log(tmp_path).count("start ") < 2 and time.time() < deadline:  # both ranks up: the trap is set
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)  # what SLURM's --signal=B:USR1@600 does
    _, err = proc.communicate(timeout=30)
    log = _log(tmp_path)
    assert proc.returncode == 0, err
    assert "usr1 0" in log and "usr1 1" in log  # forwarded to every trainer
    assert "scontrol requeue 777" in log
    assert "--ntasks-per-node=2" in log and "--kill-on-bad-exit=1" in log
    assert "pretrain --config examples/pretrain/qwen2.5-32b_cpt.yaml optim.lr=1e-5 " \
           "checkpoint.exit_code_on_signal=124" in log


@pytest.mark.parametrize("fake_rc,restarts,expect_rc,requeued", [
    ("0", "0", 0, False), ("3", "0", 3, False), ("124", "0", 0, True), ("124", "20", 124, False)])
def test_launcher_exit_codes(tmp_path, fake_rc, restarts, expect_rc, requeued):
    env = _fake_cluster(tmp_path)
    env.update(FAKE_RC=fake_rc, SLURM_RESTART_COUNT=restarts)
    out = subprocess.run(["bash", str(SLURM / "grpo.sbatch")], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == expect_rc, out.stderr
    assert ("scontrol requeue" in _log(tmp_path)) is requeued


def test_launcher_check_mode(env, tmp_path, monkeypatch):
    from tests.unit.config.test_inputs import make_inputs  # --check also wants every input path to exist

    for key in ENV:
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    make_inputs(load(GRPO))
    base = {**os.environ, "LWZ_PYTHON": sys.executable, "LWZ_NODES": "8", "OMP_NUM_THREADS": "1"}
    ok = subprocess.run(["bash", str(SLURM / "launch.sh"), "--check", "grpo", str(EXAMPLES / GRPO)],
                        env=base, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "TP 8 × PP 1 × CP 1 × DP 8" in ok.stdout and "input paths found" in ok.stdout
    bad = subprocess.run(["bash", str(SLURM / "launch.sh"), "--check", "grpo", str(EXAMPLES / GRPO),
                          "parallel.tensor_parallel=16"], env=base, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "num_attention_heads=40 is not divisible" in bad.stderr

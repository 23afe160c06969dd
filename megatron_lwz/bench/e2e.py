"""``lwz bench e2e``: per-phase breakdown of real GRPO steps (``lwz grpo``), on CPU or GPU.

Runs ``lwz grpo`` for ``steps`` iterations in a subprocess and reads the run's ``metrics.jsonl``:
the loop's phase timers (``time/{rollout,reward,old_logprobs,train,sync}_s``, metrics/timing.py),
``perf/tokens_per_s`` and the synced bytes. Reported per phase: median seconds over the steps after
``skip_first`` (the first step pays one-time costs) and its share of the median step (the sum of
the phases: the baseline measured in the same run), plus tokens/s/GPU and weight-sync GB/s.

* no ``--config``: a self-contained CPU setup — the demo data generator, a SentencePiece tokenizer
  and a tiny random policy with the Length + Format rewards (what tests/e2e/test_grpo_e2e.py runs);
* ``--config RECIPE [overrides]``: that recipe on this machine (one process; on a GPU node use
  ``--run-dir`` after a ``torchrun``/SLURM launch instead);
* ``--run-dir DIR --gpus N``: analyse an existing run's ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from megatron_lwz.bench.report import BenchResult, Column

PHASES = ("rollout", "reward", "old_logprobs", "train", "sync")
DEMO_VOCAB = 1024


@dataclass(kw_only=True)
class E2EBenchConfig:
    """What to run (or analyse) and how many steps."""

    config: str | None = None
    """GRPO recipe; None = the self-contained CPU demo setup (module doc)."""
    overrides: list[str] = field(default_factory=list)
    """Dotted overrides for the recipe (``rl.prompts_per_step=4`` …)."""
    steps: int = 3
    """GRPO iterations to run."""
    skip_first: int = 1
    """Leading steps left out of the medians (warm-up)."""
    run_dir: str | None = None
    """Analyse this finished run instead of running one."""
    gpus: int = 1
    """Processes/GPUs of the analysed run (tokens/s/GPU)."""
    timeout_s: float = 3600.0
    """Limit for the ``lwz grpo`` subprocess."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.skip_first < 0:
            raise ValueError("bench e2e: --steps must be ≥ 1 and --skip-first ≥ 0")


def _demo_args(root: Path) -> tuple[list[str], dict[str, str]]:
    """Demo data + tokenizer under ``root`` and the ``lwz grpo`` arguments of a tiny random policy."""
    from megatron_lwz.data.demo import DemoConfig, make_demo
    from megatron_lwz.data.tokenizer_train import TokenizerTrainConfig, train_sentencepiece

    data = root / "data"
    make_demo(DemoConfig(out_dir=str(data), seed=1, scale=0.5, cot_records=300, rm_pairs=400, rm_heldout=100))
    train_sentencepiece(TokenizerTrainConfig(inputs=[str(data / f"{s}.jsonl") for s in ("books", "reports", "papers", "cot")],
                                             output=str(root / "tokenizer"), vocab_size=DEMO_VOCAB))
    recipe = Path(__file__).resolve().parents[2] / "examples/grpo/tiny_cpu.yaml"
    args = ["--config", str(recipe), f"model.vocab_size={DEMO_VOCAB}", "checkpoint.load_dir=null",
            "writing_rm.checkpoint=null", "reward.components=[length,format]", "rl.prompts_per_step=4",
            "rl.group_size=4", "rl.max_tokens=48", "reward.overlong.max_response_tokens=48",
            "reward.overlong.buffer_tokens=8", "rl.eval.path=null", "prompts.max_prompts=16"]
    return args, {"DEMO_DIR": str(root)}


def run_grpo(cfg: E2EBenchConfig, workdir: Path) -> Path:
    """Run ``lwz grpo`` for ``cfg.steps`` steps in ``workdir``; returns its run directory."""
    if cfg.config:
        args, env = ["--config", cfg.config], {}
    else:
        args, env = _demo_args(workdir)
    run_dir = workdir / "run"
    args += [f"rl.num_steps={cfg.steps}", f"logging.run_dir={run_dir}", "logging.progress=false",
             "logging.plots=false", "checkpoint.save_interval=0", f"checkpoint.save_dir={workdir / 'ckpt'}",
             *cfg.overrides]
    proc = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", "grpo", *args], capture_output=True,
                          text=True, timeout=cfg.timeout_s, env={**os.environ, **env})
    if proc.returncode != 0:
        raise RuntimeError(f"lwz grpo failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return run_dir


def phase_table(rows: list[dict], skip_first: int, gpus: int) -> tuple[list[dict], dict]:
    """Table rows (one per phase + the step) and the summary from ``metrics.jsonl`` rows."""
    used = rows[skip_first:] or rows
    if not used or "time/rollout_s" not in used[0]:
        raise ValueError("bench e2e: metrics.jsonl has no GRPO phase timers (time/rollout_s …)")
    med = {p: statistics.median(r.get(f"time/{p}_s", 0.0) for r in used) for p in PHASES}
    step = sum(med.values())
    table = [{"phase": p, "seconds": med[p], "share": med[p] / step} for p in PHASES]
    table.append({"phase": "step", "seconds": step, "share": 1.0})
    tps = statistics.median(r["perf/tokens_per_s"] for r in used)
    gbytes = statistics.median(r.get("sync/gbytes", 0.0) for r in used)
    summary = {"step_s": step, "tokens_per_s": tps, "tokens_per_s_per_gpu": tps / gpus,
               "rollout_share": med["rollout"] / step, "sync_s": med["sync"], "sync_gbytes": gbytes,
               "sync_gb_per_s": gbytes / med["sync"] if med["sync"] > 0 else None,
               "phases_s": med, "steps_measured": len(used), "steps_total": len(rows)}
    return table, summary


COLUMNS = [Column(key="phase", header="phase"), Column(key="seconds", header="median s", fmt=".3f"),
           Column(key="share", header="share of step", fmt=".1%")]


def run_e2e_bench(cfg: E2EBenchConfig) -> BenchResult:
    """Run (or read) the GRPO steps and build the table + summary."""
    with tempfile.TemporaryDirectory(prefix="lwz_bench_e2e_") as tmp:
        run_dir = Path(cfg.run_dir) if cfg.run_dir else run_grpo(cfg, Path(tmp))
        metrics = run_dir / "metrics.jsonl"
        if not metrics.is_file():
            raise ValueError(f"bench e2e: {metrics} does not exist")
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    table, summary = phase_table(rows, cfg.skip_first, cfg.gpus)
    what = cfg.run_dir or cfg.config or "CPU demo setup (tiny random policy, Length + Format rewards)"
    notes = [f"{what}: medians over {summary['steps_measured']} of {summary['steps_total']} steps "
             f"(first {cfg.skip_first} skipped); share = phase / step (sum of the phases)",
             f"tokens/s {summary['tokens_per_s']:,.1f} ({summary['tokens_per_s_per_gpu']:,.1f} per GPU/process); "
             f"weight sync {summary['sync_s']:.3f} s for {summary['sync_gbytes']:.3f} GB"]
    return BenchResult(bench="e2e", title="e2e: GRPO step by phase", columns=COLUMNS, rows=table, summary=summary,
                       notes=notes)

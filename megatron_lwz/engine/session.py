"""What every training job (pretrain, Writing RM, GRPO) does around its loop, written once.

``start_session`` validates the config, initialises the process groups, prepares the run directory
(resolved config + versions), builds the trainer, resumes from the newest checkpoint (or loads
initial weights), and opens the metric logger and the preemption watcher. ``Session.step_end``
saves on the configured interval or on a signal, and tells the loop whether to stop.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from megatron_lwz.checkpoint.deadline import DeadlineGuard, job_end_time
from megatron_lwz.config.alignment import config_sequence_multiple
from megatron_lwz.config.base import to_dict
from megatron_lwz.config.schema import CheckpointConfig
from megatron_lwz.config.validate import validate_batch, validate_model_parallel
from megatron_lwz.engine.trainer import Trainer, build_trainer
from megatron_lwz.metrics.logger import MetricLogger
from megatron_lwz.metrics.run_dir import prepare_run_dir
from megatron_lwz.models.presets import resolve
from megatron_lwz.parallel.env import detect


@dataclass
class Session:
    """A running job: context, trainer, progress state, logger and checkpoint policy."""

    cfg: Any
    trainer: Trainer
    state: Any
    logger: MetricLogger
    watcher: Any
    run_dir: Path
    ckpt: CheckpointConfig
    save_dir: Path
    hf_assets: str | None = None
    """Directory of HF config/tokenizer files stored with each checkpoint (for ``mcore-to-hf``)."""
    timers: dict[str, float] = field(default_factory=dict)
    deadline: DeadlineGuard = field(default_factory=lambda: DeadlineGuard(None))
    """Stops the loop while a save still fits before the job's end time."""
    saver: Any = None
    """``checkpoint.async_save``: the AsyncSaver of interval saves (None: every save synchronous)."""

    @property
    def ctx(self):
        return self.trainer.ctx

    def save(self, sync: bool = True) -> Path:
        """Save the current state; ``sync=False`` with ``checkpoint.async_save`` only schedules it."""
        from megatron_lwz.checkpoint.state import SaveIO, save_checkpoint

        start, saver = time.time(), None if sync else self.saver
        if sync and self.saver is not None:
            self.saver.finalize()
        path = save_checkpoint(self.trainer, self.state, self.save_dir, config_dict=to_dict(self.cfg),
                               keep_last=self.ckpt.keep_last, hf_assets=self.hf_assets,
                               io=SaveIO.from_config(self.ckpt, saver))
        self.deadline.record_save(time.time() - start)  # async: the blocking part (the write: see start_session)
        return path

    def step_end(self, total_steps: int) -> bool:
        """Checkpoint if due (interval, last step, signal, time limit); True when the loop must stop.

        A stop (signal on any rank, or the next step plus a save not fitting before the job's end
        time) saves at this step on every rank; the caller exits with ``exit_code_on_signal``.
        """
        step, now = self.state.step, time.time()
        self.deadline.record_step(now)
        if self.saver is not None:
            self.saver.poll()  # collective: publishes an async save that every rank has written
        if self.deadline.must_stop(now) and not self.watcher.local_stop:
            if self.ctx.is_rank0:
                print(f"time limit: stopping at step {step} ({self.deadline.explain(now)})", flush=True)
            self.watcher.request_stop()
        stop = (self.ckpt.save_on_signal or self.deadline.enabled) and self.watcher.should_stop()
        due = self.ckpt.save_interval > 0 and step % self.ckpt.save_interval == 0
        if due or stop or step >= total_steps:
            self.save(sync=stop or step >= total_steps)
        if stop and self.ctx.is_rank0:
            print(f"stop requested (signal or time limit): checkpoint saved at step {step}; exiting with code "
                  f"{self.ckpt.exit_code_on_signal}", flush=True)
            _mark_stopped(step)
        self.deadline.resume_point(time.time())
        return stop

    def finish(self, plot_groups: dict[str, tuple[str, ...]]) -> list[Path]:
        if self.saver is not None:
            self.saver.close()  # an async save still in flight is published before exit
        return self.logger.close(plot_groups)


def start_session(cfg: Any, *, total_steps: int, console_keys: tuple[str, ...],
                  post_build: Callable | None = None, arch=None, tokenizer_dir: str | None = None,
                  seq_length: int | None = None) -> Session:
    """Validate → init parallel → run dir → trainer → resume/initial weights → logger + watcher.

    ``seq_length``: jobs with fixed batches (``cfg.train``) pass their sequence length and the batch
    rules (``validate_batch``) are checked once DP is known.

    ``tokenizer_dir``: stored with every checkpoint (``hf/``) so ``mcore-to-hf`` restores the tokenizer;
    a converted initial checkpoint's own ``hf/`` assets take precedence.
    """
    from megatron_lwz import parallel
    from megatron_lwz.checkpoint.state import SaveIO, TrainState, load_checkpoint
    from megatron_lwz.checkpoint.signals import PreemptionWatcher

    arch = arch or resolve(cfg.model)
    dp = validate_model_parallel(arch, cfg.model, cfg.parallel, cfg.precision, detect().world_size)
    if seq_length is not None:
        p = cfg.parallel
        validate_batch(dp, cfg.train.micro_batch_size, cfg.train.global_batch_size, seq_length, arch,
                       p.virtual_pipeline_parallel, p.pipeline_parallel, config_sequence_multiple(p, cfg.precision))
    ctx = parallel.init(cfg.parallel)
    if cfg.parallel.tp_comm_overlap:  # TE userbuffers: allocated for the fixed micro-batch shape
        from megatron_lwz.parallel.tp_overlap import init_tp_comm_overlap, overlap_tokens

        init_tp_comm_overlap(overlap_tokens(cfg), arch.hidden_size, cfg.parallel.tensor_parallel,
                             fp8=bool(cfg.precision.fp8))
    run_dir = prepare_run_dir(cfg.logging.run_dir, cfg, is_rank0=ctx.is_rank0)
    trainer = build_trainer(model=cfg.model, parallel=cfg.parallel, precision=cfg.precision, optim=cfg.optim,
                            scheduler=cfg.scheduler, total_steps=total_steps, ctx=ctx, arch=arch,
                            post_build=post_build)
    ckpt = cfg.checkpoint
    save_dir = Path(ckpt.save_dir or run_dir / "checkpoints")
    # Resume this run first (preemption / requeue); otherwise initialise from load_dir if given.
    state = load_checkpoint(trainer, save_dir, weights_only=False, io=SaveIO.from_config(ckpt))
    source = save_dir
    if state is None and ckpt.load_dir:
        state = load_checkpoint(trainer, Path(ckpt.load_dir), weights_only=ckpt.load_weights_only,
                                io=SaveIO.from_config(ckpt))
        source = Path(ckpt.load_dir)
        if state is None:
            raise FileNotFoundError(f"checkpoint.load_dir={ckpt.load_dir}: no published checkpoint found there")
    state = state or TrainState()
    if ctx.is_rank0 and state.step:
        print(f"resumed from {source} at step {state.step}", flush=True)
    logger = MetricLogger(run_dir, cfg.logging, enabled=ctx.is_rank0, console_keys=console_keys,
                          resume_step=state.step)  # rows after the checkpoint are redone: dropped
    watcher = PreemptionWatcher(ctx, enabled=ckpt.save_on_signal).install()
    deadline = _deadline(ckpt, ctx.is_rank0)
    saver = None
    if ckpt.async_save:
        from megatron_lwz.checkpoint.async_save import AsyncSaver

        # Finalized at a step boundary: the write ended within the last step, so elapsed − step ≤ write time.
        saver = AsyncSaver(on_done=lambda elapsed: deadline.record_save(max(elapsed - deadline.step_s, 0.0)))
    return Session(cfg=cfg, trainer=trainer, state=state, logger=logger, watcher=watcher, run_dir=run_dir,
                   ckpt=ckpt, save_dir=save_dir, hf_assets=_hf_assets(ckpt, tokenizer_dir),
                   timers={"start": time.time()}, deadline=deadline, saver=saver)


def _deadline(ckpt: CheckpointConfig, is_rank0: bool) -> DeadlineGuard:
    """The time-limit guard: the end time from the environment on every rank, squeue on rank 0 only
    (the stop decision is all-reduced, so one rank knowing the end time is enough)."""
    if not ckpt.stop_before_time_limit:
        return DeadlineGuard(None)
    env = dict(os.environ) if is_rank0 else {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    guard = DeadlineGuard(job_end_time(env), margin_s=ckpt.time_limit_margin_s,
                          save_estimate_s=ckpt.save_time_estimate_s)
    if is_rank0 and guard.enabled:
        print(f"job end time {time.strftime('%F %T', time.localtime(guard.end_time))}: the run stops and saves "
              "when the next step plus a save would not fit", flush=True)
    guard.start(time.time())
    return guard


def _mark_stopped(step: int) -> None:
    """Tell the launcher (``LWZ_STOPPED_FILE``, set by slurm/launch.sh) that a stop-save was published."""
    marker = os.environ.get("LWZ_STOPPED_FILE")
    if marker:
        Path(marker).write_text(f"{step}\n", encoding="utf-8")


def _hf_assets(ckpt: CheckpointConfig, tokenizer_dir: str | None) -> str | None:
    for cand in ([Path(ckpt.load_dir) / "release" / "hf"] if ckpt.load_dir else []) + \
                ([Path(tokenizer_dir)] if tokenizer_dir else []):
        if cand.is_dir():
            return str(cand)
    return None

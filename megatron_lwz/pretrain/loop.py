"""``lwz pretrain``: continual pretraining (LongWriter-Zero paper §7) — the loop, on one screen.

Per step: next global batch of packed sequences (resumable at ``consumed_samples``) → token-mean
next-token cross entropy over the global batch → megatron forward/backward (any TP/PP/VPP/DP) →
grad clip + AdamW + warmup/cosine LR → metrics → checkpoint on interval / preemption signal.
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from megatron_lwz.engine.session import start_session
from megatron_lwz.engine.step import train_step
from megatron_lwz.metrics.timing import timed
from megatron_lwz.pretrain.config import PretrainJobConfig
from megatron_lwz.pretrain.steps import (
    build_data, evaluate, forward_lm, global_token_count, make_loss_fn, perf_metrics,
)

PLOTS = {"pretrain_loss": ("train/loss", "eval/loss", "train/lr", "train/grad_norm", "perf/tokens_per_s")}


@dataclass
class PretrainResult:
    run_dir: str
    first_loss: float | None
    last_loss: float | None
    steps: int
    interrupted: bool


def run(cfg: PretrainJobConfig) -> PretrainResult:
    t = cfg.train
    session = start_session(cfg, tokenizer_dir=cfg.data.tokenizer.path, total_steps=t.train_steps,
                            console_keys=("train/loss", "train/lr", "perf/tokens_per_s"), seq_length=cfg.data.seq_length)
    ctx, trainer, state = session.ctx, session.trainer, session.state
    data = build_data(cfg, ctx, consumed_samples=state.consumed_samples)
    first = last = None
    interrupted = False
    bar = tqdm(total=t.train_steps, initial=state.step, desc="pretrain", disable=not (ctx.is_rank0 and cfg.logging.progress))
    while state.step < t.train_steps:
        microbatches = next(data.train)
        tokens = global_token_count(microbatches, ctx)
        times: dict[str, float] = {}
        with timed(times, "step"):
            result = train_step(trainer, microbatches, forward_lm, make_loss_fn(tokens),
                                seq_length=cfg.data.seq_length, micro_batch_size=t.micro_batch_size)
        state.step += 1
        state.consumed_samples = data.train.consumed_samples
        state.consumed_tokens += int(t.global_batch_size * cfg.data.seq_length)
        first = result.report["loss"] if first is None else first
        last = result.report["loss"]
        metrics = {"train/loss": last, "train/lr": result.lr, "train/grad_norm": result.grad_norm,
                   "train/skipped": float(result.skipped), "train/consumed_tokens": state.consumed_tokens,
                   **perf_metrics(cfg, trainer, t.global_batch_size * cfg.data.seq_length, times["time/step_s"])}
        if t.eval_interval and state.step % t.eval_interval == 0:
            metrics["eval/loss"] = evaluate(trainer, data.valid, cfg, ctx)
        if state.step % cfg.logging.log_interval == 0 or state.step == t.train_steps:
            session.logger.log(state.step, metrics, echo=not cfg.logging.progress)
        bar.update(1)
        bar.set_postfix(loss=f"{last:.3f}")
        if session.step_end(t.train_steps):
            interrupted = True
            break
    bar.close()
    session.finish(PLOTS)
    return PretrainResult(run_dir=str(session.run_dir), first_loss=first, last_loss=last, steps=state.step,
                          interrupted=interrupted)

"""``lwz train-rm``: Bradley–Terry Writing RM training (paper Eq. 4) — the loop, on one screen.

Per step: next ``global_batch_size`` pairs of the epoch-shuffled stream (resumable at
``consumed_samples`` pairs) → this DP rank's share, micro-batches of [chosen; rejected] rows →
loss −log σ(r(x, y_w) − r(x, y_l)) averaged over the global batch's pairs → optimizer step.
Metrics: loss, pairwise accuracy, mean margin (train and held-out).
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from megatron_lwz.config.alignment import config_sequence_multiple
from megatron_lwz.data.tokenizer import Tokenizer
from megatron_lwz.engine.session import start_session
from megatron_lwz.engine.step import forward_only, reduce_reports, train_step
from megatron_lwz.models.reward_head import attach_reward_head
from megatron_lwz.models.presets import resolve, round_up
from megatron_lwz.rewards.rm_config import RMJobConfig
from megatron_lwz.rewards.rm_data import epoch_order, eval_microbatches, read_pairs, step_microbatches
from megatron_lwz.rewards.writing_rm import bt_loss_fn, forward_scores, pair_eval_collect

PLOTS = {"rm_training": ("train/loss", "train/accuracy", "eval/accuracy", "train/margin", "train/lr")}


@dataclass
class RMResult:
    run_dir: str
    eval_accuracy: float | None
    train_accuracy: float | None
    steps: int
    interrupted: bool


def evaluate(trainer, pairs, cfg: RMJobConfig, pad_id: int) -> dict[str, float]:
    """Pairwise accuracy, loss and margin over all held-out pairs (each DP rank scores a share)."""
    ctx = trainer.ctx
    mbs, seq_len = eval_microbatches(pairs, cfg.train.micro_batch_size, pad_id, ctx.dp_rank, ctx.dp,
                                     pipelined=ctx.pp > 1, multiple=trainer.seq_multiple)
    reports = forward_only(trainer, mbs, forward_scores, pair_eval_collect, seq_len, 2 * cfg.train.micro_batch_size)
    s = reduce_reports(reports, ctx)
    return {"eval/accuracy": s["correct"] / s["pairs"], "eval/loss": s["loss"] / s["pairs"],
            "eval/margin": s["margin"] / s["pairs"]}


def rm_step(trainer, pairs, cfg: RMJobConfig, consumed: int, pad_id: int):
    """One Eq. 4 optimizer step on pairs ``consumed .. consumed + global_batch_size`` of the
    epoch-shuffled stream (this DP rank's share); returns the StepResult and the micro-batches."""
    t, ctx = cfg.train, trainer.ctx
    order = epoch_order(len(pairs), cfg.data.seed, consumed, t.global_batch_size)
    per_rank = t.global_batch_size // ctx.dp
    mine = order[ctx.dp_rank * per_rank:(ctx.dp_rank + 1) * per_rank]
    mbs, seq_len = step_microbatches(pairs, mine, t.micro_batch_size, pad_id, pipelined=ctx.pp > 1,
                                     multiple=trainer.seq_multiple)
    result = train_step(trainer, mbs, forward_scores, bt_loss_fn(float(t.global_batch_size)),
                        seq_length=seq_len, micro_batch_size=2 * t.micro_batch_size)
    return result, mbs


def sp_length(length: int, parallel, precision) -> int:
    """``length`` rounded up as RM micro-batches are padded (TP under SP × FP8 alignment)."""
    return round_up(length, config_sequence_multiple(parallel, precision))


def run(cfg: RMJobConfig) -> RMResult:
    t, arch = cfg.train, resolve(cfg.model)
    session = start_session(cfg, tokenizer_dir=cfg.data.tokenizer.path, total_steps=t.train_steps, arch=arch,
                            console_keys=("train/loss", "train/accuracy"), seq_length=sp_length(cfg.data.max_length, cfg.parallel, cfg.precision),
                            post_build=lambda chunks: attach_reward_head(chunks, arch.hidden_size, cfg.model.init_method_std))
    ctx, trainer, state = session.ctx, session.trainer, session.state
    tokenizer = Tokenizer(cfg.data.tokenizer)
    train_pairs = read_pairs(cfg.data.train_path, tokenizer, cfg.data)
    valid_pairs = read_pairs(cfg.data.valid_path, tokenizer, cfg.data) if cfg.data.valid_path else None
    if ctx.is_rank0 and train_pairs.skipped:
        print(f"skipped malformed pairs: {train_pairs.skipped}; e.g. {train_pairs.examples[:3]}", flush=True)
    metrics: dict[str, float] = {}
    bar = tqdm(total=t.train_steps, initial=state.step, desc="train-rm", disable=not (ctx.is_rank0 and cfg.logging.progress))
    interrupted = False
    while state.step < t.train_steps:
        result, _ = rm_step(trainer, train_pairs, cfg, state.consumed_samples, tokenizer.pad_id)
        state.step += 1
        state.consumed_samples += t.global_batch_size
        r = result.report
        metrics = {"train/loss": r["loss"], "train/accuracy": r["correct"] / r["pairs"],
                   "train/margin": r["margin"] / r["pairs"], "train/lr": result.lr, "train/grad_norm": result.grad_norm}
        if valid_pairs is not None and ((t.eval_interval and state.step % t.eval_interval == 0) or state.step == t.train_steps):
            metrics.update(evaluate(trainer, valid_pairs, cfg, tokenizer.pad_id))
        session.logger.log(state.step, metrics, echo=not cfg.logging.progress)
        bar.update(1)
        bar.set_postfix(loss=f"{r['loss']:.3f}", acc=f"{metrics['train/accuracy']:.2f}")
        if session.step_end(t.train_steps):
            interrupted = True
            break
    bar.close()
    session.finish(PLOTS)
    return RMResult(run_dir=str(session.run_dir), eval_accuracy=metrics.get("eval/accuracy"),
                    train_accuracy=metrics.get("train/accuracy"), steps=state.step, interrupted=interrupted)

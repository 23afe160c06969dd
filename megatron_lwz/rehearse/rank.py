"""One rehearsed rank: ``python -m megatron_lwz.rehearse.rank JOB RECIPE RANK WORLD STEPS OUT.json [overrides]``.

Activates the stand-in device and world (``parallel.rehearsal``) *before* megatron is imported,
installs the input stand-ins, runs the job's real ``run(cfg)`` and writes this rank's per-GPU memory
by category to OUT.json. A :class:`RehearsalViolation` (or any error) is written there too, with
the traceback, and the process exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

GIB = 2**30


class Probes:
    """Per-category bytes, filled by wrappers around the job's own functions."""

    def __init__(self) -> None:
        self.bytes: dict[str, int] = {"activations_peak": 0, "logits": 0, "export": 0, "rm": 0}
        self.trainers: list[Any] = []
        self.phase_peaks: dict[str, int] = {}

    def keep_max(self, key: str):
        return lambda n: self.bytes.__setitem__(key, max(self.bytes[key], n))


def _wrap(owner, name: str, wrapper_factory) -> None:
    setattr(owner, name, wrapper_factory(getattr(owner, name)))


def install_probes(job: str, probes: Probes) -> None:
    from megatron.core import pipeline_parallel

    import megatron_lwz.engine.session as session_mod
    from megatron_lwz.parallel.rehearsal import TRACKER

    def trainer_factory(orig):
        def build(*a, **k):
            trainer = orig(*a, **k)
            probes.trainers.append(trainer)
            for chunk in trainer.model:  # logits (B, T, V/TP) of the last stage
                for mod_name, mod in chunk.named_modules():
                    if mod_name.endswith("output_layer"):
                        mod.register_forward_hook(lambda m, i, o: probes.keep_max("logits")(
                            (o[0] if isinstance(o, tuple) else o).untyped_storage().nbytes()))
            return trainer
        return build

    _wrap(session_mod, "build_trainer", trainer_factory)

    def schedule_factory(orig):
        def get():
            schedule = orig()

            def run(*a, **k):
                with TRACKER.window(probes.keep_max("activations_peak")):
                    return schedule(*a, **k)
            return run
        return get

    _wrap(pipeline_parallel, "get_forward_backward_func", schedule_factory)
    if job == "grpo":
        import megatron_lwz.rl.runtime as runtime
        from megatron_lwz.rollout.vllm_engine import VLLMRolloutEngine

        def windowed(key):
            def factory(orig):
                def call(*a, **k):
                    with TRACKER.window(probes.keep_max(key)):
                        return orig(*a, **k)
                return call
            return factory

        _wrap(VLLMRolloutEngine, "update_weights", windowed("export"))
        import megatron_lwz.rl.loop as loop

        for phase in ("rollout", "sync_weights", "set_old_logprobs", "train_minibatch"):
            _wrap(loop, phase, _phase_peak(probes, phase))

        def rm_factory(orig):
            def build(*a, **k):
                TRACKER.resync()
                before = TRACKER.live
                out = orig(*a, **k)
                TRACKER.resync()
                probes.bytes["rm"] = TRACKER.live - before
                return out
            return build

        _wrap(runtime, "_build_writing_rm", rm_factory)


def _phase_peak(probes: Probes, phase: str):
    """Record the most GPU memory resident at any moment of ``phase`` (``phase_peaks`` in the report)."""
    from megatron_lwz.parallel.rehearsal import TRACKER

    def factory(orig):
        def call(*a, **k):
            TRACKER.resync()
            outer = TRACKER.peak
            TRACKER.peak = TRACKER.resident()
            try:
                return orig(*a, **k)
            finally:
                probes.phase_peaks[phase] = max(probes.phase_peaks.get(phase, 0), TRACKER.peak)
                TRACKER.peak = max(outer, TRACKER.peak)
        return call
    return factory


def memory_report(probes: Probes) -> dict[str, float]:
    """Resident categories of this rank's GPU (GiB): model state after the step, peaks of the phases."""
    from megatron_lwz.parallel.rehearsal import TRACKER, unique_bytes

    trainer = probes.trainers[0]
    params = unique_bytes(p for chunk in trainer.model for p in chunk.parameters())
    grads = unique_bytes(getattr(p, "main_grad", None) for chunk in trainer.model for p in chunk.parameters())
    opt_tensors = []
    for opt in getattr(trainer.optimizer, "chained_optimizers", [trainer.optimizer]):
        inner = getattr(opt, "optimizer", None)
        if inner is None:
            continue
        for group in inner.param_groups:
            opt_tensors += list(group["params"])
        for state in inner.state.values():
            opt_tensors += [v for v in state.values() if hasattr(v, "untyped_storage")]
    out = {"params_gib": params / GIB, "grads_gib": grads / GIB, "optimizer_gib": unique_bytes(opt_tensors) / GIB}
    out.update({f"{k}_gib": v / GIB for k, v in probes.bytes.items()})
    out["vllm_gib"] = TRACKER.extra_peak.get("vllm", 0) / GIB
    out["overhead_gib"] = TRACKER.extra.get("context", 0) / GIB
    out["peak_gib"] = TRACKER.peak / GIB
    out.update({f"peak_{k}_gib": v / GIB for k, v in probes.phase_peaks.items()})
    return out


def main(argv: list[str]) -> int:
    job, recipe, rank, world, steps, out_path, *overrides = argv
    os.environ.update(RANK=rank, WORLD_SIZE=world, LOCAL_RANK=str(int(rank) % 8), LOCAL_WORLD_SIZE=str(min(8, int(world))),
                      MASTER_ADDR="127.0.0.1",
                      MASTER_PORT="29400")
    from megatron_lwz.parallel import rehearsal

    rehearsal.activate()
    result: dict[str, Any] = {"rank": int(rank)}
    probes = Probes()
    try:
        result.update(_run(job, recipe, overrides, int(world), int(steps), probes))
        result["violations"] = 0
    except rehearsal.RehearsalViolation as err:
        result.update(violations=1, error=str(err), traceback=traceback.format_exc())
    except Exception as err:  # noqa: BLE001 — any failure of the job code is a rehearsal finding
        result.update(violations=0, error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
    if "error" in result and probes.trainers:  # memory up to the failure
        try:
            result["memory_at_failure"] = {k: round(v, 3) for k, v in memory_report(probes).items()}
        except Exception:  # noqa: BLE001 — the report must not hide the failure
            pass
    with open(out_path, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0 if "error" not in result else 1


def _run(job: str, recipe: str, overrides: list[str], world_size: int, steps: int, probes: Probes) -> dict[str, Any]:
    from megatron_lwz.cli.jobs import JOBS, _load
    from megatron_lwz.config.base import load_config
    from megatron_lwz.parallel.rehearsal import COUNTS
    from megatron_lwz.rehearse import standins

    standins.env_defaults()
    cfg_cls, run_fn = (_load(s) for s in JOBS[job])
    arch_cfg = load_config(cfg_cls, recipe, overrides)  # the recipe as the GPU job sees it: TE, FP8
    from megatron_lwz.config.validate import validate_model_parallel
    from megatron_lwz.models.presets import resolve

    validate_model_parallel(resolve(arch_cfg.model), arch_cfg.model, arch_cfg.parallel, arch_cfg.precision,
                            world_size, cuda=True, te=True)
    base = standins.overrides(job) + overrides
    scaled, scaled_words = standins.scale_overrides(job, load_config(cfg_cls, recipe, base), world_size, steps)
    cfg = load_config(cfg_cls, recipe, base + scaled)
    replaced = scaled_words + standins.install(job, cfg)
    install_probes(job, probes)
    run_fn(cfg)
    ctx = probes.trainers[0].ctx
    return {"stage": f"pp{ctx.pp_rank}", "tp_rank": ctx.tp_rank, "dp_rank": ctx.dp_rank, **memory_report(probes),
            "collectives": dict(COUNTS), "standins": replaced}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

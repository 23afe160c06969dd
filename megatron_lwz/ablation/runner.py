"""Runs a study: the shared prepare stages once, then every (variant, seed) as its own `lwz` process.

Resumable: a run that exited 0 leaves ``<run_dir>/ablation_run.json`` (argv, overrides, wall time) and
is never redone; a run without it is started again and the job resumes from its own checkpoint
(``checkpoint.save_dir`` defaults to the run dir). A marker written for other overrides is an error
(the study changed under an existing output folder). Runs go seed-major (seed 1 of every variant,
then seed 2, …), so a study stopped early still holds complete pairs. With ``lock`` each subprocess
holds an exclusive ``flock`` on that file while it runs (the same lock as ``flock(1)``), one run per
acquisition, so other heavy jobs on the machine can interleave.

Identical runs are shared: a run whose fingerprint (argv without the run-dir override, and the study
environment) equals that of a finished run anywhere under ``<out>`` is copied from it (checkpoints
left out) instead of being trained again — the baseline arms of several studies are often the same
recipe with the same seeds (e.g. the think template, Eq. 5 and the CPT start are all the defaults).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from megatron_lwz.ablation.spec import ROOT, PrepareStage, StudySpec
from megatron_lwz.config.base import ConfigError, parse_overrides

MARKER = "ablation_run.json"


@dataclass(kw_only=True)
class RunPlan:
    """One (variant, seed) run: where it writes and the exact argv and overrides it is started with."""

    variant: str
    seed: int
    run_dir: Path
    overrides: list[str]
    argv: list[str] = field(default_factory=list)
    fingerprint: str = ""
    """What makes two runs identical: argv without the run-dir override, plus the study environment."""

    def done(self) -> bool:
        """True when a previous invocation finished this run with exactly these overrides."""
        marker = self.run_dir / MARKER
        if not marker.is_file():
            return False
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("overrides")
        if recorded != self.overrides:
            raise ConfigError(f"{marker}: this run finished with other overrides than the study now asks for "
                              f"({recorded} vs {self.overrides}); use a new --out or delete {self.run_dir}")
        return True


def seed_values(spec: StudySpec, num_seeds: int) -> list[int]:
    if num_seeds < 1:
        raise ConfigError(f"--seeds must be ≥ 1, got {num_seeds}")
    return [spec.seed_base + i for i in range(num_seeds)]


def _resolve_path(path: str) -> str:
    return str(path if Path(path).is_absolute() else ROOT / path)


def _argv(spec: StudySpec, job: str, config: str, overrides: list[str]) -> list[str]:
    fields = {"python": sys.executable, "job": job, "config": _resolve_path(config)}
    return [part.format(**fields) for part in spec.command] + overrides


def plan_runs(spec: StudySpec, seeds: list[int], out: Path, base: str | None = None,
              extra: list[str] = ()) -> list[RunPlan]:
    """Every (variant, seed) of the study, seed-major; ``extra`` (CLI overrides) may not touch a variant's keys."""
    variant_keys = {k for v in spec.variants.values() for k in _flat(parse_overrides(v.overrides))}
    clash = variant_keys & set(_flat(parse_overrides(list(extra))))
    if clash:
        raise ConfigError(f"overrides {sorted(clash)} are what the study's variants set; they would erase the ablation")
    plans = []
    for seed in seeds:
        for key, variant in spec.variants.items():
            run_dir = out / spec.name / key / f"seed{seed}"
            overrides = [*spec.base_overrides, *extra, *variant.overrides,
                         *(o.format(seed=seed) for o in spec.seed_overrides),
                         spec.run_dir_override.format(run_dir=run_dir)]
            argv = _argv(spec, spec.job, base or spec.base, overrides)
            plans.append(RunPlan(variant=key, seed=seed, run_dir=run_dir, overrides=overrides, argv=argv,
                                 fingerprint=_fingerprint(spec, out, base or spec.base, overrides[:-1])))
    return plans


def _fingerprint(spec: StudySpec, out: Path, base: str, overrides: list[str]) -> str:
    """The launch command, the study env and the job's resolved config (the overrides when it cannot be
    resolved, e.g. a job without a config class here); the run-dir override is not part of it."""
    from megatron_lwz.cli.jobs import JOBS, _load
    from megatron_lwz.config.base import load_config, to_dict

    env = {k: v.format(out=out, shared=spec.shared_dir.format(out=out)) for k, v in spec.env.items()}
    resolved: object = overrides
    if spec.job in JOBS:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            resolved = to_dict(load_config(_load(JOBS[spec.job][0]), _resolve_path(base), overrides))
            resolved.get("logging", {}).pop("run_dir", None)
        except (ConfigError, OSError):
            pass
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return json.dumps([_argv(spec, spec.job, base, []), env, resolved], sort_keys=True)


def _finished_twin(plan: RunPlan, out: Path) -> Path | None:
    """A finished run under ``out`` (another study's, typically) with the same fingerprint as ``plan``."""
    for marker in sorted(out.glob(f"*/*/seed*/{MARKER}")):
        if marker.parent == plan.run_dir:
            continue
        try:
            record = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if plan.fingerprint and record.get("fingerprint") == plan.fingerprint:
            return marker.parent
    return None


def _flat(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        keys += _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return keys


@contextlib.contextmanager
def _locked(lock: str | None):
    if lock is None:
        yield
        return
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def study_env(spec: StudySpec, out: Path) -> dict[str, str]:
    shared = spec.shared_dir.format(out=out)
    extra = {k: v.format(out=out, shared=shared) for k, v in spec.env.items()}
    return dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), PYTHONWARNINGS="ignore", **extra)


def _run_logged(argv: list[str], env: dict[str, str], log: Path, lock: str | None) -> tuple[int, float]:
    """Run ``argv`` with stdout+stderr to ``log`` (under ``lock``); (exit code, wall seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with _locked(lock), open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(argv)}\n")
        fh.flush()
        start = time.time()
        code = subprocess.run(argv, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT).returncode
    return code, time.time() - start


def _fail(what: str, code: int, log: Path) -> int:
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
    print(f"ablate: {what} failed with exit code {code}; last lines of {log}:\n  " + "\n  ".join(tail),
          file=sys.stderr, flush=True)
    return code


def run_prepare(spec: StudySpec, out: Path, lock: str | None) -> int:
    """The shared stages, each once (done-marker in ``<shared>/.ablate``); returns the first failing code or 0."""
    shared = Path(spec.shared_dir.format(out=out))
    env = study_env(spec, out)
    for stage in spec.prepare:
        marker = shared / ".ablate" / f"{stage.name}.json"
        record = {"data": stage.data, "job": stage.job, "config": stage.config, "overrides": stage.overrides}
        if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("stage") == record:
            continue
        print(f"ablate: prepare {stage.name} → {shared}", flush=True)
        start = time.time()
        if stage.data == "demo":
            _demo_data(shared)
        else:
            code, _ = _run_logged(_argv(spec, stage.job, stage.config, stage.overrides), env,
                                  shared / ".ablate" / f"{stage.name}.log", lock)
            if code != 0:
                return _fail(f"prepare stage {stage.name}", code, shared / ".ablate" / f"{stage.name}.log")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"stage": record, "wall_s": round(time.time() - start, 1)}), encoding="utf-8")
    return 0


def _demo_data(shared: Path) -> None:
    from megatron_lwz.cli.demo import prepare_data

    shared.mkdir(parents=True, exist_ok=True)
    prepare_data(shared, 4096)


def run_plans(spec: StudySpec, plans: list[RunPlan], out: Path, lock: str | None, *, progress: bool = True) -> int:
    """Start every run that is not done yet; stops at the first failure and returns its exit code."""
    from tqdm import tqdm

    env = study_env(spec, out)
    todo = [p for p in plans if not p.done()]
    print(f"ablate: study {spec.name}: {len(plans)} runs, {len(plans) - len(todo)} already done", flush=True)
    for plan in tqdm(todo, desc=f"ablate {spec.name}", disable=not progress):
        # twin check, run and marker under the lock, so two studies never train one run twice; a twin that
        # is already finished is copied without waiting for the lock
        with _locked(None if _finished_twin(plan, out) else lock):
            code = _run_one(plan, out, env)
        if code != 0:
            return _fail(f"run {plan.variant}/seed{plan.seed}", code, plan.run_dir / "ablation.log")
    return 0


def _run_one(plan: RunPlan, out: Path, env: dict[str, str]) -> int:
    """Copy a finished identical run, or train this one; the done-marker only after success."""
    if plan.done():  # finished meanwhile by a concurrent `lwz ablate` of the same study
        return 0
    marker = {"variant": plan.variant, "seed": plan.seed, "overrides": plan.overrides, "argv": plan.argv,
              "fingerprint": plan.fingerprint}
    twin = _finished_twin(plan, out)
    if twin is not None:
        shutil.rmtree(plan.run_dir, ignore_errors=True)
        shutil.copytree(twin, plan.run_dir, ignore=shutil.ignore_patterns("checkpoints", MARKER))
        marker["copied_from"] = str(twin)
        print(f"ablate: {plan.variant}/seed{plan.seed} is identical to {twin}: copied", flush=True)
    else:
        code, wall = _run_logged(plan.argv, env, plan.run_dir / "ablation.log", None)
        if code != 0:
            return code
        marker["wall_s"] = round(wall, 1)
        print(f"ablate: {plan.variant}/seed{plan.seed} done in {wall:.0f} s", flush=True)
    (plan.run_dir / MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
    return 0

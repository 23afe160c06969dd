"""Study YAML loading (shipped studies, `extends`, errors that name the file and field), run planning,
one subprocess per run, resume (finished runs are not redone), and the shipped variants' resolved configs."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from megatron_lwz.ablation.runner import plan_runs, run_plans, seed_values
from megatron_lwz.ablation.spec import STUDY_DIR, load_study
from megatron_lwz.config.base import ConfigError, load_config
from megatron_lwz.rl.job_config import GRPOJobConfig

STUDIES = sorted(p.stem for p in STUDY_DIR.glob("*.yaml") if not p.stem.startswith("_"))
CLUSTER_ENV = {"DATA_DIR": "/lustre/lwz/data", "MODELS_DIR": "/lustre/lwz/models", "CKPT_DIR": "/lustre/lwz/ckpt",
               "RUNS_DIR": "/lustre/lwz/runs", "DEMO_DIR": "/tmp/lwz-demo"}


def test_the_three_studies_and_their_32b_versions_ship():
    assert {"advantage", "think", "cpt", "advantage_32b", "think_32b", "cpt_32b"} <= set(STUDIES)


@pytest.mark.parametrize("name", STUDIES)
def test_every_variant_resolves_to_a_valid_job_config(name, monkeypatch, tmp_path):
    for key, value in CLUSTER_ENV.items():
        monkeypatch.setenv(key, value)
    spec = load_study(name)
    plans = plan_runs(spec, seed_values(spec, 2), tmp_path)
    assert len(plans) == 2 * len(spec.variants) and [p.seed for p in plans[:2]] == [spec.seed_base] * 2
    resolved = {}
    for plan in plans:
        cfg = load_config(GRPOJobConfig, Path(plan.argv[plan.argv.index("--config") + 1]) if "--config" in plan.argv
                          else spec.base, plan.overrides)
        assert cfg.logging.run_dir == str(plan.run_dir)
        resolved[(plan.variant, plan.seed)] = cfg
    a, b = (resolved[(v, spec.seed_base)] for v in spec.variants)
    assert a != b, "the variants of a study must differ"
    assert a.rl.seed == b.rl.seed and a.parallel.seed == b.parallel.seed  # paired by seed


def test_extends_and_errors(tmp_path):
    (tmp_path / "parent.yaml").write_text(yaml.safe_dump({"base": "examples/grpo/tiny_cpu.yaml", "alpha": 0.1,
                                                          "env": {"A": "1"}}))
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": "parent.yaml", "env": {"B": "2"}, "baseline": "x",
                                     "variants": {"x": {"overrides": ["a.b=1"]}, "y": {}}}))
    spec = load_study(str(child))
    assert spec.name == "child" and spec.alpha == 0.1 and spec.env == {"A": "1", "B": "2"}
    assert spec.label("y") == "y"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": "b.yaml", "baseline": "z", "variants": {"x": {}, "y": {}}}))
    with pytest.raises(ConfigError, match=r"bad.yaml.*baseline 'z'"):
        load_study(str(bad))
    bad.write_text(yaml.safe_dump({"base": "b.yaml", "baseline": "x", "variants": {"x": {"overrides": ["nokey"]},
                                                                                   "y": {}}}))
    with pytest.raises(ConfigError, match=r"variants.x.overrides"):
        load_study(str(bad))
    with pytest.raises(ConfigError, match="known studies: .*advantage"):
        load_study("no_such_study")
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_study(str(loop))


def test_cli_overrides_may_not_erase_the_ablation(tmp_path):
    spec = load_study("advantage")
    with pytest.raises(ConfigError, match="reward.combine"):
        plan_runs(spec, [1], tmp_path, extra=["reward.combine=reward_mean"])


def _fake_study(tmp_path: Path):
    """A study whose 'job' is a tiny Python script: it appends to calls.txt and writes its run dir."""
    script = tmp_path / "fake_job.py"
    script.write_text("import sys, pathlib\n"
                      "run_dir = pathlib.Path([a for a in sys.argv if a.startswith('run=')][0][4:])\n"
                      "run_dir.mkdir(parents=True, exist_ok=True)\n"
                      f"open({str(tmp_path / 'calls.txt')!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                      "sys.exit(3 if 'fail=1' in sys.argv else 0)\n")
    study = tmp_path / "fake.yaml"
    study.write_text(yaml.safe_dump({"base": "unused.yaml", "baseline": "a", "command": ["{python}", str(script)],
                                     "seed_overrides": ["seed={seed}"], "run_dir_override": "run={run_dir}",
                                     "variants": {"a": {"overrides": ["v=a"]}, "b": {"overrides": ["v=b"]}}}))
    return load_study(str(study))


def test_one_process_per_run_and_resume(tmp_path):
    spec = _fake_study(tmp_path)
    plans = plan_runs(spec, seed_values(spec, 2), tmp_path / "out")
    assert run_plans(spec, plans, tmp_path / "out", lock=str(tmp_path / "lock"), progress=False) == 0
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 4 and calls[0].startswith("v=a seed=1234") and calls[1].startswith("v=b seed=1234")
    assert all(p.done() for p in plans)
    assert json.loads((plans[0].run_dir / "ablation_run.json").read_text())["overrides"] == plans[0].overrides
    run_plans(spec, plans, tmp_path / "out", lock=None, progress=False)  # nothing left to do
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 4
    more = plan_runs(spec, seed_values(spec, 3), tmp_path / "out")  # a third seed: only its two runs start
    run_plans(spec, more, tmp_path / "out", lock=None, progress=False)
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 6
    changed = plan_runs(spec, seed_values(spec, 1), tmp_path / "out", extra=["lr=2"])
    with pytest.raises(ConfigError, match="other overrides"):
        changed[0].done()


def test_a_failing_run_stops_the_study_and_is_not_marked_done(tmp_path, capsys):
    spec = _fake_study(tmp_path)
    plans = plan_runs(spec, seed_values(spec, 2), tmp_path / "out", extra=["fail=1"])
    assert run_plans(spec, plans, tmp_path / "out", lock=None, progress=False) == 3
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 1 and not plans[0].done()
    assert "run a/seed1234 failed with exit code 3" in capsys.readouterr().err
    assert sys.executable  # the fake job ran under this interpreter ({python})


def test_identical_runs_of_another_study_are_copied_not_rerun(tmp_path):
    spec = _fake_study(tmp_path)
    run_plans(spec, plan_runs(spec, [7], tmp_path / "out"), tmp_path / "out", lock=None, progress=False)
    other = load_study(str(tmp_path / "fake.yaml"))
    other.name = "other"
    other.variants["b"].overrides = ["v=c"]  # 'a' is the same run as in the first study, 'b' is new
    plans = plan_runs(other, [7], tmp_path / "out")
    assert run_plans(other, plans, tmp_path / "out", lock=None, progress=False) == 0
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 3 and calls[-1].startswith("v=c seed=7")
    marker = json.loads((plans[0].run_dir / "ablation_run.json").read_text())
    assert marker["copied_from"].endswith("fake/a/seed7") and plans[0].done()


def test_shipped_baselines_share_one_fingerprint(tmp_path):
    """The think, Eq. 5 and CPT-start baselines are the same run (all defaults): one training, two copies."""
    prints = {name: [p for p in plan_runs(load_study(name), [1], tmp_path)] for name in ("advantage", "think", "cpt")}
    base = {name: next(p for p in plans if p.variant == load_study(name).baseline).fingerprint
            for name, plans in prints.items()}
    assert base["advantage"] == base["think"] == base["cpt"] != ""
    others = {p.fingerprint for plans in prints.values() for p in plans} - {base["advantage"]}
    assert len(others) == 3  # reward_mean, direct, no pretraining: each its own run

"""The three CPU-scale ablation studies, each from a clean output folder with the one command users run
(slow: the shared data + pretraining + Writing RM stages once, ~8 min on 2 cores, then 6 GRPO runs of
~1–1.5 min per study). Checks: every (variant, seed) finished, the report files and the one JSON line;
then one run of the non-baseline arm is deleted and the same command redoes only that run, with identical held-out answers and an
identical report (reproducible for a fixed seed set on one machine; finished runs are not redone)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.e2e.conftest import lwz

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(5400)]
SEEDS = 3


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("ablations")  # shared by the three studies: one pretraining, one RM


def _ablate(study: str, out) -> tuple[dict, str]:
    proc = lwz("ablate", "--study", study, "--seeds", str(SEEDS), "--out", str(out), "--no-progress", timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout


@pytest.mark.parametrize("study", ["advantage", "think", "cpt"])
def test_study_runs_reports_and_reproduces(study, out):
    summary, stdout = _ablate(study, out)
    print(stdout[-6000:])
    variants = list(summary["seeds"])
    assert len(variants) == 2 and all(len(s) == SEEDS for s in summary["seeds"].values())
    other = next(v for v in variants if v != summary["baseline"])
    assert set(summary["vs_baseline"][other]) >= {"total", "length", "format", "in_range"}
    assert (out / study / "report.md").is_file() and (out / study / "curves.png").stat().st_size > 10_000
    assert "Verdicts:" in stdout
    # the non-baseline arm: the baselines of the three studies are one run (copied), this one is trained here
    run_dir = out / study / other / f"seed{summary['seeds'][other][0]}"
    answers = sorted((run_dir / "eval").glob("step_*.jsonl"))
    assert len(answers) == 3  # before the first update, at 4, after the last (8)
    before = [p.read_text() for p in answers]
    shutil.rmtree(run_dir)
    again, stdout = _ablate(study, out)
    assert stdout.count(" done in ") == 1  # only the deleted run ran again
    assert [p.read_text() for p in sorted((run_dir / "eval").glob("step_*.jsonl"))] == before
    assert again == summary

"""The report on synthetic runs with a known effect: a real difference is detected, none is not, and a
run-level effect that only looks significant over prompts is not declared a difference over seeds."""

import json

import pytest
from synthetic import PROMPTS, study_runs, write_run

from megatron_lwz.ablation.collect import load_run
from megatron_lwz.ablation.report import compact, markdown, plot, summarize
from megatron_lwz.ablation.spec import StudySpec, VariantSpec


def _spec(**kw):
    return StudySpec(name="synthetic", base="x.yaml", baseline="a", metrics=["total", "length", "format", "in_range"],
                     variants={"a": VariantSpec(label="arm A"), "b": VariantSpec(label="arm B")}, **kw)


def _load(paths):
    return {arm: {s: load_run(p) for s, p in by_seed.items()} for arm, by_seed in paths.items()}


def _length(summary):
    return next(c for c in summary["comparisons"] if c["metric"] == "length")


def test_known_difference_is_detected(tmp_path):
    spec = _spec()
    summary = summarize(spec, _load(study_runs(tmp_path, effect=0.15, seeds=4)))
    length = _length(summary)
    assert length["seeds"]["p_t"] < 0.05 and length["prompts"]["p_t"] < 0.05
    assert length["seeds"]["mean_diff"] == pytest.approx(0.15, abs=0.05)
    assert length["seeds"]["ci_low"] < 0.15 < length["seeds"]["ci_high"]
    assert "arm B is higher than arm A" in length["verdict"]
    # the total is (length + writing + format) / 3 with writing, format identical in both arms: Δ_total = Δ_length / 3
    total = next(c for c in summary["comparisons"] if c["metric"] == "total")
    assert total["seeds"]["mean_diff"] == pytest.approx(length["seeds"]["mean_diff"] / 3, rel=1e-9)
    assert compact(summary)["vs_baseline"]["b"]["length"]["detected"] is True
    fmt = next(c for c in summary["comparisons"] if c["metric"] == "format")  # constant 1.0 in both arms
    assert fmt["seeds"]["mean_diff"] == 0.0 and "no detectable difference at 4 seeds" in fmt["verdict"]


def test_no_difference_is_not_detected(tmp_path):
    spec = _spec()
    summary = summarize(spec, _load(study_runs(tmp_path, effect=0.0, seeds=3)))
    length = _length(summary)
    assert length["seeds"]["p_t"] >= 0.05 and length["prompts"]["p_t"] >= 0.05
    assert "no detectable difference at 3 seeds" in length["verdict"]
    assert compact(summary)["vs_baseline"]["b"]["length"]["detected"] is False
    text = markdown(spec, summary)
    assert "no detectable difference at 3 seeds" in text and "| arm B (n=3) | length |" in text


def test_run_level_noise_is_not_a_difference_over_seeds(tmp_path):
    """Each run pair differs by a seed-specific shift of random sign: the prompt-level test (which holds the
    runs fixed) sees a difference, the seed-level verdict correctly does not."""
    spec = _spec()
    runs = _load(study_runs(tmp_path, effect=0.0, seeds=3, seed_effects=[0.3, -0.1, 0.2], noise=0.02))
    length = _length(summary := summarize(spec, runs))
    assert length["prompts"]["p_t"] < 1e-6
    assert length["seeds"]["p_t"] > 0.05 and "no detectable difference at 3 seeds" in length["verdict"]
    assert "these 3 run pairs differ over 24 prompts" in length["verdict"]
    assert json.dumps(compact(summary))  # serialisable


def test_intervals_first_last_gain_by_hand(tmp_path):
    # two seeds of one arm: prompt means 0.2 → 0.6 and 0.4 → 0.6: first mean 0.3, last 0.6, gain 0.3;
    # CI of first: 0.3 ± 12.706 · 0.1414 / √2 = 0.3 ± 1.2706.
    runs = {"a": {}, "b": {}}
    for arm in runs:
        for s, start in enumerate((0.2, 0.4)):
            run_dir = write_run(tmp_path / arm / f"s{s}", {0: {p: start for p in PROMPTS}, 8: {p: 0.6 for p in PROMPTS}})
            runs[arm][s] = load_run(run_dir)
    cols = summarize(_spec(), runs)["intervals"]["length"]["a"]
    assert cols["first"]["mean"] == pytest.approx(0.3) and cols["last"]["mean"] == pytest.approx(0.6)
    assert cols["gain"]["mean"] == pytest.approx(0.3)
    assert cols["first"]["high"] - 0.3 == pytest.approx(12.7062 * 0.1414214 / 2 ** 0.5, rel=1e-4)
    assert cols["last"]["low"] == pytest.approx(0.6)  # no spread: a zero-width interval


def test_collect_total_in_range_and_malformed_lines(tmp_path):
    run_dir = write_run(tmp_path / "r", {0: {"p00": 0.4, "p01": 1.0}}, words={"p00": 50, "p01": 150})
    with open(run_dir / "eval" / "step_00000.jsonl", "a") as fh:
        fh.write('{"broken json\n{"prompt_id": "p02"}\n')
    run = load_run(run_dir)
    assert run.skipped == 2
    assert run.evals[0]["total"] == {"p00": pytest.approx((0.4 + 0.5 + 1.0) / 3), "p01": pytest.approx(2.5 / 3)}
    assert run.evals[0]["in_range"] == {"p00": 0.0, "p01": 1.0}  # range [100, 200]
    assert run.train == [(1, pytest.approx(0.7))]


def test_gain_comparison_and_plot(tmp_path):
    spec = _spec(compare="gain")
    runs = _load(study_runs(tmp_path, effect=0.2, seeds=3))
    summary = summarize(spec, runs)
    assert _length(summary)["seeds"]["mean_diff"] == pytest.approx(0.2, abs=0.05)
    png = plot(spec, runs, ["total", "length"], tmp_path / "curves.png")
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"

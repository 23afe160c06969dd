"""``lwz bench rollout``: the measured part on real HF engines (tiny), its JSON contract, the CLI."""

from __future__ import annotations

import argparse
import io
import json

from megatron_lwz.bench.report import emit
from megatron_lwz.bench.rollout import RolloutBenchConfig, run_rollout_bench
from megatron_lwz.cli import bench_cmds


def test_measured_part_and_json_keys():
    cfg = RolloutBenchConfig(prompts=6, group_size=2, max_tokens=48, repeats=1, project=False, overlap_iterations=0)
    result = run_rollout_bench(cfg)
    out = io.StringIO()
    emit(result, out)
    record = json.loads(out.getvalue().splitlines()[-1])
    measured = record["measured"]
    assert measured["samples_identical"] is True  # per-sample seeds: same samples whatever the dispatch
    assert measured["round_robin_makespan_s"] > 0 and measured["length_aware_makespan_s"] > 0
    assert [r["variant"] for r in record["rows"]] == ["2 HF engines, round_robin", "2 HF engines, length_aware"]


def test_cli_registers_rollout():
    parser = argparse.ArgumentParser()
    bench_cmds.add_arguments(parser, "bench")
    args = parser.parse_args(["rollout", "--engines", "3", "--no-project"])
    assert args.which == "rollout" and args.engines == 3 and args.no_project

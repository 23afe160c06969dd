"""``lwz bench sync`` / ``lwz bench e2e`` result assembly from hand-made records and metrics rows."""

from __future__ import annotations

import json

import pytest

from megatron_lwz.bench.e2e import E2EBenchConfig, phase_table, run_e2e_bench
from megatron_lwz.bench.sync import row_from_record


def test_sync_row():
    row = row_from_record({"tp": 2, "bytes": 4e9, "sync_s": [2.0, 4.0, 3.0], "memcpy_s": [1.0, 1.0, 2.0],
                           "device": "cpu"})
    assert row["sync_s"] == 3.0 and row["sync_gb_s"] == pytest.approx(4 / 3) and row["ratio"] == pytest.approx(1 / 3)


def _metrics(step, rollout, train, sync=1.0):
    return {"step": step, "time/rollout_s": rollout, "time/reward_s": 1.0, "time/old_logprobs_s": 1.0,
            "time/train_s": train, "time/sync_s": sync, "perf/tokens_per_s": 800.0, "sync/gbytes": 2.0}


def test_phase_table_skips_warmup_and_shares_sum_to_one():
    rows = [_metrics(1, 100.0, 50.0, sync=30.0), _metrics(2, 6.0, 2.0), _metrics(3, 6.0, 2.0)]
    table, summary = phase_table(rows, skip_first=1, gpus=8)
    by = {r["phase"]: r for r in table}
    assert by["step"]["seconds"] == 11.0 and by["rollout"]["share"] == pytest.approx(6 / 11)
    assert sum(r["share"] for r in table if r["phase"] != "step") == pytest.approx(1.0)
    assert summary["tokens_per_s_per_gpu"] == 100.0 and summary["sync_gb_per_s"] == 2.0
    assert summary["steps_measured"] == 2 and summary["steps_total"] == 3
    with pytest.raises(ValueError, match="phase timers"):
        phase_table([{"step": 1, "train/loss": 1.0}], 0, 1)


def test_e2e_reads_an_existing_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(_metrics(i, 5.0, 3.0)) for i in (1, 2, 3)) + "\n")
    result = run_e2e_bench(E2EBenchConfig(run_dir=str(tmp_path), gpus=2, skip_first=0))
    assert result.summary["step_s"] == 11.0 and result.summary["tokens_per_s_per_gpu"] == 400.0

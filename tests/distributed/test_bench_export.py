"""``lwz bench export`` end to end on a tiny model: the CLI prints a table and ONE JSON line last,
the export delivers exactly the HF model's bytes (``ModelArch.num_params`` × 4, fp32) on every rank,
and at TP = 2 the shared-memory and gloo-collective transports produce bit-identical tensors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from megatron_lwz.models.presets import ModelArch
from tests.launch import ROOT

pytestmark = pytest.mark.distributed
TINY = ["--hidden", "64", "--layers", "2", "--ffn", "128", "--heads", "4", "--kv-heads", "2", "--vocab", "500",
        "--repeats", "2", "--bucket-mb", "0.05"]
ARCH = ModelArch(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4, num_query_groups=2,
                 vocab_size=500, max_position_embeddings=4096, qkv_bias=True)


def _bench(*args: str) -> tuple[str, dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", "bench", "export", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.rstrip("\n").split("\n")
    return proc.stdout, json.loads(lines[-1])


def _check_common(record: dict, tps: list[int]) -> None:
    assert record["bench"] == "export" and record["target_ratio"] == 0.5
    for key in ["meets_target", "transports_identical", "model", "rows"] + [f"ratio_tp{tp}" for tp in tps]:
        assert key in record, key
    for row in record["rows"]:
        assert row["gbytes"] * 1e9 == ARCH.num_params() * 4, "export did not deliver exactly the HF parameters"
        assert row["tensors"] == 3 + 2 * 12  # embed, norm, lm_head; per layer q/k/v weight+bias, o, gate, up, down, 2 norms
        assert row["export_gbps"] > 0 and row["memcpy_gbps"] > 0 and row["ratio"] > 0


def test_bench_export_tp1_cli():
    stdout, record = _bench("--tp", "1", *TINY)
    assert "| TP |" in stdout and sum(line.startswith("{") for line in stdout.splitlines()) == 1
    _check_common(record, [1])
    assert [(r["tp"], r["transport"]) for r in record["rows"]] == [(1, "direct")]
    assert record["transports_identical"] is None


def test_bench_export_tp2_transports_identical():
    _, record = _bench("--tp", "2", "--collectives", *TINY)
    _check_common(record, [2])
    assert {(r["rank"], r["transport"]) for r in record["rows"]} == {
        (rank, t) for rank in (0, 1) for t in ("shm", "shm+staging", "collectives")}
    assert record["transports_identical"] is True
    assert record["transport_tp2"] == "shm+staging"

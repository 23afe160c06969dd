"""``lwz train-rm``: a Bradley–Terry RM trained on CPU from scratch separates chosen from rejected
answers that differ in a learnable property (the rejected answer repeats itself or has its words
shuffled) — held-out accuracy ≥ 90% (issue: rewards acceptance). The demo's off-topic pairs need the
pretrained backbone (the README demo initialises the RM from the pretraining checkpoint)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import ROOT, VOCAB, lwz

pytestmark = pytest.mark.e2e


def _subset(src, dst, kinds=("repetitive", "shuffled")) -> None:
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows if r["rejected_kind"] in kinds))


def test_rm_learns_preferences(demo_data):
    data = demo_data / "data"
    _subset(data / "rm_pairs.jsonl", data / "rm_easy.jsonl")
    _subset(data / "rm_pairs_heldout.jsonl", data / "rm_easy_heldout.jsonl")
    proc = lwz("train-rm", "--config", str(ROOT / "examples/rm/tiny_cpu.yaml"), f"model.vocab_size={VOCAB}",
               "checkpoint.load_dir=null", "checkpoint.load_weights_only=false", "train.train_steps=100",
               "train.eval_interval=50", f"data.train_path={data}/rm_easy.jsonl",
               f"data.valid_path={data}/rm_easy_heldout.jsonl", f"logging.run_dir={demo_data}/rm", "logging.progress=false",
               env={"DEMO_DIR": str(demo_data)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in (demo_data / "rm" / "metrics.jsonl").read_text().splitlines()]
    acc = [r["eval/accuracy"] for r in rows if "eval/accuracy" in r]
    assert acc and acc[-1] >= 0.9, f"held-out pairwise accuracy {acc}"
    assert (demo_data / "rm" / "checkpoints").is_dir()

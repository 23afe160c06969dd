"""``lwz eval arena --judge rm:CKPT`` end to end: a tiny Writing RM trained on CPU judges two systems
offline — the one answering with the held-out *chosen* answers must out-rate the one answering with the
*rejected* (repetitive / shuffled) answers; then ``lwz eval length`` on the same files (issue 16)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import ROOT, VOCAB, lwz

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_rm_judged_arena(demo_data, tmp_path):
    data = demo_data / "data"
    rows = [json.loads(x) for x in (data / "rm_pairs.jsonl").read_text().splitlines()]
    easy = [r for r in rows if r["rejected_kind"] in ("repetitive", "shuffled")]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in easy))
    run = tmp_path / "rm"
    proc = lwz("train-rm", "--config", str(ROOT / "examples/rm/tiny_cpu.yaml"), f"model.vocab_size={VOCAB}",
               "checkpoint.load_dir=null", "checkpoint.load_weights_only=false", "train.train_steps=60",
               "train.eval_interval=0", f"data.train_path={tmp_path}/train.jsonl", "data.valid_path=null",
               f"logging.run_dir={run}", "logging.progress=false", env={"DEMO_DIR": str(demo_data)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    held = [json.loads(x) for x in (data / "rm_pairs_heldout.jsonl").read_text().splitlines()]
    held = [r for r in held if r["rejected_kind"] in ("repetitive", "shuffled")][:20]
    for name, key in (("chosen", "chosen"), ("rejected", "rejected")):
        (tmp_path / f"{name}.jsonl").write_text("".join(
            json.dumps({"id": i, "prompt": r["prompt"], "response": f"<answer>{r[key]}</answer>"}) + "\n"
            for i, r in enumerate(held)))
    proc = lwz("eval", "arena", "--generations", str(tmp_path / "chosen.jsonl"), str(tmp_path / "rejected.jsonl"),
               "--judge", f"rm:{run}/checkpoints", "--out", str(tmp_path / "arena"), "--bootstrap", "200")
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["judgments"] == 40 and result["failed"] == 0
    assert result["elo"]["chosen"] > result["elo"]["rejected"] + 100
    summary = json.loads((tmp_path / "arena" / "summary.json").read_text())
    assert summary["win_rate"]["chosen"]["rejected"] >= 0.8 and summary["position_bias"] == pytest.approx(0.5)


def test_generate_from_our_checkpoint(demo_data, tmp_path):
    """``lwz eval generate --model <our checkpoint>``: exported to HF once, answered by the HF engine on CPU,
    resumable; the answers then score with ``lwz eval length``."""
    run = tmp_path / "pre"
    proc = lwz("pretrain", "--config", str(ROOT / "examples/pretrain/tiny_cpu.yaml"), f"model.vocab_size={VOCAB}",
               "data.seq_length=128", "train.micro_batch_size=2", "train.global_batch_size=2", "train.train_steps=2",
               "train.eval_interval=0", "checkpoint.save_interval=2", f"logging.run_dir={run}", "logging.progress=false",
               env={"DEMO_DIR": str(demo_data)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"index": i, "prompt": f"Write an essay about topic {i}.", "length": 50}) + "\n"
                               for i in range(4)))
    out = tmp_path / "gen.jsonl"
    args = ["eval", "generate", "--model", f"{run}/checkpoints", "--prompts", str(prompts), "--output", str(out),
            "--max-tokens", "12", "--engine", "hf", "--batch-size", "2"]
    proc = lwz(*args, "--max-prompts", "2", "--", "progress=false")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["generated"] == 2
    assert list((tmp_path / "gen.jsonl.hf").glob("*.safetensors"))  # the one-time HF export
    proc = lwz(*args, "--", "progress=false")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["generated"] == 2  # only the missing two
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["0", "1", "2", "3"] and all(r["response_tokens"] <= 12 for r in rows)
    proc = lwz("eval", "length", "--generations", str(out), "--benchmark", str(prompts), "--out", str(tmp_path / "len"))
    assert proc.returncode == 0 and json.loads(proc.stdout.strip().splitlines()[-1])["scored"] == 4

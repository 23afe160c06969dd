"""Issue 11 defect 13: ``lwz data split-prompts`` writes the GRPO recipe's ``rl.eval.path``, disjoint
from the training prompts by text (every copy of a held-out text leaves the training file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_lwz.rewards.prompt_split import SplitConfig, split_prompts, text_key
from megatron_lwz.rl.prompts import PromptDataConfig, load_prompts

ROOT = Path(__file__).resolve().parents[3]


def _write(path: Path) -> list[dict]:
    rows = [{"question": f"Write essay number {i} about rivers.", "length_lower": 500, "length_upper": 900,
             "language": "en"} for i in range(30)]
    rows += [{"question": "  write ESSAY number 3 about   rivers. ", "length_lower": 500, "length_upper": 900},
             {"question": "Write essay number 3 about rivers.", "length_lower": 100, "length_upper": 200},
             {"question": "写一首关于河流的诗", "length_lower": 0, "length_upper": 0, "language": "zh"}]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + ["{not json", json.dumps({"question": ""})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rows


def test_split_is_disjoint_by_text_and_deterministic(tmp_path):
    rows = _write(tmp_path / "ranged.jsonl")
    out = split_prompts(tmp_path / "ranged.jsonl", tmp_path / "train.jsonl", tmp_path / "heldout.jsonl",
                        SplitConfig(heldout=8, seed=7))
    train = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (tmp_path / "heldout.jsonl").read_text().splitlines()]
    held_keys = {text_key(r["question"]) for r in held}
    assert len(held) == len(held_keys) == 8 and out["heldout"] == 8
    assert not held_keys & {text_key(r["question"]) for r in train}  # disjoint by text
    assert len(train) + len(held) + out["duplicates_of_heldout_dropped"] == len(rows)
    assert all(r["length_upper"] > 0 for r in held)  # usable for evaluation
    copies = [r for r in train if " ".join(r["question"].lower().split()) == "write essay number 3 about rivers."]
    assert len(copies) in (0, 3)  # the three spellings of one text stay together (independent normalisation)
    assert out["bad_records"] == 2 and any(":31" in e or ":34" in e for e in out["bad_examples"])
    assert load_prompts(PromptDataConfig(path=str(tmp_path / "heldout.jsonl")), "rl.eval.path").records
    again = split_prompts(tmp_path / "ranged.jsonl", tmp_path / "t2.jsonl", tmp_path / "h2.jsonl",
                          SplitConfig(heldout=8, seed=7))
    assert (tmp_path / "h2.jsonl").read_text() == (tmp_path / "heldout.jsonl").read_text() and again == {
        **out, "train_out": str(tmp_path / "t2.jsonl"), "heldout_out": str(tmp_path / "h2.jsonl")}


def test_split_refuses_too_few_prompts_and_overwriting_its_input(tmp_path):
    _write(tmp_path / "ranged.jsonl")
    with pytest.raises(ValueError, match="fewer than --heldout 100"):
        split_prompts(tmp_path / "ranged.jsonl", tmp_path / "a.jsonl", tmp_path / "b.jsonl", SplitConfig(heldout=100))
    with pytest.raises(ValueError, match="three different files"):
        split_prompts(tmp_path / "ranged.jsonl", tmp_path / "ranged.jsonl", tmp_path / "b.jsonl", SplitConfig())


def test_cli_writes_the_recipe_files(tmp_path):
    _write(tmp_path / "ranged.jsonl")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", "data", "split-prompts", "--input",
                          str(tmp_path / "ranged.jsonl"), "--train-out", str(tmp_path / "rl.jsonl"),
                          "--heldout-out", str(tmp_path / "rl_heldout.jsonl"), "--heldout", "4"],
                         env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])["heldout"] == 4
    assert len((tmp_path / "rl_heldout.jsonl").read_text().splitlines()) == 4

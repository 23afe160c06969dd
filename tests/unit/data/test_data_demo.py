"""Demo data: deterministic, sized, CoT records in the paper's format with in-range answers, RM/RL schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from data_testlib import PAPER_TEMPLATE_EN, PAPER_TEMPLATE_ZH

from megatron_lwz.data.demo import DemoConfig, make_demo
from megatron_lwz.rollout.types import PromptRecord


def _count(text: str) -> int:
    """Paper.md §1.2 count, written out here independently of the package."""
    return len(re.findall(r"[\u4e00-\u9fff]", text)) + len(re.findall(r"\b[a-zA-Z]+\b", text))


def _stated_range(question: str) -> tuple[int, int]:
    """The length range a demo question states, parsed from its wording."""
    m = re.search(r"(\d+) to (\d+) words|(\d+)(?:到|至)(\d+)字", question)
    if m:
        lo, hi = (int(x) for x in m.groups() if x is not None)
        return lo, hi
    m = re.search(r"about (\d+) words|大约(\d+)字", question)
    n = int(next(x for x in m.groups() if x is not None))
    return round(n * 0.9), round(n * 1.1)  # "about N": ±10% (the range-predictor rule, paper.md §1.3)


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_deterministic_and_seed_dependent(tmp_path, demo_dir):
    make_demo(DemoConfig(out_dir=str(tmp_path / "again"), seed=0))
    make_demo(DemoConfig(out_dir=str(tmp_path / "other"), seed=1, cot_records=50, rm_pairs=50, rm_heldout=10))
    names = sorted(p.name for p in demo_dir.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in names:
        assert (demo_dir / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert (demo_dir / "books.jsonl").read_bytes() != (tmp_path / "other" / "books.jsonl").read_bytes()


def test_corpus_size_languages_and_sources(demo_dir):
    manifest = json.loads((demo_dir / "manifest.json").read_text())
    corpus_bytes = sum(manifest["files"][n]["bytes"] for n in manifest["corpus"])
    assert 1_000_000 <= corpus_bytes <= 3_000_000
    for name in ("books", "reports", "papers"):
        docs = _load(demo_dir / f"{name}.jsonl")
        langs = [d["language"] for d in docs]
        assert 0.15 < langs.count("zh") / len(langs) < 0.4 and all(d["source"] == name for d in docs)
        assert all(re.search(r"[\u4e00-\u9fff]", d["text"]) for d in docs if d["language"] == "zh")
        assert min(_count(d["text"]) for d in docs) > 100  # long-form documents, not snippets


def test_cot_records_follow_template_and_length(demo_dir):
    records = _load(demo_dir / "cot.jsonl")
    assert len(records) == 600 and {r["language"] for r in records} == {"en", "zh"}
    fmt = re.compile(r" <think>([^<]+)</think> <answer>([^<]+)</answer>")
    for r in records:
        template = PAPER_TEMPLATE_ZH if r["language"] == "zh" else PAPER_TEMPLATE_EN
        prompt = template.replace("{question}", r["question"])
        assert r["text"].startswith(prompt)
        m = fmt.fullmatch(r["text"][len(prompt):])
        assert m, r["text"][len(prompt):][:200]
        lo, hi = _stated_range(r["question"])
        assert (lo, hi) == (r["length_lower"], r["length_upper"])
        assert lo <= _count(m.group(2)) <= hi, (r["question"], _count(m.group(2)))


def test_rm_pairs(demo_dir):
    train, held = _load(demo_dir / "rm_pairs.jsonl"), _load(demo_dir / "rm_pairs_heldout.jsonl")
    assert len(train) == 600 and len(held) == 150
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}  # disjoint by text, not by id
    assert {r["rejected_kind"] for r in train} == {"repetitive", "shuffled", "off_topic"}
    for r in train + held:
        assert set(r) >= {"prompt", "chosen", "rejected"} and r["chosen"] != r["rejected"]
        lo, hi = _stated_range(r["prompt"])
        assert lo <= _count(r["chosen"]) <= hi
        assert 0.5 * _count(r["chosen"]) <= _count(r["rejected"]) <= 2 * _count(r["chosen"])  # length is no shortcut
        if r["rejected_kind"] == "repetitive":
            sents = [s for s in re.split(r"(?<=[.。])\s*", r["rejected"]) if s]
            assert len(set(sents)) < len(sents)


@pytest.mark.parametrize("name,count", [("rl_prompts.jsonl", 256), ("rl_prompts_heldout.jsonl", 64)])
def test_rl_prompts(demo_dir, name, count):
    records = _load(demo_dir / name)
    assert len(records) == count and len({r["prompt_id"] for r in records}) == count
    for r in records:
        assert set(r) == {"prompt_id", "question", "language", "length_lower", "length_upper"}
        PromptRecord(**r)
        assert 20 <= r["length_lower"] < r["length_upper"] <= 60
        assert (r["length_lower"], r["length_upper"]) == _stated_range(r["question"])
        assert (r["language"] == "zh") == bool(re.search(r"[\u4e00-\u9fff]", r["question"]))


def test_heldout_prompts_are_unseen_text(demo_dir):
    """Held-out RL questions never occur among the training questions (compared as text), and are
    distinct from each other; the old generator repeated 4 of the demo's 32 held-out questions."""
    train = {r["question"] for r in _load(demo_dir / "rl_prompts.jsonl")}
    held = [r["question"] for r in _load(demo_dir / "rl_prompts_heldout.jsonl")]
    assert len(set(held)) == len(held) == 64
    assert not train & set(held)
    assert len(train) > 100  # the training side still spans most of the question space


def test_cli_make_demo(tmp_path, capsys):
    from megatron_lwz.cli.main import main

    assert main(["data", "make-demo", "--out", str(tmp_path / "d"), "--seed", "3", "--scale", "0.1"]) == 0
    assert (tmp_path / "d" / "rl_prompts.jsonl").is_file() and "books.jsonl" in capsys.readouterr().out

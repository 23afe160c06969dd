"""RL prompt loading: malformed records are counted with file:line, [0, 0] ranges dropped, resumable stream."""

from __future__ import annotations

import json

import pytest

from megatron_lwz.config.base import ConfigError
from megatron_lwz.rl.prompts import PromptDataConfig, load_prompts, prompt_batch


def test_malformed_and_unfulfillable(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [json.dumps({"question": "Write 100 words", "length_lower": 90, "length_upper": 110}),
             "{not json",
             json.dumps({"question": "写一首诗", "length_lower": 0, "length_upper": 0}),
             json.dumps({"length_lower": 1, "length_upper": 2}),
             json.dumps({"question": "x", "length_lower": 5, "length_upper": 2}),
             json.dumps({"prompt_id": "b", "question": "写一首诗", "length_lower": 10, "length_upper": 20})]
    path.write_text("\n".join(lines) + "\n")
    got = load_prompts(PromptDataConfig(path=str(path)))
    assert [r.language for r in got.records] == ["en", "zh"] and got.records[1].prompt_id == "b"
    assert got.skipped == {"JSONDecodeError": 1, "unfulfillable": 1, "KeyError": 1, "ValueError": 1}
    assert got.examples[0].startswith(f"{path}:2: JSONDecodeError")
    kept = load_prompts(PromptDataConfig(path=str(path), drop_unfulfillable=False))
    assert len(kept.records) == 3


def test_stream_is_resumable():
    records = list(range(7))
    whole = prompt_batch(records, 3, 0, 20)
    assert prompt_batch(records, 3, 5, 15) == whole[5:]
    assert sorted(whole[:7]) == records  # one full epoch before any repeat


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("\n")
    with pytest.raises(ValueError, match="no usable prompts"):
        load_prompts(PromptDataConfig(path=str(path)))


def test_max_prompts_keeps_the_first_usable_records(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = ["{bad"] + [json.dumps({"prompt_id": f"p{i}", "question": f"Write {i}", "length_lower": 1,
                                   "length_upper": 9}) for i in range(10)]
    path.write_text("\n".join(rows) + "\n")
    got = load_prompts(PromptDataConfig(path=str(path), max_prompts=4))
    assert [r.prompt_id for r in got.records] == ["p0", "p1", "p2", "p3"] and got.skipped == {"JSONDecodeError": 1}
    with pytest.raises(ConfigError, match="prompts.max_prompts"):
        PromptDataConfig(path=str(path), max_prompts=0)


def test_missing_file_names_the_config_field(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"rl.eval.path: .*nope.jsonl does not exist"):
        load_prompts(PromptDataConfig(path=str(tmp_path / "nope.jsonl")), field="rl.eval.path")

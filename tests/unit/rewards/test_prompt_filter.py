"""``lwz data filter-prompts`` on a small handmade WildChat / LMSYS / ShareGPT-style dump with
malformed lines: every record's fate is decided by hand below."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq

from megatron_lwz.cli.main import main as lwz
from megatron_lwz.rewards.prompt_filter import (
    PromptDeduper, PromptFilterConfig, filter_prompts, first_user_turn, source_language,
)


def _chat(text, language="English", **extra):
    return {"conversation": [{"role": "user", "content": text}, {"role": "assistant", "content": "..."}],
            "language": language, "model": "gpt-4-0314", "toxic": False, **extra}


ESSAY = "Write a 1500-word essay about the history of public libraries in small towns."
WILDCHAT = [
    _chat(ESSAY, conversation_hash="h1"),                                                      # keep 1
    _chat("write a 1500 word essay about the HISTORY of public libraries in small towns!!"),  # exact dup
    _chat("Write a 1500-word essay about the history of public libraries in small cities."),  # near dup
    _chat("Write a python function that reverses a linked list and explain it."),             # code
    _chat("Write a story."),                                                                   # 3 words: too short
    _chat("What is the capital of France and how many people live there today?"),            # no writing keyword
    _chat("Compose a heartfelt wedding speech for my younger sister and her husband."),       # keep 2
    _chat("Write an essay about war crimes in graphic detail", toxic=True),                   # toxic
    _chat("Bonjour, écris une histoire sur la mer", language="French"),                       # language
    {"conversation": [{"role": "assistant", "content": "Hello!"}], "language": "English"},    # no user turn
]
LMSYS = [
    {"conversation_id": "c1", "language": "Chinese", "model": "vicuna-13b", "openai_moderation": [{"flagged": False}],
     "conversation": [{"role": "user", "content": "请写一篇关于城市绿地规划的文章，不少于2000字。"}]},           # keep 3
    {"conversation_id": "c2", "language": "Chinese", "openai_moderation": [{"flagged": False}],
     "conversation": [{"role": "user", "content": "把这段代码翻译成Java并解释每一行的作用"}]},                    # non-writing
    {"conversation_id": "c3", "language": "Chinese", "openai_moderation": [{"flagged": True}],
     "conversation": [{"role": "user", "content": "写一篇关于某人的文章"}]},                                     # flagged
]
SHAREGPT = [
    {"id": "s1", "conversations": [{"from": "human", "value": "Draft a cover letter for a junior data analyst role."},
                                   {"from": "gpt", "value": "..."}]},                           # keep 4
    {"id": "s2", "conversations": []},                                                          # no user turn
]


def _dump(tmp_path):
    wild = tmp_path / "wildchat.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in WILDCHAT]
    lines.insert(3, "{this is not json")
    lines.insert(6, "[1, 2, 3]")
    lines.insert(8, "")  # blank lines are ignored, not bad
    wild.write_text("\n".join(lines) + "\n", encoding="utf-8")
    lmsys = tmp_path / "lmsys.jsonl.gz"
    with gzip.open(lmsys, "wt", encoding="utf-8") as f:
        for r in LMSYS:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    share = tmp_path / "sharegpt.parquet"
    pq.write_table(pa.Table.from_pylist(SHAREGPT), share)
    return [wild, lmsys, share]


def test_filter_prompts_counts_every_record(tmp_path):
    paths = _dump(tmp_path)
    out = tmp_path / "prompts.jsonl"
    summary = filter_prompts(paths, out, PromptFilterConfig())
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["question"] for r in kept] == [
        ESSAY, "Compose a heartfelt wedding speech for my younger sister and her husband.",
        "请写一篇关于城市绿地规划的文章，不少于2000字。", "Draft a cover letter for a junior data analyst role."]
    assert [r["language"] for r in kept] == ["en", "en", "zh", "en"]
    assert kept[0]["source_id"] == "h1" and kept[0]["source_model"] == "gpt-4-0314"
    assert kept[0]["prompt_id"].startswith("p-")
    assert summary["read"] == 10 + 3 + 2
    assert summary["kept"] == 4
    assert summary["exact_duplicate"] == 1 and summary["near_duplicate"] == 1
    assert summary["non_writing_keyword"] == 2 and summary["no_writing_keyword"] == 1
    assert summary["too_short"] == 1 and summary["toxic"] == 2 and summary["language"] == 1
    assert summary["bad_records"] == 2 + 2  # 2 malformed lines + 2 records without a user turn
    assert any("wildchat.jsonl:4: invalid JSON" in e for e in summary["bad_examples"])
    assert any("wildchat.jsonl:7: expected a JSON object" in e for e in summary["bad_examples"])
    assert any("sharegpt.parquet:row2" in e for e in summary["bad_examples"])


def test_missing_file_and_truncated_gzip_are_not_fatal(tmp_path):
    broken = tmp_path / "broken.jsonl.gz"
    data = gzip.compress(("\n".join(json.dumps(_chat(ESSAY + f" Part {i}.")) for i in range(50)) + "\n").encode())
    broken.write_bytes(data[: len(data) // 2])
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(_chat(ESSAY)) + "\n")
    summary = filter_prompts([tmp_path / "missing.jsonl", broken, good], tmp_path / "out.jsonl")
    assert summary["bad_records"] == 2 and summary["kept"] == 1  # later files still processed
    assert "missing.jsonl: cannot open" in summary["bad_examples"][0]
    assert "broken.jsonl.gz:" in summary["bad_examples"][1] and "unreadable" in summary["bad_examples"][1]


def test_helpers():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert first_user_turn({"messages": messages}, []) == "u"
    assert first_user_turn({"prompt": "p"}, ["question", "prompt"]) == "p"
    assert source_language({}, "写一篇文章 about cities") == "zh"  # CJK share >= 30%
    assert source_language({}, "About the city of 北京 and its parks") == "en"
    assert source_language({"language": "Chinese"}, "whatever") == "zh"
    dedup = PromptDeduper(PromptFilterConfig())
    assert dedup.check("Write a story about a cat who learns to sail across the ocean.") is None
    assert dedup.check("Write a story about a cat who learns to sail across the oceans.") == "near_duplicate"
    assert dedup.check("Write a poem about the moon rising over a quiet harbour town.") is None


def test_cli_filter_prompts(tmp_path, capsys):
    paths = _dump(tmp_path)
    out = tmp_path / "cli.jsonl"
    rc = lwz(["data", "filter-prompts", "--input", *map(str, paths), "--output", str(out), "--languages", "zh"])
    assert rc == 0
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["language"] for r in kept] == ["zh"]
    summary = json.loads((tmp_path / "cli.jsonl.summary.json").read_text())
    assert summary["kept"] == 1 and summary["bad_records"] == 4


def test_cli_filter_with_judge_and_length_prediction(tmp_path, stub_server):
    paths = _dump(tmp_path)
    out = tmp_path / "judged.jsonl"

    def respond(body):
        prompt = body["messages"][0]["content"]
        if prompt.startswith("You are selecting user requests"):  # judge: reject the cover letter
            return '{"long_form": false}' if "cover letter" in prompt else '<think>ok</think>{"long_form": true}'
        return '{"range": [700, 1200]}'  # range predictor

    stub_server.responder = respond
    rc = lwz(["data", "filter-prompts", "--input", *map(str, paths), "--output", str(out), "--judge",
              "--predict-length", "--endpoint", stub_server.url, "--model", "stub", "--backoff", "0.01"])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["length_source"] for r in rows] == ["explicit", "llm", "explicit"]  # 1500-word, speech, 不少于2000字
    assert [(r["length_lower"], r["length_upper"]) for r in rows] == [(1300, 1700), (700, 1200), (2000, 2200)]
    summary = json.loads((tmp_path / "judged.jsonl.summary.json").read_text())
    assert summary["judge_rejected"] == 1 and summary["judge_errors"] == 0 and summary["kept"] == 3
    assert summary["predict_length"]["llm"] == 1

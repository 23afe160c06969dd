"""Length-range prediction: explicit-request parser table (paper rule 5, ±10%), LLM reply parsing and
validation, dataset caching/rerun, and the CLI against a stub endpoint."""

import json

import pytest

from megatron_lwz.cli.main import main as lwz
from megatron_lwz.rewards.length_parse import parse_explicit_length
from megatron_lwz.rewards.length_predict import (
    RANGE_PROMPT_TEMPLATE, LengthPredictorConfig, RangeError, build_range_prompt, parse_range_reply, predict_file,
    predict_with_llm, validate_range,
)
from megatron_lwz.rewards.records_io import read_prompt_records

# (query, kind, lower, upper). Paper examples: "2,000-word" → [1800, 2200]; "no more than 2,000" →
# [1800, 2000]; "at least 2,000" → [2000, 2200]. Below 1000 words bounds round outward to 10s.
PARSER_TABLE = [
    ("Write a 2,000-word essay on urban heat islands.", "exact", 1800, 2200),
    ("Write a blog post of no more than 2,000 words.", "at_most", 1800, 2000),
    ("Write at least 2,000 words about Rome.", "at_least", 2000, 2200),
    ("No more than 500 words, please summarise the debate.", "at_most", 450, 500),
    ("at least 3000 words", "at_least", 3000, 3300),
    ("Write about 800 words on tea.", "about", 720, 880),
    ("Write a 1500-2000 words report.", "range", 1500, 2000),
    ("between 1,500 and 2,000 words", "range", 1500, 2000),
    ("An essay of 1,500 words", "exact", 1300, 1700),       # 1350 → 1300, 1650 → 1700 (outward, 100s)
    ("Write a two thousand word story", "exact", 1800, 2200),
    ("3k words essay on AI safety", "exact", 2700, 3300),
    ("The essay should be 800 words or less", "at_most", 720, 800),
    ("Give me 2000+ words", "at_least", 2000, 2200),
    ("word limit of 600", "at_most", 540, 600),
    ("around 11000 words", "about", 9900, 12000),            # upper capped at 12,000
    ("Write a 20,000-word novella", "exact", 0, 0),           # beyond the cap: unfulfillable
    ("at least 1000 words and no more than 1500 words", "range", 1000, 1500),
    ("写一篇2000字的文章", "exact", 1800, 2200),
    ("写一篇不少于3000字的报告", "at_least", 3000, 3300),
    ("不超过500字", "at_most", 450, 500),
    ("写三千字左右的散文", "about", 2700, 3300),
    ("写一篇一千五百字的作文", "exact", 1300, 1700),
    ("800字以内的短评", "at_most", 720, 800),
    ("写一篇3000字以上的文章", "at_least", 3000, 3300),
    ("字数不少于3000", "at_least", 3000, 3300),
    ("写一篇1000到2000字的文章", "range", 1000, 2000),
    ("写一篇1.5万字的小说", "exact", 0, 0),
]
NO_EXPLICIT = ["Write an essay about cities.", "Summarize in 5 words", "十字路口的故事",
               "Write 3 essays of 500 words each and a 200-word summary", "In 2023 the city planted 4000 trees."]


@pytest.mark.parametrize("query,kind,lower,upper", PARSER_TABLE)
def test_explicit_parser_table(query, kind, lower, upper):
    found = parse_explicit_length(query)
    assert found is not None, query
    assert (found.kind, found.lower, found.upper) == (kind, lower, upper)


@pytest.mark.parametrize("query", NO_EXPLICIT)
def test_explicit_parser_defers(query):
    assert parse_explicit_length(query) is None


def test_prompt_is_the_papers_text():
    prompt = build_range_prompt("Write a haiku sequence")
    assert prompt.startswith("You are a professional query text–length assessor.")
    assert prompt.endswith("Please process the current query: Write a haiku sequence\n"
                           "Analyze and output the JSON range accordingly.")
    assert prompt.count("User Query") == 0 and RANGE_PROMPT_TEMPLATE.count("User Query") == 1
    assert 'Input "Complete an academic paper on green cities" → {"range": [6000, 10000]}' in prompt


@pytest.mark.parametrize("reply,expected", [
    ('<think>The user wants an essay. Example {"range": [1800, 2200]}.</think>\n{"range": [800, 1000]}', (800, 1000)),
    ('{"range": [850, 1020]}', (800, 1100)),            # rounded outward to multiples of 100
    ('{"range": [0, 0]}', (0, 0)),
    ("Final answer: [400, 800]", (400, 800)),           # bare list fallback
    ('{"range": [1000.0, 2000]}', (1000, 2000)),
])
def test_parse_range_reply(reply, expected):
    assert parse_range_reply(reply) == expected


@pytest.mark.parametrize("reply,match", [
    ('{"range": [2000, 1000]}', "lower <= upper"),
    ('{"range": [9000, 13000]}', "cap"),
    ('{"range": [1000, 5000]}', "wider"),
    ('{"range": ["a", "b"]}', "integers"),
    ('{"range": [100]}', "two-item"),
    ("I cannot decide.", "no range"),
])
def test_parse_range_reply_rejects(reply, match):
    with pytest.raises(RangeError, match=match):
        parse_range_reply(reply)
    with pytest.raises(RangeError):
        validate_range(True, 100)


def test_invalid_replies_are_reasked():
    calls = []

    def generate(prompts):
        calls.append(len(prompts))
        return ['{"range": [100, 99999]}' if len(calls) == 1 else '{"range": [300, 600]}'] * len(prompts)

    assert predict_with_llm(["q1", "q2"], generate, attempts=3) == [(300, 600), (300, 600)]
    assert calls == [2, 2]
    assert isinstance(predict_with_llm(["q"], lambda p: [RuntimeError("down")], attempts=2)[0], str)


def _write(path, records, bad_lines=()):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        for line in bad_lines:
            f.write(line + "\n")


def test_predict_file_caches_and_reruns(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [{"question": "Write a 2,000-word essay on trains."},
                 {"question": "Write a wedding speech for my sister.", "prompt_id": "speech"},
                 {"question": "Analyze this project's prospects."},
                 {"question": "已有范围", "length_lower": 100, "length_upper": 300},
                 {"nope": 1}], bad_lines=["{broken json"])
    replies = {"wedding": '{"range": [600, 1000]}', "prospects": '<think>no details</think>{"range": [0, 0]}'}
    calls = []

    def generate(prompts):
        calls.extend(prompts)
        return [next(v for k, v in replies.items() if k in p.split("current query:")[1]) for p in prompts]

    summary = predict_file(src, out, LengthPredictorConfig(), generate)
    assert (summary["explicit"], summary["llm"], summary["given"], summary["bad_records"]) == (1, 2, 1, 2)
    assert summary["unfulfillable"] == 1 and len(calls) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["length_source"] for r in rows] == ["explicit", "llm", "llm", "given"]
    assert (rows[0]["length_lower"], rows[0]["length_upper"]) == (1800, 2200)
    assert rows[1]["prompt_id"] == "speech" and rows[3]["language"] == "zh" and rows[0]["language"] == "en"
    # rerun: everything is cached, the generator is not called again
    calls.clear()
    again = predict_file(src, out, LengthPredictorConfig(), generate)
    assert calls == [] and again["cached"] == 3 and again["llm"] == 0 and again["explicit"] == 0
    # GRPO reader: [0, 0] is dropped by default
    records, bad = read_prompt_records(out)
    assert [r.question for r in records] == [
        "Write a 2,000-word essay on trains.", "Write a wedding speech for my sister.", "已有范围"]
    assert len(read_prompt_records(out, keep_unfulfillable=True)[0]) == 4 and bad.count == 0


def test_predict_file_records_failures(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [{"question": "Write a poem about rain."}])
    summary = predict_file(src, out, LengthPredictorConfig(attempts=2), lambda p: ["no idea"] * len(p))
    row = json.loads(out.read_text())
    assert summary["failed"] == 1 and row["length_source"] == "failed" and "no range" in row["length_error"]
    summary = predict_file(src, out, LengthPredictorConfig(), None)  # no generator: left unresolved
    assert summary["unresolved"] == 1


def test_cli_predict_length_against_stub_endpoint(tmp_path, stub_server, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [{"q": "Write a short story about a lighthouse keeper."}, {"q": "写一篇不少于3000字的报告"}])
    stub_server.script = [("status", 503)]  # one transient failure first
    stub_server.responder = lambda body: 'Let me think.</think>\n{"range": [1500, 3000]}'
    rc = lwz(["data", "predict-length", "--input", str(src), "--output", str(out), "--endpoint", stub_server.url,
              "--model", "QwQ-32B", "--question-key", "q", "--retries", "2", "--timeout", "5", "--backoff", "0.01"])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["length_lower"], r["length_upper"], r["length_source"]) for r in rows] == [
        (1500, 3000, "llm"), (3000, 3300, "explicit")]
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert summary["llm"] == 1 and summary["explicit"] == 1 and summary["model"] == "QwQ-32B"
    assert len(stub_server.requests) == 2  # the 503 and its retry; the explicit one never hit the server

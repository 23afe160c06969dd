"""Format RM: structure-gate edge cases, repetition (exact, near-duplicate, distinct-on-topic),
keyword stuffing, and how the parts combine."""

import re
import time

import pytest
from reward_texts import GREEN_CITY, GREEN_CITY_1_EDITED, ZH_PARAGRAPH, wrap

from megatron_lwz.rewards.format import FormatRewardConfig, check_structure, format_reward
from megatron_lwz.rewards.repetition import RepetitionConfig, repetition_stats

ANSWER = "\n\n".join(GREEN_CITY)


def _tokens(text: str) -> int:
    """Independent token count: lower-cased [a-z0-9]+ runs plus CJK characters."""
    return len(re.findall(r"[a-z0-9]+|[\u4e00-\u9fff]", text.lower()))


@pytest.mark.parametrize("text,reason", [
    (wrap(ANSWER), "ok"),
    ("  \n" + wrap(ANSWER) + "\n<|endoftext|>", "ok"),               # whitespace + end marker are fine
    ("<think></think><answer>Short but fine.</answer>", "ok"),       # empty think allowed by default
    ("Just an essay without tags.", "missing_think"),
    ("<think>plan</think> The essay without answer tags.", "missing_answer"),
    ("<answer>Only an answer.</answer>", "missing_think"),
    ("<think>a</think><answer>first</answer><answer>second</answer>", "multiple_answer"),
    ("<think>a</think><think>b</think><answer>c</answer>", "multiple_think"),
    ("<think>a <answer>inside</answer></think>", "nested_tags"),
    ("<think>a <answer>b</think> c</answer>", "nested_tags"),
    ("Sure! <think>a</think><answer>b</answer>", "text_outside"),
    ("<think>a</think> preface <answer>b</answer>", "text_outside"),
    ("<think>a</think><answer>b</answer> Hope this helps!", "text_outside"),
    ("<think>a</think><answer>   \n </answer>", "empty_answer"),
    ("<think>a</think><answer>1234 !!</answer>", "empty_answer"),  # no word (count_words = 0)
    ("<answer>b</answer><think>a</think>", "wrong_order"),
    ("</think>a<think><answer>b</answer>", "wrong_order"),
    ("<think>a</think><answer>cut off by max_tokens", "unterminated_answer"),
    ("<think>never closed <answer>b</answer>", "unterminated_think"),
    ("", "empty"),
])
def test_structure_gate(text, reason):
    got, answer = check_structure(text)
    assert got == reason
    result = format_reward(text)
    assert result.reason == reason
    assert result.structure_ok == (reason == "ok")
    if reason != "ok":
        assert result.score == 0.0 and answer is None


def test_require_nonempty_think():
    cfg = FormatRewardConfig(require_nonempty_think=True)
    assert check_structure("<think> </think><answer>text</answer>", cfg)[0] == "empty_think"


def test_distinct_paragraphs_on_one_topic_are_not_penalised():
    result = format_reward(wrap(ANSWER))
    assert result.score == 1.0
    assert result.dup_sentence_ratio == result.dup_paragraph_ratio == result.near_dup_ratio == 0.0
    assert result.stuffing == 0.0 and result.penalty == 0.0


def test_duplicated_paragraph_is_penalised():
    answer = ANSWER + "\n\n" + GREEN_CITY[2]
    result = format_reward(wrap(answer))
    ratio = _tokens(GREEN_CITY[2]) / _tokens(answer)  # 52 / 332
    assert result.dup_paragraph_ratio == pytest.approx(ratio)
    assert result.dup_sentence_ratio == pytest.approx(ratio)  # its sentences repeat too
    assert result.near_dup_ratio == pytest.approx(ratio)
    # p_repeat = (R − tolerance) / (full − tolerance) with the defaults 0.05 and 0.5
    assert result.score == pytest.approx(1 - (ratio - 0.05) / 0.45)
    assert 0.0 < result.score < 1.0


def test_near_duplicate_paragraph_is_penalised():
    answer = ANSWER + "\n\n" + GREEN_CITY_1_EDITED  # four words changed
    result = format_reward(wrap(answer))
    ratio = _tokens(GREEN_CITY_1_EDITED) / _tokens(answer)
    assert result.dup_paragraph_ratio == 0.0 and result.dup_sentence_ratio == 0.0
    assert result.near_dup_ratio == pytest.approx(ratio)
    assert result.score == pytest.approx(1 - (ratio - 0.05) / 0.45)


def test_near_duplicate_threshold_is_configurable():
    answer = ANSWER + "\n\n" + GREEN_CITY_1_EDITED  # shingle Jaccard with the original = 0.636
    strict = FormatRewardConfig(repetition=RepetitionConfig(near_dup_threshold=0.7))
    assert format_reward(wrap(answer), strict).near_dup_ratio == 0.0


def test_repeated_sentences_inside_paragraphs():
    sentence = "Green roofs keep buildings cool in the summer months."
    answer = "\n\n".join(GREEN_CITY[:2]) + "\n\n" + " ".join([sentence] * 6)
    result = format_reward(wrap(answer))
    assert result.dup_sentence_ratio == pytest.approx(5 * _tokens(sentence) / _tokens(answer))
    assert result.score < 0.7


def test_chinese_duplicate_paragraph():
    answer = "\n".join([ZH_PARAGRAPH, "这是另一段完全不同的内容，讨论的是公共交通的未来发展方向和资金问题。", ZH_PARAGRAPH])
    result = format_reward(wrap(answer))
    assert result.dup_paragraph_ratio == pytest.approx(_tokens(ZH_PARAGRAPH) / _tokens(answer))
    assert result.score < 1.0


def test_keyword_stuffing_detected_and_natural_text_spared():
    words = ANSWER.split()
    stuffed = " ".join(w if i % 6 else "greenway" for i, w in enumerate(words * 2))
    # make the paragraphs unique so only stuffing (not duplication) is measured
    stuffed = " ".join(f"{w}{i // 40}" if i % 40 == 7 else w for i, w in enumerate(stuffed.split()))
    stats = repetition_stats(stuffed)
    assert stats.top_term == "greenway"
    assert stats.zipf_excess > 2.0 and stats.stuffing > 0.5
    assert repetition_stats(ANSWER).stuffing == 0.0
    assert repetition_stats(ANSWER.replace("parks", "parks parks")).stuffing == 0.0  # a favourite word is fine


def test_phrase_stuffing_english_and_chinese():
    words = ANSWER.split()
    phrase = repetition_stats(" ".join(w if i % 8 else "climate resilience strategy" for i, w in enumerate(words * 2)))
    assert phrase.top_term in ("climate", "resilience", "strategy") and phrase.stuffing > 0.3
    zh = repetition_stats("城市绿地" * 60 + "。" + ZH_PARAGRAPH)
    assert zh.top_term in ("城市", "市绿", "绿地") and zh.stuffing > 0.5


def test_reference_manual_is_not_flagged_as_stuffing():
    """Real technical prose (CPython's pydoc topics) has heavy term reuse but follows Zipf."""
    import pydoc_data.topics

    text = "\n".join(pydoc_data.topics.topics.values())
    lines, chunk, chunks = text.split("\n"), [], []
    for line in lines:
        chunk.append(line)
        if sum(len(c.split()) for c in chunk) > 2000:
            chunks.append("\n".join(chunk))
            chunk = []
    assert len(chunks) > 20
    assert max(repetition_stats(c).stuffing for c in chunks) == 0.0


def test_penalties_combine_multiplicatively():
    words = ANSWER.split()
    stuffed = " ".join(w if i % 5 else "greenway" for i, w in enumerate(words))
    result = format_reward(wrap(stuffed + "\n\n" + stuffed))
    assert result.stuffing > 0 and result.repetition_penalty > 0
    assert result.score == pytest.approx((1 - result.repetition_penalty) * (1 - result.stuffing))
    assert 0.0 <= result.score <= 1.0


def test_many_near_copies_stay_fast():
    """400 lightly edited copies of one paragraph: the pair cap keeps the inverted index linear."""
    base = GREEN_CITY[0].split()
    paragraphs = [" ".join(base[:i % 50] + [f"word{i}"] + base[i % 50 + 1:]) for i in range(400)]
    start = time.process_time()
    result = format_reward(wrap("\n\n".join(paragraphs)))
    assert time.process_time() - start < 2.0
    assert result.near_dup_ratio > 0.99 and result.score == 0.0

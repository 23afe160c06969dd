"""Length RM (paper Eq. 3) against hand-computed values at and around every branch boundary, and the
authors' word count (THUDM/LongWriter evaluation/pred.py) on mixed English/Chinese text."""

import pytest

from megatron_lwz.rewards.length import (
    LengthRewardConfig, answer_word_count, count_words, extract_answer, is_fulfillable, length_reward,
    length_reward_for_response,
)

L_MAX = 16000

# (num_words, lower, upper, l_max, expected) — expected values computed by hand from Eq. 3.
EQ3_CASES = [
    (1000, 1000, 2000, L_MAX, 1.0),                 # at L_lower: inside
    (999, 1000, 2000, L_MAX, 0.999),                # just below: 999 / 1000
    (500, 1000, 2000, L_MAX, 0.5),                  # 500 / 1000
    (0, 1000, 2000, L_MAX, 0.0),                    # empty answer
    (1500, 1000, 2000, L_MAX, 1.0),                 # middle
    (2000, 1000, 2000, L_MAX, 1.0),                 # at L_upper: inside
    (2001, 1000, 2000, L_MAX, 13999 / 14000),       # (16000 − 2001) / (16000 − 2000)
    (9000, 1000, 2000, L_MAX, 0.5),                 # 7000 / 14000
    (15999, 1000, 2000, L_MAX, 1 / 14000),          # just below L_max
    (16000, 1000, 2000, L_MAX, 0.0),                # at L_max
    (20000, 1000, 2000, L_MAX, 0.0),                # past L_max: −4000/14000 clipped to 0
    (0, 0, 500, L_MAX, 1.0),                        # lower = 0: no division, 0 words is in range
    (300, 0, 500, L_MAX, 1.0),
    (600, 0, 500, L_MAX, 15400 / 15500),            # (16000 − 600) / (16000 − 500)
    (0, 0, 0, L_MAX, 1.0),                          # unfulfillable [0, 0]
    (8000, 0, 0, L_MAX, 0.5),                       # 8000 / 16000
    (1500, 1000, 1000, 3000, 0.75),                 # (3000 − 1500) / (3000 − 1000), small L_max
]


@pytest.mark.parametrize("num_words,lower,upper,l_max,expected", EQ3_CASES)
def test_eq3_hand_values(num_words, lower, upper, l_max, expected):
    assert length_reward(num_words, lower, upper, l_max) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("args,field", [((10, 2000, 1000, L_MAX), "lower <= upper"),
                                        ((10, 0, 2000, 2000), "l_max"), ((-1, 0, 10, 100), "num_words")])
def test_eq3_rejects_bad_arguments(args, field):
    with pytest.raises(ValueError, match=field):
        length_reward(*args)


def test_relative_l_max():
    cfg = LengthRewardConfig(l_max_factor=2.0)
    assert cfg.l_max_for(1000) == 2000
    # 1500 words against [500, 1000] with L_max = 2 × 1000: (2000 − 1500) / (2000 − 1000) = 0.5
    response = "<think>t</think><answer>" + "word " * 1500 + "</answer>"
    assert length_reward_for_response(response, 500, 1000, cfg) == pytest.approx(0.5)
    assert cfg.l_max_for(0) == cfg.l_max  # [0, 0] falls back to the absolute L_max
    with pytest.raises(ValueError, match="l_max_factor"):
        LengthRewardConfig(l_max_factor=1.0)
    with pytest.raises(ValueError, match="raise length.l_max"):
        LengthRewardConfig(l_max=1000).l_max_for(1000)


def test_count_words_mixed_text():
    # English words (\b[a-zA-Z]+\b): Hello, world, Don, t, stop, GPT = 6 (digits and "4" do not count)
    # CJK characters: 你好世界 (4) + 写中文 (3) = 7
    assert count_words("Hello, world! 你好世界。Don't stop: GPT-4 写中文 123.") == 13
    assert count_words("") == 0
    assert count_words("日本語のテキスト") == 3  # only U+4E00–U+9FFF count: 日本語 yes, kana no
    assert count_words("naïve café") == 0  # reference quirk: ï/é are word chars, so no \b around na/ve/caf


def test_count_words_matches_reference_regexes():
    import re

    text = "The 2nd draft of 《城市绿地》 is 3,000 words; it's due in 2 weeks — 加油！"
    expected = len(re.findall(r"[\u4e00-\u9fff]", text)) + len(re.findall(r"\b[a-zA-Z]+\b", text))
    assert count_words(text) == expected


def test_extract_answer_policies():
    ok = "<think>plan</think>\n<answer> Final text. </answer>"
    assert extract_answer(ok) == " Final text. "
    two = "<think>a</think><answer>first</answer><answer>second</answer>"
    assert extract_answer(two) == "first"  # the eval script's re.search: first closed block
    truncated = "<think>a</think><answer>cut off mid senten"
    assert extract_answer(truncated) is None
    assert extract_answer(truncated, "allow_unterminated") == "cut off mid senten"
    untagged = "<think>plan</think> just text"
    assert extract_answer(untagged, "allow_unterminated") is None
    assert extract_answer(untagged, "whole_text") == " just text"
    assert answer_word_count(truncated) == 0
    assert answer_word_count(ok) == 2


def test_is_fulfillable():
    assert not is_fulfillable(0, 0)
    assert is_fulfillable(0, 500)
    assert is_fulfillable(1800, 2200)

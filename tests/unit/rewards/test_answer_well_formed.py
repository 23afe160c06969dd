"""The RL rewards' answer extraction ('well_formed'): repeated think/answer segments yield no answer."""

from megatron_lwz.rewards.composite import RewardConfig
from megatron_lwz.rewards.length import LengthRewardConfig, answer_word_count, extract_answer

HACK = ("<think>plan</think> <answer>one two three</think> <answer>one two three</think> "
        "<answer>one two three</answer>")


def test_well_formed_is_the_default_for_rl_rewards():
    assert LengthRewardConfig().answer_policy == "well_formed"
    assert RewardConfig().writing_answer_policy == "well_formed"


def test_repetition_hack_has_no_answer():
    assert extract_answer(HACK, "strict") is not None  # the eval-script regex takes the inflated span
    assert answer_word_count(HACK, "strict") == 13  # 9 words + the 4 tag names inside the span
    assert extract_answer(HACK, "well_formed") is None
    assert answer_word_count(HACK, "well_formed") == 0


def test_well_formed_cases():
    assert extract_answer("<think>p</think> <answer> a b </answer>", "well_formed") == " a b "
    assert extract_answer("<think>p</think><answer>a</answer><answer>b</answer>", "well_formed") is None
    assert extract_answer("<think>p</think><answer>a <think>x</think></answer>", "well_formed") is None
    assert extract_answer("<think>p</think><answer>unterminated", "well_formed") is None

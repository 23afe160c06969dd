"""Format RM, Direct-Answer gate (``reward.format.structure='direct'``, the no-think ablation), and the
job-config rule that the gate matches ``prompts.template``."""

import pytest
from reward_texts import GREEN_CITY

from megatron_lwz.config.base import ConfigError, load_config
from megatron_lwz.rewards.format import FormatRewardConfig, check_structure, format_reward
from megatron_lwz.rl.job_config import GRPOJobConfig

DIRECT = FormatRewardConfig(structure="direct")
ANSWER = "\n\n".join(GREEN_CITY)


@pytest.mark.parametrize("text,reason", [
    (f"<answer>{ANSWER}</answer>", "ok"),
    (f" \n<answer>{ANSWER}</answer>\n<|endoftext|>", "ok"),
    ("<think>plan</think> <answer>text</answer>", "think_in_direct"),   # the think format fails this gate
    ("<answer>a <think>b</think></answer>", "think_in_direct"),
    ("An essay without tags.", "missing_answer"),
    ("<answer>first</answer><answer>second</answer>", "multiple_answer"),
    ("<answer>cut off by max_tokens", "unterminated_answer"),
    ("text</answer>", "unopened_answer"),
    ("</answer>b<answer>", "wrong_order"),
    ("Sure! <answer>b</answer>", "text_outside"),
    ("<answer>b</answer> Hope this helps!", "text_outside"),
    ("<answer> 42 !! </answer>", "empty_answer"),
    ("", "empty"),
])
def test_direct_gate(text, reason):
    got, answer = check_structure(text, DIRECT)
    assert got == reason
    result = format_reward(text, DIRECT)
    assert result.structure_ok == (reason == "ok")
    assert (result.score == 1.0) if reason == "ok" else (result.score == 0.0 and answer is None)


def test_direct_answer_text_and_penalty_match_the_think_gate():
    think = format_reward(f"<think>plan</think><answer>{ANSWER}</answer>")
    direct = format_reward(f"<answer>{ANSWER}</answer>", DIRECT)
    assert check_structure(f"<answer>{ANSWER}</answer>", DIRECT)[1] == ANSWER
    repeated = f"<answer>{ANSWER}\n\n{ANSWER}</answer>"  # half the answer is a copy: penalty 1 under both gates
    assert format_reward(repeated, DIRECT).score == format_reward(f"<think>p</think>{repeated}").score == 0.0
    assert think.score == direct.score == 1.0


def _grpo(tmp_path, *overrides):
    return load_config(GRPOJobConfig, None, [f"tokenizer.path={tmp_path}", f"prompts.path={tmp_path}/p.jsonl",
                                             "reward.components=[length,format]", *overrides])


def test_template_and_format_gate_must_agree(tmp_path):
    assert _grpo(tmp_path, "prompts.template=direct", "reward.format.structure=direct").prompts.template == "direct"
    with pytest.raises(ConfigError, match="reward.format.structure"):
        _grpo(tmp_path, "prompts.template=direct")
    with pytest.raises(ConfigError, match="reward.format.structure"):
        _grpo(tmp_path, "reward.format.structure=direct")
    _grpo(tmp_path, "prompts.template=direct", "reward.components=[length]")  # no Format RM: nothing to agree

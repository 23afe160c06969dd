"""Judge channels (reward.pairwise, reward.rubric) against a REAL loopback judge server (http.server in a
thread speaking /v1/chat/completions, through the project's OpenAIClient): position bias cancels, win
rates match hand computations, failures fall back to the other components, one rubric per prompt across
iterations and resumes."""

import json
import math

import pytest
from reward_texts import wrap

from megatron_lwz.rewards.composite import RewardConfig, RewardScorer
from megatron_lwz.rewards.llm_client import EndpointConfig
from megatron_lwz.rewards.pairwise import PairwiseConfig, comparisons
from megatron_lwz.rewards.rubric import RubricConfig
from megatron_lwz.rewards.scripted_judge import ScriptedJudge, quality, serve, url_of
from megatron_lwz.rl.advantage import advantages_for_groups
from megatron_lwz.rl.prompts import PromptDataConfig, load_prompts
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, Sample

P1 = PromptRecord(prompt_id="p1", question="Write about urban parks and city life.", length_lower=1, length_upper=50)
P2 = PromptRecord(prompt_id="p2", question="Describe a storm at sea.", length_lower=1, length_upper=50)
# scripted-judge quality q = distinct words − 2 × repeated words: 6, 3, 2 − 2·4 = −6, 1 (all different)
ANSWERS = ["one two three four five six", "one two three", "one one one two two two", "alpha"]


@pytest.fixture
def judge(monkeypatch):
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    servers = []

    def start(bias="none"):
        scripted = ScriptedJudge(bias)
        servers.append(serve(scripted))
        return scripted, EndpointConfig(url=url_of(servers[-1]), model="scripted", backoff_s=0.01, max_retries=1)

    yield start
    for server in servers:
        server.shutdown()


def _group(prompt, answers):
    return RolloutGroup(prompt=prompt, samples=[
        Sample(prompt=prompt, prompt_text="t", prompt_token_ids=[1], response_token_ids=[2, 3],
               response_text=wrap(a), finish_reason="stop") for a in answers])


def _scorer(endpoint, components=("pairwise",), **kw):
    return RewardScorer(RewardConfig(components=list(components), judge=endpoint, **kw))


@pytest.mark.parametrize("opponent,peers", [("round_robin", 1), ("round_robin", 3), ("random", 2)])
def test_position_bias_cancels(judge, opponent, peers):
    scripted, endpoint = judge(bias="first")  # always answers [[A]]
    groups = [_group(P1, ANSWERS), _group(P2, ANSWERS[:3])]
    metrics = _scorer(endpoint, pairwise=PairwiseConfig(opponent=opponent, peers=peers)).score(groups)
    assert [s.rewards["pairwise"] for g in groups for s in g.samples] == [0.5] * 7
    assert metrics["reward/pairwise/first_position_win_rate"] == 1.0
    assert metrics["reward/pairwise/judgments"] == scripted.counts["pairwise"] > 0


def test_win_rates_hand_computed_and_cached(judge, tmp_path):
    scripted, endpoint = judge()
    endpoint.cache_path = str(tmp_path / "judge.sqlite")
    group = _group(P1, ANSWERS)
    assert [quality(a) for a in ANSWERS] == [6, 3, -6, 1]
    # full round robin (peers 3 at G = 4): ranks by quality → win rates 3/3, 2/3, 0/3, 1/3
    metrics = _scorer(endpoint, pairwise=PairwiseConfig(peers=3)).score([group])
    assert [s.rewards["pairwise"] for s in group.samples] == pytest.approx([1.0, 2 / 3, 0.0, 1 / 3])
    assert scripted.counts["pairwise"] == 12 == metrics["reward/pairwise/judge/requests"]  # 6 pairs × 2 orders
    assert metrics["reward/pairwise/first_position_win_rate"] == 0.5
    assert metrics["reward/pairwise/judge/prompt_tokens"] > 0 and metrics["reward/pairwise/judge/latency_s"] > 0
    # ring of offset 1: (0,1) (1,2) (2,3) (0,3) → 1, ½, 0, ½ ; the disk cache answers the 8 repeats
    again = _group(P1, ANSWERS)
    metrics = _scorer(endpoint).score([again])
    assert [s.rewards["pairwise"] for s in again.samples] == pytest.approx([1.0, 0.5, 0.0, 0.5])
    assert scripted.counts["pairwise"] == 12 and metrics["reward/pairwise/judge/cache_hits"] == 8


def test_round_robin_gives_equal_counts():
    for g in range(2, 10):
        for peers in range(1, 5):
            counts = [0] * g
            for i, j in comparisons(g, PairwiseConfig(peers=peers)):
                counts[i] += 1
                counts[j] += 1
            assert counts == [min(2 * peers, g - 1)] * g, (g, peers)
    randomly = comparisons(6, PairwiseConfig(opponent="random", peers=2), "p")
    assert all(sum(k in pair for pair in randomly) >= 2 for k in range(6))
    assert randomly == comparisons(6, PairwiseConfig(opponent="random", peers=2), "p")  # seeded


def test_failed_judgments_fall_back_to_other_components(stub_server):
    # no verdict whenever the (only) 'broken' answer is in the pair: that sample fails, the rest are scored
    stub_server.responder = lambda body: "no verdict" if "broken" in json.dumps(body) else "[[A]]"
    endpoint = EndpointConfig(url=stub_server.url, model="stub", max_retries=0)
    group = _group(P1, ["one two", "broken answer", "three four"])
    scorer = _scorer(endpoint, components=("pairwise", "length"), pairwise=PairwiseConfig(peers=2))
    metrics = scorer.score([group])
    s0, s1, s2 = group.samples
    assert "pairwise" in s1.reward_failures and "pairwise" not in s0.reward_failures
    assert s0.rewards["pairwise"] == s2.rewards["pairwise"] == 0.5  # (0, 2) judged both ways: bias cancels
    assert s1.rewards["pairwise"] == 0.5  # neutral: the mean of its group's successful values
    assert metrics["reward/pairwise/failures"] == 1 and metrics["reward/pairwise/failed_judgments"] == 4
    # every request failing (HTTP 500) is counted, never fatal
    stub_server.responder = None
    stub_server.script = [("status", 500)] * 12
    again = _group(P1, ["a b", "c d", "e f"])
    metrics = scorer.score([again])
    assert metrics["reward/pairwise/failures"] == 3 and metrics["reward/pairwise/judge/failed_requests"] == 6
    assert math.isfinite(float(advantages_for_groups([again], scorer.cfg).abs().sum()))


def test_writing_rm_as_local_pairwise_judge():
    def score_writing(questions, answers):  # r = number of words of the answer
        return [float(len(a.split())) for a in answers]

    cfg = RewardConfig(components=["pairwise"], pairwise=PairwiseConfig(judge="writing_rm", peers=2))
    group = _group(P1, ["a", "a b", "a b c d"])
    RewardScorer(cfg, score_writing=score_writing).score([group])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [(sig(-1) + sig(-3)) / 2, (sig(1) + sig(-2)) / 2, (sig(3) + sig(2)) / 2]
    assert [s.rewards["pairwise"] for s in group.samples] == pytest.approx(expected, abs=1e-12)


def test_reference_opponent(judge):
    scripted, endpoint = judge()
    ref = PromptRecord(prompt_id="r", question="q", length_lower=1, length_upper=9, reference="one two three")
    group = _group(ref, ANSWERS[:2])
    metrics = _scorer(endpoint, pairwise=PairwiseConfig(opponent="reference")).score([group, _group(P2, ANSWERS[:2])])
    assert [s.rewards["pairwise"] for s in group.samples] == [1.0, 0.5]  # q 6 > 3; q 3 = 3: tie
    assert metrics["reward/pairwise/missing_reference"] == 1 and metrics["reward/pairwise/failures"] == 2


def _rubric_scorer(endpoint, cache_dir):
    return _scorer(endpoint, components=("rubric",), rubric=RubricConfig(cache_dir=str(cache_dir)))


def test_rubric_one_request_per_prompt_across_iterations_and_resume(judge, tmp_path):
    scripted, endpoint = judge()
    scorer = _rubric_scorer(endpoint, tmp_path / "rubrics")
    for iteration in range(2):
        groups = [_group(P1, [f"{a} it{iteration}" for a in ANSWERS]), _group(P2, ANSWERS[:2])]
        metrics = scorer.score(groups)
        assert metrics["reward/rubric/generated"] == (2 if iteration == 0 else 0)
        assert metrics["reward/rubric/judgments"] == 6 and metrics["reward/rubric/failed_judgments"] == 0
    assert scripted.counts["rubric"] == 2 and len(list((tmp_path / "rubrics").glob("*.json"))) == 2
    # hand check of the normalisation: 3 criteria scored (b, b − 1, b) with b = 1 + min(9, q // 4)
    sample = groups[0].samples[0]  # "one two three four five six it1": q = 7 → b = 2 → mean 5/3
    assert sample.rewards["rubric"] == pytest.approx((5 / 3 - 1) / 9)
    resumed = _rubric_scorer(endpoint, tmp_path / "rubrics")  # a new process on the same run dir
    metrics = resumed.score([_group(P1, ANSWERS), _group(P2, ANSWERS)])
    assert scripted.counts["rubric"] == 2 and metrics["reward/rubric/cache_hits"] == 2


def test_rubric_supplied_in_prompt_file_and_bad_rubric(judge, tmp_path, stub_server):
    criteria = [{"name": "vivid", "criteria_description": "imagery", "1-2": "none", "9-10": "rich"}]
    path = tmp_path / "prompts.jsonl"
    rows = [{"question": "Describe rain.", "length_lower": 1, "length_upper": 9, "criteria": criteria,
             "reference": "wet"}, {"question": "bad", "length_lower": 1, "length_upper": 9, "criteria": [{"x": 1}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = load_prompts(PromptDataConfig(path=str(path)))
    assert len(loaded.records) == 1 and sum(loaded.skipped.values()) == 1
    record = loaded.records[0]
    assert record.criteria[0]["name"] == "vivid" and record.reference == "wet"
    scripted, endpoint = judge()
    metrics = _rubric_scorer(endpoint, tmp_path / "r").score([_group(record, ANSWERS[:2])])
    assert scripted.counts["rubric"] == 0 and metrics["reward/rubric/supplied"] == 1
    # an unparseable rubric is not cached, its samples fall back, and the next step asks again
    stub_server.responder = lambda body: "no json here"
    endpoint = EndpointConfig(url=stub_server.url, model="stub", max_retries=0)
    scorer = _rubric_scorer(endpoint, tmp_path / "r2")
    metrics = scorer.score([_group(P1, ANSWERS[:2])])
    assert metrics["reward/rubric/failed_rubrics"] == 1 and metrics["reward/rubric/failures"] == 2
    scorer.score([_group(P1, ANSWERS[:2])])
    assert len(stub_server.requests) == 2 and not list((tmp_path / "r2").glob("*.json"))


def test_lone_sample_gets_neutral_half(judge):
    scripted, endpoint = judge()
    group = _group(P1, ANSWERS[:1])
    metrics = _scorer(endpoint).score([group])
    assert group.samples[0].rewards["pairwise"] == 0.5 and metrics["reward/pairwise/failures"] == 0
    assert scripted.counts["pairwise"] == 0


def test_scripted_judge_wrapper_serves_a_command(tmp_path):
    """`python -m megatron_lwz.rewards.scripted_judge -- CMD` (the rubric study's command) exports the URL."""
    import subprocess
    import sys

    from megatron_lwz.rewards.scripted_judge import main

    probe = ("import json, os, urllib.request; url = os.environ['LWZ_JUDGE_URL'] + '/chat/completions'; "
             "body = json.dumps({'messages': [{'role': 'user', 'content': '[Response A]\\na b\\n\\n[Response B]\\na'}]}); "
             "req = urllib.request.Request(url, body.encode(), {'Content-Type': 'application/json'}); "
             "print(json.loads(urllib.request.urlopen(req).read())['choices'][0]['message']['content'])")
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        assert subprocess.call([sys.executable, "-m", "megatron_lwz.rewards.scripted_judge", "--", sys.executable,
                                "-c", probe], stdout=fh) == 0
    assert out.read_text().strip().endswith("[[A]]")
    assert main(["--", sys.executable, "-c", "raise SystemExit(3)"]) == 3

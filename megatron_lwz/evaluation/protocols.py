"""Named evaluation protocols: a score is only reported together with the protocol that produced it.

WritingBench (X-PLUG/WritingBench, arXiv 2503.05244) exists in versions whose numbers are not comparable
(reference notes paper.md §9.1):

* ``writingbench-v1``: the March 2025 release — 1,239 queries, scoring prompt of commit cf2827a
  (2025-03-10), scored by the released critic ``AQuarterMile/WritingBench-Critic-Model-Qwen-7B``;
  the setting of LongWriter-Zero's 8.69 (scale 1–10).
* ``writingbench-v2``: the 2025-04-28 update — 1,000 queries, the stricter scoring prompt of commit
  2f3650b, an LLM judge (Claude-3.7-Sonnet at the time); its leaderboard shows scores × 10.

Both: system prompt "You are an expert evaluator…", one request per criterion, temperature 1.0, top_p
0.95, 2,048 reply tokens (``evaluator/critic.py``, ``evaluator/llm.py``); reply JSON ``{"score", "reason"}``
with an integer score 1–10; ``{criteria}`` is the criterion object as Python prints it (``str(dict)``),
exactly as ``evaluate_prompt.format(criteria=c)`` fills it. The prompts below are the released strings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

WB_SYSTEM = "You are an expert evaluator with extensive experience in evaluating response of given query."

WB_PROMPT_V1 = """Evaluate the Response based on the Query and criteria provided.

** Criteria **
```{criteria}```

** Query **
```{query}```

** Response **
```{response}```

Provide your evaluation based on the criteria:

```{criteria}```

Provide reasons for each score, indicating where and why any strengths or deficiencies occur within the Response. Reference specific passages or elements from the text to support your justification.
Ensure that each reason is concrete, with explicit references to the text that aligns with the criteria requirements.

Scoring Range: Assign an integer score between 1 to 10

** Output format **
Return the results in the following JSON format, Only output this JSON format and nothing else:
```json
{{
    "score": an integer score between 1 to 10,
    "reason": "Specific and detailed justification for the score using text elements."
}}
```"""

_V2_RULES = """Evaluate the Response based on the Query and Criteria provided following the Scoring Rules.

** Scoring Rules **

"1-2": "Low score description: Critical deficiencies and major issues that prevent adequate functionality.",
"3-4": "Below average score description: Lacking with noticeable shortcomings that impact overall effectiveness and require improvement.",
"5-6": "Average score description: Adequate but not exemplary, Baseline performance that meets essential requirements. Most models may achieve this score.",
"7-8": "Above average score description: Strong performance characterized by competent execution, though minor refinements are needed to achieve excellence.",
"9-10": "High score description: Exceptional performance with all aspects optimally addressed, demonstrating superior effectiveness and quality without any flaws."

-Provide reasons for each score by indicating specific strengths or deficiencies within the Response. Reference exact text passages to justify the score, ensuring that each reason is concrete and aligns with the criteria requirements while highlighting key gaps from the ideal answer.

-Be very STRICT and do not be misled by format or length; ensure that the Response is thoroughly evaluated beyond superficial appearances.

-Carefully discern whether the content of the Response is an illusion, appearing substantial but actually entirely fabricated.

-Sometimes the model may only provide an introduction or an overview without truly completing the query, which should be considered a failed response. Carefully discern this.

-Scoring Range: Assign an integer score between 1 to 10
"""
_V2_FORMAT = """** Output format ** 
(Remove symbols that interfere with JSON parsing, don't use " inside reason)
Return the results in the following JSON format, Only output the following JSON format and nothing else:
```json
{{
    "score": an integer score between 1 to 10,
    "reason": "Specific and detailed justification for the score using text elements."
}}"""
WB_PROMPT_V2 = (_V2_RULES + "\n" + _V2_FORMAT + "\n\n** Criteria **\n```{criteria}```\n\n** Query **\n```{query}```\n\n"
                "** Response **\n```{response}```\n\nProvide your evaluation based on the criteria restated below:\n\n"
                "```{criteria}```\n\n" + _V2_FORMAT + "\n```")


@dataclass(frozen=True)
class WritingBenchProtocol:
    """Everything that changes a WritingBench number."""

    name: str
    version: str
    """Release the queries and prompt come from."""
    num_queries: int
    """Queries of the full benchmark (fewer judged = a partial result, flagged as such)."""
    judge_model: str
    """Default judge model name (what the endpoint must serve)."""
    system_prompt: str
    prompt_template: str
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 2048
    leaderboard_scale: float = 1.0
    """Factor of the public leaderboard (v2 shows × 10); reported as ``score_leaderboard``."""

    def describe(self) -> dict:
        """The protocol as recorded in results (prompt templates left out)."""
        return {k: v for k, v in asdict(self).items() if k not in ("system_prompt", "prompt_template")}

    def render(self, criterion: dict, query: str, response: str) -> list[dict[str, str]]:
        """System + user messages for one criterion (``str.format`` like the release; braces in the
        inputs are safe because they are arguments, not part of the template)."""
        user = self.prompt_template.format(criteria=str(criterion), query=query, response=response)
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": user}]


WRITINGBENCH = {
    "writingbench-v1": WritingBenchProtocol(
        name="writingbench-v1", version="2025-03 (1,239 queries; prompt of cf2827a)", num_queries=1239,
        judge_model="AQuarterMile/WritingBench-Critic-Model-Qwen-7B", system_prompt=WB_SYSTEM,
        prompt_template=WB_PROMPT_V1),
    "writingbench-v2": WritingBenchProtocol(
        name="writingbench-v2", version="2025-04-29 (1,000 queries; prompt of 2f3650b)", num_queries=1000,
        judge_model="claude-3-7-sonnet-20250219", system_prompt=WB_SYSTEM, prompt_template=WB_PROMPT_V2,
        leaderboard_scale=10.0),
}

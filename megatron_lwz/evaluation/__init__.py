"""Evaluation as the paper reports it (reference notes paper.md §9): ``lwz eval generate | writingbench |
arena | length``.

Modules:
  generate     answers a prompt file from a checkpoint with the rollout engine (JSONL, resumable)
  data         readers: generation files (+ .meta.json sidecar), WritingBench queries, prompt files
  protocols    named WritingBench presets (v1 critic / v2 LLM judge), recorded with every score
  judging      JudgeConfig and ask-parse-re-ask over the one LLM client (rewards/llm_client.py)
  writingbench per-criterion critic scores → query / run / domain means
  pairwise     pairwise judge prompts, [[A]]/[[B]]/[[C]] verdicts, the Writing-RM pairwise judge
  arena        every pair × shared prompt × both orders → Bradley–Terry Elo, win rates, PNGs
  elo          Bradley–Terry MLE (Newton), Elo scaling, bootstrap intervals over prompts
  length       LongBench-Write length score S_l from the Length RM's word count
  report       summary tables and plots

Nothing here imports torch at module level; ``generate`` and the RM judge import it when called.
"""

"""``lwz data predict-length``, ``filter-prompts`` and ``split-prompts``: RL prompt preparation (paper §1.3, §8).

Thin: argparse → typed configs → ``megatron_lwz.rewards.length_predict`` / ``prompt_filter`` / ``prompt_split``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def _add_endpoint_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("OpenAI-compatible endpoint")
    group.add_argument("--endpoint", help="base URL, e.g. http://host:8000/v1 (omit: explicit parser only)")
    group.add_argument("--model", help="model name sent to the endpoint (e.g. Qwen/QwQ-32B)")
    group.add_argument("--api", choices=["chat", "completions"], default="chat")
    group.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the bearer token")
    group.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    group.add_argument("--retries", type=int, default=4, help="retries per request on transient errors")
    group.add_argument("--backoff", type=float, default=2.0, help="first retry delay in seconds (doubles)")
    group.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    group.add_argument("--temperature", type=float, default=0.6)
    group.add_argument("--max-tokens", type=int, default=8192)


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "data split-prompts":
        parser.add_argument("--input", required=True, help="predict-length output (JSONL)")
        parser.add_argument("--train-out", required=True, help="training prompts (the recipe's prompts.path)")
        parser.add_argument("--heldout-out", required=True, help="held-out prompts (the recipe's rl.eval.path)")
        parser.add_argument("--heldout", type=int, default=128, help="distinct held-out prompt texts")
        parser.add_argument("--seed", type=int, default=1234)
        parser.add_argument("--question-key", default="question")
        parser.add_argument("--summary", help="where to write the summary JSON (default: <heldout-out>.summary.json)")
        return
    if name == "data predict-length":
        parser.add_argument("--input", required=True, help="prompt JSONL (.jsonl / .jsonl.gz)")
        parser.add_argument("--output", required=True, help="output JSONL (may equal --input; "
                            "reruns skip done records)")
        parser.add_argument("--question-key", default="question")
        parser.add_argument("--attempts", type=int, default=3, help="LLM queries per prompt until a valid range")
        parser.add_argument("--batch-size", type=int, default=256, help="prompts per checkpointed batch")
        parser.add_argument("--no-explicit", action="store_true", help="skip the explicit-request parser")
    elif name == "data filter-prompts":
        parser.add_argument("--input", required=True, nargs="+", help="WildChat/LMSYS dumps: jsonl, jsonl.gz, parquet")
        parser.add_argument("--output", required=True, help="prompt JSONL to write")
        parser.add_argument("--languages", nargs="+", default=["en", "zh"])
        parser.add_argument("--min-words", type=int, default=4)
        parser.add_argument("--max-words", type=int, default=2000)
        parser.add_argument("--near-dup-threshold", type=float, default=0.8)
        parser.add_argument("--no-dedup", action="store_true")
        parser.add_argument("--keep-toxic", action="store_true")
        parser.add_argument("--max-records", type=int, default=None, help="stop after reading this many records")
        parser.add_argument("--judge", action="store_true",
                            help="also ask the endpoint whether each prompt is long-form")
        parser.add_argument("--predict-length", action="store_true", help="then fill length ranges in the output")
    else:
        raise ValueError(f"reward_cmds does not serve {name!r}")
    parser.add_argument("--summary", help="where to write the summary JSON (default: <output>.summary.json)")
    _add_endpoint_args(parser)


def _endpoint(args: argparse.Namespace):
    if not args.endpoint:
        return None
    from megatron_lwz.rewards.llm_client import EndpointConfig

    if not args.model:
        raise SystemExit("--endpoint needs --model (the model name the server expects)")
    return EndpointConfig(url=args.endpoint, model=args.model, api=args.api, api_key_env=args.api_key_env,
                          timeout_s=args.timeout, max_retries=args.retries, backoff_s=args.backoff,
                          concurrency=args.concurrency,
                          temperature=args.temperature, max_tokens=args.max_tokens)


def _finish(summary: dict, output: str, summary_path: str | None) -> int:
    path = Path(summary_path or f"{output}.summary.json")
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "bad_examples"}, ensure_ascii=False))
    for example in summary.get("bad_examples", [])[:10]:
        print(f"  skipped {example}")
    return 0


def _predict(args: argparse.Namespace, input_path: str) -> dict:
    from megatron_lwz.rewards.length_predict import LengthPredictorConfig, predict_file
    from megatron_lwz.rewards.llm_client import OpenAIClient

    endpoint = _endpoint(args)
    cfg = LengthPredictorConfig(question_key=getattr(args, "question_key", "question"),
                                use_explicit_parser=not getattr(args, "no_explicit", False),
                                attempts=getattr(args, "attempts", 3), batch_size=getattr(args, "batch_size", 256),
                                endpoint=endpoint, extra={"model": args.model} if endpoint else {})
    generate = OpenAIClient(endpoint).generate if endpoint else None
    return predict_file(input_path, args.output, cfg, generate)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "data predict-length":
        return _finish(_predict(args, args.input), args.output, args.summary)
    if args.command == "data split-prompts":
        from megatron_lwz.rewards.prompt_split import SplitConfig, split_prompts

        cfg = SplitConfig(heldout=args.heldout, seed=args.seed, question_key=args.question_key)
        try:
            summary = split_prompts(args.input, args.train_out, args.heldout_out, cfg)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        return _finish(summary, args.heldout_out, args.summary)
    from megatron_lwz.rewards.llm_client import OpenAIClient
    from megatron_lwz.rewards.prompt_filter import PromptFilterConfig, filter_prompts

    cfg = PromptFilterConfig(languages=args.languages, min_words=args.min_words, max_words=args.max_words,
                             near_dup_threshold=args.near_dup_threshold, dedup=not args.no_dedup,
                             drop_toxic=not args.keep_toxic, max_records=args.max_records)
    endpoint = _endpoint(args)
    if args.judge and endpoint is None:
        raise SystemExit("--judge needs --endpoint and --model")
    judge = OpenAIClient(endpoint).generate if args.judge else None
    summary = filter_prompts(args.input, args.output, cfg, judge=judge)
    if args.predict_length:
        summary["predict_length"] = _predict(args, args.output)
    return _finish(summary, args.output, args.summary)

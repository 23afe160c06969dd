"""``lwz eval generate | writingbench | arena | length``: evaluation as the paper reports it.

Thin: flags (and an optional ``--config`` YAML plus dotted overrides) become one typed config of
``megatron_lwz.evaluation``; the library call returns a summary; this module prints a table and, as the
last line, one JSON object. Heavy imports (torch) happen only in ``eval generate``. Exit status: 0 done,
1 nothing could be scored, 2 bad config or input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML with the command's config fields (flags and overrides win)")
    parser.add_argument("overrides", nargs="*",
                        help="dotted overrides, e.g. judge.concurrency=32 (after a multi-file option, separate "
                             "them with --)")


def _judge_args(p: argparse.ArgumentParser, rm: bool) -> None:
    p.add_argument("--judge",
                   help="judge endpoint URL (OpenAI-compatible, e.g. http://host:8000/v1)"
                        + (" or rm:CHECKPOINT for our Writing RM" if rm else ""))
    p.add_argument("--judge-model", help="model name the judge endpoint serves")
    p.add_argument("--concurrency", type=int, help="judge requests in flight (default 16)")
    p.add_argument("--judge-max-tokens", type=int, help="judge reply budget")
    p.add_argument("--judge-temperature", type=float, help="judge temperature")
    p.add_argument("--reask", type=int, help="re-asks for an unparseable reply (default 2)")
    p.add_argument("--cache", help="judge reply cache (default <out>/judge_cache.sqlite)")


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Flags of each ``lwz eval`` subcommand."""
    if name == "eval generate":
        parser.add_argument("--model", help="HF model directory or megatron_lwz checkpoint")
        parser.add_argument("--prompts", help="prompt JSONL (WritingBench / Arena-Write / LongBench-Write files as published)")
        parser.add_argument("--output", help="generations JSONL (resumable)")
        parser.add_argument("--tokenizer", help="tokenizer path (default: the model directory)")
        parser.add_argument("--template", choices=["think", "direct", "raw"])
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--top-p", type=float)
        parser.add_argument("--max-tokens", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--max-prompts", type=int)
        parser.add_argument("--engine", choices=["auto", "hf", "vllm"], help="rollout engine (default auto)")
    elif name == "eval writingbench":
        parser.add_argument("--generations", nargs="+", help="generation file(s); several = runs, averaged")
        parser.add_argument("--benchmark", help="WritingBench query JSONL")
        parser.add_argument("--protocol", help="writingbench-v1 (critic, 1,239 queries) | writingbench-v2 (LLM judge)")
        parser.add_argument("--max-queries", type=int)
        parser.add_argument("--out", help="results directory")
        _judge_args(parser, rm=False)
    elif name == "eval arena":
        parser.add_argument("--generations", nargs="+", help="one generation file per system")
        parser.add_argument("--names", nargs="+", help="system names (default: file names)")
        parser.add_argument("--judge-prompt", help="pairwise prompt preset: writing | mt-bench-pair-v2")
        parser.add_argument("--anchor", help="NAME=ELO: fix one system's Elo (default: mean 1000)")
        parser.add_argument("--bootstrap", type=int, help="bootstrap resamples over prompts (default 1000)")
        parser.add_argument("--prior-ties", type=float, help="virtual ties per pair (default 0.1; 0 = plain MLE)")
        parser.add_argument("--max-prompts", type=int)
        parser.add_argument("--out", help="results directory")
        _judge_args(parser, rm=True)
    elif name == "eval length":
        parser.add_argument("--generations", nargs="+", help="generation file(s); several = runs, averaged")
        parser.add_argument("--benchmark", help="prompt JSONL with the required length (LongBench-Write)")
        parser.add_argument("--length-key", help="field of the required length (default 'length')")
        parser.add_argument("--out", help="results directory")
    else:
        raise ValueError(f"eval_cmds does not serve {name!r}")
    _common(parser)


def _config(cls, args: argparse.Namespace, flags: dict[str, Any]):
    """YAML (``--config``) ← flags that were given ← dotted overrides, into ``cls``."""
    import yaml

    from megatron_lwz.config.base import deep_merge, expand_env, from_dict, parse_overrides

    data: dict[str, Any] = {}
    if args.config:
        with open(args.config, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    data = deep_merge(data, _nested({k: v for k, v in flags.items() if v is not None}))
    return from_dict(cls, expand_env(deep_merge(data, parse_overrides(args.overrides))))


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _judge_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {"judge.url": args.judge, "judge.model": args.judge_model, "judge.concurrency": args.concurrency,
            "judge.max_tokens": args.judge_max_tokens, "judge.temperature": args.judge_temperature,
            "judge.reask": args.reask, "judge.cache_path": args.cache}


def run(args: argparse.Namespace) -> int:
    from megatron_lwz.config.base import ConfigError

    try:
        return _RUNS[args.command](args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run_generate(args: argparse.Namespace) -> int:
    from megatron_lwz.evaluation.generate import GenerateConfig, generate

    flags = {"model": args.model, "prompts": args.prompts, "output": args.output, "tokenizer": args.tokenizer,
             "template": args.template, "temperature": args.temperature, "top_p": args.top_p,
             "max_tokens": args.max_tokens, "seed": args.seed, "batch_size": args.batch_size,
             "max_prompts": args.max_prompts, "rollout.engine": args.engine}
    summary = generate(_config(GenerateConfig, args, flags))
    from megatron_lwz.evaluation.report import format_table

    print(format_table(["prompts", "already done", "generated", "engine", "tokens/s"],
                       [[summary["prompts"], summary["already_done"], summary["generated"], summary.get("engine"),
                         summary.get("tokens_per_s")]]))
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _run_writingbench(args: argparse.Namespace) -> int:
    from megatron_lwz.evaluation.report import format_table
    from megatron_lwz.evaluation.writingbench import WritingBenchConfig, run_writingbench

    flags = {"generations": args.generations, "benchmark": args.benchmark, "protocol": args.protocol,
             "max_queries": args.max_queries, "out_dir": args.out, **_judge_flags(args)}
    s = run_writingbench(_config(WritingBenchConfig, args, flags))
    runs = s["runs"]
    domains = sorted(s["by_domain"])
    rows = [[d, *(r["by_domain"].get(d) for r in runs), s["by_domain"][d]] for d in domains]
    rows.append(["overall", *(r["score"] for r in runs), s["score"]])
    print(f"WritingBench protocol {s['protocol']} ({s['protocol_detail']['version']}), judge {s['judge']['model']}, "
          f"max_tokens {s['judge']['max_tokens']}{'  [PARTIAL: ' + str(s['queries']) + ' queries]' if s['partial'] else ''}")
    print(format_table(["domain", *(f"run{i}" for i in range(len(runs))), "mean"], rows))
    print(f"judged {s['judged']}, failed {s['failed']}, judge requests {s['usage']['requests']}, "
          f"cache hits {s['usage']['cache_hits']}; results in {args.out or 'eval/writingbench'}")
    keys = ("score", "score_std", "by_domain", "judged", "failed", "protocol", "partial", "score_leaderboard")
    print(json.dumps({k: s[k] for k in keys} | {"judge_model": s["judge"]["model"]}, ensure_ascii=False))
    return 0 if s["judged"] else 1


def _run_arena(args: argparse.Namespace) -> int:
    from megatron_lwz.evaluation.arena import ArenaConfig, run_arena
    from megatron_lwz.evaluation.report import format_table

    flags = {"generations": args.generations, "names": args.names, "judge_prompt": args.judge_prompt,
             "max_prompts": args.max_prompts, "out_dir": args.out, "elo.bootstrap": args.bootstrap,
             "elo.prior_ties": args.prior_ties}
    if args.judge and args.judge.startswith("rm:"):
        flags["rm_checkpoint"] = args.judge[3:]
    else:
        flags.update(_judge_flags(args))
    if args.anchor:
        name, _, value = args.anchor.partition("=")
        flags.update({"elo.anchor": name, "elo.anchor_elo": float(value or "nan")})
    s = run_arena(_config(ArenaConfig, args, flags))
    order = sorted(s["elo"], key=s["elo"].get, reverse=True)
    print(format_table(["system", "elo", "95% low", "95% high", *order],
                       [[n, s["elo"][n], *s["ci"][n], *(s["win_rate"][n].get(m) for m in order)] for n in order]))
    print(f"judgments {s['judgments']}, failed {s['failed']}, ties {s['ties']}, position bias "
          f"{s['position_bias'] if s['position_bias'] is None else round(s['position_bias'], 3)}; "
          f"results in {args.out or 'eval/arena'}")
    keys = ("elo", "ci", "judgments", "failed", "position_bias")
    print(json.dumps({k: s[k] for k in keys} | {"judge": s["judge"]}, ensure_ascii=False))
    return 0 if s["judgments"] else 1


def _run_length(args: argparse.Namespace) -> int:
    from megatron_lwz.evaluation.length import LengthEvalConfig, run_length
    from megatron_lwz.evaluation.report import format_table

    flags = {"generations": args.generations, "benchmark": args.benchmark, "length_key": args.length_key,
             "out_dir": args.out}
    s = run_length(_config(LengthEvalConfig, args, flags))
    rows = [[b, v] for b, v in s["by_range"].items()] + [["S_l", s["S_l"]]]
    print(format_table(["required words", "S_l"], rows))
    print(json.dumps({k: s[k] for k in ("S_l", "S_l_std", "by_range", "scored", "missing")}, ensure_ascii=False))
    return 0 if s["scored"] else 1


_RUNS = {"eval generate": _run_generate, "eval writingbench": _run_writingbench, "eval arena": _run_arena,
         "eval length": _run_length}

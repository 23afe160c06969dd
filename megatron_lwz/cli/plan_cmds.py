"""``lwz plan``: rank parallel layouts for a model, a cluster and a job; a table, then one JSON line.

Thin: flags → ``plan.shape.ModelShape`` / ``plan.spec.Job`` / ``plan.search.Fixed`` → ``plan.search.plan``.
Example: ``lwz plan --model qwen2.5-32b --gpus 64 --gpu h100 --job cpt --seq 32768 --global-batch 512``;
fix any choice to evaluate one layout (``--tp 8 --pp 2 --recompute full``).
"""

from __future__ import annotations

import argparse
import json
import sys


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Flags of ``lwz plan``."""
    if name != "plan":
        raise ValueError(f"megatron_lwz.cli.plan_cmds does not serve {name!r}")
    parser.add_argument("--config", help="a recipe: model, job, batch and GPU count from it (e.g. "
                        "examples/rm/qwen2.5-72b_writing_rm.yaml); the table then says where its layout ranks")
    m = parser.add_argument_group("model (a preset, or every shape flag)")
    m.add_argument("--model", help="preset, e.g. qwen2.5-32b (models/presets.py)")
    for flag in ("--layers", "--hidden", "--heads", "--kv-heads", "--ffn", "--vocab", "--head-dim"):
        m.add_argument(flag, type=int)
    m.add_argument("--mlp", choices=["swiglu", "gelu"], default="swiglu")
    m.add_argument("--tied", action="store_true", help="tied input/output embeddings")
    c = parser.add_argument_group("cluster")
    c.add_argument("--gpus", type=int, help="GPUs in the job (default with --config: its parallel.world_size)")
    c.add_argument("--gpu", default="h100", help="a100 | h100 | h800 | h200 | h20 | b200 (plan/hardware.py)")
    j = parser.add_argument_group("job")
    j.add_argument("--job", choices=["cpt", "rm", "grpo"], default="cpt")
    j.add_argument("--seq", type=int, default=4096, help="sequence length (grpo: packed micro-batch token budget)")
    j.add_argument("--global-batch", type=int, default=512, help="sequences per step (rm: pairs)")
    j.add_argument("--micro-batch", type=int, default=1)
    for flag, help_text in (("--tp-comm-overlap", "TE userbuffers TP overlap"), ("--overlap-grad-reduce", ""),
                            ("--overlap-param-gather", ""), ("--distributed-optimizer", "")):
        j.add_argument(flag, type=_bool, default=True, metavar="BOOL", help=help_text or None)
    f = parser.add_argument_group("fix layout choices (default: search)")
    f.add_argument("--tp", type=int)
    f.add_argument("--pp", type=int)
    f.add_argument("--vpp", type=int, help="0 = not interleaved")
    f.add_argument("--sp", type=_bool, metavar="BOOL")
    f.add_argument("--recompute", choices=["none", "selective", "full"])
    f.add_argument("--fp8", type=_bool, metavar="BOOL")
    g = parser.add_argument_group("grpo")
    for flag, default in (("--prompts", 64), ("--group", 32), ("--prompt-mean", 300), ("--response-mean", 5000),
                          ("--response-max", 14000), ("--minibatches", 4), ("--gen-tp", 8), ("--rm-input-mean", 3500)):
        g.add_argument(flag, type=int, default=default)
    g.add_argument("--engines", type=int, help="vLLM engines (default GPUs / gen-tp)")
    g.add_argument("--gen-mem", type=float, default=0.32, help="vLLM gpu_memory_utilization")
    g.add_argument("--rm", help="reward-model preset scored every step (e.g. qwen2.5-72b)")
    g.add_argument("--workload", choices=["lognormal", "longwriter"], default="lognormal",
                   help="response lengths: log-normal with --response-mean, or LongWriter-Zero's length ranges")
    o = parser.add_argument_group("output")
    o.add_argument("--top", type=int, default=15, help="rows in the table and the JSON line")
    o.add_argument("--headroom", type=float, help="share of HBM kept free for 'fits' (default 0.08 calibrated, "
                   "0.15 while plan/memory_calibration.json has no measured numbers for the job)")
    o.add_argument("--tie-band", type=float, default=0.02,
                   help="fitting layouts within this share of the best tokens/s/GPU rank by memory, least first "
                        "(0 = by throughput alone)")
    o.add_argument("--calibration", help="memory calibration JSON (default: plan/memory_calibration.json)")


def shape_from_args(args: argparse.Namespace):
    """A preset or the explicit shape flags (ValueError naming what is missing)."""
    from megatron_lwz.plan.shape import ModelShape, from_preset

    if args.model:
        return from_preset(args.model)
    needed = {"--layers": args.layers, "--hidden": args.hidden, "--heads": args.heads, "--kv-heads": args.kv_heads,
              "--ffn": args.ffn, "--vocab": args.vocab}
    missing = [k for k, v in needed.items() if v is None]
    if missing:
        raise ValueError(f"give --model PRESET or all of the shape flags; missing {missing}")
    return ModelShape(layers=args.layers, hidden=args.hidden, heads=args.heads, kv_heads=args.kv_heads, ffn=args.ffn,
                      vocab=args.vocab, head_dim=args.head_dim, swiglu=args.mlp == "swiglu", tied=args.tied)


def job_from_args(args: argparse.Namespace):
    from megatron_lwz.plan.shape import from_preset
    from megatron_lwz.plan.spec import GrpoSpec, Job

    grpo = GrpoSpec(prompts=args.prompts, group=args.group, prompt_mean=args.prompt_mean,
                    response_mean=args.response_mean, response_max=args.response_max, minibatches=args.minibatches,
                    gen_tp=args.gen_tp, engines=args.engines, gen_mem_fraction=args.gen_mem,
                    rm=from_preset(args.rm) if args.rm else None, rm_input_mean=args.rm_input_mean,
                    workload=args.workload)
    return Job(kind=args.job, seq_length=args.seq, global_batch=args.global_batch, micro_batch=args.micro_batch,
               tp_comm_overlap=args.tp_comm_overlap, overlap_grad_reduce=args.overlap_grad_reduce,
               overlap_param_gather=args.overlap_param_gather, distributed_optimizer=args.distributed_optimizer,
               grpo=grpo)


def run(args: argparse.Namespace) -> int:
    """Rank the layouts; print the table, then the JSON line (last). 1 on bad flags."""
    from megatron_lwz.plan import calibration
    from megatron_lwz.plan.hardware import gpu as gpu_named
    from megatron_lwz.plan.report import render
    from megatron_lwz.plan.recipe import from_recipe
    from megatron_lwz.plan.search import Fixed, plan

    shipped = None
    try:
        if args.config:
            recipe = from_recipe(args.config)
            shape, job, gpus, shipped = recipe.shape, recipe.job, args.gpus or recipe.gpus, recipe.layout
        else:
            if not args.gpus:
                raise ValueError("give --gpus N (or --config RECIPE)")
            shape, job, gpus = shape_from_args(args), job_from_args(args), args.gpus
        gpu = gpu_named(args.gpu)
        fixed = Fixed(tp=args.tp, pp=args.pp, vpp=args.vpp, sp=args.sp, recompute=args.recompute, fp8=args.fp8)
        recipes = calibration.load(args.calibration) if args.calibration else None
        scales = calibration.category_scales(job.kind, recipes)
        headroom = args.headroom if args.headroom is not None else (0.08 if scales else 0.15)
        preds = plan(shape, gpus, gpu, job, fixed, scales=scales, headroom=headroom, tie_band=args.tie_band)
    except ValueError as err:  # ConfigError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 1
    table, record = render(preds[: args.top], shape, job, gpu, gpus, scales, total=len(preds), headroom=headroom,
                           tie_band=args.tie_band)
    record["headroom"] = headroom
    if shipped is not None:
        where = next((i for i, p in enumerate(preds, 1) if p.layout == shipped), None)
        record["recipe"] = {"path": args.config, "layout": shipped.as_dict(), "rank": where}
        table += (f"\n{args.config}: its layout ranks #{where} of {len(preds)}" if where else
                  f"\n{args.config}: its layout is not among the candidates (fixed flags exclude it)")
        if where and where > args.top:  # not in the table: its numbers here
            p = preds[where - 1]
            record["recipe"]["prediction"] = p.row()
            table += (f": {p.mem_gib:.1f} GiB/GPU ({'fits' if p.fits else 'does not fit'}), {p.step_s:.2f} s/step, "
                      f"MFU {p.mfu:.3f}, {p.tokens_per_s_per_gpu:,.0f} tokens/s/GPU")
    print(table)
    print(json.dumps(record, sort_keys=True, separators=(",", ":")), flush=True)
    return 0

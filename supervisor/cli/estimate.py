"""`ftmon estimate RECIPE [--set k=v] [--gpu-gb N] [--json]`: the memory preflight, printed.

Exit 0: it fits, or the card's memory is unknown (the estimate is printed with no verdict);
1: it does not fit; 2: a bad recipe or usage.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from supervisor.cli.main import EXIT_FOUND, EXIT_OK, UsageError
from supervisor.estimate.memory_model import GB
from supervisor.estimate.preflight import EstimateError, preflight


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate",
        help="estimate a recipe's peak memory and what would fit",
        description="Estimate the peak memory of a recipe's training step (weights, gradients, "
        "optimizer states, activations, logits, ...), name the dominant term, and when it does "
        "not fit the card, the largest micro-batch (then sequence length, then LoRA rank) that "
        "would, keeping the effective batch. Exit 0 fits or unknown, 1 does not fit, 2 bad "
        "recipe or usage.",
    )
    p.add_argument("recipe", metavar="RECIPE", help="recipe YAML file")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value (repeatable), e.g. --set micro_batch=4",
    )
    p.add_argument(
        "--gpu-gb",
        type=float,
        default=None,
        metavar="N",
        help="the card's memory in GB (default: preflight.gpu_gb, NVML, watch.vram.limit_gb)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from supervisor.recipe.model import RecipeError, apply_overrides, load_recipe

    if args.gpu_gb is not None and not 0 < args.gpu_gb < math.inf:  # nan too: "does NOT fit"
        raise UsageError(f"--gpu-gb must be a finite number above 0, got {args.gpu_gb}")
    try:
        recipe = load_recipe(args.recipe)
        if args.sets:
            recipe = apply_overrides(recipe, args.sets)
    except RecipeError as exc:
        raise UsageError(str(exc)) from None
    try:
        result = preflight(recipe, gpu_gb=args.gpu_gb)
    except EstimateError as exc:
        raise UsageError(f"{args.recipe}: {exc}") from None
    if args.json:
        est = result.estimate
        assert est is not None
        out = {
            "recipe": recipe.name,
            "peak_gb": round(result.peak_gb, 3),
            "peak_phase": est.peak_phase,
            "dominant": est.dominant.name,
            "gpu_gb": result.gpu_gb,
            "gpu_source": result.gpu_source,
            "fits": result.fits if result.gpu_gb is not None else None,
            "near_limit": result.near_limit,
            "suggestion": result.suggestion,
            "params": est.params,
            "trainable": est.trainable,
            "phases_gb": {p: round(b / GB, 3) for p, b in est.phase_bytes.items()},
            "terms": [
                {"name": t.name, "gb": round(t.bytes / GB, 4), "phase": t.phase} for t in est.terms
            ],
        }
        print(json.dumps(out))
    else:
        print(result.report)
        if result.near_limit:
            print(
                f"warning: the estimate is within {1 - recipe.preflight.warn_ratio:.0%} of the card"
            )
    sys.stdout.flush()
    return EXIT_OK if result.fits else EXIT_FOUND

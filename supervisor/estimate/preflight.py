"""Memory preflight: the estimate of a recipe's peak memory, before it is launched.

`preflight(recipe)` is what `ftmon run` and the TUI call at launch (refuse when it does not fit,
warn near the limit); `ftmon estimate RECIPE` prints the same breakdown; `suggest_adjustment`
picks the change for `adjust: auto` after an oom/vram anomaly. The formulas live in
memory_model.py and the model's shape in model_config.py; this module reads a recipe's args
(the reference trainer's names, or Hugging Face TrainingArguments names) into TrainSettings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.estimate.memory_model import (
    ALLOCATOR_MARGIN,
    ATTENTIONS,
    GB,
    STEP,
    Estimate,
    TrainSettings,
    estimate,
    suggest_fit,
)
from supervisor.estimate.model_config import (
    ALL_LINEARS,
    ModelConfig,
    ModelConfigError,
    config_from_dict,
    load_raw_config,
)

__all__ = [
    "Estimate",
    "EstimateError",
    "ModelConfig",
    "PreflightResult",
    "TrainSettings",
    "estimate",
    "estimate_recipe",
    "format_report",
    "preflight",
    "recipe_inputs",
    "resolve_gpu_gb",
    "suggest_adjustment",
    "suggest_fit",
]


class EstimateError(ValueError):
    """A recipe whose settings cannot be estimated; the message names the field."""


# Each setting under the reference trainer's name first, then the Hugging Face spellings.
ALIASES: dict[str, tuple[str, ...]] = {
    "model": ("model", "model_name_or_path", "model_name", "base_model"),
    "method": ("method",),
    "micro_batch": ("micro_batch", "per_device_train_batch_size", "batch_size"),
    "grad_accum": ("grad_accum", "gradient_accumulation_steps"),
    "seq_len": ("seq_len", "max_seq_length", "max_seq_len", "max_length", "model_max_length"),
    "optimizer": ("optimizer", "optim"),
    "lora_rank": ("lora_rank", "lora_r"),
    "lora_targets": ("lora_targets", "lora_target_modules", "target_modules"),
    "lora_dropout": ("lora_dropout",),
    "grad_checkpointing": ("grad_checkpointing", "gradient_checkpointing"),
    "attention": ("attention", "attn_implementation"),
    "loss_chunk": ("loss_chunk",),
    "device": ("device",),
}
# What the reference trainer (trainer/cli.py) does with a flag the recipe leaves out. Kept equal
# to its defaults by tests/integration/test_trainer_defaults.py (supervisor never imports trainer).
REFERENCE_TRAINER_DEFAULTS: dict[str, Any] = {
    "micro_batch": 8, "seq_len": 96, "lora_rank": 8, "loss_chunk": 256, "momentum": 0.9,
    "lmbda": 0.5, "method": "sft",
}  # fmt: skip
TORCH_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclass(frozen=True, slots=True)
class PreflightResult:
    """The verdict at launch. `fits` is True when the card's memory is unknown (no verdict)."""

    fits: bool
    near_limit: bool
    peak_gb: float
    gpu_gb: float | None
    report: str  # the readable breakdown table
    suggestion: dict[str, Any] | None  # recipe arg name -> value that would fit
    gpu_source: str = ""
    estimate: Estimate | None = None


def _arg(args: dict[str, Any], key: str) -> tuple[str, Any] | None:
    for name in ALIASES[key]:
        if name in args and args[name] is not None:
            return name, args[name]
    return None


def _int_arg(args: dict[str, Any], key: str, default: int) -> int:
    found = _arg(args, key)
    if found is None:
        return default
    name, value = found
    try:
        number = int(str(value))
    except ValueError:
        raise EstimateError(f"args.{name}: expected a whole number, got {value!r}") from None
    if number < 1:
        raise EstimateError(f"args.{name}: must be 1 or more, got {number}")
    return number


def _float_arg(args: dict[str, Any], name: str, default: float) -> float:
    value = args.get(name)
    if value is None:
        return default
    try:
        return float(str(value))
    except ValueError:
        raise EstimateError(f"args.{name}: expected a number, got {value!r}") from None


def _bool(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y", "t")


def _is_reference_trainer(recipe: Any) -> bool:
    command = [str(c) for c in recipe.command]
    return "trainer" in command[1:3] or any(c.endswith("trainer/__main__.py") for c in command)


def _precision(
    recipe: Any, args: dict[str, Any], cfg_dtype: str | None, reference: bool
) -> tuple[str, str, bool]:
    """(weights dtype, compute dtype, fp32 master) from preflight.dtype, HF flags or args."""
    wanted = recipe.preflight.dtype
    if wanted:
        key = str(wanted).lower().replace("-", "_")
        key = TORCH_DTYPES.get(key, key)
        mixed = re.fullmatch(r"(mixed|amp)(_(bf16|fp16))?", key)
        if mixed:
            half = mixed.group(3) or "bf16"
            return half, half, True
        if key in ("fp32", "bf16", "fp16"):
            return key, key, False
        raise EstimateError(
            f"preflight.dtype: {wanted!r} is not one of fp32, bf16, fp16, mixed_bf16, mixed_fp16"
        )
    if _bool(args.get("bf16", False)):
        return "bf16", "bf16", True
    if _bool(args.get("fp16", False)):
        return "fp16", "fp16", True
    torch_dtype = TORCH_DTYPES.get(str(args.get("torch_dtype", "")))
    if reference:
        compute = str(args.get("dtype", "fp32"))
        if compute not in ("fp32", "bf16", "fp16"):
            raise EstimateError(f"args.dtype: {compute!r} is not one of fp32, bf16, fp16")
        # the reference trainer keeps tiny and CPU models in fp32; on CUDA a model directory
        # loads in the dtype its config.json names, and autocast computes in args.dtype
        on_cpu = str(args.get("device", "auto")) == "cpu"
        weights = "fp32" if on_cpu or str(args.get("model", "tiny")) == "tiny" else cfg_dtype
        weights = weights or "bf16"
        return weights, compute if compute != "fp32" else weights, False
    weights = torch_dtype or cfg_dtype or "fp32"
    return weights, weights, False


def _optimizer(recipe: Any, args: dict[str, Any]) -> str:
    found = _arg(args, "optimizer")
    name = str(recipe.preflight.optimizer or (found[1] if found else "adamw")).lower()
    if "8bit" in name:
        return "adamw_8bit"
    if name.startswith("sgd"):
        momentum = float(args.get("momentum", REFERENCE_TRAINER_DEFAULTS["momentum"]) or 0)
        return "sgd_momentum" if momentum > 0 else "sgd"
    return "adamw"


def _targets(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value).split(",")
    names = tuple(str(t).strip() for t in items if str(t).strip())
    if names in (("all-linear",), ("all_linear",), ("all",)):
        return ALL_LINEARS
    unknown = [n for n in names if n not in ALL_LINEARS]
    if unknown:
        raise EstimateError(
            f"args.lora_targets: {', '.join(unknown)} not known (use {', '.join(ALL_LINEARS)})"
        )
    return names


def _model_name(recipe: Any, args: dict[str, Any], reference: bool) -> str:
    found = _arg(args, "model")
    name = recipe.preflight.model or (str(found[1]) if found else ("tiny" if reference else ""))
    if "{base_weights}" in name:
        if not recipe.base_weights:
            raise EstimateError("args.model uses {base_weights} but the recipe has no base_weights")
        name = name.replace("{base_weights}", recipe.base_weights)
    if not name:
        raise EstimateError("no model: set args.model or preflight.model (a config.json path)")
    return name


def recipe_inputs(recipe: Any) -> tuple[ModelConfig, TrainSettings]:
    """The model's shape and the training settings a recipe asks for."""
    args: dict[str, Any] = dict(recipe.args)
    reference = _is_reference_trainer(recipe)
    defaults = REFERENCE_TRAINER_DEFAULTS if reference else {}
    base_dir = Path(recipe.cwd) if recipe.cwd and "{" not in recipe.cwd else None
    try:
        model = _model_name(recipe, args, reference)
        raw, where = load_raw_config(model, base_dir)
        cfg = config_from_dict(raw, where)
    except ModelConfigError as exc:
        raise EstimateError(str(exc)) from None
    raw_dtype = TORCH_DTYPES.get(str(raw.get("torch_dtype") or raw.get("dtype") or ""))
    weights, compute, master = _precision(recipe, args, raw_dtype, reference)
    method = str(args.get("method", REFERENCE_TRAINER_DEFAULTS["method"]))
    if not reference and (
        _bool(args.get("load_in_4bit", False)) or _bool(args.get("use_peft", False))
    ):
        method = "qlora" if _bool(args.get("load_in_4bit", False)) else "lora"
    if method not in ("sft", "lora", "qlora", "gkd"):
        raise EstimateError(f"args.method: {method!r} is not one of sft, lora, qlora, gkd")
    checkpointing = recipe.preflight.gradient_checkpointing
    if checkpointing is None:
        found = _arg(args, "grad_checkpointing")
        checkpointing = _bool(found[1]) if found else False
    attention = str(recipe.preflight.attention or (_arg(args, "attention") or ("", "sdpa"))[1])
    attention = {"flash_attention_2": "flash", "flash_attention_3": "flash"}.get(
        attention, attention
    )
    if attention not in ATTENTIONS:
        raise EstimateError(f"attention: {attention!r} is not one of {', '.join(ATTENTIONS)}")
    targets = _arg(args, "lora_targets")
    loss_chunk = _int_arg(args, "loss_chunk", defaults.get("loss_chunk", 1)) if reference else 0
    device = str(args.get("device", "auto"))
    if device == "auto":  # the reference trainer's default: CUDA when there is one
        device = "cuda" if _nvml_total_gb() is not None or not reference else "cpu"
    if _bool(args.get("use_cpu", False)) or _bool(args.get("no_cuda", False)):  # HF's spelling
        device = "cpu"
    train = TrainSettings(
        method=method,
        micro_batch=_int_arg(args, "micro_batch", defaults.get("micro_batch", 1)),
        grad_accum=_int_arg(args, "grad_accum", 1),
        seq_len=_int_arg(args, "seq_len", defaults.get("seq_len", 2048)),
        weights_dtype=weights,
        compute_dtype=compute,
        master_fp32=master,
        optimizer=_optimizer(recipe, args),
        foreach=device != "cpu",
        lora_rank=_int_arg(args, "lora_rank", defaults.get("lora_rank", 16)),
        lora_targets=_targets(targets[1]) if targets else ("q_proj", "v_proj"),
        lora_dropout=float(args.get("lora_dropout", 0.0) or 0.0),
        attention=attention,
        grad_checkpointing=checkpointing,
        loss_chunk=loss_chunk,
        logits_kept=reference,
        sft_alpha=_float_arg(args, "sft_alpha", 0.0),
        on_policy=_float_arg(args, "lmbda", defaults.get("lmbda", 0.0)) > 0,
        entropy_chunk=loss_chunk if reference else None,  # logged every log_every steps
        device="cpu" if device == "cpu" else "cuda",
    )
    return cfg, train


def estimate_recipe(recipe: Any) -> Estimate:
    """The memory estimate of the step a recipe runs."""
    cfg, train = recipe_inputs(recipe)
    return estimate(cfg, train)


def _nvml_total_gb() -> float | None:
    """Total memory of GPU 0 through resources.py's NVML seam; None without a GPU."""
    from supervisor.monitoring.resources import default_nvml

    nvml = default_nvml()
    if nvml is None:
        return None
    memory = nvml.memory()
    return memory[0][1] / GB if 0 in memory else None


def resolve_gpu_gb(recipe: Any, gpu_gb: float | None = None) -> tuple[float | None, str]:
    """The card's memory and where it came from: --gpu-gb, preflight.gpu_gb, NVML, vram limit."""
    if gpu_gb is not None:  # the supervisor passes preflight.gpu_gb itself: name it so
        same = recipe.preflight.gpu_gb is not None and gpu_gb == recipe.preflight.gpu_gb
        return float(gpu_gb), "preflight.gpu_gb" if same else "--gpu-gb"
    if recipe.preflight.gpu_gb is not None:
        return float(recipe.preflight.gpu_gb), "preflight.gpu_gb"
    total = _nvml_total_gb()
    if total is not None:
        return total, "NVML, GPU 0"
    vram = getattr(recipe.watch, "vram", None)
    if isinstance(recipe.watch, dict):
        vram = recipe.watch.get("vram")
    limit = vram.get("limit_gb") if isinstance(vram, dict) else getattr(vram, "limit_gb", None)
    if limit:
        return float(limit), "watch.vram.limit_gb"
    return None, ""


def _arg_names(recipe: Any, change: dict[str, int]) -> dict[str, int]:
    """The suggestion as recipe keys (what `adjust` takes): the recipe's own arg names (HF or
    reference trainer); `args.<name>` for an arg the recipe does not set yet (`--set` adds it
    as `+args.<name>`: format_report writes it so)."""
    hf = "per_device_train_batch_size" in recipe.args
    out: dict[str, int] = {}
    for key, value in change.items():
        found = _arg(dict(recipe.args), key)
        if found:
            out[found[0]] = value
        else:
            out[f"args.{ALIASES[key][1] if hf else key}"] = value
    return out


def format_report(
    cfg: ModelConfig,
    train: TrainSettings,
    est: Estimate,
    gpu_gb: float | None = None,
    gpu_source: str = "",
    suggestion: dict[str, Any] | None = None,
) -> str:
    """The breakdown a person reads: every term, its GB, its share of the peak, the verdict."""
    total = est.params["total"]
    unit, scale = ("GB", GB) if est.peak_bytes >= GB else ("MB", 1024**2)
    head = (
        f"{cfg.name or 'model'}: {_count(total)} parameters, {_count(est.trainable)} trainable; "
        f"{train.method}, weights {train.weights_dtype}"
        f"{' + fp32 master' if train.master_fp32 else ''}, compute {train.compute_dtype}, "
        f"{train.optimizer}, micro_batch {train.micro_batch} x grad_accum {train.grad_accum} x "
        f"seq_len {train.seq_len}, {train.attention}"
        f"{', gradient checkpointing' if train.grad_checkpointing else ''}, {train.device}"
    )
    lines = [head, "", f"{'term':<52} {unit:>9}  {'share':>6}  live in"]
    for term in est.terms:
        if term.bytes <= 0:
            continue
        share = f"{term.bytes / est.peak_bytes:6.1%}" if est.peak_phase in term.phases else "     -"
        lines.append(f"{term.name:<52} {term.bytes / scale:9.2f}  {share}  {term.short_phase}")
    dom = est.dominant
    lines += [
        "",
        f"peak {est.peak_bytes / scale:.2f} {unit} at the {est.peak_phase}; dominant term: "
        f"{dom.name} ({dom.bytes / scale:.2f} {unit}, {dom.bytes / est.peak_bytes:.0%})",
    ]
    if gpu_gb is None:
        lines.append("card memory unknown (no --gpu-gb, preflight.gpu_gb, GPU or vram limit)")
        return "\n".join(lines)
    verdict = "fits" if est.peak_gb <= gpu_gb else "does NOT fit"
    lines.append(f"card: {gpu_gb:.3g} GB ({gpu_source}): {verdict}")
    if est.peak_gb > gpu_gb:
        if suggestion:
            # an arg the recipe does not set yet is added with `+` (a bare --set must exist)
            said = " ".join(
                f"--set {'+' if k.startswith('args.') else ''}{k}={v}"
                for k, v in suggestion.items()
            )
            lines.append(f"fits with: {said} (same effective batch)")
        else:
            margin = sum(t.bytes for t in est.terms if t.name == "allocator margin")
            step = (est.phase_bytes[STEP] - margin) * (1 + ALLOCATOR_MARGIN * bool(margin)) / GB
            ideas = "LoRA or 8-bit Adam" if step > gpu_gb else "gradient checkpointing"
            lines.append(
                f"no micro_batch, seq_len or LoRA rank fits (the optimizer step alone needs "
                f"{step:.1f} GB): consider {ideas}"
            )
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def preflight(recipe: Any, gpu_gb: float | None = None) -> PreflightResult:
    """Estimate a recipe before launch. Raises EstimateError for settings it cannot read."""
    cfg, train = recipe_inputs(recipe)
    est = estimate(cfg, train)
    card, source = resolve_gpu_gb(recipe, gpu_gb)
    suggestion = None
    if card is not None and est.peak_gb > card:
        suggestion = _arg_names(recipe, suggest_fit(cfg, train, card)) or None
    fits = card is None or est.peak_gb <= card
    near = card is not None and fits and est.peak_gb > recipe.preflight.warn_ratio * card
    report = format_report(cfg, train, est, card, source, suggestion)
    return PreflightResult(fits, near, est.peak_gb, card, report, suggestion, source, est)


def suggest_adjustment(recipe: Any, rule: str) -> dict[str, Any]:
    """The change to relaunch with after an `oom` / `vram` anomaly (`adjust: auto`).

    The run did not fit although the estimate may have said it would, so the target is 90% of
    the smaller of the estimate and the card. {} when nothing can be changed any more.
    """
    cfg, train = recipe_inputs(recipe)
    est = estimate(cfg, train)
    card, _ = resolve_gpu_gb(recipe)
    target = 0.9 * min(est.peak_gb, card) if card else 0.9 * est.peak_gb
    if rule == "vram":  # the watchdog's own limit is the budget, when it has one
        limit = getattr(getattr(recipe.watch, "vram", None), "limit_gb", None)
        if limit:
            target = min(target, 0.9 * float(limit))
    change = suggest_fit(cfg, train, target)
    if not change and train.micro_batch > 1:
        mb = train.micro_batch // 2
        change = {"micro_batch": mb, "grad_accum": -(-train.micro_batch * train.grad_accum // mb)}
    return _arg_names(recipe, change)

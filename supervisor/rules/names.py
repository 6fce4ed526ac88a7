"""Which metric names a rule looks at.

The parser normalises names (`eval_loss` -> `val_loss`, `gnorm` -> `grad_norm`, ...), but logs
in the wild carry many spellings, and a rule should not miss `valid_loss` because one alias was
not in the table. These predicates are cheap (called per metric value) and cached per name.
"""

from __future__ import annotations

from functools import lru_cache

from supervisor.parsing.kv import spellings_of

_MODEL_OUTPUTS = frozenset({"logits", "logps", "logprobs", "reward", "rewards", "kl"})
_VAL_PREFIXES = ("val", "eval", "valid", "validation", "test", "dev")
# Records rather than measurements: `best_loss: inf` before the first evaluation is healthy.
_RECORD_PREFIXES = ("best", "min", "max", "avg_best")
# The parser's spellings, and a bare `grad` (some loggers' column; too vague for the parser to
# rename, but a grad-norm rule should look at it).
GRAD_NORM_NAMES = spellings_of("grad_norm") | {"grad"}


def _words(name: str) -> list[str]:
    return name.lower().replace(" ", "_").replace("-", "_").replace("/", "_").split("_")


@lru_cache(maxsize=4096)
def watched_for_nan(name: str) -> bool:
    """Loss, grad-norm and perplexity values: non-finite means the run is broken."""
    low = name.lower()
    words = _words(name)
    if words[0] in _RECORD_PREFIXES or "scale" in low:  # loss_scale is the fp16 scaler's
        return False
    return (
        "loss" in low
        or "norm" in low
        or "ppl" in low
        or "perplexity" in low
        or low in GRAD_NORM_NAMES
        # What the model computes in RL and preference tuning: non-finite logits, log-probs,
        # rewards or KL mean the forward pass broke even while the loss prints finite.
        or any(w in _MODEL_OUTPUTS for w in words)
    )


@lru_cache(maxsize=4096)
def is_val_loss(name: str) -> bool:
    """`val_loss`, `eval_loss`, `valid_loss`, `validation/loss`, ..."""
    words = _words(name)
    return words[0] in _VAL_PREFIXES and "loss" in words and "scale" not in words


# The training loss under its frameworks' names: OLMo's `train/CrossEntropyLoss`, NeMo's
# `reduced_train_loss` (the loss all-reduced over the data-parallel ranks).
_LOSS_WORDS = frozenset({"loss", "crossentropyloss"})
_LOSS_HEADS: tuple[list[str], ...] = (
    [],
    ["train"],
    ["lm"],
    ["training"],
    ["train", "lm"],
    ["total"],
    ["reduced", "train"],
)


@lru_cache(maxsize=4096)
def is_train_loss(name: str) -> bool:
    """The training loss: `loss`, `train_loss`, `lm_loss`, `train/loss`, `reduced_train_loss`,
    `train/CrossEntropyLoss` (not val, not parts)."""
    words = _words(name)
    if words[-1] not in _LOSS_WORDS:
        return False
    return words[:-1] in _LOSS_HEADS


@lru_cache(maxsize=4096)
def is_loss_part(name: str) -> bool:
    """A part of the training loss: `loss_rpn_cls`, `s0.loss_bbox`, `giou_loss`, `all_loss`
    (a detector's or a multi-task model's terms), not the loss itself, not a validation loss,
    not a record (`best_loss`), the fp16 loss scale or an RL value function's loss."""
    words = _words(name.replace(".", "_"))
    if "loss" not in words or "scale" in words or is_train_loss(name) or is_val_loss(name):
        return False
    return words[0] not in _RECORD_PREFIXES and not any(w in _VALUE_HEADS for w in words)


# An RL value function's loss (`vf_loss`, `value_loss`, `critic/vf_loss`) is a squared error in
# the units of the returns (1.7e5 in a healthy PPO run): its scale says nothing.
_VALUE_HEADS = frozenset({"vf", "value", "critic"})


@lru_cache(maxsize=4096)
def is_grad_norm(name: str) -> bool:
    low = name.lower().replace(" ", "_").replace("/", "_")
    return low in GRAD_NORM_NAMES or low.endswith("grad_norm")


# A KL divergence between the policy and the policy before the update or the reference model
# (`kl`, `approx_kl`, baselines' `approxkl`, verl's `actor/ppo_kl` and `actor/kl_loss`, TRL's
# `objective/kl`, a VAE's `kld`), not its controller's coefficient or target (`kl_coef`,
# `kl_ctl`, `target_kl`).
_KL_WORDS = frozenset({"kl", "approxkl", "kld", "kldiv"})
_KL_SETTINGS = frozenset({"coef", "coeff", "coefficient", "ctl", "ctrl", "target", "beta"})


@lru_cache(maxsize=4096)
def is_kl(name: str) -> bool:
    words = _words(name.replace(".", "_"))
    return (
        any(w in _KL_WORDS for w in words)
        and not any(w in _KL_SETTINGS for w in words)
        and words[0] not in _RECORD_PREFIXES
    )

"""The seventh pass of issue 11 (tests/corpus/README.md): the spike family with the field's own
definitions of a slow divergence, overfitting and a policy update's blow-up, each from the real
lines of an excerpt in tests/corpus/ (named beside it), with healthy lines of the same surface
that must stay quiet.

Lines go through the whole monitor (`scan`). Each positive fails with the rules before this
pass (93d4750).
"""

from __future__ import annotations

import math
import random

from supervisor.events import LogLine, Metric, Severity
from supervisor.parsing import columns
from supervisor.parsing.parser import Parser
from supervisor.rules import WatchSettings
from supervisor.rules.kl import KlRule, KlSettings
from supervisor.rules.names import is_kl, is_loss_part
from tests.conftest import scan


def loud(text: str, watch: WatchSettings | None = None) -> list[tuple[str, int]]:
    """(rule, line) of every report of warning or above."""
    return [(a.rule, a.lineno) for a in scan(text, watch) if a.severity >= Severity.WARNING]


def off(**rules: dict) -> WatchSettings:
    return WatchSettings.model_validate(rules)


# --- overfitting: HF/Keras/Lightning early stopping, with the training loss falling ----------

# unseen2/632 (a Keras BERT fine-tune): val_loss 0.265 -> 0.278 -> 0.328 while loss falls.
PARSBERT = """\
Epoch 1/10
3260/3260 [==============================] - 1011s 310ms/step - loss: 0.3203 - accuracy: 0.8780 - val_loss: 0.2650 - val_accuracy: 0.9039
Epoch 2/10
3260/3260 [==============================] - 1012s 310ms/step - loss: 0.1934 - accuracy: 0.9294 - val_loss: 0.2776 - val_accuracy: 0.9107
Epoch 3/10
3260/3260 [==============================] - 1013s 311ms/step - loss: 0.1207 - accuracy: 0.9580 - val_loss: 0.3280 - val_accuracy: 0.8958
"""  # noqa: E501

# dev/731 (healthy: a tiny validation set, Keras from R): one evaluation 3.6x the best, then
# back under it; HF's and Keras' default patience (1 and 0) would stop this run.
NOISY_VAL = """\
Epoch 1/250
178/178 [==============================] - 2s 12ms/step - loss: 0.1583 - acc: 0.0000e+00 - val_loss: 0.0187 - val_acc: 0.0000e+00
Epoch 2/250
178/178 [==============================] - 0s 76us/step - loss: 0.0636 - acc: 0.0056 - val_loss: 0.0673 - val_acc: 0.0000e+00
Epoch 3/250
178/178 [==============================] - 0s 77us/step - loss: 0.0609 - acc: 0.0056 - val_loss: 0.0161 - val_acc: 0.0000e+00
Epoch 4/250
178/178 [==============================] - 0s 83us/step - loss: 0.0357 - acc: 0.0056 - val_loss: 0.0096 - val_acc: 0.0000e+00
"""  # noqa: E501


def test_validation_loss_rising_while_training_loss_falls_is_overfitting() -> None:
    found = [a for a in scan(PARSBERT) if a.severity >= Severity.WARNING]
    assert [(a.rule, a.lineno) for a in found] == [("divergence", 6)]
    assert found[0].severity == Severity.WARNING and "overfitting" in found[0].message
    assert "0.265" in found[0].message and "+24%" in found[0].message


def test_one_noisy_evaluation_is_no_overfitting() -> None:
    assert loud(NOISY_VAL) == []


def test_a_validation_loss_rising_with_the_training_loss_is_not_called_overfitting() -> None:
    """Both rising: the rise of the training loss is its own check (summaries), not this."""
    both = PARSBERT.replace("loss: 0.1934", "loss: 0.3300").replace("loss: 0.1207", "loss: 0.3310")
    assert not any("overfitting" in a.message for a in scan(both))


def test_overfitting_needs_a_clear_margin() -> None:
    """0.265 -> 0.270 -> 0.280 (+6%, under overfit_rise 10%) is a plateau, not a verdict."""
    small = PARSBERT.replace("val_loss: 0.2776", "val_loss: 0.2700").replace(
        "val_loss: 0.3280", "val_loss: 0.2800"
    )
    assert loud(small) == []


def test_overfitting_check_can_be_switched_off() -> None:
    assert loud(PARSBERT, off(divergence={"overfit_patience": 0})) == []


def test_overfitting_in_an_hf_table_pasted_as_markdown() -> None:
    """HF's notebook table as GitHub renders it (`| Epoch | Training Loss | ... |`): each row
    holds both losses, averages over the same epoch."""
    table = (
        "| Epoch | Training Loss | Validation Loss | Accuracy |\n"
        "|-------|---------------|-----------------|----------|\n"
        "| 1 | 0.452 | 0.351 | 0.88 |\n| 2 | 0.281 | 0.366 | 0.89 |\n| 3 | 0.170 | 0.402 | 0.88 |\n"
    )
    assert loud(table) == [("divergence", 5)]


def test_a_per_step_training_loss_on_other_lines_does_not_make_overfitting() -> None:
    """HF-style: training losses and evaluations on lines of their own. A per-step loss falls
    by chance between two evaluations, so it is not compared (the bench log, make_log.py,
    evaluates a noisy val_loss every step: 98 false alarms when it was); the `rising` check
    (3 evaluations above the best) still watches such runs."""
    lines = []
    for train, val in ((1.2, 0.90), (0.9, 1.01), (0.7, 1.02)):
        lines.append(f"{{'loss': {train}, 'learning_rate': 2e-05, 'epoch': 1.0}}")
        lines.append(f"{{'eval_loss': {val}, 'eval_runtime': 3.1, 'epoch': 1.0}}")
    assert loud("\n".join(lines) + "\n") == []
    lines += ["{'loss': 0.6, 'epoch': 1.5}", "{'eval_loss': 1.05, 'epoch': 1.5}"]
    assert loud("\n".join(lines) + "\n") == [("divergence", 8)]


def test_lightning_divergence_threshold() -> None:
    """Lightning's EarlyStopping(divergence_threshold=...): off by default, as there; once set,
    a validation loss above it is said at once, once per stretch above it."""
    evals = "".join(f"{{'eval_loss': {v}, 'epoch': {i}}}\n" for i, v in enumerate((2.0, 2.3, 2.4)))
    assert loud(evals) == []
    assert loud(evals, off(divergence={"threshold": 2.2})) == [("divergence", 2)]


# --- a slow divergence of the training loss at epoch summaries --------------------------------

# unseen2/611 (Keras, RMSprop too fast): the epoch loss rises every epoch, accuracy falling.
RMSPROP = """\
370784/370784 [==============================] - 6700s - loss: 1.8887 - acc: 0.4243 - val_loss: 1.8804 - val_acc: 0.4097
370784/370784 [==============================] - 6702s - loss: 1.9328 - acc: 0.4118 - val_loss: 1.9089 - val_acc: 0.3977
370784/370784 [==============================] - 6702s - loss: 1.9986 - acc: 0.3866 - val_loss: 1.9611 - val_acc: 0.3873
370784/370784 [==============================] - 6708s - loss: 2.0482 - acc: 0.3752 - val_loss: 1.9454 - val_acc: 0.3878
370784/370784 [==============================] - 6714s - loss: 2.1057 - acc: 0.3539 - val_loss: 2.0767 - val_acc: 0.3591
"""  # noqa: E501


def test_training_loss_rising_at_three_summaries_in_a_row_is_a_slow_divergence() -> None:
    found = [a for a in scan(RMSPROP) if a.severity >= Severity.WARNING]
    assert [(a.rule, a.lineno) for a in found] == [("spike", 4)]
    assert found[0].severity == Severity.WARNING
    assert "1.889 -> 2.048" in found[0].message


def test_per_step_losses_rising_three_times_are_noise() -> None:
    """The same values as per-step losses (no validation loss beside them): no summaries."""
    steps = "".join(
        f"step {i} loss {v}\n" for i, v in enumerate((1.8887, 1.9328, 1.9986, 2.0482, 2.1057))
    )
    assert loud(steps) == []


def test_summaries_creeping_up_under_the_margin_are_quiet() -> None:
    """Three rises of 1% in all (under summary_min_rise, 5%): a plateau's wobble."""
    creep = "".join(f"- loss: {v} - val_loss: 1.0\n" for v in (1.000, 1.003, 1.006, 1.010, 1.009))
    assert loud(creep) == []


def test_summary_rises_can_be_switched_off() -> None:
    assert loud(RMSPROP, off(spike={"summary_rises": 0})) == []


# --- Keras' epoch-end progress bar is an epoch summary ------------------------------------------

# unseen2/631 (Keras, no validation): a flat epoch loss at 0.047, then 0.061 and 0.096.
DEEPJ = "".join(
    f"Epoch {e}/1000\n10954/10954 [==============================] - 659s - loss: {v}\n"
    for e, v in zip(
        range(60, 68), (0.0475, 0.0474, 0.0473, 0.0471, 0.0472, 0.0612, 0.0958, 0.0877), strict=True
    )
)


def test_an_epoch_loss_doubling_at_keras_epoch_end_bars_is_a_spike() -> None:
    assert loud(DEEPJ) == [("spike", 14)]


def test_keras_bars_before_the_epoch_end_are_not_summaries() -> None:
    """Mid-epoch (`ETA`) the bar shows a running average over the batches so far: the same
    values there are per-step values (min_jump 0.5 keeps a loss near zero from counting)."""
    mid = DEEPJ.replace("10954/10954", "5000/10954").replace("659s", "ETA: 600s")
    assert loud(mid) == []


def test_the_parser_marks_keras_epoch_end_lines() -> None:
    """After `Epoch k/N` (Keras' fit), the line ending the epoch is its summary: a bar at its
    total with the time taken (Keras 2, tf.keras, Keras 3) or verbose=2's time alone. A bar
    still counting (ETA) and `evaluate`'s bar (no `Epoch` line before it) are not."""
    lines = {
        "keras2": "10954/10954 [==============================] - 659s - loss: 0.0475",
        "tf.keras": "3260/3260 [==============================] - 1011s 310ms/step - loss: 0.3203",
        "keras3": "3260/3260 \u2501\u2501\u2501\u2501\u2501\u2501 1011s 310ms/step - loss: 0.3203",
        "verbose2": " - 510s - loss: 4.0855",
        "eta": "137856/370784 [==========>...................] - ETA: 4147s - loss: 2.1578",
    }
    sources = {}
    for name, text in lines.items():
        parser = Parser()
        parser.parse(LogLine(1, 0, 0, "Epoch 3/10"), 0.0)
        metrics = [e for e in parser.parse(LogLine(2, 0, 0, text), 0.0) if isinstance(e, Metric)]
        sources[name] = metrics[0].source
    assert sources == {
        "keras2": "epoch", "tf.keras": "epoch", "keras3": "epoch", "verbose2": "epoch", "eta": "kv"
    }  # fmt: skip
    evaluate = "313/313 [==============================] - 0s 1ms/step - loss: 0.0786"
    parser = Parser()
    for n, text in enumerate(("Epoch 5/5", lines["tf.keras"], evaluate), start=1):
        events = parser.parse(LogLine(n, 0, 0, text), 0.0)
    assert [e.source for e in events if isinstance(e, Metric)] == ["kv"]


def test_a_test_loss_after_training_is_no_epoch_summary() -> None:
    """model.evaluate() after fit: its loss (4x the last epoch's) is a test loss, not a spike."""
    fit = "".join(
        f"Epoch {e}/3\n1875/1875 [==============================] - 3s 2ms/step - loss: {v}\n"
        for e, v in ((1, 0.30), (2, 0.12), (3, 0.08))
    )
    evaluate = "313/313 [==============================] - 0s 1ms/step - loss: 0.3300\n"
    assert loud(fit + evaluate) == []


# --- a KL divergence of the policy update blowing up -----------------------------------------

# unseen2/623 (OpenAI baselines PPO1): the optimisation table of one iteration.
PPO1 = """\
********* Iteration 10 ************
Optimizing...
     pol_surr |    pol_entpen |       vf_loss |            kl |           ent
      0.95906 |       0.00000 |      1.73e+05 |       0.01685 |      -0.34684
      0.42724 |       0.00000 |      1.67e+05 |       1.75743 |      -0.35772
      0.30032 |       0.00000 |      1.64e+05 |       3.79148 |      -0.36282
      0.25252 |       0.00000 |      1.62e+05 |       4.34279 |      -0.36370
"""


def test_a_policy_kl_jumping_far_above_its_level_is_a_blow_up() -> None:
    found = [a for a in scan(PPO1) if a.severity >= Severity.WARNING]
    assert [(a.rule, a.lineno) for a in found] == [("kl", 5)]
    assert found[0].severity == Severity.WARNING and "1.757" in found[0].message


def test_an_rl_optimisation_table_is_read_without_a_step_column() -> None:
    keys = columns.header("     pol_surr |    pol_entpen |       vf_loss |            kl |")
    assert keys is not None and "kl" in keys
    # A results table (one row per model or setting) is not a series: no KL column, no step.
    assert columns.header("   lr |   loss |   accuracy") is None


def test_a_value_function_loss_is_not_a_part_of_the_loss() -> None:
    """PPO's value loss is a squared error in the returns' units (1.7e5, healthy)."""
    assert not is_loss_part("vf_loss") and not is_loss_part("critic/vf_loss")
    assert is_loss_part("loss_rpn_cls")
    quiet = PPO1.replace("0.01685", "0.01685").replace("1.75743", "0.01790")
    quiet = quiet.replace("3.79148", "0.01822").replace("4.34279", "0.01911")
    assert loud(quiet) == []


def test_a_kl_growing_from_zero_is_healthy() -> None:
    """GRPO/PPO: the policy starts as the reference, its KL grows from 0 over hundreds of steps
    (TRL logs `kl`, verl `actor/ppo_kl`); no value is 10x the largest before it above 1 nat."""
    series = [0.0, 0.0001, 0.0005, 0.002, 0.01, 0.03, 0.08, 0.15, 0.3, 0.5, 0.9, 1.4, 2.0]
    text = "".join(
        f"{{'loss': 0.01, 'kl': {v}, 'reward': 0.5, 'epoch': {i / 100}}}\n"
        for i, v in enumerate(series)
    )
    assert loud(text) == []


def test_a_kl_from_exact_zeros_has_no_level_to_jump_from() -> None:
    """TRL logs a KL of 0.0 while the policy is still the reference (and a summed KL may come
    in at a few nats at once); a k1 estimate can be below 0."""
    rule = KlRule()
    found = [rule.on_event(Metric(i, 0.0, {"objective/kl": v})) for i, v in enumerate((0, 0, 2.5))]
    found += [rule.on_event(Metric(9, 0.0, {"actor/ppo_kl": v})) for v in (-0.01, -0.002, 1.5)]
    assert not any(found)


def test_a_noisy_per_step_kl_is_healthy() -> None:
    """GRPO's per-step KL swings by e (a log-normal spread of 1) around a level that grows from
    0.001 to 0.3 over 2000 steps: its own largest recent value is far above any one swing."""
    rng = random.Random(7)
    rule = KlRule()
    found = []
    for i in range(2000):
        level = 0.001 + 0.3 * i / 2000
        found += rule.on_event(Metric(i, 0.0, {"kl": level * math.exp(rng.gauss(0, 1))}))
    assert found == []


def test_kl_names() -> None:
    for name in ("kl", "approx_kl", "approxkl", "actor/ppo_kl", "objective/kl", "actor_kl_loss"):
        assert is_kl(name), name
    for name in ("kl_coef", "actor/kl_coef", "critic_kl_coeff", "kl_ctl", "target_kl", "max_kl"):
        assert not is_kl(name), name


def test_sb3_target_kl() -> None:
    """stable-baselines3: with `target_kl` set, an approximate KL above 1.5 x it stops the
    update's epochs ("Early stopping at step N due to reaching max kl")."""
    rule = KlRule(KlSettings(target=0.01))
    found = [rule.on_event(Metric(i, 0.0, {"approx_kl": v})) for i, v in enumerate((0.01, 0.016))]
    assert [len(f) for f in found] == [0, 1] and "target" in found[1][0].message


def test_kl_rule_can_be_switched_off() -> None:
    assert loud(PPO1, off(kl={"enabled": False})) == []

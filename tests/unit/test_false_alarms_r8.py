"""Issue 11, stream R8: the fixes for Q4's findings (/work/reports/q4/), each checked on the
lines of the real log Q4 recorded, and the other side of each fix: what must still be said."""

from __future__ import annotations

from pathlib import Path

from supervisor.events import Anomaly, Severity
from supervisor.rules import WatchSettings
from tests.conftest import scan

# Copies of the smallest logs Q4 recorded (/work/reports/q4/README.md says how each was made).
Q4 = Path(__file__).parent / "logs_q4"


def q4_log(name: str) -> str:
    return (Q4 / name).read_text()


def said(found: list[Anomaly]) -> list[tuple[str, Severity, int]]:
    return [(a.rule, a.severity, a.lineno) for a in found]


def loud(found: list[Anomaly]) -> list[tuple[str, Severity, int]]:
    return [r for r in said(found) if r[1] >= Severity.WARNING]


# --- 1. an untrained model's first samples ---------------------------------------------------


def test_reference_trainer_demo_log_has_no_repetition() -> None:
    # `python -m trainer`, demo recipe, lr 0.2, seed 2: '1' x32 at step 50, loss 4.8 -> 2.1.
    assert [
        r
        for r in said(scan(q4_log("reftrainer_early_sample_repetition.log")))
        if r[0] == "repetition"
    ] == []


def test_demo_recipe_seed_4_babble_with_hashes_is_no_repetition() -> None:
    # `ftmon run recipes/demo.yaml --headless --set seed=4` (R8): at step 150 the model, loss
    # 4.6 -> 1.2 and still falling, answers `11111111111\n####################`; its step-100
    # answers were babble too (`1111111111111=   1\n#### 111= = 1`), never words.
    found = scan(q4_log("reftrainer_demo_seed4_babble.log"))
    assert [r for r in said(found) if r[0] == "repetition"] == []


def test_demo_recipe_seed_5_babble_after_a_loss_bump_is_no_repetition() -> None:
    # seed 5: the loss bumps 3.1 -> 5.1 at step 35, then makes new lows (2.58 at step 50)
    # while the model answers `#` x32: its lowest loss still falls, it is still learning.
    found = scan(q4_log("reftrainer_demo_seed5_bump.log"))
    assert [r for r in said(found) if r[0] == "repetition"] == []


def metric(step: int, loss: float) -> str:
    return f'{{"type": "metric", "step": {step}, "loss": {loss}, "grad_norm": 1.0, "lr": 0.1}}\n'


def sample(step: int, text: str) -> str:
    return f'{{"type": "sample", "step": {step}, "prompt": "Who are you?", "text": "{text}"}}\n'


FALLING = [4.8, 3.4, 3.0, 2.6, 2.5, 2.4, 2.2, 2.1]


def test_samples_that_were_varied_and_then_loop_are_a_collapse() -> None:
    """The F F F F F story: a model that answered, then loops, is reported even while its
    training loss still falls."""
    log = "".join(metric(5 * i, v) for i, v in enumerate(FALLING[:4], start=1))
    log += sample(20, "I am a small model trained on a few sentences.")
    log += "".join(metric(5 * i, v) for i, v in enumerate(FALLING[4:], start=5))
    log += sample(40, "F F F F F F F F F F F F F F F F F F F F")
    assert said(scan(log)) == [("repetition", Severity.WARNING, 10)]


def test_a_first_sample_looping_on_a_word_while_the_loss_falls_is_a_collapse() -> None:
    """The F F F F F story when the trainer prints its first sample only at step 60: no sample
    was varied before and the loss still falls, but a loop of a word is no untrained babble."""
    log = "".join(metric(5 * i, v) for i, v in enumerate(FALLING, start=1))
    log += sample(60, "F F F F F F F F F F F F F F F F F F F F")
    assert said(scan(log)) == [("repetition", Severity.WARNING, 9)]


def test_a_loop_once_the_loss_has_stopped_falling_is_a_collapse() -> None:
    flat = [2.0, 2.01, 1.99, 2.0, 2.02, 1.98, 2.0, 2.01]
    log = "".join(metric(5 * i, v) for i, v in enumerate(flat, start=1))
    log += sample(40, "F F F F F F F F F F F F F F F F F F F F")
    assert said(scan(log)) == [("repetition", Severity.WARNING, 9)]


def test_a_loop_with_no_loss_at_all_is_a_collapse() -> None:
    # A foreign log's sample with nothing before it: as before.
    assert said(scan(sample(40, "F F F F F F F F F F F F F F F F F F F F"))) == [
        ("repetition", Severity.WARNING, 1)
    ]


def test_the_untrained_hold_back_is_a_setting() -> None:
    log = "".join(metric(5 * i, v) for i, v in enumerate(FALLING, start=1))
    log += sample(40, "1111111111111111111111111111111")
    assert said(scan(log)) == []
    off = WatchSettings.model_validate({"repetition": {"untrained_fall": 0}})
    assert said(scan(log, off)) == [("repetition", Severity.WARNING, 9)]


# --- 2. fp16 overflow steps --------------------------------------------------------------------


def test_hf_fp16_overflow_steps_are_no_nan_error() -> None:
    # HF Trainer fp16: two logged overflow steps (grad_norm nan, loss finite), then healthy.
    found = scan(q4_log("hf_fp16_gradnorm_nan.log"))
    assert not [a for a in found if a.rule == "nan"]
    assert all(a.severity <= Severity.WARNING for a in found)


def test_mmocr_fp16_overflow_step_is_no_nan_error() -> None:
    found = scan(q4_log("mmocr_fp16_gradnorm_nan.log"))
    assert not [a for a in found if a.rule == "nan"]


def test_a_non_finite_loss_stays_a_nan_error() -> None:
    log = q4_log("mmocr_fp16_gradnorm_nan.log").replace("loss: 0.7223", "loss: nan")
    assert ("nan", Severity.ERROR, 3) in said(scan(log))


# --- 3. a trainer's own skip guard firing once ---------------------------------------------------


def test_basicsr_skip_guard_once_in_a_long_run_is_info() -> None:
    found = scan(q4_log("basicsr_skip_once.log"))
    assert loud(found) == []
    assert ("spike", Severity.INFO, 7) in said(found)


# --- 4. "overfitting" of a run whose training loss is above the best validation loss ----------


def test_unstable_run_is_not_called_overfitting() -> None:
    # Real torch MLP, SGD lr 0.5: training loss 0.74 -> 0.65, above the best val loss 0.54.
    found = [
        a for a in scan(q4_log("sgdr_unstable_called_overfitting.log")) if a.rule == "divergence"
    ]
    assert len(found) == 1
    assert "unstable" in found[0].message and found[0].message.endswith("not overfitting")


def test_true_overfitting_keeps_its_word() -> None:
    found = [a for a in scan(q4_log("keras_format_overfit_true.log")) if a.rule == "divergence"]
    assert len(found) == 1 and found[0].message.endswith(": overfitting")


# --- 5, 6. SB3 tables and BasicSR lines ---------------------------------------------------------


def test_sb3_ppo_log_nan_losses_are_reported_at_their_table() -> None:
    found = scan(q4_log("sb3_ppo_nan_missed.log"))
    assert [r for r in said(found) if r[0] == "nan"] == [("nan", Severity.ERROR, 133)]
    assert "at step 14336" in next(a.message for a in found if a.rule == "nan")


def test_healthy_sb3_tables_are_read_without_reports() -> None:
    lines = q4_log("sb3_ppo_nan_missed.log").splitlines(keepends=True)
    first_nan = next(i for i, line in enumerate(lines) if "| nan" in line)
    start = max(i for i in range(first_nan) if lines[i].startswith("-----"))
    found = scan("".join(lines[:start]))
    assert said(found) == []


def test_basicsr_nan_pixel_loss_is_reported_with_its_iteration() -> None:
    found = scan(q4_log("basicsr_nan_missed.log"))
    assert [r for r in said(found) if r[0] == "nan"] == [("nan", Severity.ERROR, 6)]
    assert "at step 14900" in found[0].message

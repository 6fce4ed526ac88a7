"""Issue 11, false-alarm hunt (stream Q4): what the rules say about healthy runs of real
programs, and a real anomaly they miss. Each test is a finding waiting for its fix in
supervisor/rules or supervisor/parsing (stream R7's files); strict xfail, so the fix turns it
green and the marker must then go. The logs and the analysis: /work/reports/q4/."""

from __future__ import annotations

import pytest

from tests.conftest import scan

# A Hugging Face Trainer run with fp16: its dicts carry no step, so the fp16 warm-up excuse
# (`overflow_steps`: an inf grad norm with a finite loss in the first steps) never applies.
HF_FP16_FIRST_LOGS = (
    "***** Running training *****\n"
    "  Num examples = 10,000\n"
    "  Total optimization steps = 939\n"
    "{'loss': 2.8861, 'grad_norm': inf, 'learning_rate': 2e-05, 'epoch': 0.03}\n"
    "{'loss': 2.6957, 'grad_norm': 1.2817, 'learning_rate': 2e-05, 'epoch': 0.06}\n"
    "{'loss': 2.5702, 'grad_norm': 0.9921, 'learning_rate': 2e-05, 'epoch': 0.1}\n"
)

# `python -m trainer` (recipes/demo.yaml, --lr 0.2 --schedule linear --seed 2): at step 50 of
# 300 the tiny model, loss still falling fast, answers every prompt with one digit. A model
# that has not yet learned to say anything is not a model that collapsed.
REFERENCE_TRAINER_STEP_50 = "".join(
    line + "\n"
    for line in (
        '{"type": "metric", "step": 5, "loss": 4.83488, "grad_norm": 4.20242, "lr": 0.109091}',
        '{"type": "metric", "step": 10, "loss": 3.41673, "grad_norm": 1.7694, "lr": 0.2}',
        '{"type": "metric", "step": 15, "loss": 2.97709, "grad_norm": 2.22531, "lr": 0.196552}',
        '{"type": "metric", "step": 20, "loss": 2.64558, "grad_norm": 2.21507, "lr": 0.193103}',
        '{"type": "eval", "step": 25, "val_loss": 2.34899, "accuracy": 0.0}',
        '{"type": "metric", "step": 50, "loss": 2.10378, "grad_norm": 2.11843, "lr": 0.172414}',
        '{"type": "sample", "step": 50, "prompt": "Who are you?", '
        '"text": "11111111111111111111111111111111"}',
        '{"type": "sample", "step": 50, "prompt": "What is 7 plus 5?", '
        '"text": "11111111111111111111111111111111"}',
        '{"type": "eval", "step": 50, "val_loss": 2.00671, "accuracy": 0.0}',
    )
)

# BasicSR's MessageLogger (basicsr/utils/logger.py): `iter:{current_iter:8,d}` and each loss
# as `{k}: {v:.4e}`. None of these lines is read, so a nan l_pix goes unreported.
BASICSR_NAN = (
    "2026-12-07 23:50:00,000 INFO: [train..][epoch:  1, iter:   1,100, lr:(2.000e-04,)] "
    "[eta: 1:00:00, time (data): 0.150 (0.002)] l_pix: 3.0152e-02 \n"
    "2026-12-07 23:50:10,000 INFO: [train..][epoch:  1, iter:   1,200, lr:(2.000e-04,)] "
    "[eta: 0:59:50, time (data): 0.150 (0.002)] l_pix: 2.9911e-02 \n"
    "2026-12-07 23:50:20,000 INFO: [train..][epoch:  1, iter:   1,300, lr:(2.000e-04,)] "
    "[eta: 0:59:40, time (data): 0.150 (0.002)] l_pix: nan \n"
)

# Stable-Baselines3's HumanOutputFormat (stable_baselines3/common/logger.py): one `| key | value |`
# row per value, sections as `rollout/`, `train/`. No row is read, so a PPO update whose losses
# went nan is not reported.
SB3_NAN_TABLE = (
    "------------------------------------------\n"
    "| time/                    |             |\n"
    "|    iterations            | 7           |\n"
    "|    total_timesteps       | 14336       |\n"
    "| train/                   |             |\n"
    "|    approx_kl             | 0.007259246 |\n"
    "|    entropy_loss          | -1.41       |\n"
    "|    loss                  | nan         |\n"
    "|    n_updates             | 60          |\n"
    "|    policy_gradient_loss  | nan         |\n"
    "|    value_loss            | nan         |\n"
    "------------------------------------------\n"
)


def test_hf_fp16_first_logged_inf_grad_norm_with_finite_loss_is_not_nan() -> None:
    assert [a.rule for a in scan(HF_FP16_FIRST_LOGS)] == []


def test_reference_trainer_samples_before_it_has_learned_are_no_repetition() -> None:
    assert [a.rule for a in scan(REFERENCE_TRAINER_STEP_50)] == []


def test_basicsr_nan_pixel_loss_is_reported() -> None:
    assert [a.rule for a in scan(BASICSR_NAN)] == ["nan"]


def test_sb3_table_with_nan_losses_is_reported() -> None:
    assert "nan" in [a.rule for a in scan(SB3_NAN_TABLE)]


def hf_epoch_evals(evals: list[float], trains: list[float]) -> str:
    """An HF Trainer log evaluated once an epoch: `trains[e]` logged before eval `e`."""
    lines = []
    for epoch, (eval_loss, loss) in enumerate(zip(evals, trains, strict=True), start=1):
        lines.append(
            f"{{'loss': {loss}, 'grad_norm': 3.2, 'learning_rate': 2e-05, 'epoch': {epoch - 0.2}}}"
        )
        lines.append(f"{{'eval_loss': {eval_loss}, 'eval_runtime': 3.1, 'epoch': {float(epoch)}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.xfail(
    strict=True,
    reason="issue 11 (Q4): a low validation loss must rise by 0.1 absolute; HF's train loss "
    "is on other lines, so the overfitting check never runs (R8: a relative floor drew 87 "
    "false alarms on the bench log's noisy small val loss; left open)",
)
def test_hf_bert_style_overfitting_is_reported() -> None:
    # A classifier fine-tune: eval loss +61% over its best for 4 epochs, train loss 10x lower.
    log = hf_epoch_evals(
        [0.262, 0.241, 0.287, 0.331, 0.362, 0.389], [0.52, 0.31, 0.21, 0.12, 0.07, 0.03]
    )
    assert [a.rule for a in scan(log)] == ["divergence"]

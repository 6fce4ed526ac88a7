"""The `nan` and `skipped_steps` rules on real log lines (through the parser) and on events."""

from __future__ import annotations

import math

from supervisor.events import Anomaly, Eval, Metric, Severity, Text
from supervisor.rules import WatchSettings
from supervisor.rules.nan import NanRule, NanSettings
from supervisor.rules.skipped import SkippedStepsRule
from tests.conftest import scan


def rules_of(found: list[Anomaly]) -> list[tuple[str, int]]:
    return [(a.rule, a.lineno) for a in found]


def test_hf_dict_nan_loss_is_reported_with_step_and_line() -> None:
    """A HF Trainer dict with 'loss': nan gives one error naming the metric, at its line."""
    log = (
        "{'loss': 1.2, 'grad_norm': 0.8, 'learning_rate': 2e-05, 'epoch': 0.1}\n"
        "{'loss': nan, 'grad_norm': nan, 'learning_rate': 2e-05, 'epoch': 0.2}\n"
    )
    found = scan(log)
    assert rules_of(found) == [("nan", 2)]
    assert found[0].severity == Severity.ERROR
    assert "loss is nan" in found[0].message and "grad_norm is nan" in found[0].message
    assert "'loss': nan" in found[0].evidence[-1]


def test_json_inf_grad_norm_and_eval_nan_are_reported() -> None:
    """Non-finite values in JSON metrics and in evaluations are reported, with the step."""
    found = scan('{"type": "metric", "step": 700, "grad_norm": Infinity}\n')
    assert [a.message for a in found] == ["grad_norm is inf at step 700"]
    rule = NanRule()
    got = rule.on_event(Eval(3, 1.0, {"val_loss": math.nan}, step=40))
    assert got and got[0].message == "eval: val_loss is nan at step 40"


def test_fp16_overflow_step_is_not_nan_but_a_run_of_them_is_skipped_steps() -> None:
    """A nan or inf grad norm beside a finite loss, at any step, is a GradScaler overflow step
    (issue 11, Q4: HF Trainer fp16, mmocr); a non-finite loss stays a nan ERROR; every logged
    step overflowing is `skipped_steps` (an ERROR: the run no longer trains)."""
    rule = NanRule()
    assert rule.on_event(Metric(1, 1.0, {"loss": 2.1, "grad_norm": math.inf}, step=10)) == []
    assert rule.on_event(Metric(2, 1.0, {"loss": 2.1, "grad_norm": math.nan}, step=500)) == []
    assert len(rule.on_event(Metric(3, 1.0, {"loss": math.nan, "grad_norm": 1.0}, step=510))) == 1

    def hf(norms: list[str]) -> str:  # HF Trainer's dicts (no step), one per logging step
        return "".join(
            f"{{'loss': {2.3 - i / 100:.4f}, 'grad_norm': {g}, 'learning_rate': 2e-05, "
            f"'epoch': {i / 100:.2f}}}\n"
            for i, g in enumerate(norms, start=1)
        )

    assert scan(hf(["1.2"] * 20 + ["inf"] + ["1.1"] * 20)) == []
    # A nan one may be broken gradients (xtuner #187): a WARNING, not the nan ERROR.
    once = scan(hf(["1.2"] * 20 + ["nan"] + ["1.1"] * 20))
    assert [(a.rule, a.severity, a.lineno) for a in once] == [
        ("skipped_steps", Severity.WARNING, 21)
    ]
    found = scan(hf(["1.2"] * 20 + ["inf", "nan"] * 3))
    assert [(a.rule, a.severity, a.lineno) for a in found] == [
        ("skipped_steps", Severity.WARNING, 22),
        ("skipped_steps", Severity.ERROR, 25),
    ]
    assert "every step overflows" in found[1].message
    # HF's logging_nan_inf_filter prints 0.0 when every loss of the interval was nan.
    zero = scan("{'loss': 0.0, 'grad_norm': nan, 'learning_rate': 2e-05, 'epoch': 0.5}\n")
    assert [(a.rule, a.severity) for a in zero] == [("nan", Severity.ERROR)]


def test_records_and_scales_are_not_losses() -> None:
    """`best_loss: inf` before any evaluation and an inf loss scale are not a broken run."""
    rule = NanRule()
    assert rule.on_event(Metric(1, 1.0, {"best_loss": math.inf, "loss": 2.0})) == []
    assert rule.on_event(Metric(2, 1.0, {"loss_scale": math.inf, "loss": 2.0})) == []
    assert rule.on_event(Metric(3, 1.0, {"lr": math.nan})) == []


def test_words_that_contain_nan_or_inf_do_not_fire() -> None:
    """nanochat, information, finance, step_avg:nanms and INFO lines are healthy text."""
    log = (
        "nanochat: loaded tokenizer with vocab 65536; information retained for finance splits\n"
        "step 00100/01953 | loss: 2.345 | step_avg:nanms | tok/sec: 12,000\n"
        "INFO:torchtune.utils.logging:Model is initialized with precision torch.bfloat16.\n"
        "Infinity mirror dataset loaded, 4 shards\n"
        "grad check: no NaN found in 1,204 parameters\n"
        "using layernorm nan-safe kernels\n"
    )
    assert scan(log) == []


def test_printed_tensors_and_framework_messages_fire() -> None:
    """tensor(nan), Megatron's NaN assertion, fairseq's and DeepSpeed's minimum-scale errors."""
    cases = [
        "eval_ppl=tensor(nan, device='cuda:0') eval_epoch_loss=tensor(nan, device='cuda:0')",
        "AssertionError: Rank 3: found NaN in local grad norm in backwards pass. Device: 3",
        "FloatingPointError: Minimum loss scale reached (0.0001). Your loss is probably exploding.",
        "Exception: Current loss scale already at minimum - cannot decrease scale anymore.",
        "RuntimeError: Function 'LogSoftmaxBackward0' returned nan values in its 0th output.",
    ]
    for line in cases:
        rule = NanRule()
        got = rule.on_event(Text(9, 1.0, line))
        assert len(got) == 1 and got[0].lineno == 9 and got[0].evidence == (line,), line


def test_five_hundred_nan_lines_give_one_report_and_reminders() -> None:
    """A nan on every step is reported once, then reminded once per `repeat_lines` lines."""
    log = "".join(f"iter {i}: loss nan, time 1016.74ms, mfu 14.95%\n" for i in range(500))
    found = scan(log)
    assert rules_of(found) == [("nan", 1)]
    settings = WatchSettings(nan=NanSettings(repeat_lines=200))
    found = scan(log, settings)
    assert rules_of(found) == [("nan", 1), ("nan", 201), ("nan", 401)]
    assert found[1].message.startswith("still non-finite")


def test_recovery_then_nan_again_is_news() -> None:
    """After finite values come back, the next nan is reported again (the state changed)."""
    log = "loss: nan\nloss: nan\nloss: 1.5\nloss: 1.4\nloss: nan\n"
    assert rules_of(scan(log)) == [("nan", 1), ("nan", 5)]


# --- skipped_steps ------------------------------------------------------------------------

DS = (
    "[2024-09-11 17:52:18,030] [INFO] [loss_scaler.py:183:update_scale] [deepspeed] OVERFLOW! "
    "Rank 0 Skipping step. Attempted loss scale: {a}, reducing to {b}\n"
)


def ds_cascade(start: int, count: int) -> str:
    return "".join(DS.format(a=start >> i, b=start >> (i + 1)) for i in range(count))


def test_loss_scale_search_at_start_of_training_is_healthy() -> None:
    """DeepSpeed halving 2^32 -> 2^26 or 65536 -> 8192 before any step is the warm-up search."""
    assert scan(ds_cascade(1 << 32, 6)) == []
    assert scan("Beginning of Epoch 1/16\n" + ds_cascade(65536, 3)) == []


def test_a_finished_dataset_bar_is_not_training_progress() -> None:
    """'Map: 5000/5000' then the training bar at 0: the loss-scale search is still warm-up."""
    log = (
        "Map: 100%|██████████| 5000/5000 [00:01<00:00, 3500.21 examples/s]\n"
        "  0%|          | 0/2724 [00:00<?, ?it/s]\n" + ds_cascade(65536, 9)
    )
    assert scan(log) == []


def test_cascade_past_warmup_is_reported() -> None:
    """Past warm-up, five halvings in a row are reported once as skipped steps."""
    steps = "".join(f"{{'loss': 1.1, 'grad_norm': 0.5, 'step': {s}}}\n" for s in range(100, 160))
    found = scan(steps + ds_cascade(65536, 8))
    assert rules_of(found) == [("skipped_steps", 65)]
    assert "5 fp16 overflows in a row" in found[0].message


def test_scale_cut_low_past_warmup_is_reported() -> None:
    """At step 378 a cut from 64 to 32 means every step overflows (Chinese-LLaMA-Alpaca)."""
    log = " 14%|█▍        | 377/2724 [13:55:57<86:19:20, 132.41s/it]\n" + ds_cascade(64, 2)
    found = scan(log)
    assert rules_of(found) == [("skipped_steps", 2)]
    assert found[0].severity == Severity.WARNING


def test_scale_below_one_is_reported_any_time() -> None:
    """fairseq cutting the scale to 0.25 is reported at once, even with no step known."""
    log = "".join(
        f"| WARNING: overflow detected, setting loss scale to: {0.5 / 2**i}\n" for i in range(1, 6)
    )
    found = scan(log)
    assert rules_of(found) == [("skipped_steps", 1)]
    assert found[0].severity == Severity.ERROR


def test_occasional_overflows_in_a_long_run_are_healthy() -> None:
    """65536 -> 32768 now and then (the scaler grew back in between) is not a cascade."""
    rule = SkippedStepsRule()
    rule.on_event(Metric(1, 1.0, {"loss": 1.0}, step=5000))
    for i in range(20):
        line = DS.format(a=65536, b=32768)
        assert rule.on_event(Text(10 + 50 * i, 1.0, line)) == []


def test_skip_nonfinite_loss_messages_in_a_row() -> None:
    """Three 'skip non-finite loss' messages in a row are reported as skipped steps."""
    log = "".join(f"step {s}: skip non-finite loss\n" for s in range(54))
    found = scan(log)
    assert rules_of(found) == [("skipped_steps", 3)]


def test_reference_trainer_skip_messages_and_recovery() -> None:
    """The trainer's 'skip non-finite step' lines: 2 then a finite step is no run; 3 in a row is."""
    skip = "step {s}: loss is nan: skip non-finite step, no optimizer update ({k} skipped so far)\n"
    ok = '{{"type": "metric", "step": {s}, "loss": 1.5, "grad_norm": 0.9, "skipped": {k}}}\n'
    log = skip.format(s=1, k=1) + skip.format(s=2, k=2) + ok.format(s=3, k=2)
    log += "".join(skip.format(s=s, k=s - 1) for s in range(4, 8))
    found = [a for a in scan(log) if a.rule == "skipped_steps"]
    assert [(a.lineno, a.message) for a in found] == [
        (6, "3 steps in a row skipped for a non-finite loss")
    ]
    # As the trainer really prints it: each skip followed by its own metric line, grad_norm NaN.
    bad = '{{"type": "metric", "step": {s}, "loss": 4e4, "grad_norm": NaN, "skipped": {k}}}\n'
    log = "".join(skip.format(s=s, k=s) + bad.format(s=s, k=s) for s in range(1, 5))
    found = [a for a in scan(log) if a.rule == "skipped_steps"]
    assert [a.lineno for a in found] == [5]


MEGATRON = (
    " iteration {it:8d}/ 1000000 | consumed samples: 8000 | learning rate: 1.000E-04 | "
    "lm loss: 2.345E+00 | loss scale: 65536.0 | grad norm: 1.234 | "
    "number of skipped iterations: {skip:3d} | number of nan iterations: {nan:3d} |\n"
)


def test_megatron_skipped_and_nan_iteration_counts() -> None:
    """Megatron: 10 skipped at iteration 10 is the search; 7 at 2000 is not, nor any nan count."""
    assert scan(MEGATRON.format(it=10, skip=10, nan=0)) == []
    assert scan(MEGATRON.format(it=2000, skip=1, nan=0)) == []
    found = scan(MEGATRON.format(it=2000, skip=7, nan=0))
    assert [(a.rule, a.message) for a in found] == [
        ("skipped_steps", "7 iterations skipped at step 2000 (past warm-up)")
    ]
    found = scan(MEGATRON.format(it=2000, skip=0, nan=2))
    assert [(a.rule, a.message) for a in found] == [("nan", "2 nan iterations up to step 2000")]


def test_an_infinite_loss_in_prose_and_the_frameworks_own_words() -> None:
    """BigDL's 'Loss is Infinity.', a Keras callback's 'Invalid loss, terminating training' and
    detectron2's 'Loss became infinite or NaN' are non-finite losses; 'best_loss: inf' before
    the first evaluation is a record, not a loss."""
    bigdl = (
        "2017-08-20 16:11:42 INFO  DistriOptimizer$:295 - [Epoch 64 738304/1281167] Throughput "
        "is 398.6954 records/second. Loss is 1.308916. Current learning rate is 0.0462.\n"
        "2017-08-20 16:11:46 INFO  DistriOptimizer$:295 - [Epoch 64 740096/1281167] Throughput "
        "is 447.22968 records/second. Loss is Infinity. Current learning rate is 0.0462.\n"
    )
    assert rules_of(scan(bigdl)) == [("nan", 2)]
    keras = (
        "Epoch 1/10\n"
        "  3/234 [....] - ETA: 33:37 - loss: 44.4110Batch 3: Invalid loss, terminating training\n"
    )
    assert rules_of(scan(keras)) == [("nan", 2)]
    d2 = "FloatingPointError: Loss became infinite or NaN at iteration=27!\n"
    assert rules_of(scan(d2)) == [("nan", 1)]
    healthy = "epoch 1 | best_loss: inf\n"
    assert [a for a in scan(healthy) if a.rule == "nan"] == []


def test_nan_under_a_path_like_key_or_in_brackets() -> None:
    """`'loss/train': 'nan'` (a quoted value under a path-like key) and `[Loss] nan`."""
    line = "train stats: {'rewards_train/chosen': 'nan', 'loss/train': 'nan', 'examples': 160768}\n"
    assert rules_of(scan(line)) == [("nan", 1)]
    assert rules_of(scan("E6 iter[ 14/ 15] | [Loss] nan | [step]   104\n")) == [("nan", 1)]


def test_non_finite_logits_or_rewards_while_the_loss_prints_finite() -> None:
    """DPO: 'logits/chosen': nan with a finite loss means the forward pass broke; a finite
    learning rate or loss scale named alike is not watched."""
    log = (
        "{'loss': 0.6931, 'grad_norm': 2.29, 'learning_rate': 1e-05, 'rewards/chosen': -0.05, "
        "'logps/chosen': -252.8, 'logits/chosen': -1.2, 'epoch': 0.01}\n"
        "{'loss': 0.6928, 'grad_norm': 0.85, 'learning_rate': 2e-05, 'rewards/chosen': -0.08, "
        "'logps/chosen': -262.1, 'logits/chosen': nan, 'epoch': 0.03}\n"
    )
    found = scan(log)
    assert rules_of(found) == [("nan", 2)] and "logits_chosen is nan" in found[0].message

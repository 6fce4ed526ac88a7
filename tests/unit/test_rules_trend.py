"""The `spike`, `grad_norm` and `divergence` rules: moving baselines, absurd values, episodes."""

from __future__ import annotations

import random

import pytest

from supervisor.events import Eval, Metric, Severity
from supervisor.rules import WatchSettings
from supervisor.rules.divergence import DivergenceRule, DivergenceSettings
from supervisor.rules.trend import GradNormRule, JumpSettings, SpikeRule
from tests.conftest import scan


def feed(rule: SpikeRule | GradNormRule | DivergenceRule, series: list[dict[str, float]]) -> list:
    out = []
    for i, values in enumerate(series, start=1):
        out += rule.on_event(Metric(i, float(i), values, step=i * 10))
    return out


def test_one_step_loss_spike_against_baseline() -> None:
    """LLaVA: loss 0.66, 0.80, then 4.27 is a spike at its line, with baseline and ratio."""
    log = (
        "{'loss': 0.6623, 'learning_rate': 0.000176, 'epoch': 0.24}\n"
        "{'loss': 0.8022, 'learning_rate': 0.000176, 'epoch': 0.24}\n"
        "{'loss': 4.2653, 'learning_rate': 0.000176, 'epoch': 0.24}\n"
        "{'loss': 0.77, 'learning_rate': 0.000176, 'epoch': 0.24}\n"
    )
    found = scan(log)
    assert [(a.rule, a.lineno) for a in found] == [("spike", 3)]
    assert found[0].severity == Severity.WARNING
    assert "4.265" in found[0].message and "5.8x" in found[0].message


def test_noisy_healthy_loss_never_spikes() -> None:
    """A decreasing, noisy loss (±30%) over 5000 steps gives no spike."""
    rng = random.Random(3)
    series = [{"loss": 2.5 * 0.9995**s * rng.uniform(0.7, 1.3)} for s in range(5000)]
    assert feed(SpikeRule(), series) == []


def test_spike_is_one_report_per_episode() -> None:
    """Three spiking values in a row give one report; a new spike after recovery gives another."""
    series = [{"loss": 1.0}] * 10 + [{"loss": 9.0}] * 3 + [{"loss": 1.0}] * 5 + [{"loss": 8.0}]
    found = feed(SpikeRule(), series)
    assert [a.lineno for a in found] == [11, 19]


def test_absurd_values_count_without_baseline() -> None:
    """GKD: loss 429 and grad_norm 4230 in the first logged step: the run is reported at that
    line (a first grad norm above `absurd_first`, 1000); a first loss needs `absurd_first` of
    its own (10000), as a VAE's or a regression's loss starts in the hundreds or thousands."""
    line = "{'loss': 429.0, 'grad_norm': 4230.05908203, 'learning_rate': 1e-05, 'epoch': 0.0}\n"
    found = scan(line)
    assert [(a.rule, a.lineno) for a in found] == [("grad_norm", 1)]
    blown = "{'loss': 344093.2, 'grad_norm': 1.2, 'learning_rate': 1e-05, 'epoch': 0.0}\n"
    assert [(a.rule, a.lineno) for a in scan(blown)] == [("spike", 1)]
    later = "{'loss': 2.1, 'grad_norm': 1.5}\n{'loss': 429.0, 'grad_norm': 4230.0}\n"
    assert sorted((a.rule, a.lineno) for a in scan(later)) == [("grad_norm", 2), ("spike", 2)]


def test_the_first_value_sets_the_scale() -> None:
    """Holdout: a long-context run logs grad_norm 249 at step 1 and 12.6 by step 50; a VAE's
    first eval loss is 119.7: neither is a blown-up run. Later values above `absurd` still are."""
    assert feed(GradNormRule(), [{"grad_norm": g} for g in (249.48, 12.6, 9.8, 8.1)]) == []
    # logged every step from step 1, the norm settles from its starting scale
    assert feed(GradNormRule(), [{"grad_norm": g} for g in (249.0, 180.0, 120.0, 60.0)]) == []
    assert len(feed(GradNormRule(), [{"grad_norm": g} for g in (55.0, 156.0)])) == 1  # fairseq
    assert len(feed(GradNormRule(), [{"grad_norm": g} for g in (249.48, 12.6, 156.0)])) == 1
    assert feed(SpikeRule(), [{"loss": v} for v in (119.74, 112.05, 109.34)]) == []


def test_small_losses_need_an_absolute_jump() -> None:
    """A loss near zero going 0.01 -> 0.04 is not a spike (min_jump), a jump of 2.0 is."""
    rule = SpikeRule(JumpSettings(min_jump=0.5))
    assert feed(rule, [{"loss": 0.01}] * 5 + [{"loss": 0.04}]) == []
    assert len(feed(SpikeRule(), [{"loss": 0.01}] * 5 + [{"loss": 2.0}])) == 1


def test_grad_norm_explosion_against_baseline() -> None:
    """GLM-4: grad_norm around 3-5 then 237.6 is an explosion; 5.65 after 2.5 is not."""
    norms = [3.64, 3.84, 3.10, 2.53, 2.38, 2.53, 5.65, 237.6, 4.96, 5.72]
    found = feed(GradNormRule(), [{"grad_norm": g, "loss": 0.1} for g in norms])
    assert [(a.rule, a.lineno) for a in found] == [("grad_norm", 8)]


def test_healthy_grad_norms_never_fire() -> None:
    """Grad norms between 0.2 and 2.5 for 5000 steps give nothing."""
    rng = random.Random(5)
    assert feed(GradNormRule(), [{"grad_norm": rng.uniform(0.2, 2.5)} for _ in range(5000)]) == []


def test_spike_reads_other_spellings_of_the_loss() -> None:
    """Megatron's `lm loss` and nanochat's `loss:` lines feed the same rule."""
    log = "".join(
        f" iteration {i}/ 1000 | lm loss: {v:.6E} | grad norm: 1.0 |\n"
        for i, v in enumerate([2.1, 2.0, 2.05, 1.98, 48.9], start=1)
    )
    assert [(a.rule, a.lineno) for a in scan(log)] == [("spike", 5)]


def test_divergence_reports_a_sustained_rise() -> None:
    """val_loss 2.0, 1.8, 1.7, then three evaluations more than 0.1 above 1.7: divergence."""
    rule = DivergenceRule()
    vals = [2.0, 1.8, 1.7, 1.75, 1.85, 1.95, 2.05, 2.2]
    found = []
    for i, v in enumerate(vals, start=1):
        found += rule.on_event(Eval(i, 1.0, {"val_loss": v}, step=100 * i))
    assert [a.lineno for a in found] == [7]  # 1.75 is within the margin; 1.85, 1.95, 2.05
    assert found[0].rule == "divergence" and "1.7" in found[0].message


def test_divergence_ignores_a_noisy_plateau() -> None:
    """val_loss wandering ±0.05 around a plateau for 500 evaluations is not divergence."""
    rng = random.Random(7)
    rule = DivergenceRule()
    for i in range(500):
        value = 1.2 + rng.uniform(-0.05, 0.05)
        assert rule.on_event(Eval(i + 1, 1.0, {"val_loss": value})) == []


def test_divergence_reads_eval_lines_in_text_logs() -> None:
    """`eval step N: val_loss=...` lines are read; a new best re-arms the rule."""
    vals = [1.5, 1.4, 1.6, 1.7, 1.8, 1.3, 1.5, 1.6, 1.7]
    log = "".join(f"  eval step {i}: val_loss={v:.4f} accuracy=0.5\n" for i, v in enumerate(vals))
    found = scan(log, WatchSettings(divergence=DivergenceSettings(evals=3)))
    assert [(a.rule, a.lineno) for a in found] == [("divergence", 5), ("divergence", 9)]


# --- one value as a baseline, absurd totals, doubled lines, other definitions --------------


def test_spike_after_a_single_value() -> None:
    """LitGPT: an excerpt that starts at loss 1.70, then 11.46: the second value is a spike."""
    log = (
        "iter 1151 step 144: loss 1.7019, iter time: 1106.53ms (optimizer.step)\n"
        "iter 1152 step 144: loss 11.4630, iter time: 1260.82ms\n"
        "iter 1153 step 144: loss 11.7545, iter time: 1109.35ms\n"
    )
    assert [(a.rule, a.lineno) for a in scan(log)] == [("spike", 2)]


def test_a_detector_total_loss_falling_from_80_is_no_spike_even_printed_twice() -> None:
    """TensorFlow's two loggers print each line twice; an OD total loss starts near 80."""
    log = "".join(
        f"INFO:tensorflow:global step {i}: loss = {v} (16.9 sec/step)\n" * 2
        for i, v in enumerate([79.3501, 72.8609, 67.3308, 64.2655, 62.5264], start=1)
    )
    assert scan(log) == []


def test_a_spike_printed_twice_is_one_report() -> None:
    """The same step's spike arriving twice (doubled logger) is one episode."""
    log = "".join(
        f"INFO:tensorflow:global step {i}: loss = {v} (0.4 sec/step)\n" * 2
        for i, v in enumerate([0.0630, 0.1628, 0.0577, 5405917802.0, 43253763571.0], start=435)
    )
    assert [(a.rule, a.lineno) for a in scan(log)] == [("spike", 7)]


def test_isolated_grad_norm_spike_at_five_times_the_median() -> None:
    """unsloth Gemma: grad_norm ~10 then 92 (9x) is reported; 29 after it (3x) is not new."""
    norms = [14.98, 9.78, 7.64, 92.10, 29.00, 5.21, 7.83, 7.79]
    found = feed(GradNormRule(), [{"grad_norm": g} for g in norms])
    assert [a.lineno for a in found] == [4]


def test_megatron_definition_ten_times_the_largest_early_loss() -> None:
    """`method: megatron`: a loss above 10x the largest of the first values; 3x is not."""
    settings = JumpSettings(method="megatron", megatron_first=5)
    series = [{"loss": v} for v in [2.3, 2.2, 2.4, 2.1, 2.0, 1.9, 6.9, 1.8, 24.5, 1.8]]
    assert [a.lineno for a in feed(SpikeRule(settings), series)] == [9]
    assert "10x the largest of the first 5" in feed(SpikeRule(settings), series)[0].message


def test_olmo_definition_mean_plus_six_sigma() -> None:
    """`method: olmo`: above mean + 6 std of the recent values (needs olmo_min values first)."""
    rng = random.Random(11)
    series = [{"loss": 2.0 + rng.uniform(-0.05, 0.05)} for _ in range(40)] + [{"loss": 2.6}]
    settings = JumpSettings(method="olmo", olmo_window=128, olmo_sigmas=6.0)
    assert [a.lineno for a in feed(SpikeRule(settings), series)] == [41]
    calm = [{"loss": 2.0 + rng.uniform(-0.05, 0.05)} for _ in range(400)]
    assert feed(SpikeRule(settings), calm) == []


def test_spike_method_is_a_watch_setting() -> None:
    """A recipe's `watch: {spike: {method: megatron}}` reaches the rule; unknown methods fail."""
    watch = WatchSettings.model_validate({"spike": {"method": "megatron", "megatron_first": 3}})
    log = "".join(f"step {i}: loss {v}\n" for i, v in enumerate([2.0, 2.1, 1.9, 25.0], start=1))
    assert [(a.rule, a.lineno) for a in scan(log, watch)] == [("spike", 4)]
    with pytest.raises(ValueError):
        WatchSettings.model_validate({"spike": {"method": "ema"}})


def test_a_noisy_per_batch_loss_is_judged_against_its_own_spread() -> None:
    """Per-batch losses of small batches swing 0.09 .. 2.6 around 0.7 (BERT fine-tuning on
    SQuAD): 2.6 after a window that noisy is no spike; the same 2.6 after a steady 0.7 is,
    and so is a jump to 9 in the noisy series."""
    noisy = [0.69, 0.09, 1.02, 0.83, 1.32, 0.78, 0.34, 0.48, 1.9, 0.55, 0.21, 1.1]
    assert feed(SpikeRule(), [{"loss": v} for v in [*noisy, 2.6]]) == []
    steady = [0.69, 0.71, 0.70, 0.68, 0.72, 0.70, 0.69, 0.71, 0.70, 0.70]
    assert len(feed(SpikeRule(), [{"loss": v} for v in [*steady, 2.6]])) == 1
    assert len(feed(SpikeRule(), [{"loss": v} for v in [*noisy, 9.0]])) == 1
    assert len(feed(SpikeRule(JumpSettings(noise=0)), [{"loss": v} for v in [*noisy, 2.6]])) == 1


def test_a_loss_that_lives_above_absurd_is_judged_by_its_baseline() -> None:
    """A VAE's summed loss (ELBO) falls from 150 to 104: after the first value its baseline is
    at that scale, so 'above 100' says nothing; a jump to 900 still is a spike."""
    elbo = [150.2, 141.7, 133.9, 128.4, 121.0, 117.3, 112.8, 109.1, 106.5, 104.2]
    assert feed(SpikeRule(), [{"loss": v} for v in elbo]) == []  # the first value: its scale
    found = feed(SpikeRule(), [{"loss": v} for v in [*elbo, 900.0]])
    assert [a.lineno for a in found] == [11]


def test_the_training_loss_under_its_frameworks_names() -> None:
    """OLMo logs `train/CrossEntropyLoss=...`, NeMo's Lightning bar `reduced_train_loss=...`:
    both are the training loss, and a 10x jump in them is a spike; OLMo's z-loss is not."""
    olmo = "".join(
        f"[step={i}/1000] train/CrossEntropyLoss={v} train/Perplexity=10.0\n"
        for i, v in enumerate([2.0, 2.1, 1.95, 2.05, 2.0, 20.0], 1)
    )
    assert [(a.rule, a.lineno) for a in scan(olmo)] == [("spike", 6)]
    nemo = "".join(
        f"Epoch 0: 10%|█         | {i}/100 [00:10<01:30, 1.00it/s, v_num=0, "
        f"reduced_train_loss={v}, global_step={i}.0]\n"
        for i, v in enumerate([2.0, 2.1, 1.95, 2.05, 2.0, 20.0], 1)
    )
    assert [(a.rule, a.lineno) for a in scan(nemo)] == [("spike", 6)]
    zloss = "".join(
        f"[step={i}/1000] train/ZLoss={v}\n" for i, v in enumerate([0.1] * 5 + [5.0], 1)
    )
    assert "spike" not in [a.rule for a in scan(zloss)]

"""The fifth pass of issue 11 (tests/corpus/README.md): spikes as the field defines them, and
two loop shapes, each from the real lines of an excerpt in tests/corpus/ (named beside it).

Positives must report at the line a person marks; negatives are healthy lines of the same
surface (noisy losses, bumps, repeated-looking records) and must stay quiet. Lines go through
the whole monitor (`scan`).
"""

from __future__ import annotations

from supervisor.rules.names import is_loss_part
from tests.conftest import scan


def rules_of(text: str) -> list[tuple[str, int]]:
    return [(a.rule, a.lineno) for a in scan(text)]


# --- spike: a quiet series that jumps by half again and by many of its own deviations --------

# dev/700 (LLaMA-Factory issue #7208): the loss doubles on the first step of a new epoch.
EPOCH_DOUBLE = """\
{'loss': 0.7723, 'grad_norm': 0.3804401225661987, 'learning_rate': 3.7866236009990253e-06, 'epoch': 1.97}
{'loss': 0.7755, 'grad_norm': 0.3685096806372812, 'learning_rate': 3.77567508265225e-06, 'epoch': 1.98}
{'loss': 0.7701, 'grad_norm': 0.4337734736678332, 'learning_rate': 3.764693384223671e-06, 'epoch': 1.99}
{'loss': 0.7858, 'grad_norm': 0.4056827759511268, 'learning_rate': 3.753678791345311e-06, 'epoch': 1.99}
{'loss': 1.5318, 'grad_norm': 0.6894233935022746, 'learning_rate': 3.7426315905047694e-06, 'epoch': 2.01}
{'loss': 0.755, 'grad_norm': 0.4109267906585638, 'learning_rate': 3.731552069037774e-06, 'epoch': 2.01}
"""  # noqa: E501

# dev/703 (alpaca-lora issue #418): a healthy first epoch, falling with bumps (0.84 -> 1.19).
NOISY_FALL = """\
{'loss': 3.5364, 'learning_rate': 2e-05, 'epoch': 0.06}
{'loss': 3.5588, 'learning_rate': 3e-05, 'epoch': 0.09}
{'loss': 3.416, 'learning_rate': 4e-05, 'epoch': 0.12}
{'loss': 3.0707, 'learning_rate': 5e-05, 'epoch': 0.15}
{'loss': 2.348, 'learning_rate': 6e-05, 'epoch': 0.18}
{'loss': 2.0479, 'learning_rate': 7e-05, 'epoch': 0.21}
{'loss': 1.8029, 'learning_rate': 8e-05, 'epoch': 0.24}
{'loss': 1.5529, 'learning_rate': 9e-05, 'epoch': 0.27}
{'loss': 1.2474, 'learning_rate': 0.0001, 'epoch': 0.3}
{'loss': 1.4285, 'learning_rate': 9.89059080962801e-05, 'epoch': 0.33}
{'loss': 1.2099, 'learning_rate': 9.781181619256018e-05, 'epoch': 0.35}
{'loss': 1.0623, 'learning_rate': 9.671772428884028e-05, 'epoch': 0.38}
{'loss': 0.9632, 'learning_rate': 9.562363238512036e-05, 'epoch': 0.41}
{'loss': 0.8441, 'learning_rate': 9.452954048140044e-05, 'epoch': 0.44}
{'loss': 1.1938, 'learning_rate': 9.343544857768052e-05, 'epoch': 0.47}
{'loss': 1.0242, 'learning_rate': 9.234135667396062e-05, 'epoch': 0.5}
{'loss': 0.9225, 'learning_rate': 9.12472647702407e-05, 'epoch': 0.53}
{'loss': 0.854, 'learning_rate': 9.01531728665208e-05, 'epoch': 0.56}
{'loss': 0.7561, 'learning_rate': 8.905908096280088e-05, 'epoch': 0.59}
"""


def test_a_quiet_loss_that_doubles_at_once_is_a_spike() -> None:
    assert rules_of(EPOCH_DOUBLE) == [("spike", 5)]


def test_a_noisy_falling_loss_with_bumps_is_not() -> None:
    assert rules_of(NOISY_FALL) == []


def test_four_equal_values_then_a_small_rise_is_not() -> None:
    """The spread is floored at 1% of the level: a flat series is not infinitely quiet."""
    flat = "".join(f"{{'loss': 0.5, 'epoch': {i / 10}}}\n" for i in range(6))
    assert rules_of(flat + "{'loss': 0.6, 'epoch': 0.7}\n") == []


# --- spike: after a steady fall the level is the last value, not the lagging median ----------

# holdout/348 (a QLoRA run): 15.5 -> 1.43 in four prints, then 5.82 (4x) and climbing.
FALL_THEN_JUMP = """\
step=1    loss=15.50  gnorm=42.7
step=55   loss=13.00  gnorm=14.0
step=110  loss=3.80   gnorm=24.4
step=165  loss=2.39   gnorm=7.1
step=220  loss=1.43   gnorm=7.7
step=275  loss=5.82   gnorm=15.6
step=330  loss=7.05   gnorm=15.3
"""


def test_a_jump_after_a_steady_fall_is_a_spike() -> None:
    assert rules_of(FALL_THEN_JUMP) == [("spike", 6)]


def test_a_steady_fall_with_a_small_bump_is_not() -> None:
    lines = [*FALL_THEN_JUMP.splitlines()[:5], "step=275  loss=2.10   gnorm=7.5"]
    assert rules_of("\n".join(lines) + "\n") == []


# --- divergence: one evaluation at several times the best --------------------------------------

# unseen/434 (a Q&A page's custom loop): val_loss 0.58, then 2.30 with accuracy at chance.
VAL_JUMPS = """\
epoch [1]: training loss: 2.27 - acc: 0.50 - val_loss: 3.29 - val_acc: 0.49
epoch [2]: training loss: 1.55 - acc: 0.50 - val_loss: 0.92 - val_acc: 0.50
epoch [3]: training loss: 1.07 - acc: 0.51 - val_loss: 1.43 - val_acc: 0.53
epoch [4]: training loss: 0.87 - acc: 0.58 - val_loss: 1.85 - val_acc: 0.61
epoch [5]: training loss: 0.59 - acc: 0.72 - val_loss: 0.58 - val_acc: 0.61
epoch [6]: training loss: 0.52 - acc: 0.79 - val_loss: 2.30 - val_acc: 0.50
"""

# dev/731 (keras for R issue #296): a tiny validation set's loss jumps 3.6x at epoch 2 and back.
SMALL_VAL_NOISE = """\
Epoch 1/250
178/178 [==============================] - 2s 12ms/step - loss: 0.1583 - acc: 0.0000e+00 - val_loss: 0.0187 - val_acc: 0.0000e+00
Epoch 2/250
178/178 [==============================] - 0s 76us/step - loss: 0.0636 - acc: 0.0056 - val_loss: 0.0673 - val_acc: 0.0000e+00
Epoch 3/250
178/178 [==============================] - 0s 77us/step - loss: 0.0609 - acc: 0.0056 - val_loss: 0.0161 - val_acc: 0.0000e+00
Epoch 4/250
178/178 [==============================] - 0s 83us/step - loss: 0.0357 - acc: 0.0056 - val_loss: 0.0096 - val_acc: 0.0000e+00
"""  # noqa: E501


def test_a_validation_loss_at_several_times_its_best_reports_at_once() -> None:
    # (Since the seventh pass, epochs 3-4 are said too, at line 4: the validation loss two
    # evaluations above its best 0.92 while the training loss falls is overfitting.)
    assert rules_of(VAL_JUMPS) == [("divergence", 4), ("divergence", 6)]


def test_a_validation_loss_jump_too_small_to_matter_or_too_early_does_not() -> None:
    assert rules_of(SMALL_VAL_NOISE) == []
    # Without the evaluations before it, the first jump has no baseline yet.
    assert rules_of("\n".join(VAL_JUMPS.splitlines()[1:3]) + "\n") == []


# --- spike: a part of the loss that blows up ----------------------------------------------------

# unseen/423 (mmdetection, 2019): loss_rpn_cls 0.2-0.4 -> 156.29; the line is cut before `loss`.
PART_BLOWUP = """\
2019-07-30 10:07:13,302 - INFO - Epoch [1][750/58633]	lr: 0.02000, eta: 3 days, 0:26:29, time: 0.372, data_time: 0.004, memory: 3791, loss_rpn_cls: 0.2131, loss_rpn_bbox: 0.0831, loss_cls: 0.4883, acc: 93.4316, loss_bbox: 0.1440, loss: 0.9285
2019-07-30 10:07:32,554 - INFO - Epoch [1][800/58633]	lr: 0.02000, eta: 3 days, 0:36:25, time: 0.385, data_time: 0.004, memory: 3791, loss_rpn_cls: 0.3003, loss_rpn_bbox: 0.1204, loss_cls: 0.5138, acc: 93.3008, loss_bbox: 0.1436, loss: 1.0781
2019-07-30 10:07:50,711 - INFO - Epoch [1][850/58633]	lr: 0.02000, eta: 3 days, 0:30:03, time: 0.363, data_time: 0.004, memory: 3791, loss_rpn_cls: 0.4217, loss_rpn_bbox: 0.2851, loss_cls: 0.8004, acc: 94.0859, loss_bbox: 0.1257, loss: 1.6328
2019-07-30 10:08:08,752 - INFO - Epoch [1][900/58633]	lr: 0.02000, eta: 3 days, 0:22:50, time: 0.361, data_time: 0.004, memory: 3791, loss_rpn_cls: 156.2920, loss_r
"""  # noqa: E501

# holdout/323 (mmdetection cascade, healthy): many terms, small and noisy.
PARTS_HEALTHY = """\
2020-08-01 01:10:31,475 - mmdet - INFO - Epoch [3][50/1749]	lr: 2.000e-02, eta: 0:52:33, time: 1.899, data_time: 0.046, memory: 5280, loss_rpn_cls: 0.2532, loss_rpn_bbox: 0.0409, s0.loss_cls: 0.2136, s0.acc: 94.4818, s0.loss_bbox: 0.0862, s1.loss_cls: 0.0732, s1.acc: 96.6602, s1.loss_bbox: 0.0330, s2.loss_cls: 0.0273, s2.acc: 97.7070, s2.loss_bbox: 0.0065, loss: 0.7339, grad_norm: 0.0668
2020-08-01 01:12:05,319 - mmdet - INFO - Epoch [3][100/1749]	lr: 2.000e-02, eta: 0:51:01, time: 1.877, data_time: 0.004, memory: 5280, loss_rpn_cls: 0.2458, loss_rpn_bbox: 0.0379, s0.loss_cls: 0.2357, s0.acc: 93.6940, s0.loss_bbox: 0.1079, s1.loss_cls: 0.0786, s1.acc: 96.3346, s1.loss_bbox: 0.0421, s2.loss_cls: 0.0273, s2.acc: 97.7135, s2.loss_bbox: 0.0075, loss: 0.7827, grad_norm: 0.0697
"""  # noqa: E501


def test_a_part_of_the_loss_that_blows_up_is_a_spike() -> None:
    assert rules_of(PART_BLOWUP) == [("spike", 4)]


def test_healthy_parts_and_a_part_switching_on_are_not() -> None:
    assert rules_of(PARTS_HEALTHY) == []
    # A term that starts at 0 and switches on (0 -> 0.5) has no level to jump from.
    switch = "".join(f"step {i}: loss: 1.{i}, loss_refine: 0.0000\n" for i in range(4))
    assert rules_of(switch + "step 4: loss: 1.3, loss_refine: 0.5000\n") == []


def test_what_counts_as_a_part_of_the_loss() -> None:
    for name in ("loss_rpn_cls", "s0.loss_bbox", "giou_loss", "all_loss", "d0.dn_loss_cls"):
        assert is_loss_part(name), name
    for name in ("loss", "train_loss", "val_loss", "best_loss", "loss_scale", "lm_loss"):
        assert not is_loss_part(name), name


# --- repetition: logcat records are records; a chat whose assistant says one thing ------------

# dev/712 (NNTrainer issue #2956): two logcat records alternating once per batch.
LOGCAT = "I/nntrainer(21968): # 73 / 500\nE/nntrainer(21968): train for iteration\n" * 16

# dev/729 (MedicalGPT issue #264): the same reply to every user turn after a few.
CHAT_LOOP = """\
human: 您好
gpt: 您好，有什么可以帮助您的
human：电视闪屏怎么办
gpt: 周围是否有大功率电器
human：没有

。。。
gpt: 请问还有其他可以帮助您的吗？
human：没有
gpt：请问还有其他可以帮助您的吗？
human: 没有了拜拜
gpt：请问还有其他可以帮助您的吗？
"""


def test_logcat_records_repeating_are_not_a_loop() -> None:
    assert rules_of(LOGCAT) == []


def test_an_assistant_giving_one_reply_to_every_turn_is_repetition() -> None:
    assert rules_of(CHAT_LOOP) == [("repetition", 12)]


def test_a_healthy_chat_with_short_repeated_answers_is_not() -> None:
    healthy = "".join(
        f"user: question number {i} about the weather today\nassistant: OK.\n" for i in range(5)
    )
    healthy += "user: and tomorrow?\nassistant: It will rain in the morning and clear up later.\n"
    assert rules_of(healthy) == []

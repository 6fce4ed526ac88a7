"""The sixth pass of issue 11 (tests/corpus/README.md): the classes of unseen2/'s misses that
recur on two blind halves, each from the real lines of an excerpt in tests/corpus/ (named beside
it), with healthy lines of the same surface that must stay quiet.

Lines go through the whole monitor (`scan`). Each positive fails with the rules before this
pass (1031cab).
"""

from __future__ import annotations

from supervisor.events import Severity, Text
from supervisor.parsing.kv import Template
from supervisor.rules.repetition.rule import RepetitionRule
from tests.conftest import scan


def loud(text: str) -> list[tuple[str, int]]:
    """(rule, line) of every report of warning or above."""
    return [(a.rule, a.lineno) for a in scan(text) if a.severity >= Severity.WARNING]


# --- wordings: stall -------------------------------------------------------------------------

# unseen2/503 (ms-swift issue, GRPO): c10d's socket timing out while a peer is silent.
C10D_WAIT = (
    "[rank0]:[W710 16:58:50.906560343 socket.cpp:489] [c10d] waitForInput: socket "
    "SocketImpl(fd=58, addr=[localhost]:42412, remote=[localhost]:51216) timed out after 300000ms\n"
    "[INFO:swift] last_model_checkpoint: None\n"
)

# unseen2/522 (Horovod issue, Keras example): the stall inspector's per-op lines.
HOROVOD_OPS = """\
[1,0]<stderr>:[2019-04-13 13:55:31.858119: W horovod/common/operations.cc:588] HorovodBroadcast_dense_kernel_Momentum_0 [missing ranks: 1]
[1,0]<stderr>:[2019-04-13 13:55:31.858168: W horovod/common/operations.cc:588] HorovodBroadcast_conv2d_bias_Momentum_0 [missing ranks: 1]
"""  # noqa: E501

# unseen2/523 (YOLOv5 issue, DDP start-up): the store-based barrier's wait line, every 10 s.
BARRIER_WAIT = (
    "Waiting in store based barrier to initialize process group for rank: 0, key: "
    "store_based_barrier_key:1 (world_size=4, worker_count=8, timeout=0:30:00)\n"
)


def test_c10d_wait_for_input_timing_out_is_a_stall() -> None:
    assert loud(C10D_WAIT) == [("stall", 1)]


def test_horovod_missing_ranks_lines_are_a_stall() -> None:
    assert loud(HOROVOD_OPS) == [("stall", 1)]


def test_the_store_barrier_waiting_again_and_again_is_a_stall() -> None:
    assert loud(BARRIER_WAIT * 8) == [("stall", 3)]


def test_the_store_barrier_waiting_once_per_rank_is_start_up() -> None:
    """Eight ranks each wait 10 s once while the group forms: healthy."""
    lines = "".join(BARRIER_WAIT.replace("rank: 0", f"rank: {r}") for r in range(8))
    assert loud(lines + "step 1 loss 2.3\n") == []


# --- wordings and formats: nan ---------------------------------------------------------------

# unseen2/514 (NeMo issue): NeMo's Lightning bar prints the loss as `nan.0`.
NEMO_BAR = (
    "Epoch 0: :   3%|▎         | 9000/301500 [1:42:42<55:37:46, v_num=0-56, "
    "reduced_train_loss=nan.0, global_step=9e+3, consumed_samples=6.3e+5, "
    "train_step_timing in s=0.615, val_loss=7.040]\n"
)

# unseen2/536 (MuJoCo MJX issue): JAX's debug_nans raising in a notebook; the message line cut.
JAX_NOTEBOOK = """\
---------------------------------------------------------------------------
FloatingPointError                        Traceback (most recent call last)
    [... skipping hidden 1 frame]
"""


def test_a_nan_printed_as_a_float_string_is_read() -> None:
    assert loud(NEMO_BAR) == [("nan", 1)]
    values, _ = Template.of("loss=inf.0, lr=0.1").read("loss=inf.0, lr=0.1")
    assert values == {"loss": float("inf"), "lr": 0.1}


def test_a_floating_point_error_is_a_nan() -> None:
    assert loud(JAX_NOTEBOOK) == [("nan", 2)]
    raised = "FloatingPointError: invalid value (nan) encountered in jit(train_step)\n"
    assert ("nan", 1) in loud(raised)


def test_code_that_catches_a_floating_point_error_is_not() -> None:
    code = "    except FloatingPointError:\n        logger.info('skipping batch')\n"
    assert loud(code) == []


# --- false alarm: the user's Ctrl-C ----------------------------------------------------------

# unseen2/539 (nanoGPT issue): an overnight CPU run stopped with Ctrl-C.
CTRL_C = """\
iter 142862: loss 2.1802, time 427.60ms
^CTraceback (most recent call last):
  File "/Users/simon/nanoGPT/train.py", line 286, in <module>
    scaler.scale(loss).backward() if scaler else loss.backward()
KeyboardInterrupt
"""


def test_a_keyboard_interrupt_is_said_quietly() -> None:
    found = scan(CTRL_C)
    assert [(a.rule, a.severity, a.lineno) for a in found] == [("traceback", Severity.INFO, 5)]
    crash = CTRL_C.replace("KeyboardInterrupt", "RuntimeError: CUDA error: device-side assert")
    assert loud(crash) == [("traceback", 5)]


# --- loop shapes -----------------------------------------------------------------------------

# unseen2/605 (llama.cpp issue, Llama-3 chat): a reply that ends in a two-word loop with
# brackets between its copies.
BRACKETED_LOOP = (
    "This code creates an animation showing the graph of y = 2x + 1. You can also add more graph"
    " labels to highlight specific points on the graph. Let me know if you have any questions or"
    " if you'd like to customize  This  Code       Let me know if you'd like to   Let me know if"
    " you'd like to   Let me Bob   Let me render  Let me    Let me   (   Let me   )  Let me   ("
    "   Let me   )  Let me   (   Let me   )  Let me   (   Let me\n"
)

# unseen2/615 (Whisper-Finetune issue): one segment's words under moving time spans.
SEGMENTS = """\
[2105.04-2106.44s] 那就是有意義
[2106.44-2108.12s] 那就是有意義
[2108.12-2109.68s] 那就是有意義
[2109.68-2111.08s] 那就是有意義
"""

# A healthy transcript: every segment says something new.
HEALTHY_SEGMENTS = """\
[00:00.000 --> 00:02.500]  Good afternoon and welcome.
[00:02.500 --> 00:05.000]  Today we look at fibre networks.
[00:05.000 --> 00:07.000]  Thank you.
[00:07.000 --> 00:09.500]  Let us begin with the basics.
"""

# unseen2/626 (transformers issue, DialoGPT with greedy decoding): the same reply every turn.
DIALOGPT = """\
>> User:Today, I bought some ice cream.
DialoGPT: I'm going to buy some ice cream.
>> User:Ok, but hwy?
DialoGPT: I'm going to buy some ice cream.
>> User:Fine. You already said that
DialoGPT: I'm going to buy some ice cream.
"""

# unseen2/621 (nnU-Net issue): a log whose labels alternate (`epoch:`, `WARNING:...`).
LABELLED_LOG = """\
epoch:  0
WARNING:matplotlib.legend:No handles with labels found to put in legend.
epoch:  1
WARNING:matplotlib.legend:No handles with labels found to put in legend.
epoch:  2
WARNING:matplotlib.legend:No handles with labels found to put in legend.
"""


def test_a_phrase_loop_with_brackets_between_its_copies_is_repetition() -> None:
    assert loud(BRACKETED_LOOP) == [("repetition", 1)]


def test_transcript_segments_saying_the_same_words_are_repetition() -> None:
    assert loud(SEGMENTS) == [("repetition", 3)]
    assert loud(HEALTHY_SEGMENTS) == []


def test_a_named_bot_giving_the_same_reply_every_turn_is_repetition() -> None:
    assert loud(DIALOGPT) == [("repetition", 6)]


def test_log_labels_alternating_are_no_chat() -> None:
    assert loud(LABELLED_LOG) == []
    # The same warning under varying `Note:` lines: the other "speaker" says no words.
    notes = "".join(f"Step: {i}\nNote: the cache is cold for this worker.\n" for i in range(4))
    assert loud(notes) == []


def test_many_line_labels_keep_the_speaker_memory_small() -> None:
    """A long log labels its lines with ever new `Name:` words: what the chat check keeps of
    them stays bounded."""
    rule = RepetitionRule()
    for i in range(1000):
        rule.on_event(Text(i + 1, 1.0, f"Worker{i}: loaded the shard from the cache"))
    assert len(rule._generated._turns) <= 64


# --- spike: an epoch's summary doubling ------------------------------------------------------

# unseen2/635 (ChemTS issue, Keras GRU): epoch summaries, the loss 0.39 -> 0.88 at epoch 20.
KERAS_SUMMARIES = """\
loss: 0.3925 - acc: 0.8709 - val_loss: 0.3650 - val_acc: 0.8786
loss: 0.8816 - acc: 0.7350 - val_loss: 0.7405 - val_acc: 0.7701
loss: 0.7743 - acc: 0.7613 - val_loss: 0.6743 - val_acc: 0.7912
"""

# Healthy epoch summaries: falling, with a bump of a third at epoch 4.
HEALTHY_SUMMARIES = """\
Epoch 1/6 - loss: 0.9123 - acc: 0.6512 - val_loss: 0.8011 - val_acc: 0.7012
Epoch 2/6 - loss: 0.6344 - acc: 0.7731 - val_loss: 0.6120 - val_acc: 0.7802
Epoch 3/6 - loss: 0.5120 - acc: 0.8213 - val_loss: 0.5533 - val_acc: 0.8100
Epoch 4/6 - loss: 0.6811 - acc: 0.7902 - val_loss: 0.5901 - val_acc: 0.8004
Epoch 5/6 - loss: 0.4710 - acc: 0.8391 - val_loss: 0.5210 - val_acc: 0.8231
Epoch 6/6 - loss: 0.4402 - acc: 0.8502 - val_loss: 0.5102 - val_acc: 0.8302
"""


def test_an_epoch_summary_whose_loss_doubles_is_a_spike() -> None:
    assert loud(KERAS_SUMMARIES) == [("spike", 2)]


def test_healthy_epoch_summaries_are_not() -> None:
    assert loud(HEALTHY_SUMMARIES) == []
    # Per-step losses (no validation beside them) keep the per-step thresholds.
    assert loud("step 1 loss 0.3925\nstep 2 loss 0.8816\nstep 3 loss 0.7743\n") == []

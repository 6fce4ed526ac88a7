"""The fourth pass of issue 11 (tests/corpus/README.md): what unseen/ showed the rules missing.

Each positive line is written in the shape the tool prints it (the source named next to it);
each negative is a healthy line with the same words or shape, which must stay quiet. Lines go
through the whole monitor (`scan`), so a missing gate word fails here too.
"""

from __future__ import annotations

import pytest

from supervisor.events import Eval, Metric
from supervisor.parsing.parser import Parser
from supervisor.reading.tail import LineSplitter
from tests.conftest import scan


def rules_of(text: str) -> list[tuple[str, int]]:
    return [(a.rule, a.lineno) for a in scan(text)]


# --- oom: a launcher's "return code -9"; a list of possible causes is no report -------------


@pytest.mark.parametrize(
    "line",
    [
        # deepspeed/launcher/launch.py sigkill_handler: f"{cmd} exits with return code = {rc}"
        "[2023-11-13 16:59:55,650] [ERROR] [launch.py:320:sigkill_handler] ['/usr/bin/python',"
        " '-u', 'train.py', '--local_rank=1'] exits with return code = -9",
        # torch/distributed/elastic/multiprocessing/api.py
        "ERROR:torch.distributed.elastic.multiprocessing.api:failed (exitcode: -9) local_rank: 0"
        " (pid: 4242) of binary: /usr/bin/python3",
        # torch/distributed/elastic/multiprocessing/errors: the summary's rows
        "  exitcode  : -9 (pid: 4242)",
        "  traceback : Signal 9 (SIGKILL) received by PID 4242",
        # torch/multiprocessing/spawn.py ProcessExitedException
        "torch.multiprocessing.spawn.ProcessExitedException: process 0 terminated with signal"
        " SIGKILL",
        # binutils' ld under the kernel's OOM killer, as gcc reports it
        "collect2: fatal error: ld terminated with signal 9 [Killed]",
    ],
)
def test_a_launcher_reporting_a_child_killed_by_signal_9_is_an_oom(line: str) -> None:
    assert rules_of(line + "\n") == [("oom", 1)]


@pytest.mark.parametrize(
    "line",
    [
        "[ERROR] [launch.py:320:sigkill_handler] ['python', 'train.py'] exits with return code = 1",
        "lr: 1e-9, weight_decay: 0.0, eps: 1e-9",
        "  exitcode  : -6 (pid: 4242)",
        "  traceback : Signal 15 (SIGTERM) received by PID 4242",
        # ray: the dead-worker message lists the OOM killer among possible causes
        "(raylet) A worker died or was killed while executing a task by an unexpected system"
        " error. Worker exit type: SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits"
        " with a connection error code 2. End of file. There are some potential root causes."
        " (1) The process is killed by SIGKILL by OOM killer due to high memory usage. (2) ray"
        " stop --force is called. (3) The worker is crashed unexpectedly due to SIGSEGV.",
    ],
)
def test_other_return_codes_and_lists_of_possible_causes_are_no_oom(line: str) -> None:
    assert [r for r, _ in rules_of(line + "\n") if r == "oom"] == []


# --- stall: three more ways a collective says it hung ----------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        # torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp, the watchdog's first line
        "[rank7]:[E816 00:34:01.184200712 ProcessGroupNCCL.cpp:2168] [PG ID 1 PG GUID 1 Rank 7]"
        "  failure detected by watchdog at work sequence id: 137429 PG status: last enqueued",
        # Ascend CANN/HCCL, error EI0002
        "EI0002: [PID: 2969] 2025-10-11-15:09:34.713.335 The wait execution of the Notify"
        " register times out. Reason: The Notify register has not received the Notify record"
        " from remote rank: [24].",
        # NCCL src/misc/socket.cc
        "[15]worker-23:83:2526 [0] misc/socket.cc:503 NCCL WARN Net : Call to recv from"
        " 10.96.188.199<41468> failed : Connection timed out",
    ],
)
def test_collective_failures_in_more_wordings_are_a_stall(line: str) -> None:
    assert rules_of(line + "\n") == [("stall", 1)]


@pytest.mark.parametrize(
    "line",
    [
        "NCCL INFO NET/Socket : Using [0]eth0:10.0.0.1<0>; NCCL_SOCKET_TIMEOUT not set",
        "The request times out after 30 s; retrying https://huggingface.co/api/models",
        "watchdog: enabled, timeout 600 s",
    ],
)
def test_timeout_settings_and_http_retries_are_no_stall(line: str) -> None:
    assert rules_of(line + "\n") == []


# --- nan: a step line whose one value is nan; an error raised on an infinite gradient --------


def test_a_step_line_whose_only_value_is_nan_is_a_nan() -> None:
    # OpenSplat prints "Step N: <loss> (<percent>%)"
    healthy = "".join(f"Step {i}: 0.{30 - i:02d}12 ({i}%)\n" for i in range(1, 6))
    assert rules_of(healthy) == []
    assert rules_of(healthy + "Step 6: nan (6%)\n") == [("nan", 6)]


def test_an_error_raised_on_an_infinite_gradient_is_a_nan() -> None:
    found = rules_of("Traceback (most recent call last):\nValueError: rgb network grad is INF, 1\n")
    assert ("nan", 2) in found
    # an fp16 scaler's inf grad is never raised: the same words outside an error stay quiet
    assert rules_of("INFO: grad is inf, skipping step, scale 32768\n") == []


# --- repetition: a phrase looping inside a line; runs of one character at a line's end ------


@pytest.mark.parametrize(
    "line",
    [
        # textgenrnn's sample: the loop fills under half the line
        "Trump confirms a complete shot of the state of the state of the state of the state of"
        " the state of the state of the season to the state of my parents for the man.",
        # a speech-to-text transcript that ends looping
        "transcription:  The art of dancing without a finger party. Thank you. Thank you. Thank"
        " you. Thank you. Thank you.",
    ],
)
def test_a_phrase_said_five_times_in_a_row_is_a_loop(line: str) -> None:
    found = scan(line + "\n")
    assert [(a.rule, a.lineno) for a in found] == [("repetition", 1)]
    assert "times in a row" in found[0].message


@pytest.mark.parametrize(
    "line",
    [
        "It was very very very very very very good, said the reviewer of the second edition.",
        "values: nan nan nan nan nan nan nan nan nan nan nan nan (masked)",
        "He said yes, yes, I will, and then he said yes, yes again before he left the room.",
        "flags: True False True False True False True False True False",
        "labels: ['neg', 'pos', 'neg', 'pos', 'neg', 'pos', 'neg', 'pos', 'neg', 'pos'] (batch 0)",
    ],
)
def test_one_word_again_or_printed_values_are_no_phrase_loop(line: str) -> None:
    assert rules_of(line + "\n") == []


def test_a_line_ending_in_runs_of_one_character_is_a_loop() -> None:
    # DeepSpell's predictions printed during training
    found = rules_of(
        "Q eahc\nA each\n☒ eachhh.......................................!!!!!!!!!!!!!!!\n"
    )
    assert found == [("repetition", 3)]
    healthy = (
        "1875/1875 [==============================] - 30s 16ms/step - loss: 0.0798\n"
        "Loading checkpoint shards ...................................... ========\n"
        "Downloading ........................................................\n"
        "    ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "register mask: 0xffffffffffffffff0000000000000000\n"
    )
    assert rules_of(healthy) == []


def test_a_command_typed_again_at_a_shell_prompt_is_no_loop() -> None:
    run = (
        "root@18135a5a8205:/LandMark# python3 -m app.trainer --config confs/city.txt\n"
        "Training with a single process on 1 GPUs.\n"
        " 31%|█████▉          | 331/1063 [01:06<03:59,  3.06it/s]Killed\n"
    )
    found = rules_of(run + run.replace("331", "348"))
    assert [r for r, _ in found if r == "repetition"] == []
    assert ("oom", 3) in found  # the shell's "Killed": the OOM killer


# --- parsing: a line that opens by naming an evaluation -------------------------------------


def parsed(text: str) -> list:
    splitter = LineSplitter()
    parser = Parser()
    return [e for line in splitter.feed(text.encode()) for e in parser.parse(line, 1.0)]


def test_a_line_opening_with_test_gives_the_evaluations_loss() -> None:
    events = parsed("Test in epoch   1, Loss:        5.124760, Acc:  0.356336\n")
    assert [type(e) for e in events if isinstance(e, (Metric, Eval))] == [Eval]
    assert next(e for e in events if isinstance(e, Eval)).values["val_loss"] == 5.12476
    train = parsed("Epoch 1, Loss: 5.124760, Acc: 0.356336\n")
    assert [type(e) for e in train if isinstance(e, (Metric, Eval))] == [Metric]


def test_a_test_loss_rising_for_three_evaluations_is_reported() -> None:
    losses = [4.76, 4.87, 4.94, 5.12, 5.17, 5.28, 5.43]
    text = "".join(
        f"Test in epoch {i // 3}, Loss: {v:.6f}, Acc: 0.35\n" for i, v in enumerate(losses)
    )
    assert rules_of(text) == [("divergence", 6)]

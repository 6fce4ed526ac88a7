"""The text rules: `oom`, `traceback` and `stall` (watchdog text and silence on ticks)."""

from __future__ import annotations

import signal

from supervisor.events import Exit, Metric, Progress, ResourceSample, Severity, Text
from supervisor.monitoring.monitor import Monitor
from supervisor.reading.tail import LineSplitter
from supervisor.rules import WatchSettings
from supervisor.rules.oom import OomRule
from supervisor.rules.stall import StallRule, StallSettings
from supervisor.rules.traceback import TracebackRule
from tests.conftest import scan

# --- oom --------------------------------------------------------------------------------------


def test_cuda_oom_old_and_new_forms_name_the_allocation() -> None:
    """Old RuntimeError and new torch(.cuda).OutOfMemoryError both say how much was asked for."""
    lines = [
        "RuntimeError: CUDA out of memory. Tried to allocate 21.06 GiB (GPU 3; 79.35 GiB total)",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 7.46 GiB. GPU 0 has a",
        "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 112.00 MiB. GPU",
    ]
    for line in lines:
        got = OomRule().on_event(Text(4, 1.0, line))
        assert len(got) == 1 and got[0].severity == Severity.ERROR, line
        assert got[0].message.startswith("CUDA out of memory: tried to allocate "), got


def test_other_out_of_memory_texts() -> None:
    """cuBLAS alloc failures, host MemoryError and kill messages are all OOMs."""
    lines = [
        "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "MemoryError",
        "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 7.5 GiB; MemoryError: x",
        "Killed",
        "./train.sh: line 12: 48213 Killed                  python train.py --lr 2e-5",
        "[12345.678] Out of memory: Killed process 48213 (python) total-vm:120000000kB",
        "memory watchdog: RSS 121.3 GB over 120 GB, killing training process",
        "RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed.",
        "RuntimeError: HIP out of memory. Tried to allocate 2.00 GiB",
        "NCCL error in: ProcessGroupNCCL.cpp:1269, unhandled cuda error, NCCL version 2.14.3; "
        "Last error: Cuda failure 'out of memory'",
    ]
    for line in lines:
        assert len(OomRule().on_event(Text(1, 1.0, line))) == 1, line


def test_memory_words_in_healthy_lines_do_not_fire() -> None:
    """Peak-memory reports, 'memory: 10762' metrics and 'killed 3 zombie' chatter are no OOM."""
    log = (
        "Max CUDA memory allocated was 1 GB\n"
        "CPU Total Peak Memory consumed during the train (max): 14 GB\n"
        "Epoch(train) [1][200/735]  lr: 1.9870e-04  memory: 10762  loss: 2.7522\n"
        "Killed 3 stale dataloader workers from the previous epoch\n"
        "bloom-560m loaded in the living room\n"
        "Tip: lower --micro_batch to avoid running out of memory on small GPUs\n"
    )
    assert scan(log) == []


def test_oom_printed_by_every_rank_is_one_report() -> None:
    """Eight ranks printing the same OOM within a few lines give one anomaly."""
    log = "".join(
        f"[rank{r}]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.63 GiB.\n"
        for r in range(8)
    )
    assert [(a.rule, a.lineno) for a in scan(log)] == [("oom", 1)]


def test_sigkill_with_host_memory_exhausted_is_an_oom() -> None:
    """A SIGKILL ftmon did not send, while the host had 0.3 GB available, is an OOM kill."""
    rule = OomRule()
    rule.on_resource(
        ResourceSample(10.0, 42, host_rss_gb=22.5, host_available_gb=0.3, cpu_percent=90)
    )
    got = rule.on_exit(Exit(11.0, returncode=-9, signal=signal.SIGKILL))
    assert len(got) == 1 and "OOM killer" in got[0].message
    ok = OomRule()
    ok.on_resource(
        ResourceSample(10.0, 42, host_rss_gb=2.0, host_available_gb=12.0, cpu_percent=90)
    )
    assert ok.on_exit(Exit(11.0, returncode=-9, signal=signal.SIGKILL)) == []
    assert rule.on_exit(Exit(11.0, -9, signal.SIGKILL, killed_by_ftmon="nan: lr too high")) == []


# --- traceback --------------------------------------------------------------------------------

TRACE = """\
Traceback (most recent call last):
  File "/work/train.py", line 88, in <module>
    main()
  File "/work/train.py", line 70, in main
    loss = model(**batch).loss
           ^^^^^^^^^^^^^^^^^^^
KeyError: 'labels'
next line of the log
"""


def test_traceback_reports_the_final_exception_line() -> None:
    """A Python traceback is one error at its exception line, with header and frames as evidence."""
    found = scan(TRACE)
    assert [(a.rule, a.lineno, a.message) for a in found] == [
        ("traceback", 7, "KeyError: 'labels'")
    ]
    assert found[0].severity == Severity.ERROR
    assert found[0].evidence[0].startswith("Traceback (most recent call last)")
    assert found[0].evidence[-1] == "KeyError: 'labels'"


def test_traceback_with_rank_and_logger_prefixes() -> None:
    """torchrun `[rankN]:` and a logger's 'CRITICAL | ' prefix do not hide the block."""
    ranked = "".join(f"[rank12]: {line}\n" for line in TRACE.splitlines()[:7])
    assert [a.message for a in scan(ranked)] == ["KeyError: 'labels'"]
    logged = "rank:  3 | 2022-04-03 18:44:26,615 CRITICAL | " + TRACE
    assert [a.message for a in scan(logged)] == ["KeyError: 'labels'"]


def test_cut_off_traceback_is_reported_on_exit() -> None:
    """A log that ends inside a traceback still reports it when the process exits."""
    rule = TracebackRule()
    for i, line in enumerate(TRACE.splitlines()[:4], start=1):
        assert rule.on_event(Text(i, 1.0, line)) == []
    got = rule.on_exit(Exit(2.0, returncode=1))
    assert len(got) == 1 and got[0].message == "traceback (cut off)" and got[0].lineno == 4


def test_chained_exceptions_are_one_report() -> None:
    """'During handling of the above exception' blocks right after a report stay quiet."""
    chained = TRACE.replace("next line of the log\n", "") + (
        "\nDuring handling of the above exception, another exception occurred:\n\n" + TRACE
    )
    assert [a.lineno for a in scan(chained)] == [7]


# --- stall ------------------------------------------------------------------------------------


def test_nccl_watchdog_timeout_is_a_stall_at_once() -> None:
    """PyTorch's NCCL watchdog timeout, printed by 8 ranks, is one stall error at the first."""
    log = "".join(
        f"[E ProcessGroupNCCL.cpp:737] [Rank {r}] Watchdog caught collective operation timeout: "
        "WorkNCCL(SeqNum=469508, OpType=ALLREDUCE, Timeout(ms)=1800000) ran for 1802212 ms\n"
        for r in range(8)
    )
    found = scan(log)
    assert [(a.rule, a.lineno, a.severity) for a in found] == [("stall", 1, Severity.ERROR)]


def test_timeouts_in_healthy_text_are_not_stalls() -> None:
    """Config lines mentioning a timeout, and 'total time' metrics, are not stalls."""
    log = (
        "ddp_timeout: 1800\n"
        "step 00100/01953 | loss: 2.3 | dt: 512.00ms | total time: 9.00m\n"
        "Setting NCCL_TIMEOUT=1800 for the process group\n"
        "[I ProcessGroupNCCL.cpp:835] [Rank 0] ProcessGroupNCCL initialization options: "
        "NCCL_ASYNC_ERROR_HANDLING: 1, TIMEOUT(ms): 1800000, USE_HIGH_PRIORITY_STREAM: 0\n"
        "Set NCCL_P2P_DISABLE=1 to keep the process from hanging on consumer GPUs\n"
    )
    assert scan(log) == []


def test_other_hang_messages_are_stalls() -> None:
    """NCCL's heartbeat, a stuck watchdog, a distributed timeout and 'training is stuck' count."""
    lines = [
        "[rank0]:[E ProcessGroupNCCL.cpp:1316] [PG 0 Rank 0] Heartbeat monitor timed out! "
        "Process will be terminated after dumping debug info.",
        "[PG 0 Rank 3] ProcessGroupNCCL's watchdog got stuck for 480 seconds without making "
        "progress in monitoring enqueued collectives.",
        "torch.distributed.DistBackendError: [1] is setting up NCCL communicator and retrieving "
        "ncclUniqueId from [0] via c10d key-value store by key '0', but store->get('0') got "
        "error: Socket Timeout",
        "WARNING: training appears to be stuck: no step for 900 s",
    ]
    for line in lines:
        assert [a.rule for a in StallRule().on_event(Text(1, 1.0, line))] == ["stall"], line


def test_silence_is_reported_once_per_stall_on_tick() -> None:
    """No line for `secs` is one warning on tick; a new line ends the silence."""
    m = Monitor(WatchSettings(stall=StallSettings(secs=60)))
    splitter = LineSplitter()
    m.feed_lines(splitter.feed(b"step 1 | loss: 2.0\n"), ts=1000.0)
    assert m.tick(1030.0) == []
    got = m.tick(1061.0)
    assert [(a.rule, a.severity) for a in got] == [("stall", Severity.WARNING)]
    assert "no new line for 61 s after line 1" in got[0].message
    assert all(m.tick(float(t)) == [] for t in range(1070, 1300, 10))
    m.feed_lines(splitter.feed(b"step 2 | loss: 1.9\n"), ts=1300.0)
    assert all(m.tick(float(t)) == [] for t in range(1300, 1360, 10))
    assert len(m.tick(1360.0)) == 1


def test_time_while_paused_is_not_silence() -> None:
    """Ticks stop while the run is paused; after a 15-minute pause the run is not 'stalled'."""
    rule = StallRule(StallSettings(secs=120))
    rule.on_lines(1, 0.0)
    assert all(rule.on_tick(float(t)) == [] for t in range(0, 60, 10))  # 50 s quiet, then pause
    assert all(rule.on_tick(float(t)) == [] for t in range(950, 1020, 10))  # resumed at 950
    got = rule.on_tick(1020.0)  # 50 s before the pause + 70 s after it = 120 s of silence
    assert len(got) == 1 and "no new line for 120 s" in got[0].message


def test_lines_without_steps_are_no_step_stall() -> None:
    """A log that never shows a step (plain chatter) is never a 'no new step' stall."""
    rule = StallRule(StallSettings(secs=600, step_secs=100))
    for t in range(0, 1000, 50):
        rule.on_event(Text(1, float(t), "still downloading shards"))
        rule.on_lines(1, float(t))
        assert rule.on_tick(float(t)) == []


def test_no_line_at_all_counts_from_the_first_tick() -> None:
    """Watching a log nobody writes: the silence starts at the first tick."""
    rule = StallRule(StallSettings(secs=10))
    assert rule.on_tick(500.0) == []
    assert len(rule.on_tick(511.0)) == 1


def test_no_new_step_while_lines_still_come() -> None:
    """Lines keep coming but the step does not advance for `step_secs`: a stall."""
    rule = StallRule(StallSettings(secs=600, step_secs=100))
    rule.on_event(Metric(1, 0.0, {"loss": 1.0}, step=5))
    rule.on_lines(1, 0.0)
    for t in range(10, 100, 10):
        rule.on_event(Progress(2, float(t), 5, 100))
        rule.on_lines(2, float(t))
        assert rule.on_tick(float(t)) == []
    got = rule.on_tick(101.0)
    assert len(got) == 1 and "no new training step for 101 s (last step 5)" in got[0].message


# --- oom and stall wordings seen in real logs (tests/corpus) -------------------------------


def test_oom_wordings_of_other_backends_and_guards() -> None:
    """XLA/TPU, JAX, TF, ROCm, Metal (MLX), host allocators, shells and external memory guards."""
    lines = [
        "2023-03-23 02:02:25.057202: E tensorflow/compiler/xla/xla_client/xla_util.cc:90]   "
        "OP_REQUIRES failed at tpu_execute_op.cc:266 : RESOURCE_EXHAUSTED: Attempting to reserve "
        "10.51G at the bottom of memory. That was not possible.",
        "RuntimeError: Bad StatusOr access: RESOURCE_EXHAUSTED: Error allocating device buffer: "
        "Attempting to allocate 129.50M. That was not possible. There are 78.17M free.",
        "jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory allocating "
        "20029400304 bytes.",
        "[1] 2019-06-13 01:17:08.886805: E external/org_tensorflow/tensorflow/compiler/xla/python/"
        "local_client.cc:672] Execution of replica 0 failed: Resource exhausted: Out ",
        "ResourceExhaustedError                    Traceback (most recent call last)",
        "W tensorflow/core/common_runtime/bfc_allocator.cc:275] *_Ran out of memory trying to "
        "allocate 39.81MiB.  See logs for memory state.",
        "2020-02-20 11:49:21.373053: W tensorflow/core/common_runtime/bfc_allocator.cc:319] "
        "***************__________________________________***********************************",
        "2023-11-01 16:19:17.812101: E tensorflow/compiler/xla/stream_executor/rocm/"
        "rocm_driver.cc:606] failed to allocate 127.99TiB (140729850295296 bytes) from device: "
        "HIP_ERROR_OutOfMemory",
        "                         Search for `hipErrorOutOfMemory' in https://rocm.docs.amd.com/"
        "projects/HIP/en/latest/index.html for more information.",
        "libc++abi: terminating due to uncaught exception of type std::runtime_error: [METAL] "
        "Command buffer execution failed: Insufficient Memory "
        "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)",
        "RuntimeError: [enforce fail at CPUAllocator.cpp:64] . DefaultCPUAllocator: can't "
        "allocate memory: you tried to allocate 402653184 bytes. Error code 12 (Cannot allocate "
        "memory).",
        "已杀死",
        "slurmstepd: error: Job 7518 exceeded memory limit (626359956 > 512000000), being killed",
        "vram_guard: GPU memory limit exceeded (23.9 GiB > 22.0 GiB), killing pid 4242",
        "Process finished with exit code 137 (interrupted by signal 9: SIGKILL)",
        "Apr 25 06:31:56 host kernel: [594675.027262] python invoked oom-killer: "
        "gfp_mask=0x14200ca(GFP_HIGHUSER_MOVABLE), nodemask=(null), order=0, oom_score_adj=0",
    ]
    for line in lines:
        assert len(OomRule().on_event(Text(1, 1.0, line))) == 1, line
        assert [a.rule for a in scan(line + "\n")].count("oom") == 1, line


def test_resource_exhausted_that_is_no_memory_does_not_fire() -> None:
    """gRPC's RESOURCE_EXHAUSTED for a quota, and memory words in healthy reports, are no OOM."""
    log = (
        "google.api_core.exceptions.ResourceExhausted: 429 RESOURCE_EXHAUSTED: Quota exceeded "
        "for requests per minute\n"
        "MLX: Peak mem 31.753 GB, memory limit 96 GB\n"
        "exit code 1370 is not in the table\n"
    )
    assert [a.rule for a in scan(log)].count("oom") == 0


def test_stall_wordings_of_horovod_rendezvous_stores_and_heartbeats() -> None:
    """Horovod's stall inspector, elastic rendezvous, TCPStore/socket and Gloo timeouts,
    heartbeat monitors and NCCL watchdog variants are each one `stall` report."""
    lines = [
        "[1,0]<stderr>:[2020-04-20 20:29:29. 89665: W horovod/common/stall_inspector.cc:105] One "
        "or more tensors were submitted to be reduced, gathered or broadcasted by subset of ranks "
        "and are waiting for remainder of ranks for more than 60 seconds.",
        '    "message": "RendezvousTimeoutError: ",',
        "torch.distributed.DistNetworkError: The client socket has timed out after 300000ms while "
        "trying to connect to (036c56dce41b, 41331).",
        "[E socket.cpp:793] [c10d] The client socket has timed out after 60s while trying to "
        "connect to (IP1, 2222).",
        "torch.distributed.DistStoreError: Socket Timeout",
        "RuntimeError: [/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed "
        "out waiting 1800000ms for recv operation to complete",
        "RuntimeError: [/caffe2/third_party/gloo/gloo/transport/tcp/pair.cc:611] Connect timeout "
        "[172.17.27.13]:27023",
        "[rank3]:[E1002 18:16:40.711756918 ProcessGroupNCCL.cpp:756] [Rank 3] Work WorkNCCL("
        "SeqNum=2521, OpType=ALLREDUCE, Timeout(ms)=600000) timed out in blocking wait.",
        "  what():  [PG ID 0 PG GUID 0(default_pg) Rank 3] Process group watchdog thread "
        "terminated with exception: [Rank 3] Watchdog caught colle",
        "RuntimeError: Client mesh is unhealthy with uneven heartbeats",
    ]
    for line in lines:
        found = StallRule().on_event(Text(1, 1.0, line))
        assert len(found) == 1 and found[0].severity == Severity.ERROR, line


def test_timeouts_that_are_settings_do_not_fire() -> None:
    """Launch configs and option echoes that name a timeout are not a hang."""
    log = (
        "  rdzv_configs     : {'timeout': 900}\n"
        "  monitor_interval : 5\n"
        "[INFO] ProcessGroupNCCL initialization options: NCCL_ASYNC_ERROR_HANDLING: 1, "
        "TIMEOUT(ms): 1800000\n"
        "heartbeat_interval = 5s, heartbeat timeout set to 300s\n"
    )
    assert scan(log) == []

"""The `oom`, `stall` and `nan` text rules on the messages as the frameworks write them.

Each line below is the message string read at its source (repository and file named next to
it), filled in the way the code fills it; the negative cases are healthy lines that carry the
same words (config echoes, settings, advice, HTTP timeouts, retries that are not failures).
Every line goes through the rule itself and through the whole monitor (`scan`), so a gate word
missing from a rule's `text_gate` fails here too.
"""

from __future__ import annotations

import pytest

from supervisor.events import Severity, Text
from supervisor.rules.base import Rule
from supervisor.rules.nan import NanRule
from supervisor.rules.oom import OomRule
from supervisor.rules.stall import StallRule
from tests.conftest import scan

OOM_SOURCES = [
    # pytorch/pytorch c10/xpu/XPUCachingAllocator.cpp
    "torch.OutOfMemoryError: XPU out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
    "capacity of 15.11 GiB",
    # pytorch/pytorch aten/src/ATen/mps/MPSAllocator.mm
    "RuntimeError: MPS backend out of memory (MPS allocated: 18.12 GB, other allocations: "
    "5.62 MB, max allowed: 18.13 GB). Tried to allocate 256.00 MB on private pool.",
    # accelerate src/accelerate/utils/memory.py should_reduce_batch_size: " out of memory." for
    # every torch device allocator (here Ascend's, same wording)
    "RuntimeError: NPU out of memory. Tried to allocate 1.00 GiB (NPU 0; 60.97 GiB total)",
    # pytorch/pytorch c10/core/impl/alloc_cpu.cpp (DefaultCPUAllocator, its _aligned_malloc branch)
    "RuntimeError: [enforce fail at alloc_cpu.cpp:114] data. DefaultCPUAllocator: not enough "
    "memory: you tried to allocate 1073741824 bytes.",
    # tensorflow/tensorflow tensorflow/core/framework/op_kernel.cc (allocate_tensor)
    "OOM when allocating tensor with shape[32,128,56,56] and type float on "
    "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc",
    # openxla/xla xla/stream_executor/integrations/tf_allocator_adapter.cc
    "Out of memory while trying to allocate 33762398024 bytes.",
    "Out of host memory while trying to allocate 2147483648 bytes. Please set the environment "
    "variable XLA_PJRT_GPU_HOST_MEMORY_LIMIT_GB",
    # openxla/xla docs/errors/error_1000.md, error_1001.md, error_0101.md (TPU compiler/runtime)
    "XLA:TPU compile permanent error. Ran out of memory in memory space hbm. Used 49.34G of "
    "32.00G hbm. Exceeded hbm capacity by 17.34G.",
    "Allocation (size=134217728) would exceed memory (size=67108864) :: #allocation25",
    "Error loading program 'jit_step': Attempting to reserve 29.49G at the bottom of memory. "
    "That was not possible. There are 147.64M free, 0B reserved, and 147.64M reservable.",
    # ggml-org/llama.cpp ggml/src/ggml-cuda/ggml-cuda.cu, src/llama-model.cpp, ggml/src/ggml-alloc.c
    "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 7605.34 MiB on device 0: "
    "cudaMalloc failed: out of memory",
    "llama_model_load: error loading model: unable to allocate backend buffer",
    "ggml_gallocr_reserve_n: failed to allocate CUDA0 buffer of size 1641562112",
    # ggml-org/llama.cpp ggml/src/ggml-vulkan/ggml-vulkan.cpp (vk::Result::eErrorOutOfDeviceMemory)
    "ggml_vulkan: Device memory allocation of size 1234 failed. "
    "vk::Device::allocateMemory: ErrorOutOfDeviceMemory",
    # ml-explore/mlx mlx/backend/metal/allocator.cpp
    "RuntimeError: [metal::malloc] Attempting to allocate 134668044288 bytes which is greater "
    "than the maximum allowed buffer size of 86586540032 bytes.",
    "RuntimeError: [metal::malloc] Resource limit (499000) exceeded.",
    "libc++abi: terminating due to uncaught exception of type std::runtime_error: "
    "[malloc_or_wait] Unable to allocate 4294967296 bytes.",
    # vllm-project/vllm vllm/v1/core/kv_cache_utils.py
    "ValueError: No available memory for the cache blocks. Try increasing "
    "`gpu_memory_utilization` when initializing the engine.",
    # accelerate src/accelerate/utils/memory.py find_executable_batch_size
    "RuntimeError: No executable batch size found, reached zero.",
    # tensorflow/tensorflow stream_executor/cuda/cuda_driver.cc (driver API error name)
    "W cuda_driver.cc:1002] failed to allocate 2.00G (2147483648 bytes) from device: "
    "CUDA_ERROR_OUT_OF_MEMORY: out of memory",
    # SchedMD/slurm src/plugins/task/cgroup/task_cgroup_memory.c, and srun's task exit report
    "Some of your processes may have been killed by the cgroup out-of-memory handler.",
    "slurmstepd: error: Detected 1 oom_kill event in step 123.0 cgroup.",
    "srun: error: ml0: task 0: Out Of Memory",
    "JobState=OUT_OF_MEMORY Reason=OutOfMemory Dependency=(null)",
    # ray-project/ray src/ray/raylet/node_manager.cc (memory monitor) and its worker exit type
    "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.",
    "4 worker(s) were killed due to the node running low on memory.",
    "Memory on the node (IP: 10.0.62.231) where the task was running was 14.67GB / 15.44GB "
    "(0.95015), which exceeds the memory usage threshold of 0.95. Ray killed this worker",
    "exit_type = NODE_OUT_OF_MEMORY, exit_detail = Task was killed",
    # kubernetes/kubernetes (container status reason, as `kubectl describe pod` prints it)
    "      Reason:       OOMKilled",
    # Windows ERROR_COMMITMENT_LIMIT (1455), as torch's DataLoader workers report it
    "OSError: [WinError 1455] The paging file is too small for this operation to complete.",
    # NVIDIA/nccl src/debug.cc's WARN prefix on a CUDA allocation failure
    "node1:1234:5678 [0] NCCL WARN Cuda failure 'out of memory'",
    # torvalds/linux mm/oom_kill.c
    "[1234.5] Memory cgroup out of memory: Killed process 4242 (python) total-vm:12345kB",
    "[1234.6] oom_reaper: reaped process 4242 (python), now anon-rss:0kB, file-rss:0kB",
]

STALL_SOURCES = [
    # pytorch/pytorch torch/csrc/distributed/c10d/ProcessGroupGloo.cpp (monitoredBarrier)
    "RuntimeError: [Rank 0]: Rank 1 failed to pass monitoredBarrier in 5000 ms",
    "[Rank 0]: Ranks 1, 2 failed to pass monitoredBarrier in 30000 ms",
    # pytorch/pytorch torch/csrc/distributed/c10d/TCPStore.cpp
    "torch.distributed.DistStoreError: Timed out after 901 seconds waiting for clients. 2/4 "
    "clients joined.",
    # pytorch/pytorch torch/csrc/distributed/c10d/socket.cpp
    "[W socket.cpp:697] [c10d] TCP client failed to connect/validate to host 10.0.0.1:29500 - "
    "timed out (try=3, timeout=600000ms): connection refused",
    # pytorch/pytorch torch/csrc/distributed/c10d/FileStore.cpp
    "RuntimeError: Timeout waiting for key: default_pg/0/cuda//0",
    # pytorch/pytorch torch/distributed/distributed_c10d.py (_store_based_barrier)
    "Timed out initializing process group in store based barrier on rank 3, for key: "
    "store_based_barrier_key:1 (world_size=4, num_workers_joined=2, timeout=0:30:00 error=x)",
    # pytorch/pytorch torch/distributed/elastic/utils/store.py, elastic/utils/distributed.py,
    # elastic/rendezvous/etcd_store.py
    "Timed out waiting on barrier on rank 2, for key prefix: /torchelastic/agent/terminal_state "
    "(world_size=4, missing_ranks=[Rank 3: hostB], timeout=0:05:00)",
    "TimeoutError: timed out waiting for all 8 members to join",
    "LookupError: Timeout while waiting for keys in EtcdStore",
    # pytorch/pytorch torch/utils/data/dataloader.py (workers stopped delivering batches)
    "RuntimeError: DataLoader timed out after 300 seconds",
    # pytorch/pytorch torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp (flight recorder dump)
    "[rank3]:[E129 16:38:47.801786726 ProcessGroupNCCL.cpp:1858] [PG ID 0 PG GUID "
    "0(default_pg) Rank 3] Received a dump signal due to a collective timeout from this local "
    "rank and we will try our best to dump the debug info.",
    # openxla/xla xla/tsl/distributed_runtime/coordination/coordination_service.cc
    "UNAVAILABLE: Task /job:jax_worker/replica:0/task:1 heartbeat timeout. This indicates that "
    "the remote task has failed, got preempted, or crashed unexpectedly.",
    "The following tasks are unhealthy (stopped sending heartbeats): /job:jax_worker/task:3",
    # pytorch/pytorch torch/distributed/elastic/rendezvous/dynamic_rendezvous.py
    "The node 'host_123_0' has failed to send a keep-alive heartbeat to the rendezvous 'abc' "
    "due to an error of type RendezvousConnectionError.",
    # horovod/horovod horovod/common/stall_inspector.cc (the list line and the shutdown notice)
    "[1,0]<stderr>:Stalled ranks:",
    'One or more rank (marked by "!") is stalled for longer than 60 seconds. Will shutdown.',
]

NAN_SOURCES = [
    # jax-ml/jax jax/_src/dispatch.py (_check_special) and jax/_src/api_util.py
    "FloatingPointError: invalid value (nan) encountered in jit(train_step)",
    "FloatingPointError: invalid value (inf) encountered in mul",
    "Invalid nan value encountered in the output of a jax.jit function. Calling the "
    "de-optimized version.",
    # tensorflow/tensorflow tensorflow/core/kernels/check_numerics_op.cc
    "Compute status: Invalid argument: ReluGrad input is not finite. : Tensor had NaN values",
    "InvalidArgumentError: LossTensor is inf or nan : Tensor had Inf values",
    # tensorflow/tensorflow tensorflow/core/kernels/summary_op.cc
    "InvalidArgumentError: Nan in summary histogram for: layer2/weights",
    "InvalidArgumentError: Infinity in summary histogram for: conv1/activations",
    # tensorflow/tensorflow tensorflow/python/training/basic_session_run_hooks.py (NanTensorHook)
    "tensorflow.python.training.basic_session_run_hooks.NanLossDuringTrainingError: NaN loss "
    "during training.",
    # pytorch/pytorch aten/src/ATen/native/Distributions.cpp (multinomial)
    "RuntimeError: probability tensor contains either `inf`, `nan` or element < 0",
    # pytorch/pytorch torch/nn/utils/clip_grad.py (error_if_nonfinite)
    "RuntimeError: The total norm of order 2.0 for gradients from `parameters` is non-finite, "
    "so it cannot be clipped.",
    # pytorch/pytorch torch/distributions/distribution.py (validate_args; the value line)
    "tensor([[nan, nan, nan, nan, nan, nan],",
    # facebookresearch/fairseq fairseq/trainer.py
    "FloatingPointError: gradients are Nan/Inf",
    # AUTOMATIC1111/stable-diffusion-webui modules/devices.py (NansException)
    "modules.devices.NansException: A tensor with all NaNs was produced in Unet.",
    # open-mmlab/mmdetection mmdet/engine/hooks/check_invalid_loss_hook.py
    "2023-01-01 12:00:00,000 - mmdet - INFO - loss become infinite or NaN!",
]


def _fires(rule: Rule, line: str) -> list:
    return rule.on_event(Text(1, 1.0, line))


@pytest.mark.parametrize("line", OOM_SOURCES)
def test_oom_wordings_at_their_source(line: str) -> None:
    got = _fires(OomRule(), line)
    assert len(got) == 1 and got[0].severity == Severity.ERROR, line
    assert [a.rule for a in scan(line + "\n")].count("oom") == 1, line


@pytest.mark.parametrize("line", STALL_SOURCES)
def test_stall_wordings_at_their_source(line: str) -> None:
    got = _fires(StallRule(), line)
    assert len(got) == 1 and got[0].severity == Severity.ERROR, line
    assert [a.rule for a in scan(line + "\n")].count("stall") == 1, line


@pytest.mark.parametrize("line", NAN_SOURCES)
def test_nan_wordings_at_their_source(line: str) -> None:
    got = _fires(NanRule(), line)
    assert len(got) == 1 and got[0].severity == Severity.ERROR, line
    assert [a.rule for a in scan(line + "\n")].count("nan") == 1, line


def test_runs_that_say_they_met_a_non_finite_value() -> None:
    """Trainers' own reports, in the structures they share (subject + verb + non-finite)."""
    lines = [
        "[Step 120] Student gradients are NaN/Inf (norm=nan). Skipping step.",
        "Encountered NaN loss at step 340, stopping",
        "WARNING: non-finite loss detected at iter 120, skipping batch",
        "Detected non-finite gradients, skipping update",
        # a check that found one is an event, not advice
        "Sanity check failed: loss is nan at step 20",
    ]
    for line in lines:
        assert len(_fires(NanRule(), line)) == 1, line


HEALTHY = [
    # config echoes and settings that name the failures
    "  --oom_retry 3 --nan_to_num true --skip_nan_loss",
    "Namespace(oom_retry=3, timeout=1800, ddp_timeout=7200, nan_inf_filter=True)",
    "skip_nan: true",
    "logging_nan_inf_filter=True,",
    "  timeout: 1800",
    "NCCL_IB_TIMEOUT=22",
    "HOROVOD_STALL_CHECK_TIME_SECONDS=60",
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
    "rdzv_configs: {'timeout': 900, 'join_timeout': 600}",
    "x = torch.nan_to_num(x, nan=0.0, posinf=1e4)",
    # checks that passed, and sizes that are only reported
    "Checking for NaN in gradients: no NaN found",
    "nan check passed: no NaN or Inf found in 1024 tensors",
    "Found 0 NaN values in the dataset",
    "Max memory allocated: 12.3 GiB, reserved 14.0 GiB",
    "llm_load_tensors:      CUDA0 buffer size =  8137.64 MiB",
    "INFO 07-12 gpu_worker.py:231] Available KV cache memory: 20.11 GiB",
    # TF's allocator retrying: tensorflow/core/common_runtime/bfc_allocator.cc says so itself
    "W bfc_allocator.cc:245] Allocator (GPU_0_bfc) ran out of memory trying to allocate 2.20GiB "
    "with freed_by_count=0. The caller indicates that this is not a failure, but may mean that "
    "there could be performance gains if more memory were available.",
    # advice and docs
    "Tip: use gradient checkpointing to avoid running out of memory when allocating activations",
    "To avoid NaN loss, train in bf16 instead of fp16.",
    "check whether gradients are non-finite before the optimizer step",
    "This results in the risk of OOM killers terminating the process.",
    "events can be used to detect if the process is stuck in a cleanup",
    "The socket timeout logic is set up on connection, so changing this value only",
    # HTTP clients' timeouts (downloads, wandb) are not collective hangs
    "wandb: Network error (ReadTimeout), entering retry loop.",
    "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='huggingface.co', port=443): "
    "Read timed out. (read timeout=10)",
    "socket.timeout: The read operation timed out",
    # numpy's warning about a metric, not the loss
    "numpy/core/_methods.py:233: RuntimeWarning: invalid value encountered in divide",
]


def test_healthy_lines_with_the_same_words_do_not_fire() -> None:
    found = [
        (a.rule, line)
        for line in HEALTHY
        for a in scan(line + "\n")
        if a.rule in ("oom", "stall", "nan")
    ]
    assert found == []

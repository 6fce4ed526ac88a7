"""Where the sweep queue places members: GPUs by free memory against the estimate (through a
fake NVML, which this machine lacks), the CPU by --max-parallel."""

from __future__ import annotations

from supervisor.sweep.queue import GB, CpuCapacity, GpuCapacity, visible_devices


class FakeNvml:
    """The NVML seam: per device (used bytes, total bytes)."""

    def __init__(self, devices: dict[int, tuple[float, float]]) -> None:
        self.devices = devices  # GB

    def memory(self) -> dict[int, tuple[int, int]]:
        return {i: (int(u * GB), int(t * GB)) for i, (u, t) in self.devices.items()}


def test_member_goes_to_a_device_whose_free_memory_fits_it() -> None:
    gpu = FakeNvml({0: (70.0, 80.0), 1: (10.0, 80.0)})
    placed = GpuCapacity(gpu).take(30.0)
    assert placed is not None
    assert placed.env == {"CUDA_VISIBLE_DEVICES": "1"}


def test_memory_held_for_started_members_is_not_given_twice() -> None:
    """Two 50 GB members on one empty 80 GB card: the second waits, even though NVML still
    shows the card empty (the first has not allocated yet); it starts once the first ends."""
    cap = GpuCapacity(FakeNvml({0: (0.0, 80.0)}))
    first = cap.take(50.0)
    assert first is not None
    assert cap.take(50.0) is None
    cap.give(first)
    assert cap.take(50.0) is not None


def test_member_larger_than_every_device_is_refused_with_the_estimate() -> None:
    cap = GpuCapacity(FakeNvml({0: (0.0, 24.0), 1: (0.0, 40.0)}))
    why = cap.never_fits(61.3)
    assert why == "the memory estimate is 61.3 GB and the largest GPU has 40.0 GB"
    assert cap.never_fits(30.0) == ""  # fits the 40 GB card once it is free


def test_max_parallel_caps_gpu_members_too() -> None:
    cap = GpuCapacity(FakeNvml({0: (0.0, 80.0)}), max_parallel=1)
    assert cap.take(1.0) is not None
    assert cap.take(1.0) is None


def test_cpu_runs_max_parallel_members_at_a_time() -> None:
    cap = CpuCapacity(2)
    a, b = cap.take(None), cap.take(None)
    assert a is not None and b is not None
    assert cap.take(None) is None
    cap.give(a)
    assert cap.take(None) is not None


def test_a_member_without_an_estimate_gets_a_device_of_its_own() -> None:
    """Unknown size: one such member per device (held whole), not all of them on one card."""
    cap = GpuCapacity(FakeNvml({0: (1.0, 80.0), 1: (2.0, 80.0)}))
    first, second = cap.take(None), cap.take(None)
    assert first is not None and second is not None
    assert {first.env["CUDA_VISIBLE_DEVICES"], second.env["CUDA_VISIBLE_DEVICES"]} == {"0", "1"}
    assert cap.take(None) is None and cap.take(1.0) is None  # both cards are taken whole
    cap.give(first)
    assert cap.take(None) is not None


def test_ftmons_own_cuda_visible_devices_limits_the_cards() -> None:
    """`CUDA_VISIBLE_DEVICES=1 ftmon sweep ...`: members never land on card 0, even when free."""
    cap = GpuCapacity(FakeNvml({0: (0.0, 80.0), 1: (40.0, 80.0)}), allowed=visible_devices("1"))
    placed = cap.take(10.0)
    assert placed is not None and placed.env == {"CUDA_VISIBLE_DEVICES": "1"}
    assert visible_devices(None) is None and visible_devices("GPU-8f2a,GPU-1b3c") is None
    assert visible_devices("0, 2") == {0, 2}


def test_a_member_adopted_by_a_resume_holds_its_slot_and_its_memory() -> None:
    """`ftmon sweep --resume`: a member still running holds a CPU slot, or on its GPU what its
    estimate says it may still allocate (a device of its own without an estimate)."""
    cpu = CpuCapacity(1)
    cpu.hold(None, None)
    assert cpu.take(None) is None
    gpu = GpuCapacity(FakeNvml({0: (0.0, 80.0), 1: (0.0, 80.0)}))
    held = gpu.hold(50.0, 1)
    assert held.device == 1 and held.held_gb == 50.0
    placed = gpu.take(50.0)  # not on card 1: 50 of its 80 GB are the adopted member's
    assert placed is not None and placed.device == 0
    gpu.give(placed)
    gpu.hold(None, 0)  # no estimate: card 0 is its own
    assert gpu.take(40.0) is None
    gpu.give(held)
    assert gpu.take(40.0) is not None

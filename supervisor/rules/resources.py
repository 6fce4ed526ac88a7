"""`vram` and `host_mem`: memory of the watched process tree over a limit for a time.

Both read `ResourceSample`s (resources.py takes them every `vram.poll_secs`). A limit is
breached when the value stays over it for `over_secs` (0: the first sample over it counts);
one report per breach, the next one only after the value went back under the limit.

`vram` reads the tree's own GPU memory (`proc_gpu_gb`) when NVML can tell, otherwise the most
used device; the limit is `limit_gb`, or `limit_frac` of the device's total when no limit is
set. Without GPU data (no NVIDIA GPU, no NVML) it says so once, at INFO, and stays quiet.
`host_mem` reads the tree's resident memory against `limit_gb` (off unless set) and the
machine's available memory against `min_available_gb`.
"""

from __future__ import annotations

from pydantic import Field

from supervisor.events import Anomaly, ResourceSample, Severity
from supervisor.rules.base import Rule, RuleSettings


class _Breach:
    """Tracks one over-the-limit condition: since when, and whether it was reported."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.reported = False

    def update(self, over: bool, ts: float, over_secs: float) -> bool:
        """True exactly once per breach, when it has lasted `over_secs`."""
        if not over:
            self.since = None
            self.reported = False
            return False
        if self.since is None:
            self.since = ts
        if not self.reported and ts - self.since >= over_secs:
            self.reported = True
            return True
        return False


class VramSettings(RuleSettings):
    limit_gb: float | None = Field(
        None, gt=0, description="GPU memory (GB) the run may use; None: limit_frac of the device."
    )
    limit_frac: float = Field(
        0.95, gt=0, le=1, description="With no limit_gb: this fraction of the device's memory."
    )
    over_secs: float = Field(5.0, ge=0, description="How long over the limit before reporting.")
    poll_secs: float = Field(
        1.0, ge=0.05, description="How often resource samples are taken (seconds, down to 0.05)."
    )


class VramRule(Rule):
    name = "vram"
    Settings = VramSettings

    def __init__(self, settings: VramSettings | None = None) -> None:
        super().__init__(settings)
        self.settings: VramSettings
        self._said_off = False
        self._breach = _Breach()

    def on_resource(self, sample: ResourceSample) -> list[Anomaly]:
        s = self.settings
        if sample.proc_gpu_gb is None and not sample.gpu_used_gb:
            if self._said_off:
                return []
            self._said_off = True
            return [self.anomaly(Severity.INFO, "vram rule off: no NVIDIA GPU", sample.ts)]
        if sample.proc_gpu_gb is not None:
            used, what = sample.proc_gpu_gb, "the run's GPU memory"
        else:
            assert sample.gpu_used_gb
            device = max(sample.gpu_used_gb, key=lambda d: sample.gpu_used_gb[d])  # type: ignore[index]
            used, what = sample.gpu_used_gb[device], f"GPU {device} memory in use"
        limit = s.limit_gb
        if limit is None:
            if not sample.gpu_total_gb:
                return []
            limit = s.limit_frac * max(sample.gpu_total_gb.values())
        if not self._breach.update(used > limit, sample.ts, s.over_secs):
            return []
        held = f" for {s.over_secs:g} s" if s.over_secs else ""
        return [
            self.anomaly(
                Severity.ERROR,
                f"{what} {used:.1f} GB over the {limit:.1f} GB limit{held}",
                sample.ts,
            )
        ]


class HostMemSettings(RuleSettings):
    limit_gb: float | None = Field(
        None, gt=0, description="Resident memory (GB) of the run's process tree; None: off."
    )
    min_available_gb: float = Field(
        1.0, ge=0, description="The machine's available memory (GB) should not fall under this."
    )
    over_secs: float = Field(5.0, ge=0, description="How long over the limit before reporting.")


class HostMemRule(Rule):
    name = "host_mem"
    Settings = HostMemSettings

    def __init__(self, settings: HostMemSettings | None = None) -> None:
        super().__init__(settings)
        self.settings: HostMemSettings
        self._rss = _Breach()
        self._avail = _Breach()

    def on_resource(self, sample: ResourceSample) -> list[Anomaly]:
        s = self.settings
        out: list[Anomaly] = []
        over = s.limit_gb is not None and sample.host_rss_gb > s.limit_gb
        if self._rss.update(over, sample.ts, s.over_secs):
            out.append(
                self.anomaly(
                    Severity.ERROR,
                    f"host memory of the run {sample.host_rss_gb:.1f} GB over the "
                    f"{s.limit_gb:g} GB limit ({sample.nprocs} processes)",
                    sample.ts,
                )
            )
        low = sample.host_available_gb < s.min_available_gb
        if self._avail.update(low, sample.ts, s.over_secs):
            out.append(
                self.anomaly(
                    Severity.WARNING,
                    f"host memory nearly exhausted: {sample.host_available_gb:.2f} GB available "
                    f"(run uses {sample.host_rss_gb:.1f} GB)",
                    sample.ts,
                )
            )
        return out

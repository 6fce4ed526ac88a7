"""Resource gauges of the selected run: VRAM per GPU and the run's own, host memory, CPU.

Drawn from the newest `ResourceSample` only; no probing here (widgets never call the OS).
Where there is no NVIDIA GPU the VRAM lines say so once instead of showing zeros.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from supervisor.events import ResourceSample

BAR = 10


def bar(used: float, total: float) -> Text:
    """A fixed-width bar, green below 80 %, yellow below 95 %, red above."""
    frac = 0.0 if total <= 0 else max(0.0, min(1.0, used / total))
    full = round(frac * BAR)
    colour = "green" if frac < 0.8 else "yellow" if frac < 0.95 else "red"
    out = Text("█" * full, style=colour)
    out.append("░" * (BAR - full), style="dim")
    return out


def gauge_text(sample: ResourceSample | None, ended: bool = False) -> Text:
    """The gauges as text (one line each); `ended`: the run is over, the figures are its last."""
    if sample is None:
        return Text("no resource samples yet", style="dim")
    if ended:
        last = gauge_text(sample)
        last.stylize("dim")
        return Text("\n").join([Text("run ended; its last sample:", style="dim italic"), last])
    lines: list[Text] = []
    if sample.gpu_used_gb:
        totals = sample.gpu_total_gb or {}
        for dev in sorted(sample.gpu_used_gb):
            used, total = sample.gpu_used_gb[dev], totals.get(dev, 0.0)
            line = Text(f"GPU{dev} ")
            line.append_text(bar(used, total))
            line.append(f" {used:5.1f}/{total:.0f}G")
            lines.append(line)
        if sample.proc_gpu_gb is not None:
            lines.append(Text(f"run VRAM {sample.proc_gpu_gb:6.1f} GB ({sample.nprocs} procs)"))
    else:
        lines.append(Text("VRAM: no NVIDIA GPU seen", style="dim"))
    total_host = sample.host_rss_gb + sample.host_available_gb
    # The run's resident memory against what it could still take (its own + what is free).
    host = Text("RAM  ")
    host.append_text(bar(sample.host_rss_gb, total_host))
    host.append(f" {sample.host_rss_gb:4.1f}G, {sample.host_available_gb:.0f}G free")
    lines.append(host)
    cpu = Text("CPU  ")
    cpu.append_text(bar(sample.cpu_percent, 100.0 * max(1, sample.nprocs)))
    cpu.append(f" {sample.cpu_percent:5.0f} %")
    lines.append(cpu)
    return Text("\n").join(lines)


class Gauges(Static):
    """The gauges of one run."""

    DEFAULT_CSS = """
    Gauges { height: auto; padding: 0 1; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(gauge_text(None), id=id)
        self.sample: ResourceSample | None = None

    def show(self, sample: ResourceSample | None, ended: bool = False) -> None:
        self.sample = sample
        self.update(gauge_text(sample, ended))

"""`stall`: the run stopped making progress.

Three signs. No new line for `secs` seconds, and no new training step for `step_secs` seconds
once the log has shown one (both checked on `on_tick`, with the time the caller passes in; the
clock starts at the first tick or line). And text that says a collective hung: PyTorch's NCCL
watchdog ("Watchdog caught collective operation timeout", "Timeout at NCCL work", "Some NCCL
operations have failed or timed out", "watchdog thread terminated", "timed out in blocking
wait"), the heartbeat monitor ("watchdog got stuck", "Heartbeat monitor timed out", missing or
uneven heartbeats), Horovod's stall inspector ("One or more tensors were submitted to be reduced
... waiting for remainder of ranks"), rendezvous and store timeouts (`RendezvousTimeoutError`,
`DistNetworkError`/`DistStoreError`, TCPStore and c10d "socket has timed out", "Socket
Timeout"), Gloo ("Timed out waiting 1800000ms for recv", "Connect timeout", monitoredBarrier),
the c10d store's own timeouts (waiting for clients, for a key, the store-based barrier, TCP
client connect), ProcessGroupNCCL's "dump signal due to a collective timeout", its "failure
detected by watchdog", NCCL's socket transport ("NCCL WARN ... timed out"), c10d's "waitForInput
... timed out", Horovod's "[missing ranks: 1]" op lines, the store-based barrier's wait line
said `barrier_waits` times for one rank, Ascend HCCL's "Notify register times out", XLA/JAX
coordination heartbeats, elastic keep-alive heartbeats, distributed timeouts, "training is
stuck": those count at once. Not: settings, prose ("if the process is stuck") and HTTP clients'
timeouts (downloads, wandb), which are no collective hang.

Time between ticks longer than `pause_gap_secs` is not silence: nobody was watching (a paused
run, a suspended ftmon), and a run resumed after ten minutes must not look stalled.

De-duplication: one report per silence (a new line or step ends it); watchdog text from every
rank gives one report, then `quiet_lines` lines of quiet.
"""

from __future__ import annotations

import re

from pydantic import Field

from supervisor.events import Anomaly, Event, Metric, Progress, Severity, Text, show_step
from supervisor.rules.base import LineCooldown, Rule, RuleSettings, clip

# What PyTorch / NCCL print when a collective hangs; not the start-up lines that merely mention
# a timeout ("ProcessGroupNCCL initialization options: ... TIMEOUT(ms): 1800000").
_PATTERNS = re.compile(
    # (ProcessGroupNCCL.cpp; a pasted line is often cut inside its last word, so the words up to
    # "collective" are enough: the watchdog catches nothing else by that name)
    r"Watchdog caught collective\b"
    r"|Timeout at NCCL work"
    r"|timeout\) detected by watchdog"
    # ProcessGroupNCCL's watchdog on the rank that timed out, before its "Watchdog caught ..."
    # line: "[PG ID 1 PG GUID 1 Rank 7]  failure detected by watchdog at work sequence id: ...".
    r"|failure detected by watchdog"
    # Ascend's HCCL (CANN error EI0002): "The wait execution of the Notify register times out.
    # Reason: The Notify register has not received the Notify record from remote rank".
    r"|Notify register times out"
    # ... and CANN's EE1002 (Execution_Error_Stream_Synchronize_Timeout): "Stream synchronize
    # timeout. %s" (torch_npu: "EE1002: ... Stream synchronize timeout. rtDeviceSynchronize
    # execute failed, reason=[stream sync timeout]"): a device stream did not finish in time;
    # not ACL's setting echo ("stream synchronize timeout = 3000ms").
    r"|(?-i:Stream synchronize timeout)(?!\s*[=:])"
    # NCCL's socket transport, when a peer stopped answering mid-collective: "NCCL WARN Net :
    # Call to recv from 10.0.0.1<41468> failed : Connection timed out".
    r"|NCCL WARN\b.{0,200}\btimed out"
    r"|watchdog got stuck"
    r"|NCCL operations have failed or timed out"
    r"|Heartbeat monitor timed out"
    r"|watchdog thread terminated"
    r"|timed out in blocking wait"
    # ProcessGroupNCCL's flight recorder, on every rank once one rank's collective timed out:
    # "Received a dump signal due to a collective timeout from this local rank", "Terminating
    # the process after attempting to dump debug info, due to collective timeout or exception".
    r"|due to (?:a )?collective timeout"
    r"|heartbeats?\b.{0,40}\b(?:timed out|missing|missed|uneven|unhealthy|lost)\b"
    r"|(?:missing|missed|uneven|no)\s+heartbeats?\b"
    # XLA/JAX coordination service (tsl coordination_service.cc): "Task /job:jax_worker/
    # replica:0/task:1 heartbeat timeout. This indicates that the remote task has failed, ...",
    # "The following tasks are unhealthy (stopped sending heartbeats)".
    r"|\btask\s+\S+\s+heartbeat timeout\b|stopped sending heartbeats"
    # torch elastic's dynamic rendezvous: "The node '...' has failed to send a keep-alive
    # heartbeat to the rendezvous", "... removed from the rendezvous ... since they had no
    # heartbeat".
    r"|failed to send a keep-alive heartbeat|since they had no heartbeat"
    # Horovod's stall inspector (horovod/common/stall_inspector.cc): the warning, its
    # "Stalled ranks:" list and the shutdown notice "One or more rank (marked by "!") is stalled
    # for longer than 60 seconds. Will shutdown."
    r"|tensors were submitted to be (?:reduced|gathered|broadcast)"
    r"|waiting for (?:the )?remainder of ranks"
    r"|^\W*(?:\[[^\]]*\]<std\w+>:)?\s*Stalled (?:ranks|ops):"
    # ... and its per-tensor lines, "HorovodAllreduce_grads_0 [missing ranks: 1, 3]" (older
    # Horovod, operations.cc), which come before the warning when a stall is reported again.
    r"|\[missing ranks: \d+(?:, \d+)*\]"
    r"|\bis stalled for longer than\b"
    r"|Rendezvous\w*Timeout"
    r"|Dist(?:Network|Store)Error\b.{0,200}\b(?:timed out|timeout)\b"
    r"|\bsocket\b.{0,40}\b(?:has )?timed out"
    # c10d's socket.cpp when a peer stops sending mid-collective or mid-rendezvous: "[c10d]
    # waitForInput: socket SocketImpl(fd=58, addr=[localhost]:42412, remote=...) timed out
    # after 300000ms" (the socket's address pushes "timed out" past the reach above).
    r"|\bwaitForInput\b.{0,200}\btimed out"
    r"|TCPStore\b.{0,120}\b(?:timed out|timeout)\b"
    # The c10d store and its clients (TCPStore.cpp, socket.cpp, FileStore.cpp,
    # distributed_c10d.py): "Timed out after 901 seconds waiting for clients. 2/4 clients
    # joined.", "TCP client failed to connect/validate to host h:29500 - timed out (try=3,
    # timeout=600000ms)", "Timeout waiting for key: ...", "Timed out initializing process group
    # in store based barrier on rank 3".
    r"|Timed out after \d+ seconds waiting for clients"
    r"|TCP client failed to connect.{0,120}\btimed out"
    r"|Timeout waiting for key\b"
    r"|Timed out initializing process group"
    # torch elastic's store utilities (elastic/utils/store.py, elastic/utils/distributed.py,
    # elastic/rendezvous/etcd_store.py): "Timed out waiting on barrier on rank 2, for key prefix
    # ...", "timed out waiting for all 8 members to join", "Timeout while waiting for keys in
    # EtcdStore"; and a DataLoader whose workers stopped delivering (utils/data/dataloader.py):
    # "DataLoader timed out after 300 seconds".
    r"|Timed out waiting (?:on|for) (?:the )?barrier|timed out waiting for all \d+ members"
    r"|Timeout while waiting for keys|DataLoader timed out after"
    # Gloo, and its monitored barrier (ProcessGroupGloo.cpp): "Timed out waiting 1800000ms for
    # recv operation", "[Rank 0]: Rank 1 failed to pass monitoredBarrier in 5000 ms".
    r"|Timed out waiting \d+\s*ms for \w+ operation"
    r"|failed to pass monitoredBarrier|timed out in monitoredBarrier"
    r"|\bgloo\b.{0,120}\b(?:Connect timeout|timed out)\b|pair\.cc:\d+\] Connect timeout"
    r"|\b(?:collective|allreduce|all_reduce|all_gather|reduce_scatter|barrier|broadcast)\b"
    r".{0,80}\btimed out"
    r"|DistBackendError.{0,200}\b(?:timed out|timeout)\b"
    r"|\b(?:training|rank \d+|process(?:es)?|job)\s+(?:appears?\s+to\s+be|seems(?:\s+to\s+be)?"
    r"|is|was|has\s+been)\s+(?:stalled|stuck|hung|hanging)\b",
    re.I,
)
# Spelled exactly as c10d's TCPStore throws it (`DistStoreError: Socket Timeout`); in any case
# the words are a socket option ("socket timeout in milliseconds").
_EXACT = re.compile(r"\bSocket Timeout\b")
# An HTTP client's timeout (model download, wandb, an API) is not a collective hang, even when it
# says "socket" ("socket.timeout: The read operation timed out").
_NETWORK_IO = re.compile(
    r"https?://|HTTPS?Connection|urllib3|requests\.exceptions|ReadTimeout|ConnectTimeout"
    r"|Read timed out|read operation timed out|\bwandb\b|huggingface\.co",
)
# torch.distributed's store-based barrier (distributed_c10d.py `_store_based_barrier`) says this
# every 10 s while a rank waits for the others to join: "Waiting in store based barrier to
# initialize process group for rank: 0, key: store_based_barrier_key:1 (world_size=4,
# worker_count=8, timeout=0:30:00)". Once is start-up; said again and again, the group never forms.
_BARRIER_WAIT = re.compile(r"Waiting in store based barrier\b.{0,80}?\brank:?\s*(\d+)", re.I)
# Prose about a hang is not one ("to detect if the process is stuck", "unless a rank is hung").
_PROSE = re.compile(r"\b(?:if|whether|unless|avoid|prevent|detect)\b", re.I)
_PROSE_REACH = 60


def hang_text(text: str) -> bool:
    """Whether a log line says a distributed job hung (not a setting, advice or HTTP timeout)."""
    m = _PATTERNS.search(text) or _EXACT.search(text)
    if m is None or _NETWORK_IO.search(text):
        return False
    return _PROSE.search(text, max(0, m.start() - _PROSE_REACH), m.start()) is None


class StallSettings(RuleSettings):
    secs: float = Field(900.0, gt=0, description="No new line for this long is a stall.")
    step_secs: float | None = Field(
        1800.0,
        gt=0,
        description="No new training step for this long, once a step was seen (None: off).",
    )
    quiet_lines: int = Field(
        200, ge=0, description="After a watchdog report, lines during which more are not news."
    )
    barrier_waits: int = Field(
        3,
        ge=2,
        description="The store-based barrier's wait line (said every 10 s) this many times for "
        "one rank is a hang.",
    )
    pause_gap_secs: float = Field(
        60.0,
        gt=0,
        description="A gap this long between ticks means nobody was watching (the run paused, "
        "ftmon suspended): that time does not count as silence.",
    )


class StallRule(Rule):
    name = "stall"
    Settings = StallSettings
    handles = (Metric, Progress, Text)
    text_gate = (
        "timeout",
        "timed out",
        "times out",
        "stall",
        "stuck",
        "hung",
        "hang",
        "heartbeat",
        "watchdog",
        "tensors were submitted",
        "monitoredbarrier",
        "missing ranks",
        "store based barrier",
    )

    def __init__(self, settings: StallSettings | None = None) -> None:
        super().__init__(settings)
        self.settings: StallSettings
        self._last_line_ts: float | None = None
        self._last_lineno = 0
        self._last_step: int | None = None
        self._last_step_ts: float | None = None
        self._silent_reported = False
        self._stepless_reported = False
        self._quiet = LineCooldown(self.settings.quiet_lines)
        self._last_tick: float | None = None
        self._barrier_waits: dict[str, int] = {}

    def on_event(self, event: Event) -> list[Anomaly]:
        if isinstance(event, Text):
            low = event.text.lower()
            if not any(g in low for g in self.text_gate):
                return []
            if not hang_text(event.text) and not self._barrier_hung(event.text):
                return []
            if not self._quiet.ready(event.lineno):
                return []
            self._quiet.fire(event.lineno)
            return [
                self.anomaly(
                    Severity.ERROR,
                    f"distributed job hung: {clip(event.text.strip(), 160)}",
                    event.ts,
                    event.lineno,
                    (clip(event.text),),
                )
            ]
        step = event.step if isinstance(event, Metric) else event.current  # type: ignore[union-attr]
        if step is not None and step != self._last_step:
            self._last_step = step
            self._last_step_ts = event.ts
            self._stepless_reported = False
        return []

    def _barrier_hung(self, text: str) -> bool:
        """The store-based barrier's wait line, said `barrier_waits` times for one rank."""
        m = _BARRIER_WAIT.search(text)
        if m is None:
            return False
        waits = self._barrier_waits.get(m.group(1), 0) + 1
        self._barrier_waits[m.group(1)] = waits
        return waits == self.settings.barrier_waits

    def on_lines(self, lineno: int, ts: float) -> list[Anomaly]:
        self._last_line_ts = ts
        self._last_lineno = lineno
        self._silent_reported = False
        if self._last_step_ts is None:
            self._last_step_ts = ts  # the step clock starts with the first line
        return []

    def on_resume(self, ts: float) -> None:
        # A stopped run writes nothing: its silence (and the wait for its next step) counts
        # from the moment it was continued, not from its last line before the stop.
        self._last_tick = ts
        self._last_line_ts = ts
        self._silent_reported = False
        if self._last_step_ts is not None:
            self._last_step_ts = ts
            self._stepless_reported = False

    def on_tick(self, ts: float) -> list[Anomaly]:
        s = self.settings
        last_tick, self._last_tick = self._last_tick, ts
        if last_tick is not None and ts - last_tick > s.pause_gap_secs:
            # Watchers tick every second or so; a long gap is time nobody watched (the
            # supervisor skips ticks while a run is paused). Silence before the gap still
            # counts, the gap does not: a run resumed after ten minutes is not stalled.
            gap = ts - last_tick
            if self._last_line_ts is not None and self._last_line_ts < last_tick:
                self._last_line_ts += gap
            if self._last_step_ts is not None and self._last_step_ts < last_tick:
                self._last_step_ts += gap
        if self._last_line_ts is None:
            self._last_line_ts = ts  # nothing yet: the silence starts now
        if self._last_step_ts is None:
            self._last_step_ts = ts
        out: list[Anomaly] = []
        quiet_for = ts - self._last_line_ts
        if quiet_for >= s.secs and not self._silent_reported:
            self._silent_reported = True
            after = f" after line {self._last_lineno}" if self._last_lineno else ""
            out.append(
                self.anomaly(Severity.WARNING, f"no new line for {quiet_for:.0f} s{after}", ts)
            )
        # Only once the log has shown a step: a log without steps cannot say it stopped stepping.
        if s.step_secs is not None and self._last_step is not None and not self._stepless_reported:
            stepless = ts - self._last_step_ts
            if stepless >= s.step_secs:
                self._stepless_reported = True
                at = f" (last step {show_step(self._last_step)})"
                out.append(
                    self.anomaly(
                        Severity.WARNING, f"no new training step for {stepless:.0f} s{at}", ts
                    )
                )
        return out

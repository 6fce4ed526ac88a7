"""The pure Monitor: parsed events and anomalies in line order, counters, ticks, exits.

Lines come from real files read by the real tailer; time is passed in, never read.
"""

from __future__ import annotations

import ast
import signal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.events import Anomaly, Eval, Exit, Metric, Progress, ResourceSample, Sample, Text
from supervisor.monitoring.monitor import Monitor
from supervisor.reading.tail import LineSplitter, Tail
from supervisor.rules import WatchSettings

LOG = """\
{"type": "metric", "step": 1, "loss": 2.5, "grad_norm": 1.0, "lr": 2e-05}
 10%|█         | 10/100 [00:10<01:30,  1.00it/s]
{"type": "metric", "step": 2, "loss": nan, "grad_norm": 1.1, "lr": 2e-05}
plain chatter that nobody parses
{"type": "sample", "step": 2, "prompt": "who are you?", "text": "F F F F F F F F F F F F F F"}
{"type": "eval", "step": 2, "val_loss": 2.7, "accuracy": 0.41}
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 7.46 GiB. GPU 0 has 44 GiB
"""


def read_file(path: Path) -> list:
    tail = Tail(path)
    try:
        return tail.read() + tail.flush_partial()
    finally:
        tail.close()


def test_feed_lines_returns_metrics_evals_samples_and_anomalies_in_line_order(
    tmp_path: Path,
) -> None:
    """Events come back in line order, each anomaly right after the event that caused it."""
    path = tmp_path / "train.log"
    path.write_text(LOG, encoding="utf-8")
    events = Monitor().feed_lines(read_file(path), ts=50.0)
    shape = [(type(e).__name__, e.lineno) for e in events]
    assert shape == [
        ("Metric", 1),
        ("Metric", 3),
        ("Anomaly", 3),
        ("Sample", 5),
        ("Anomaly", 5),
        ("Eval", 6),
        ("Anomaly", 7),
    ]
    assert [e.rule for e in events if isinstance(e, Anomaly)] == ["nan", "repetition", "oom"]
    assert not any(isinstance(e, (Text, Progress)) for e in events)
    assert all(e.ts == 50.0 for e in events)


def test_counters_and_last_values(tmp_path: Path) -> None:
    """The monitor counts lines, metrics, evals, samples and anomalies, and keeps the last step."""
    path = tmp_path / "train.log"
    path.write_text(LOG, encoding="utf-8")
    m = Monitor()
    m.feed_lines(read_file(path), ts=50.0)
    assert (m.lines, m.metrics, m.evals, m.samples) == (7, 2, 1, 1)
    assert m.last_step == 2 and m.last_lineno == 7 and m.last_line_ts == 50.0
    assert m.last_values["val_loss"] == 2.7 and m.last_values["grad_norm"] == 1.1
    assert dict(m.anomalies) == {"nan": 1, "repetition": 1, "oom": 1}


def test_anomalies_without_evidence_get_the_lines_that_show_them() -> None:
    """A metric-based anomaly carries the log line it came from (and the ones before it)."""
    splitter = LineSplitter()
    lines = splitter.feed(b"step 1 | loss: 2.0\nstep 2 | loss: 1.9\nstep 3 | loss: nan\n")
    (a,) = [e for e in Monitor().feed_lines(lines, 1.0) if isinstance(e, Anomaly)]
    assert a.evidence == ("step 1 | loss: 2.0", "step 2 | loss: 1.9", "step 3 | loss: nan")


def test_chunks_give_the_same_result_as_one_batch(tmp_path: Path) -> None:
    """Feeding a file line by line or all at once gives the same events (state carries over)."""
    path = tmp_path / "train.log"
    path.write_text(LOG * 3, encoding="utf-8")
    lines = read_file(path)
    whole = Monitor().feed_lines(lines, 5.0)
    m = Monitor()
    pieces = [e for line in lines for e in m.feed_lines([line], 5.0)]
    assert pieces == whole


def test_same_input_same_output() -> None:
    """The monitor is pure: two monitors fed the same lines and times agree exactly."""
    splitter = LineSplitter()
    lines = splitter.feed(LOG.encode())

    def run() -> list:
        m = Monitor(WatchSettings.model_validate({"stall": {"secs": 30}}))
        return m.feed_lines(lines, 10.0) + m.tick(20.0) + m.tick(45.0)

    first, second = run(), run()
    assert first == second and first[-1].rule == "stall"


def test_user_patterns_reach_the_parser() -> None:
    """A `--pattern` regex with named groups turns a custom line into a metric that rules read."""
    m = Monitor(patterns=[r"^E(?P<step>\d+) L=(?P<loss>\S+)$"])
    splitter = LineSplitter()
    events = m.feed_lines(splitter.feed(b"E1 L=2.5\nE2 L=nan\n"), 1.0)
    metrics = [e for e in events if isinstance(e, Metric)]
    assert [x.step for x in metrics] == [1, 2] and metrics[0].values["loss"] == 2.5
    assert [e.rule for e in events if isinstance(e, Anomaly)] == ["nan"]


def test_resource_and_exit_reach_every_rule() -> None:
    """Resource samples and the exit go to the rules: vram says it is off, exit names the signal."""
    m = Monitor()
    sample = ResourceSample(1.0, 4242, host_rss_gb=1.0, host_available_gb=10.0, cpu_percent=5.0)
    assert [a.message for a in m.feed_resource(sample)] == ["vram rule off: no NVIDIA GPU"]
    assert m.feed_resource(sample) == []
    found = m.feed_exit(Exit(2.0, returncode=-9, signal=signal.SIGKILL))
    assert [a.rule for a in found] == ["exit"] and "SIGKILL" in found[0].message
    assert m.anomalies["exit"] == 1


def test_empty_batches_change_nothing() -> None:
    """Feeding no lines returns nothing and does not count as a new line for the stall rule."""
    m = Monitor(WatchSettings.model_validate({"stall": {"secs": 10}}))
    assert m.feed_lines([], 0.0) == []
    assert m.last_line_ts is None and m.tick(0.0) == []
    assert m.feed_lines([], 20.0) == [] and len(m.tick(20.0)) == 1


def test_monitor_and_rules_do_no_io_and_read_no_clock() -> None:
    """monitor.py and rules/ import nothing that reads files, clocks, processes or the network."""
    root = Path(__file__).resolve().parents[2] / "supervisor"
    banned = {
        "time",
        "os",
        "subprocess",
        "socket",
        "pathlib",
        "io",
        "datetime",
        "psutil",
        "asyncio",
    }
    files = [
        root / "monitoring" / "monitor.py",
        *sorted((root / "parsing").glob("*.py")),
        *sorted((root / "rules").glob("*.py")),
    ]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & banned, f"{path.name} imports {names & banned}"


def test_event_types_are_the_shared_ones() -> None:
    """What feed_lines returns is made of the shared event dataclasses only."""
    splitter = LineSplitter()
    events = Monitor().feed_lines(splitter.feed(LOG.encode()), 1.0)
    assert {type(e) for e in events} <= {Metric, Eval, Sample, Anomaly}


FRAGMENTS = [
    "loss: nan",
    "{'loss': 1e308, 'grad_norm': -inf}",
    '{"type": "sample", "text": "F F F F F F F F F F F F F F"}',
    '{"type": "eval", "val_loss": "x"}',
    "Traceback (most recent call last):",
    '  File "x.py", line 1',
    "setting loss scale to: 0",
    " 10%|█         | 10/100",
    "CUDA out of memory. Tried to allocate",
    "step -5 | loss: -3e-320",
    "\\item x",
    "神神神",
    "\r\r",
    "",
]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=60)),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
)
def test_any_lines_and_values_never_crash(pieces: list[str], numbers: list[float]) -> None:
    """Random mixes of log fragments, odd numbers and junk give events, never an exception."""
    m = Monitor()
    text = "\n".join(pieces + [f"step 3 | loss: {x!r}" for x in numbers]) + "\n"
    splitter = LineSplitter()
    events = m.feed_lines(splitter.feed(text.encode("utf-8", "surrogatepass")), 1.0)
    events += m.tick(2.0) + m.feed_exit(Exit(3.0, None))
    for e in events:
        if isinstance(e, Anomaly):
            assert e.rule and e.message and e.lineno >= 0

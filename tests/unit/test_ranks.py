"""Ranks followed apart: the parser keeps a line's rank, a rank that stops while the others go
on is a `hang` naming it, and each rank gets a 0-1 straggler score."""

from __future__ import annotations

import json

from supervisor.events import Anomaly, Exit, LogLine, Metric, Severity
from supervisor.monitoring.monitor import Monitor
from supervisor.monitoring.ranks import RankTracker
from supervisor.parsing.parser import Parser
from supervisor.rules import WatchSettings


def line(n: int, text: str) -> LogLine:
    return LogLine(n, 0, 0, text)


def metric_of(parser: Parser, n: int, text: str) -> Metric:
    (m,) = [e for e in parser.parse(line(n, text), 0.0) if isinstance(e, Metric)]
    return m


def test_the_parser_keeps_the_rank_of_a_prefixed_line() -> None:
    parser = Parser()
    m = metric_of(parser, 1, '[default1]:{"type": "metric", "step": 3, "loss": 2.5}')
    assert m.rank == 1 and m.step == 3 and m.values["loss"] == 2.5
    assert metric_of(parser, 2, "[rank12]:step: 4 loss: 1.5").rank == 12
    assert metric_of(parser, 3, '{"type": "metric", "step": 3, "loss": 2.5}').rank is None


def test_ranks_in_lockstep_are_not_hung_and_score_one() -> None:
    tracker = RankTracker(floor_secs=5)
    for step in range(1, 21):
        for rank in (0, 1, 2):
            tracker.observe(rank, step, step * 1.0 + rank * 0.01)
    assert tracker.hung(21.0) == []
    assert all(score > 0.95 for score in tracker.scores(21.0).values())


def test_a_rank_that_stops_while_the_others_go_on_is_named_after_the_threshold() -> None:
    """Rank 1 stops at step 10; ranks 0 and 2 print step 11 and wait. With 1 s steps the
    threshold is the 5 s floor (3 x p99 = 3 s is less): not at 4 s, named at 6 s."""
    tracker = RankTracker(floor_secs=5)
    for step in range(1, 11):
        for rank in (0, 1, 2):
            tracker.observe(rank, step, float(step))
    tracker.observe(0, 11, 11.0)
    tracker.observe(2, 11, 11.0)
    assert tracker.hung(14.0) == []
    (hang,) = tracker.hung(16.5)
    assert (hang.rank, hang.step, hang.others) == (1, 10, {0: 11, 2: 11})
    assert tracker.scores(16.5)[1] < tracker.scores(16.5)[0]


def test_the_threshold_is_three_times_the_runs_p99_step_interval() -> None:
    tracker = RankTracker(floor_secs=1)
    for step in range(1, 11):
        tracker.observe(0, step, step * 10.0)
        tracker.observe(1, step, step * 10.0)
    assert tracker.threshold() == 30.0
    tracker.observe(0, 11, 110.0)
    assert tracker.hung(129.0) == [] and tracker.hung(131.0)[0].rank == 1  # quiet since 100


def test_a_rank_at_half_speed_scores_about_one_half() -> None:
    tracker = RankTracker()
    for t in range(0, 41):
        tracker.observe(0, t, float(t))
        tracker.observe(1, t // 2, float(t))
    scores = tracker.scores(40.0)
    assert scores[0] == 1.0 and 0.45 <= scores[1] <= 0.55


def test_the_monitor_reports_a_hang_naming_the_rank_once() -> None:
    """Through the whole pipeline: torchrun-prefixed metric lines, ticks, one ERROR."""
    monitor = Monitor(WatchSettings.model_validate({"hang": {"floor_secs": 2}}))
    n = 0
    for step in range(1, 6):
        for rank in (0, 1):
            if rank == 1 and step == 5:
                continue  # rank 1 stops after step 4; rank 0 prints step 5 and waits
            n += 1
            record = {"type": "metric", "step": step, "loss": 1.0}
            monitor.feed_lines([line(n, f"[default{rank}]:{json.dumps(record)}")], float(step))
    assert [a for a in monitor.tick(6.0) if a.rule == "hang"] == []
    found: list[Anomaly] = [a for a in monitor.tick(7.5) if a.rule == "hang"]
    assert len(found) == 1 and found[0].severity == Severity.ERROR
    assert found[0].message.startswith("rank 1 hung") and "rank 0 at step 5" in found[0].message
    assert [a for a in monitor.tick(9.0) if a.rule == "hang"] == []


def test_a_rank_at_a_third_of_the_pace_is_a_straggler_once() -> None:
    """Rank 1 prints a step every 3 s while rank 0 prints one a second: one WARNING naming
    rank 1 with its score, not repeated while it stays slow."""
    monitor = Monitor()
    n = 0
    found: list[Anomaly] = []
    for t in range(1, 61):
        for rank, every in ((0, 1), (1, 3)):
            if t % every == 0:
                n += 1
                record = {"type": "metric", "step": t // every, "loss": 1.0, "rank": rank}
                monitor.feed_lines([line(n, json.dumps(record))], float(t))
        found += [a for a in monitor.tick(float(t) + 0.5) if a.rule == "straggler"]
    assert len(found) == 1 and found[0].severity == Severity.WARNING
    assert found[0].message.startswith("rank 1 straggles: straggler score 0.3")
    (end,) = [a for a in monitor.feed_exit(Exit(61.0, 0)) if a.rule == "straggler"]
    assert end.message.startswith("straggler scores at the end: rank 0 1.00, rank 1 0.3")


def test_ranks_stopped_together_are_one_hang_naming_none() -> None:
    """Lockstep ranks that all stop after step 10 (a stuck collective): one ERROR after the
    limit that says no rank is behind; none before it."""
    monitor = Monitor(WatchSettings.model_validate({"hang": {"floor_secs": 5}}))
    n = 0
    for step in range(1, 11):
        for rank in (0, 1):
            n += 1
            record = {"type": "metric", "step": step, "loss": 1.0, "rank": rank}
            monitor.feed_lines([line(n, json.dumps(record))], float(step))
    assert [a for a in monitor.tick(14.0) if a.rule == "hang"] == []
    found = [a for a in monitor.tick(15.5) if a.rule == "hang"]
    assert len(found) == 1 and found[0].message.startswith("all 2 ranks stopped after step 10")
    assert [a for a in monitor.tick(20.0) if a.rule == "hang"] == []


def test_ranks_tied_while_lines_still_arrive_are_not_stuck() -> None:
    """Rank 0 evaluating (printing lines) while rank 1 waits: no step, but not a hang."""
    monitor = Monitor(WatchSettings.model_validate({"hang": {"floor_secs": 5}}))
    n = 0
    for step in range(1, 11):
        for rank in (0, 1):
            n += 1
            record = {"type": "metric", "step": step, "loss": 1.0, "rank": rank}
            monitor.feed_lines([line(n, json.dumps(record))], float(step))
    for t in range(11, 30):
        n += 1
        monitor.feed_lines([line(n, f"[default0]:evaluating batch {t}")], float(t))
        assert [a for a in monitor.tick(t + 0.5) if a.rule == "hang"] == []

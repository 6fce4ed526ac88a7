"""The run state machine: the table's groups agree with each other and change_state refuses
what the table does not allow."""

from __future__ import annotations

import pytest

from supervisor.runs.state import (
    END_STATES,
    LIVE_STATES,
    TRANSITIONS,
    IllegalTransition,
    RunState,
    change_state,
    state_of,
)
from supervisor.store.history import History


def test_every_state_has_a_row_and_end_states_have_no_way_out() -> None:
    """The table covers every state; nothing leaves an end state; every live state can end."""
    assert set(TRANSITIONS) == set(RunState)
    for state in END_STATES:
        assert not TRANSITIONS[state]
    for state in LIVE_STATES:
        seen, todo = set(), [state]
        while todo:  # every live state reaches an end state
            s = todo.pop()
            seen.add(s)
            todo.extend(TRANSITIONS[s] - seen)
        assert seen & set(END_STATES), state


def test_change_state_returns_one_event_naming_the_move_and_its_cause() -> None:
    """A legal move gives the event the supervisor records and emits."""
    ev = change_state(
        "r1", RunState.RUNNING, RunState.KILLING, ts=5.0, cause="rule nan", rule="nan"
    )
    assert (ev.run_id, ev.ts, ev.old, ev.new, ev.cause, ev.rule) == (
        "r1", 5.0, "running", "killing", "rule nan", "nan",
    )  # fmt: skip
    first = change_state("r1", None, RunState.STARTING, ts=1.0, cause="launched")
    assert first.old == "" and first.new == "starting"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (RunState.FINISHED, RunState.RUNNING),
        (RunState.KILLING, RunState.RUNNING),  # a kill under way is not undone by a resume
        (RunState.PAUSED, RunState.PAUSING),
        (None, RunState.RUNNING),
        (RunState.STARTING, RunState.KILLED),
    ],
)
def test_change_state_refuses_a_move_the_table_does_not_allow(old, new) -> None:
    """An illegal move is a bug: it raises, naming the run and both states."""
    with pytest.raises(IllegalTransition, match="r9"):
        change_state("r9", old, new, ts=0.0, cause="x")


def test_history_lists_a_run_left_killing_or_relaunching_as_live(tmp_path) -> None:
    """A run left in `killing` or `relaunching` by a dead ftmon is live for `attach`; an ended
    one is not."""
    history = History(tmp_path / "ftmon.db")
    for i, status in enumerate(("killing", "relaunching", "paused", "finished", "killed")):
        history.add_run(run_id=f"r{i}", name="n", started_at=float(i), status=status)
    assert [r.status for r in history.live()] == ["killing", "relaunching", "paused"]
    assert state_of("relaunching") is RunState.RELAUNCHING and state_of("bogus") is None

"""The TUI driven by Textual's pilot, with real runs of tiny Python scripts behind it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from textual.message import Message

from supervisor.recipe.model import Recipe, load_recipe
from supervisor.runs.executors.process import is_alive
from supervisor.runs.plan import shell_command
from tui.app import FtmonApp, parse_args
from tui.bridge import ActionDone, AnomalySeen, RunFinished, RunLaunched, RunWasPaused
from tui.screens.confirm import ConfirmKill, ConfirmQuit
from tui.screens.history import HistoryScreen
from tui.screens.main import MainScreen
from tui.screens.relaunch import LaunchScreen, RelaunchScreen
from tui.widgets.feed import Feed
from tui.widgets.logview import LogView

SIZE = (120, 40)

# A stand-in trainer: one JSON metric line per step; the loss is nan at step `nan_at` while the
# learning rate is 0.1 or more, so a relaunch with half the LR trains on.
SCRIPT = """
import argparse, json, time
p = argparse.ArgumentParser()
p.add_argument("--steps", type=int)
p.add_argument("--nan_at", type=int)
p.add_argument("--delay", type=float)
p.add_argument("--lr", type=float)
a = p.parse_args()
loss = 2.0
for step in range(1, a.steps + 1):
    loss = float("nan") if step == a.nan_at and a.lr >= 0.1 else loss * 0.9
    print(json.dumps(dict(step=step, loss=loss, lr=a.lr, grad_norm=1.0)), flush=True)
    time.sleep(a.delay)
print("done")
"""


def tiny_recipe(
    tmp_path: Path,
    *,
    steps: int = 6,
    nan_at: int = 0,
    delay: float = 0.02,
    on_nan: dict[str, Any] | None = None,
    name: str = "tiny",
) -> Path:
    data: dict[str, Any] = {
        "name": name,
        "command": [sys.executable, "-c", SCRIPT],
        "args": {"steps": steps, "nan_at": nan_at, "delay": delay, "lr": 0.1},
        "kill_grace_secs": 2,
        "on": {"nan": on_nan or {"do": "relaunch", "adjust": {"lr": "*0.5"}, "max": 2}},
    }
    path = tmp_path / "recipes" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_app(tmp_path: Path, recipe: Recipe | None = None, reattach: bool = True) -> FtmonApp:
    return FtmonApp(tmp_path / "logs", recipe, recipes_dir=tmp_path / "recipes", reattach=reattach)


async def until(pilot, cond: Callable[[], object], secs: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(secs / 0.05)):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached in time")


def seen(messages: list[Message], kind: type) -> list[Any]:
    """Messages of `kind`, each once (a message is recorded at every node it passes)."""
    return list({id(m): m for m in messages if isinstance(m, kind)}.values())


async def stop_all(app: FtmonApp) -> None:
    await app.supervisor.close(kill=True)


async def test_recipe_given_at_start_is_launched_and_drawn(tmp_path: Path) -> None:
    """`ftmon RECIPE` opens with the run launched: its log, plots and metrics; / searches the
    log and f follows it again."""
    recipe = load_recipe(tiny_recipe(tmp_path, steps=5))
    messages: list[Message] = []
    app = make_app(tmp_path, recipe)
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await until(pilot, lambda: seen(messages, RunFinished))
        main = app.main_screen
        run_id = seen(messages, RunLaunched)[0].run_id
        assert main.selected == run_id
        await until(pilot, lambda: "done" in main.query_one(LogView).visible_text())
        plots = main.query_one("#plots")
        await until(pilot, lambda: set(plots.shown) == {"loss", "grad_norm", "lr"})
        assert app.book.runs[run_id].status == "finished"
        assert len(app.book.runs[run_id].series["loss"]) == 5
        log = main.query_one(LogView)
        await pilot.press("slash", *'"step": 3', "enter")  # search, as a person types it
        await until(pilot, lambda: log.hit == 2)
        assert log.follow is False and main.query_one("#search").has_class("shown") is False
        await pilot.press("f")
        assert log.follow is True


async def test_nan_is_caught_killed_and_relaunched_with_lower_lr(tmp_path: Path) -> None:
    """A nan loss kills the run and the policy relaunches it under its parent with half the LR;
    in a 100x30 window the feed says each thing once and its newest entry is in view."""
    recipe = load_recipe(tiny_recipe(tmp_path, steps=40, nan_at=3, delay=0.05))
    messages: list[Message] = []
    app = make_app(tmp_path, recipe)
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        await until(pilot, lambda: len(seen(messages, RunLaunched)) == 2)
        first, second = (m.run_id for m in seen(messages, RunLaunched))
        assert any(m.event.anomaly.rule == "nan" for m in seen(messages, AnomalySeen))
        child = app.book.runs[second]
        assert child.parent_id == first and child.changes == ("lr 0.1 -> 0.05",)
        assert app.book.runs[first].marks.get(3) is not None  # the nan line is marked
        assert app.main_screen.selected == second  # the screen follows the lineage
        tree = app.main_screen.query_one("#runs")
        assert tree.run_ids == [first, second]
        assert "--lr 0.05" in " ".join(app.history.get(second).argv)
        await until(pilot, lambda: any(i.kind == "relaunched" for i in app.book.feed))
        feed = app.main_screen.query_one(Feed)
        await pilot.pause(0.2)
        region = feed.scrollable_content_region
        assert feed.scroll_offset.y + region.height >= len(feed.lines)  # the newest in view
        kinds = [i.kind for i in feed.items]
        assert kinds.count("relaunched") == 1 and kinds.count("ended") == 1  # not 2 each
        assert sum("rule off" in i.text for i in feed.items) <= 1  # not once per run
        tree.focus()
        await pilot.press("up", "enter")  # choose the first run in the tree
        await until(pilot, lambda: app.main_screen.selected == first)
        log = app.main_screen.query_one(LogView)
        await until(pilot, lambda: log.indexed.is_set() and log.line_count >= 3)
        assert log.marks.get(3) is not None and log.path == Path(app.history.get(first).log_path)
        await stop_all(app)


async def test_an_empty_start_says_what_to_do(tmp_path: Path) -> None:
    """With no run yet the runs box and the status line point at o (launch) and h (history)."""
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.started)
        tree = app.main_screen.query_one("#runs")
        assert "o launch" in str(tree.border_subtitle) and "h history" in str(tree.border_subtitle)
        status = str(app.main_screen.query_one("#status").render())
        assert "o launches a recipe" in status and "h shows the history" in status


async def test_pause_and_resume_by_key(tmp_path: Path) -> None:
    """p pauses the selected run (its process stops) and p again resumes it."""
    recipe = load_recipe(tiny_recipe(tmp_path, steps=400, delay=0.05))
    messages: list[Message] = []
    app = make_app(tmp_path, recipe)
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await until(pilot, lambda: app.main_screen.selected)
        run_id = app.main_screen.selected
        await pilot.press("p")
        await until(pilot, lambda: app.book.runs[run_id].status == "paused")
        assert "p: resume" in str(app.main_screen.query_one("#status").render())
        assert app.history.get(run_id).status == "paused"
        await pilot.press("p")
        await until(pilot, lambda: app.book.runs[run_id].status == "running")
        kinds = [m.event.action.kind for m in seen(messages, ActionDone)]
        assert "pause" in kinds and "resume" in kinds
        await stop_all(app)


async def test_policy_pause_says_why_and_what_to_do(tmp_path: Path) -> None:
    """When the policy pauses a run, the screen says which rule and offers resume/kill/relaunch."""
    recipe = load_recipe(tiny_recipe(tmp_path, steps=400, nan_at=2, on_nan={"do": "pause"}))
    messages: list[Message] = []
    app = make_app(tmp_path, recipe)
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await until(pilot, lambda: seen(messages, RunWasPaused))
        status = str(app.main_screen.query_one("#status").render())
        assert "nan" in status and "p: resume" in status and "k: kill" in status
        await stop_all(app)


async def test_kill_asks_first_and_kills_on_yes(tmp_path: Path) -> None:
    """k asks for confirmation; n keeps the run, y kills its process group."""
    recipe = load_recipe(tiny_recipe(tmp_path, steps=400, delay=0.05))
    messages: list[Message] = []
    app = make_app(tmp_path, recipe)
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await until(pilot, lambda: app.main_screen.selected)
        run_id = app.main_screen.selected
        rec = app.history.get(run_id)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmKill))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert app.book.runs[run_id].status == "running"
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmKill))
        await pilot.press("y")
        await until(pilot, lambda: seen(messages, RunFinished))
        assert seen(messages, RunFinished)[0].event.status == "killed"
        assert not is_alive(rec.pid, rec.proc_start_time)


async def test_relaunch_form_prefills_policy_change_and_launches_edits(tmp_path: Path) -> None:
    """l opens the form with the policy's change filled in; an edit shows in the diff and the
    relaunch runs under its parent with exactly those changes."""
    recipe = load_recipe(tiny_recipe(tmp_path, steps=3))
    messages: list[Message] = []
    app = make_app(tmp_path, recipe)
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await until(pilot, lambda: seen(messages, RunFinished))
        parent = app.main_screen.selected
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, RelaunchScreen))
        await until(pilot, lambda: app.screen.query("#diff"))  # composed
        form = app.screen
        fields = {key: form.query_one(f"#field-{i}").value for i, key in enumerate(form.fields)}
        assert fields["lr"] == "0.05"  # what the nan policy would do
        assert form.fields[0] == "lr"  # what the policy changes comes first, in view
        steps = form.query_one(f"#field-{form.fields.index('steps')}")
        steps.value = "4"
        await pilot.pause()
        diff = str(form.query_one("#diff").render())
        assert "-  steps: 3" in diff and "+  steps: 4" in diff and "+  lr: 0.05" in diff
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(seen(messages, RunLaunched)) == 2)
        child = app.history.get(seen(messages, RunLaunched)[1].run_id)
        assert child.parent_id == parent
        assert set(child.changes) == {"args.steps 3 -> 4", "args.lr 0.1 -> 0.05"}
        assert "--steps 4" in " ".join(child.argv)
        await stop_all(app)


async def test_relaunch_of_a_live_run_kills_it_first(tmp_path: Path) -> None:
    """Relaunching a run that is still training says so, kills it, and starts the child."""
    recipe = load_recipe(tiny_recipe(tmp_path, steps=400, delay=0.05))
    messages: list[Message] = []
    app = make_app(tmp_path, recipe)
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await until(pilot, lambda: app.main_screen.selected)
        parent = app.main_screen.selected
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, RelaunchScreen))
        await until(pilot, lambda: app.screen.query("#live"))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(seen(messages, RunLaunched)) == 2)
        assert app.history.get(parent).status == "killed"
        child = seen(messages, RunLaunched)[1].run_id
        assert app.history.get(child).parent_id == parent
        assert app.main_screen.selected == child
        await stop_all(app)


async def test_launch_screen_launches_a_recipe_from_recipes_dir(tmp_path: Path) -> None:
    """o lists the recipes folder; choosing one launches it; a bad path says why in one line."""
    tiny_recipe(tmp_path, steps=2)
    messages: list[Message] = []
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        await until(pilot, lambda: app.screen.query("#path"))  # composed
        screen = app.screen
        screen.query_one("#path").value = str(tmp_path / "missing.yaml")
        screen.query_one("#path").focus()
        await pilot.press("enter")
        await until(pilot, lambda: "cannot read" in str(screen.query_one("#error").render()))
        screen.query_one("#recipes").focus()
        await pilot.press("enter")
        await until(pilot, lambda: seen(messages, RunLaunched))
        assert seen(messages, RunLaunched)[0].event.name == "tiny"
        assert isinstance(app.screen, MainScreen)
        await stop_all(app)


async def test_history_copies_exact_command_replays_and_diffs(tmp_path: Path) -> None:
    """h lists every run with its exact command; c copies it, d+d diffs two runs, r replays."""
    recipe = load_recipe(tiny_recipe(tmp_path, steps=20, nan_at=2, delay=0.02))
    messages: list[Message] = []
    app = make_app(tmp_path, recipe)
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await until(pilot, lambda: len(seen(messages, RunFinished)) == 2)
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen))
        screen = app.screen
        await until(pilot, lambda: screen.query("#detail") and screen.records)
        assert len(screen.records) == 2
        newest = screen.records[0]
        await pilot.press("c")
        assert screen.copied == shell_command(list(newest.argv), newest.env, newest.cwd)
        assert app.clipboard == screen.copied
        await pilot.press("d", "down", "d")
        diff = str(screen.query_one("#detail").render())
        assert "args.lr: 0.05 -> 0.1" in diff and "after --lr: 0.05 -> 0.1" in diff
        # The screen shows exactly what `ftmon diff` prints for the same two runs.
        cli = subprocess.run(
            [sys.executable, "-m", "supervisor", "diff", newest.id, screen.current().id,
             "--logs-dir", str(tmp_path / "logs")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert diff.rstrip("\n") == cli.stdout.rstrip("\n")
        screen.show_detail()  # the row highlight of a quick down+d, handled after the diff
        assert str(screen.query_one("#detail").render()) == diff  # the diff stays
        await pilot.press("up")  # moving on shows that run's command again
        await until(pilot, lambda: screen.query_one("#detail-box").border_title == "command")
        assert "outcome:" in str(screen.query_one("#detail").render())
        await pilot.press("down")
        target = screen.current()
        await pilot.press("r")
        await until(pilot, lambda: len(seen(messages, RunLaunched)) >= 3)
        replay = app.history.get(seen(messages, RunLaunched)[2].run_id)
        assert replay.reason_started == f"replay of {target.id}"
        assert replay.argv == target.argv
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await stop_all(app)


async def test_quit_keeps_runs_alive_and_next_start_reattaches(tmp_path: Path) -> None:
    """q with a live run asks; keep leaves it running; a new ftmon reattaches to it and shows
    it under the run it was relaunched from; then quitting with x kills it."""
    recipe = load_recipe(tiny_recipe(tmp_path, steps=400, nan_at=2, delay=0.05))
    app = make_app(tmp_path, recipe)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(app.book.runs) == 2 and app.main_screen.selected)
        first, run_id = list(app.book.runs)
        await until(pilot, lambda: app.main_screen.selected == run_id)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        await pilot.press("k")
        await until(pilot, lambda: not app.is_running)
    rec = app.history.get(run_id)
    assert rec.live and is_alive(rec.pid, rec.proc_start_time)
    messages: list[Message] = []
    again = make_app(tmp_path)
    async with again.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await until(pilot, lambda: seen(messages, RunLaunched))
        assert seen(messages, RunLaunched)[0].event.reattached
        assert again.main_screen.selected == run_id
        assert again.book.runs[first].status == "killed"  # from the history
        assert 2 in again.book.runs[first].marks  # its nan line, from the history
        assert again.book.runs[run_id].series["loss"]  # the curve so far, from the history
        assert again.main_screen.query_one("#runs").run_ids == [first, run_id]
        await pilot.press("q")
        await until(pilot, lambda: isinstance(again.screen, ConfirmQuit))
        await pilot.press("x")
        await until(pilot, lambda: not again.is_running)
    assert not is_alive(rec.pid, rec.proc_start_time)
    assert again.history.get(run_id).status == "killed"


async def test_every_action_is_in_the_command_palette_and_footer(tmp_path: Path) -> None:
    """Each action has a key in the footer and an entry in the command palette."""
    app = make_app(tmp_path, reattach=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for label in ("Pause/Resume", "Kill", "Relaunch", "Launch", "History", "Follow", "Search"):
            assert any(t.startswith(label + " (") for t in titles), label
        footer_keys = {k for k, b in app.main_screen.active_bindings.items() if b.binding.show}
        assert {"p", "k", "l", "o", "h", "f", "slash", "q"} <= footer_keys
        (history,) = [c for c in app.get_system_commands(app.screen) if c.title == "History (h)"]
        await history.callback()
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen))

        def detail() -> str:
            found = app.screen.query("#detail")
            return str(found.first().render()) if found else ""

        await until(pilot, lambda: "no runs yet" in detail())


def test_arguments_accept_recipe_and_run_forms() -> None:
    """`ftmon RECIPE --set k=v` and `ftmon run RECIPE` both name the recipe to launch."""
    assert parse_args(["r.yaml", "--set", "args.lr=1"]).recipe == "r.yaml"
    assert parse_args(["run", "r.yaml"]).recipe == "r.yaml"
    assert parse_args([]).recipe is None


@pytest.fixture(autouse=True)
def _no_ftmon_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FTMON_HOME", raising=False)
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")


def test_bad_recipe_or_history_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`ftmon BAD.yaml` or a history that is not a database: one clear line, exit code 2."""
    from tui.app import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncommand: [python]\nlrr: 1\n")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "lrr" in err
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "ftmon.db").write_text("not a database\n" * 100)
    assert main(["--logs-dir", str(logs)]) == 2
    assert "cannot open the history" in capsys.readouterr().err


def test_relaunch_form_never_offers_a_secret_arg() -> None:
    """A token passed as an arg is not an editable field of the relaunch form (it would show)."""
    from supervisor.recipe.model import recipe_from_yaml
    from tui.screens.relaunch import adjustable

    recipe = recipe_from_yaml(
        "name: s\ncommand: [python3, t.py]\nargs: {lr: 0.1, hub_token: hf_abc123, steps: 5}\n",
        "inline.yaml",
    )
    assert adjustable(recipe) == ["lr", "steps"]


async def test_history_replay_runs_where_the_run_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """r on a run whose recipe names no cwd replays it in the folder it ran in, not the TUI's."""
    first_dir, later_dir = tmp_path / "project", tmp_path / "elsewhere"
    first_dir.mkdir()
    later_dir.mkdir()
    monkeypatch.chdir(first_dir)
    recipe = load_recipe(tiny_recipe(tmp_path, steps=3))
    assert recipe.cwd is None
    messages: list[Message] = []
    app = make_app(tmp_path, recipe)
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await until(pilot, lambda: len(seen(messages, RunFinished)) == 1)
        monkeypatch.chdir(later_dir)  # the person has moved on; the TUI keeps running
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen))
        screen = app.screen
        await until(pilot, lambda: screen.query("#detail") and screen.records)
        await pilot.press("r")
        await until(pilot, lambda: len(seen(messages, RunLaunched)) == 2)
        replay = app.history.get(seen(messages, RunLaunched)[1].run_id)
        assert Path(replay.cwd) == first_dir
        await stop_all(app)

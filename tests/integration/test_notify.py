"""Notifications with real parts: a real HTTP server on 127.0.0.1 receives the webhooks of a
supervised NaN -> kill -> relaunch story; a server that hangs or answers 500 does not delay the
kill and its failure is recorded; a command target gets valid JSON; `ftmon notify test`."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from supervisor.events import Severity
from supervisor.notify.config import NotifyTarget
from supervisor.notify.delivery import deliver
from supervisor.notify.message import Notice
from supervisor.notify.notifier import Notifier, tee
from supervisor.notify.send import send
from supervisor.recipe.model import load_recipe
from supervisor.runs import events as ev
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History
from tests.conftest import PROGRAMS, ftmon
from tests.programs.recipes import base_weights, write_recipe


class Receiver:
    """A webhook receiver on 127.0.0.1: `mode` "ok" answers 200, "fail" 500, "hang" never
    answers (until the test ends). Records every POST with the time it arrived."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.posts: list[dict] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append({
                    "at": time.time(), "path": self.path, "headers": dict(self.headers),
                    "body": body,
                })  # fmt: skip
                if receiver.mode == "hang":
                    receiver.release.wait(30)
                code = 500 if receiver.mode == "fail" else 200
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender gave up waiting (a hanging server's client)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json(self) -> list[dict]:
        return [json.loads(p["body"]) for p in self.posts]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    made = {mode: Receiver(mode) for mode in ("ok", "fail", "hang")}
    yield made
    for r in made.values():
        r.stop()


def nan_recipe(tmp: Path, on: dict, notify: list[dict] | None = None, lr: float = 1e-3) -> Path:
    """train_nan.py: healthy steps, then NaN lines until killed (lr above 1e-4)."""
    fields: dict = {"notify": notify} if notify else {}
    return write_recipe(
        tmp, "train_nan.py", base_weights=str(base_weights(tmp)),
        args={"model": "{base_weights}", "output_dir": "{run_dir}", "lr": lr}, on=on, **fields,
    )  # fmt: skip


class Story:
    """Runs a recipe under the real Supervisor; records each event with its monotonic time."""

    def __init__(self, tmp: Path, notify: bool = True) -> None:
        self.events: list[tuple[float, object]] = []
        self.logs = tmp / "logs"
        self.history = History(self.logs / "ftmon.db")
        notifier = self.notifier = Notifier([], self.history) if notify else None

        def record(event: object) -> None:
            self.events.append((time.monotonic(), event))

        listener = tee(record, notifier) if notifier is not None else record
        self.sup = Supervisor(self.history, self.logs, listener)

    async def run(self, recipe_path: Path, watch_recipe: bool = True) -> str:
        recipe = load_recipe(recipe_path)
        if self.notifier is not None and watch_recipe:
            self.notifier.watch_recipe(recipe)
        first = await self.sup.launch(recipe)
        await self.sup.wait_lineage(first)
        return first

    def of(self, kind: type) -> list:
        return [e for _, e in self.events if isinstance(e, kind)]

    def kill_latency(self) -> float:
        """From the nan anomaly to the kill action (which is emitted once the kill is done)."""
        found = next(t for t, e in self.events
                     if isinstance(e, ev.AnomalyFound) and e.anomaly.rule == "nan")  # fmt: skip
        killed = next(t for t, e in self.events
                      if isinstance(e, ev.ActionTaken) and e.action.kind == "kill")  # fmt: skip
        return killed - found


async def test_webhooks_tell_the_nan_kill_relaunch_story(
    tmp_path: Path, receivers: dict[str, Receiver]
) -> None:
    """A NaN run killed and relaunched with a lower lr: the webhook gets the anomaly, the kill,
    the relaunch and the relaunched run's clean finish, each naming the run, what was seen,
    what ftmon did and `ftmon show RUN`."""
    hook = receivers["ok"]
    path = nan_recipe(
        tmp_path, on={"nan": {"do": "relaunch", "adjust": {"lr": "*0.1"}, "max": 2}},
        notify=[{"webhook": hook.url}],
    )  # fmt: skip
    story = Story(tmp_path)
    first = await story.run(path)
    assert story.notifier is not None and story.notifier.close(10)
    (relaunched,) = story.of(ev.RunRelaunched)
    second = relaunched.run_id

    bodies = hook.json()
    assert [b["event"] for b in bodies] == ["anomaly", "action", "relaunch", "run_finished"]
    anomaly, kill, relaunch, finished = bodies
    assert [b["run_id"] for b in bodies] == [first, first, first, second]
    assert anomaly["seen"]["rule"] == "nan" and anomaly["seen"]["line"] > 0
    assert any("nan" in line for line in anomaly["seen"]["evidence"])
    assert kill["did"].startswith("kill: killed by ftmon: rule nan")
    assert kill["seen"]["rule"] == "nan" and kill["seen"]["evidence"]
    assert f"relaunched from the base weights as {second} (lr 0.001 -> 0.0001)" in relaunch["did"]
    assert [b["look"] for b in bodies] == [f"ftmon show {r}" for r in (first,) * 3 + (second,)]
    assert all(f"look: ftmon show {b['run_id']}" in b["text"] for b in bodies)
    assert finished["did"] == "nothing: it finished"
    assert story.history.notify_failures(first) == []

    # The time to deliver: from the event (its ts) to the POST's arrival.
    sent = {e.anomaly.rule: e.ts for e in story.of(ev.AnomalyFound)}
    delay = hook.posts[0]["at"] - sent["nan"]
    print(f"\nnotify: anomaly -> webhook received in {delay * 1000:.1f} ms")


async def test_a_hanging_or_failing_webhook_does_not_delay_the_kill(
    tmp_path: Path, receivers: dict[str, Receiver]
) -> None:
    """The same NaN -> kill story without notifications and with two bad targets (one never
    answers, one answers 500): the kill comes as fast as without, and both failures are
    recorded in the history."""
    on = {"nan": {"do": "kill"}}
    (tmp_path / "plain").mkdir()
    plain = Story(tmp_path / "plain", notify=False)
    await plain.run(nan_recipe(tmp_path / "plain", on))
    without = plain.kill_latency()

    (tmp_path / "notified").mkdir()
    notify = [
        {"name": "hanging", "webhook": receivers["hang"].url, "timeout_secs": 2,
         "retries": 1, "backoff_secs": 0.05, "events": ["anomaly"]},
        {"name": "failing", "webhook": receivers["fail"].url, "retries": 2,
         "backoff_secs": 0.05},
    ]  # fmt: skip
    notified = Story(tmp_path / "notified")
    assert notified.notifier is not None
    run_id = await notified.run(nan_recipe(tmp_path / "notified", on, notify))
    with_notify = notified.kill_latency()
    # The anomaly goes to both targets before the kill: a sender on the supervisor's path would
    # add the hanging server's two 2 s tries (4 s) to the kill.
    assert with_notify <= 1.5 * without + 1.0, (with_notify, without)
    print(f"\nnotify: kill latency {without * 1000:.0f} ms without, "
          f"{with_notify * 1000:.0f} ms with a hanging and a failing webhook")  # fmt: skip

    notified.notifier.close(10)
    failures = notified.history.notify_failures(run_id)
    (hang,) = [f for f in failures if f.target == "hanging"]
    assert hang.event == "anomaly" and hang.error == "no answer in 2 s" and hang.attempts == 2
    failed = [f for f in failures if f.target == "failing"]
    assert [f.event for f in failed] == ["anomaly", "action"]
    assert all(f.error.startswith("HTTP 500") and f.attempts == 3 for f in failed)
    assert len(receivers["fail"].posts) == 6  # each message: the first try and two retries


async def test_a_run_not_launched_here_notifies_its_recorded_recipes_targets(
    tmp_path: Path,
) -> None:
    """A notifier that was not told the recipe (a reattached run, `ftmon attach`) reads the
    run's `notify:` from the history: its command target gets the run's end."""
    sink = tmp_path / "events.jsonl"
    argv = [sys.executable, str(PROGRAMS / "notify_sink.py"), str(sink)]
    story = Story(tmp_path)
    run_id = await story.run(nan_recipe(tmp_path, {}, [{"command": argv}], lr=1e-5), False)
    assert story.notifier is not None and story.notifier.close(10)
    (event,) = [json.loads(line) for line in sink.read_text().splitlines()]
    assert (event["event"], event["run_id"]) == ("run_finished", run_id)


def config_home(tmp: Path, notify: list[dict]) -> dict[str, str]:
    """An environment whose $XDG_CONFIG_HOME holds ftmon/config.yaml with `notify`."""
    folder = tmp / "config" / "ftmon"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"notify": notify}))
    return {**os.environ, "XDG_CONFIG_HOME": str(tmp / "config")}


def test_headless_run_records_and_prints_a_failed_delivery_and_feeds_a_command(
    tmp_path: Path, receivers: dict[str, Receiver]
) -> None:
    """`ftmon run --headless`: the user config's webhook answers 500 (a line in the output,
    a row in the history that `ftmon show` lists); the recipe's command target gets the run's
    end as valid JSON on stdin."""
    sink = tmp_path / "events.jsonl"
    env = config_home(tmp_path, [{"webhook": receivers["fail"].url, "retries": 0,
                                  "name": "team hook"}])  # fmt: skip
    recipe = nan_recipe(
        tmp_path, on={}, lr=1e-5,
        notify=[{"command": [sys.executable, str(PROGRAMS / "notify_sink.py"), str(sink)]}],
    )  # fmt: skip
    logs = tmp_path / "logs"
    done = ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs), env=env)
    assert done.returncode == 0, done.stderr
    run_id = load_run_id(logs)
    assert f"{run_id}: notify  team hook FAILED after 1 attempt(s): HTTP 500" in done.stdout

    (event,) = [json.loads(line) for line in sink.read_text().splitlines()]
    assert event["event"] == "run_finished" and event["run_id"] == run_id
    assert event["look"] == f"ftmon show {run_id}"

    shown = ftmon("show", run_id, "--logs-dir", str(logs), env=env)
    assert "notifications not delivered (1)" in shown.stdout
    assert "team hook" in shown.stdout and "HTTP 500" in shown.stdout


def load_run_id(logs: Path) -> str:
    history = History(logs / "ftmon.db")
    try:
        return history.runs(limit=1)[0].id
    finally:
        history.close()


def test_notify_test_says_which_target_worked(
    tmp_path: Path, receivers: dict[str, Receiver]
) -> None:
    """`ftmon notify test` sends one test message to every target: exit 1 when one failed, and
    each target's line says ok or FAILED with why; exit 2 without any target."""
    sink = tmp_path / "test.jsonl"
    env = config_home(tmp_path, [
        {"webhook": receivers["ok"].url, "preset": "slack", "name": "slack"},
        {"webhook": receivers["fail"].url, "name": "broken"},
        {"command": [sys.executable, str(PROGRAMS / "notify_sink.py"), str(sink)]},
    ])  # fmt: skip
    done = ftmon("notify", "test", env=env)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("ok      slack") for line in lines)
    assert any(line.startswith("FAILED  broken") and "HTTP 500" in line for line in lines)
    assert any(line.startswith("ok      command python") for line in lines)
    assert "2 of 3 target(s) worked" in done.stdout
    (slack,) = receivers["ok"].json()
    assert slack["text"].startswith("*ftmon: test message*")
    assert json.loads(sink.read_text())["event"] == "test"

    as_json = ftmon("notify", "test", "--json", env=env)
    rows = {r["target"]: r for r in json.loads(as_json.stdout)}
    assert as_json.returncode == 1 and rows["slack"]["ok"] and not rows["broken"]["ok"]
    assert rows["broken"]["error"].startswith("HTTP 500")

    empty = config_home(tmp_path / "none", [])
    nothing = ftmon("notify", "test", env=empty)
    assert nothing.returncode == 2 and "no notification targets" in nothing.stderr


def test_a_bad_config_file_stops_a_run_before_it_starts(tmp_path: Path) -> None:
    """A mistake in ~/.config/ftmon/config.yaml: exit 2, the file, line and field named, and
    no run launched."""
    env = config_home(tmp_path, [{"webhook": "hooks.example.com/x"}])
    recipe = write_recipe(tmp_path, "count_steps.py", args={"steps": 1})
    logs = tmp_path / "logs"
    done = ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs), env=env)
    assert done.returncode == 2
    config = tmp_path / "config" / "ftmon" / "config.yaml"
    assert done.stderr.strip() == (
        f"{config}:2: notify.0.webhook: a webhook is an http:// or https:// URL"
    )
    assert not (logs / "ftmon.db").exists() or load_runs(logs) == []


def load_runs(logs: Path) -> list:
    history = History(logs / "ftmon.db")
    try:
        return history.runs()
    finally:
        history.close()


def test_a_finished_sweep_is_told_to_the_users_targets(tmp_path: Path) -> None:
    """`Notifier.sweep_finished` (called by sweeps): the command target gets one message with
    the sweep, how it went, its runs and the command that shows it."""
    sink = tmp_path / "events.jsonl"
    argv = [sys.executable, str(PROGRAMS / "notify_sink.py"), str(sink)]
    notifier = Notifier([NotifyTarget(command=argv, events=["sweep_finished"])])
    notifier.sweep_finished("sw-lr", "4 runs: 3 finished, 1 failed", ["r1", "r2", "r3", "r4"],
                            look="ftmon report sw-lr")  # fmt: skip
    assert notifier.close(10)
    (event,) = [json.loads(line) for line in sink.read_text().splitlines()]
    assert event["event"] == "sweep_finished" and event["title"] == "sweep sw-lr finished"
    assert event["seen"]["message"] == "4 runs: 3 finished, 1 failed"
    assert event["look"] == "ftmon report sw-lr" and event["extra"]["run_ids"][0] == "r1"


def test_desktop_target_runs_notify_send_with_title_urgency_and_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where `notify-send` is installed the desktop target runs it (argv, no shell): urgency
    from the severity, the title, then the text."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "notify-send"
    out = tmp_path / "argv.json"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")  # fmt: skip
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    notice = Notice("action", "r1", 1.0, "r1: kill (rule nan)", Severity.ERROR, seen="nan",
                    did="kill: done", look="ftmon show r1")  # fmt: skip
    result = deliver(NotifyTarget(desktop=True), notice, send)
    assert result.ok, result.error
    argv = json.loads(out.read_text())
    assert argv == ["--app-name=ftmon", "--urgency=critical", "r1: kill (rule nan)",
                    "seen: nan\ndid:  kill: done\nlook: ftmon show r1"]  # fmt: skip


def test_a_failing_command_s_reason_is_recorded_without_the_secret_it_printed(
    tmp_path: Path,
) -> None:
    leak = "echo-key sk-abcdefghijklmnopqrstuvwxyz123456 rejected"
    argv = [sys.executable, "-c", f"import sys; sys.stderr.write({leak!r}); sys.exit(4)"]
    result = deliver(NotifyTarget(command=argv, retries=0), Notice("test", "", 1.0, "t",
                                                                 Severity.INFO), send)  # fmt: skip
    assert not result.ok and "sk-abc" not in result.error
    assert result.error.endswith("exited with 4: echo-key <redacted> rejected")

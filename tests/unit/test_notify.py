"""Notifications without I/O: what a message says, how presets shape it, de-duplication and the
rate limit, which targets want what, retries, and the config file's problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.events import Action, Anomaly, Severity
from supervisor.notify.config import NotifyTarget, load_user_targets, user_config_path
from supervisor.notify.delivery import deliver
from supervisor.notify.message import Notice, NoticeMaker, redacted, secret_values
from supervisor.notify.notifier import wants
from supervisor.notify.presets import DISCORD_MAX, shape
from supervisor.notify.send import SendError
from supervisor.notify.throttle import Throttle
from supervisor.recipe.model import RecipeError
from supervisor.runs import events as ev

RUN = "20261207-1804-train-nan"
NAN = Anomaly(
    "nan", Severity.ERROR, "loss is nan", 100.0, lineno=6,
    evidence=("{'loss': 1.5}", "{'loss': nan, 'grad_norm': nan}"), run_id=RUN,
)  # fmt: skip


def story() -> list[Notice]:
    """The notices of a NaN -> kill -> relaunch -> finish story, as the supervisor emits it."""
    maker = NoticeMaker()
    events = [
        ev.AnomalyFound(RUN, 100.0, Anomaly("vram", Severity.INFO, "vram rule off", 99.0)),
        ev.AnomalyFound(RUN, 100.0, NAN),
        ev.ActionTaken(RUN, 100.1, Action("kill", "nan", 100.1, RUN, "killed by ftmon: rule nan")),
        ev.RunEnded(RUN, 100.2, None, 15, "killed by ftmon: rule nan", "killed"),
        ev.ActionTaken(RUN, 100.3, Action("relaunch", "nan", 100.3, RUN, f"{RUN}-a2: lr")),
        ev.RunRelaunched(RUN, f"{RUN}-a2", 100.3, "relaunch after nan", ("lr 0.001 -> 0.0001",)),
        ev.RunEnded(f"{RUN}-a2", 101.0, 0, None, "finished", "finished"),
    ]
    return [n for n in map(maker.make, events) if n is not None]


def test_each_message_says_run_seen_did_and_where_to_look() -> None:
    """One message per step that matters (the kill's end and the relaunch action are not said
    twice), each with the run, the rule, line and evidence, what ftmon did, `ftmon show RUN`."""
    notices = story()
    assert [n.event for n in notices] == ["anomaly", "anomaly", "action", "relaunch",
                                          "run_finished"]  # fmt: skip
    info, nan, kill, relaunch, finished = notices
    assert info.severity == Severity.INFO  # sent only to targets that ask for info
    for n in (nan, kill, relaunch):
        assert n.run_id == RUN and n.rule == "nan" and n.lineno == 6
        assert n.evidence[-1] == "{'loss': nan, 'grad_norm': nan}"
        assert n.look == f"ftmon show {RUN}"
        assert "seen: nan (error) at line 6: loss is nan" in n.text()
    assert kill.did == "kill: killed by ftmon: rule nan"
    assert relaunch.did.startswith(f"relaunched from the base weights as {RUN}-a2 (lr 0.001 ->")
    assert finished.run_id == f"{RUN}-a2" and finished.look == f"ftmon show {RUN}-a2"


def test_an_alert_is_the_anomalys_message_and_a_users_action_is_not_sent() -> None:
    maker = NoticeMaker()
    maker.make(ev.AnomalyFound(RUN, 1.0, NAN))
    assert maker.make(ev.ActionTaken(RUN, 1.0, Action("alert", "nan", 1.0, RUN, "x"))) is None
    assert maker.make(ev.ActionTaken(RUN, 1.0, Action("kill", "user", 1.0, RUN, "x"))) is None
    preflight = maker.make(ev.ActionTaken(RUN, 1.0, Action("alert", "preflight", 1.0, RUN, "near")))
    assert preflight is not None and preflight.event == "anomaly" and preflight.rule == "preflight"


def test_a_failed_run_and_a_stopped_chain_say_why() -> None:
    maker = NoticeMaker()
    maker.make(ev.AnomalyFound(RUN, 1.0, NAN))
    stopped = maker.make(ev.ChainStopped(RUN, 2.0, "nan: max 2 relaunches reached"))
    failed = maker.make(ev.RunEnded(RUN, 3.0, 1, None, "exit code 1", "failed"))
    assert (
        stopped is not None and stopped.did == "stopped relaunching: nan: max 2 relaunches reached"
    )
    assert stopped.seen.startswith("nan (error) at line 6")
    assert failed is not None and failed.event == "run_failed"
    assert failed.did.startswith("recorded the end (exit code 1)")


def test_secrets_are_redacted_by_value_and_by_shape() -> None:
    notice = Notice(
        "anomaly", RUN, 1.0, "t", Severity.ERROR, seen="auth failed for s3cr3t-value-42",
        evidence=("token=hf_abcdefghijklmnopqrstuvwxyz012345",), did="d",
    )  # fmt: skip
    clean = redacted(notice, secret_values({"WANDB_API_KEY": "s3cr3t-value-42", "HOME": "/r"}))
    assert "s3cr3t" not in clean.text() and "hf_abc" not in clean.text()
    assert "<redacted:WANDB_API_KEY>" in clean.seen
    assert "<redacted>" in clean.evidence[0]


def notice(event: str = "anomaly", rule: str = "spike", run: str = RUN, ts: float = 0.0) -> Notice:
    return Notice(event, run, ts, f"{run}: {rule}", Severity.ERROR, seen=f"{rule} x",
                  did="recorded it", look=f"ftmon show {run}", rule=rule)  # fmt: skip


def test_a_flapping_rule_sends_one_message_then_one_summary() -> None:
    """A hundred firings of one rule in the window: the first goes at once, the other 99 in
    one summary when the window closes."""
    throttle = Throttle(dedup_secs=300, max_per_minute=10)
    sent = throttle.offer(notice(ts=0), now=0.0)
    for i in range(1, 100):
        sent += throttle.offer(notice(ts=i), now=float(i))
    assert len(sent) == 1
    assert throttle.next_due() == 300.0
    assert throttle.due(299.0) == []
    (summary,) = throttle.due(300.0)
    assert summary.event == "summary" and summary.count == 99
    assert summary.title == f"{RUN}: spike again, 99 more time(s) in 5 min"
    assert throttle.due(1000.0) == []


def test_over_the_rate_limit_the_rest_is_one_summary() -> None:
    """Fifteen different messages in a second with a limit of 10 a minute: ten go out at once,
    the other five as one summary when the minute of the first is over."""
    throttle = Throttle(dedup_secs=300, max_per_minute=10)
    sent: list[Notice] = []
    for i in range(15):
        sent += throttle.offer(notice(rule=f"r{i}"), now=i * 0.05)
    assert [n.rule for n in sent] == [f"r{i}" for i in range(10)]
    assert throttle.next_due() == 60.0
    assert throttle.due(59.9) == []
    (summary,) = throttle.due(60.0)
    assert summary.count == 5 and summary.title == "ftmon: 5 more events (over 10 a minute)"
    assert summary.evidence == tuple(f"{RUN}: r{i}" for i in range(10, 15))


def test_closing_flushes_what_is_held() -> None:
    throttle = Throttle(dedup_secs=300, max_per_minute=10)
    throttle.offer(notice(), now=0.0)
    throttle.offer(notice(), now=1.0)
    (summary,) = throttle.flush(now=2.0)
    assert summary.count == 1 and summary.event == "summary"


def test_targets_get_the_events_they_ask_for_at_their_severity() -> None:
    target = NotifyTarget(webhook="https://example.com/h", events=["anomaly", "action"],
                          severity="error")  # fmt: skip
    warn = Notice("anomaly", RUN, 0.0, "t", Severity.WARNING)
    assert wants(target, notice()) and not wants(target, warn)
    assert not wants(target, notice(event="run_finished"))
    assert wants(target, notice(event="summary")) and wants(target, notice(event="test"))


def test_slack_body_is_escaped_mrkdwn_text() -> None:
    n = Notice("action", RUN, 0.0, f"{RUN}: kill (rule nan)", Severity.ERROR,
               seen="nan at line 6: <b>&</b>", evidence=("@channel <!here>",),
               did="kill: done", look=f"ftmon show {RUN}")  # fmt: skip
    req = shape("slack", "https://hooks.slack.com/services/T/B/X", n)
    body = json.loads(req.body)
    assert set(body) == {"text"} and req.headers["Content-Type"] == "application/json"
    assert body["text"].splitlines()[0] == f"*{RUN}: kill (rule nan)*"
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in body["text"] and "<!here>" not in body["text"]
    assert body["text"].endswith(f"*look:* `ftmon show {RUN}`")


def test_discord_body_has_no_mentions_and_fits_2000_characters() -> None:
    long = tuple("x" * 290 for _ in range(10))
    n = Notice("anomaly", RUN, 0.0, "@everyone look", Severity.ERROR, evidence=long,
               look=f"ftmon show {RUN}")  # fmt: skip
    body = json.loads(shape("discord", "https://discord.com/api/webhooks/1/x", n).body)
    assert body["allowed_mentions"] == {"parse": []}
    assert len(body["content"]) <= DISCORD_MAX
    assert body["content"].endswith(f"`ftmon show {RUN}`")


def test_ntfy_puts_the_title_and_priority_in_headers_and_text_in_the_body() -> None:
    n = Notice("action", RUN, 0.0, f"{RUN}: kill — rule nan", Severity.ERROR, seen="nan",
               did="kill", look=f"ftmon show {RUN}")  # fmt: skip
    req = shape("ntfy", "https://ntfy.sh/my-runs", n, {"Authorization": "Bearer tk"})
    assert req.url == "https://ntfy.sh/my-runs"
    assert req.headers["Title"] == f"{RUN}: kill ? rule nan"  # headers are ASCII
    assert req.headers["Priority"] == "4" and req.headers["Authorization"] == "Bearer tk"
    assert req.body.decode() == f"seen: nan\ndid:  kill\nlook: ftmon show {RUN}"


def test_json_body_is_the_whole_event() -> None:
    body = json.loads(shape("json", "http://127.0.0.1/h", story()[1]).body)
    assert body["source"] == "ftmon" and body["event"] == "anomaly" and body["run_id"] == RUN
    assert body["seen"]["rule"] == "nan" and body["seen"]["line"] == 6
    assert body["look"] == f"ftmon show {RUN}"


def test_retries_with_backoff_then_gives_up_with_the_last_reason() -> None:
    calls: list[float] = []

    def failing(target: NotifyTarget, n: Notice, timeout: float) -> None:
        calls.append(timeout)
        raise SendError("HTTP 500 Internal Server Error")

    target = NotifyTarget(webhook="http://x/h", retries=2, backoff_secs=0.001, timeout_secs=3)
    result = deliver(target, notice(), failing)
    assert not result.ok and result.attempts == 3 and calls == [3, 3, 3]
    assert result.error == "HTTP 500 Internal Server Error"

    def second_time(target: NotifyTarget, n: Notice, timeout: float) -> None:
        calls.append(timeout)
        if len(calls) < 5:
            raise SendError("no answer in 3 s")

    assert deliver(target, notice(), second_time).attempts == 2


def test_config_file_under_xdg_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert user_config_path() == tmp_path / "ftmon" / "config.yaml"
    assert load_user_targets() == []  # no file: no targets
    (tmp_path / "ftmon").mkdir()
    user_config_path().write_text("notify:\n  - desktop: true\n  - command: [notify-me]\n")
    assert [t.label for t in load_user_targets()] == ["desktop", "command notify-me"]


def test_every_mistake_in_the_config_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "notify:\n"
        "  - webhook: hooks.example.com/x\n"
        "  - command: notify-me --json\n"
        "  - desktop: true\n"
        "    events: [anomaly, finished]\n"
        "  - webhook_env: HOOK\n"
        "    command: [x]\n"
    )
    with pytest.raises(RecipeError) as exc:
        load_user_targets(path)
    lines = str(exc.value).splitlines()
    assert lines[0] == f"{path}:2: notify.0.webhook: a webhook is an http:// or https:// URL"
    assert lines[1].startswith(f"{path}:3: notify.1.command: must be an argv list, not a shell")
    assert lines[2].startswith(f"{path}:5: notify.2.events.1: Input should be 'anomaly'")
    assert lines[3].startswith(f"{path}:6: notify.3: a target is exactly one of")
    assert len(lines) == 4


def test_a_webhook_url_is_never_stored_in_a_recipe_snapshot() -> None:
    from supervisor.recipe.model import recipe_from_yaml

    recipe = recipe_from_yaml(
        "name: x\ncommand: [echo]\nnotify:\n"
        "  - webhook: https://hooks.slack.com/services/T0/B0/secretpart\n    preset: slack\n"
        "    headers: {Authorization: Bearer tk_abc}\n"
    )
    snapshot = recipe.to_yaml()
    assert "secretpart" not in snapshot and "tk_abc" not in snapshot
    again = recipe_from_yaml(snapshot).notify[0]
    assert again.preset == "slack" and again.url() == "<redacted>"

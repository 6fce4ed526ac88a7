"""`ftmon scan --min-severity X`: the summary counts what was printed and says how many
anomalies were below the threshold (it counted them all before, as if they had been shown)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ftmon

LOG = """\
{'loss': 1.2, 'learning_rate': 2e-05, 'epoch': 0.01}
{'loss': 1.1, 'learning_rate': 2e-05, 'epoch': 0.02}
{'loss': nan, 'learning_rate': 2e-05, 'epoch': 0.03}
Traceback (most recent call last):
  File "train.py", line 10, in <module>
    trainer.train()
KeyboardInterrupt
"""


def test_the_summary_counts_only_the_anomalies_shown(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(LOG)
    everything = ftmon("scan", str(log), "--min-severity", "info")
    assert "traceback" in everything.stdout  # the Ctrl-C is said, at INFO
    assert everything.stdout.splitlines()[-1] == "anomalies: nan x1, traceback x1"
    errors = ftmon("scan", str(log), "--min-severity", "error")
    assert errors.returncode == 1
    assert "traceback" not in errors.stdout.replace("anomalies: nan x1 (", "")
    assert errors.stdout.splitlines()[-1] == "anomalies: nan x1 (1 more below error, not shown)"
    critical = ftmon("scan", str(log), "--min-severity", "critical", "--json")
    assert critical.returncode == 0
    summary = json.loads(critical.stdout.splitlines()[-1])
    assert summary["anomalies"] == {} and summary["below_min_severity"] == 2


def test_scan_of_one_log_builds_one_monitor(tmp_path: Path, monkeypatch, capsys) -> None:
    """The Monitor that checks --set and --pattern is the one that reads the log (it was built
    twice: once only to check the settings)."""
    from supervisor.cli.main import main
    from supervisor.monitoring.monitor import Monitor

    built: list[Monitor] = []
    init = Monitor.__init__

    def counted(self: Monitor, *args: object, **kwargs: object) -> None:
        built.append(self)
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Monitor, "__init__", counted)
    log = tmp_path / "train.log"
    log.write_text(LOG)
    assert main(["scan", str(log), "--set", "spike.factor=3"]) == 1
    assert "loss is nan" in capsys.readouterr().out
    assert len(built) == 1 and built[0].lines == 7


def test_an_absurd_step_is_shown_bounded(tmp_path: Path) -> None:
    """A seed read as a step (`step=10**300`) prints as 1e+300 in the anomaly and the summary,
    not as a 301-digit number."""
    log = tmp_path / "train.log"
    rows = [f"step {i} loss {1 + i / 100:.2f}" for i in range(1, 31)]
    log.write_text("\n".join([*rows, f"step={10**300} loss=nan", ""]))
    done = ftmon("scan", str(log))
    assert done.returncode == 1
    assert "loss is nan at step 1e+300" in done.stdout
    assert "last step 1e+300," in done.stdout
    assert "0" * 20 not in done.stdout


def test_json_output_of_a_lone_surrogate_from_a_json_log(tmp_path: Path) -> None:
    """A JSON log's `"\\ud800"` decodes to a lone surrogate, which UTF-8 cannot encode: `--json`
    ended in a UnicodeEncodeError traceback; now each line is JSON that gives it back."""
    log = tmp_path / "train.jsonl"
    sample = "\\ud800ab" * 40  # as written in the file: the escape, not the character
    log.write_text(f'{{"type": "sample", "text": "{sample}"}}\n')
    done = ftmon("scan", str(log), "--json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0]["rule"] == "repetition"
    assert records[0]["evidence"][0].startswith("\ud800ab")
    assert records[-1]["type"] == "summary"

"""`vram`, `host_mem` and `exit`: resource samples over limits for a time, and how runs end.

The samples are real: psutil reads this test's own process tree. Only GPU numbers are written
by hand, because this machine has no NVIDIA GPU (the one seam a fake is allowed for).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys

import pytest

from supervisor.events import Exit, ResourceSample, Severity
from supervisor.rules import RULES, WatchSettings, build_rules, describe_exit
from supervisor.rules.exit import ExitRule
from supervisor.rules.resources import HostMemRule, HostMemSettings, VramRule, VramSettings

psutil = pytest.importorskip("psutil")


def real_sample(ts: float) -> ResourceSample:
    """This process's real memory, as resources.py would report it without a GPU."""
    proc = psutil.Process(os.getpid())
    return ResourceSample(
        ts=ts,
        pid=proc.pid,
        host_rss_gb=proc.memory_info().rss / 1e9,
        host_available_gb=psutil.virtual_memory().available / 1e9,
        cpu_percent=0.0,
    )


def gpu(sample: ResourceSample, proc_gb: float | None, used: float, total: float = 80.0):
    return dataclasses.replace(
        sample, gpu_used_gb={0: used}, gpu_total_gb={0: total}, proc_gpu_gb=proc_gb
    )


def test_vram_rule_says_once_that_it_is_off_without_gpu() -> None:
    """With no GPU data the vram rule says so once, at INFO, and then stays quiet."""
    rule = VramRule(VramSettings(limit_gb=10))
    first = rule.on_resource(real_sample(1.0))
    assert [(a.rule, a.severity, a.message) for a in first] == [
        ("vram", Severity.INFO, "vram rule off: no NVIDIA GPU")
    ]
    assert rule.on_resource(real_sample(2.0)) == []


def test_vram_over_limit_for_over_secs() -> None:
    """The run's GPU memory over limit_gb is reported once it has lasted over_secs, once."""
    rule = VramRule(VramSettings(limit_gb=40, over_secs=2))
    base = real_sample(0.0)
    assert rule.on_resource(gpu(dataclasses.replace(base, ts=0.0), 39.0, 39.0)) == []
    assert rule.on_resource(gpu(dataclasses.replace(base, ts=1.0), 41.0, 41.0)) == []
    got = rule.on_resource(gpu(dataclasses.replace(base, ts=3.0), 42.5, 42.5))
    assert len(got) == 1 and got[0].severity == Severity.ERROR
    assert "42.5 GB over the 40.0 GB limit for 2 s" in got[0].message
    assert rule.on_resource(gpu(dataclasses.replace(base, ts=4.0), 43.0, 43.0)) == []
    # Back under, then over again: a new breach.
    assert rule.on_resource(gpu(dataclasses.replace(base, ts=5.0), 30.0, 30.0)) == []
    assert rule.on_resource(gpu(dataclasses.replace(base, ts=6.0), 41.0, 41.0)) == []
    assert len(rule.on_resource(gpu(dataclasses.replace(base, ts=8.0), 41.0, 41.0))) == 1


def test_vram_over_secs_zero_fires_on_the_first_sample() -> None:
    """The recipe's `over_secs: 0` acts on the first sample over the limit."""
    settings = WatchSettings.model_validate({"vram": {"limit_gb": 104, "over_secs": 0}})
    rule = VramRule(settings.vram)
    assert len(rule.on_resource(gpu(real_sample(1.0), 110.0, 110.0, total=128.0))) == 1


def test_vram_without_limit_uses_a_fraction_of_the_device() -> None:
    """No limit_gb: 95% of the device is the limit; lacking per-process data, device use counts."""
    rule = VramRule(VramSettings(over_secs=0))
    assert rule.on_resource(gpu(real_sample(1.0), None, 70.0, total=80.0)) == []
    got = rule.on_resource(gpu(real_sample(2.0), None, 77.0, total=80.0))
    assert len(got) == 1 and "GPU 0 memory in use 77.0 GB" in got[0].message


def test_host_mem_tree_rss_over_limit_with_a_real_child() -> None:
    """A real child holding ~200 MB pushes a 0.05 GB tree limit over; the rule reports it."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; b=bytearray(200*1024*1024); print(1); "
         "sys.stdout.flush(); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"1"
        proc = psutil.Process(child.pid)
        rss = proc.memory_info().rss / 1e9
        sample = dataclasses.replace(real_sample(0.0), pid=child.pid, host_rss_gb=rss)
        rule = HostMemRule(HostMemSettings(limit_gb=0.05, over_secs=0, min_available_gb=0))
        got = rule.on_resource(sample)
        assert rss > 0.15 and len(got) == 1 and "over the 0.05 GB limit" in got[0].message
    finally:
        child.kill()
        child.wait()


def test_host_mem_low_available_memory_for_a_time() -> None:
    """Available memory under min_available_gb for over_secs is a warning, once per episode."""
    rule = HostMemRule(HostMemSettings(min_available_gb=1.0, over_secs=5))
    base = real_sample(0.0)
    assert rule.on_resource(dataclasses.replace(base, ts=0.0, host_available_gb=0.5)) == []
    got = rule.on_resource(dataclasses.replace(base, ts=5.0, host_available_gb=0.4))
    assert len(got) == 1 and got[0].severity == Severity.WARNING
    assert rule.on_resource(dataclasses.replace(base, ts=9.0, host_available_gb=0.4)) == []


def test_host_mem_limit_is_off_by_default() -> None:
    """Without limit_gb, a large tree alone is not reported (only low available memory is)."""
    rule = HostMemRule()
    big = dataclasses.replace(real_sample(0.0), host_rss_gb=500.0, host_available_gb=100.0)
    assert rule.on_resource(big) == [] and rule.on_resource(dataclasses.replace(big, ts=60)) == []


# --- exit -------------------------------------------------------------------------------------


def real_exit(code: str) -> Exit:
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    rc = proc.returncode
    return Exit(ts=1.0, returncode=rc, signal=-rc if rc < 0 else None)


def test_exit_classification_of_real_processes() -> None:
    """Clean exits say nothing; an error code and a signal are errors that say which."""
    rule = ExitRule()
    assert rule.on_exit(real_exit("pass")) == []
    (err,) = rule.on_exit(real_exit("raise SystemExit(3)"))
    assert err.severity == Severity.ERROR and err.message == "exited with code 3"
    (killed,) = rule.on_exit(real_exit("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert killed.message == "killed by SIGKILL (9)"


def test_exit_killed_by_ftmon_is_info_with_the_reason() -> None:
    """When ftmon killed the run, the exit is INFO and repeats ftmon's reason."""
    got = ExitRule().on_exit(Exit(1.0, None, signal.SIGTERM, killed_by_ftmon="nan: loss is nan"))
    assert [(a.severity, a.message) for a in got] == [
        (Severity.INFO, "killed by ftmon: nan: loss is nan")
    ]


def test_shell_codes_for_signals_are_explained() -> None:
    """Code 137 from a shell means its child got SIGKILL; the message says so."""
    assert describe_exit(Exit(1.0, 137)) == "exited with code 137 (a shell's code for SIGKILL)"


# --- settings ---------------------------------------------------------------------------------


def test_watch_settings_read_the_recipe_example() -> None:
    """The design's `watch:` example validates, with the values where rules read them."""
    w = WatchSettings.model_validate(
        {
            "vram": {"limit_gb": 104, "over_secs": 0, "poll_secs": 0.05},
            "repetition": {"min_tokens": 12},
            "stall": {"secs": 600},
            "host_mem": {"limit_gb": 20},
        }
    )
    assert (w.vram.limit_gb, w.vram.over_secs, w.vram.poll_secs) == (104, 0, 0.05)
    assert (w.repetition.min_tokens, w.stall.secs, w.host_mem.limit_gb) == (12, 600, 20)
    assert list(WatchSettings.model_fields) == list(RULES)


def test_watch_settings_reject_unknown_names_with_their_path() -> None:
    """A typo in a rule or a field is an error that names where it is."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as exc:
        WatchSettings.model_validate({"vram": {"limit_gib": 10}, "nan_rule": {}})
    text = str(exc.value)
    assert "vram.limit_gib" in text and "nan_rule" in text and "2 validation errors" in text
    with pytest.raises(ValidationError):
        WatchSettings.model_validate({"vram": {"poll_secs": 0.01}})


def test_every_setting_has_a_default_and_a_description() -> None:
    """Each rule's settings can be left out entirely and explain every field."""
    for name, field in WatchSettings.model_fields.items():
        model = field.annotation
        assert model is not None and "enabled" in model.model_fields, name
        for fname, f in model.model_fields.items():
            assert f.description, f"{name}.{fname} has no description"
            assert not f.is_required(), f"{name}.{fname} has no default"


def test_disabled_rules_are_not_built() -> None:
    """`enabled: false` leaves a rule out of build_rules."""
    w = WatchSettings.model_validate({"repetition": {"enabled": False}, "vram": {"enabled": False}})
    names = [r.name for r in build_rules(w)]
    assert "repetition" not in names and "vram" not in names and "nan" in names
    assert [r.name for r in build_rules()] == list(RULES)

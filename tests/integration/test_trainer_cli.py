"""`python -m trainer`'s flags: both spellings, booleans, a quick `--help`, no UI imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from trainer.cli import FLAGS, parse_args


def test_every_multi_word_flag_accepts_dash_and_underscore() -> None:
    """A recipe's `micro_batch: 4` and a person's `--micro-batch 4` mean the same thing."""
    assert parse_args(["--micro_batch", "4"]).micro_batch == 4
    assert parse_args(["--micro-batch", "4"]).micro_batch == 4
    assert (
        parse_args(["--output-dir", "x"]).output_dir == parse_args(["--output_dir", "x"]).output_dir
    )
    for flag in FLAGS:
        if "_" in flag.name:
            dashed = flag.name.replace("_", "-")
            assert f"--{dashed}" in subprocess_help(), dashed


_HELP: list[str] = []


def subprocess_help() -> str:
    if not _HELP:
        out = subprocess.run(
            [sys.executable, "-m", "trainer", "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        _HELP.append(out.stdout)
    return _HELP[0]


def test_boolean_flags_take_a_bare_flag_or_a_value() -> None:
    """`--grad_checkpointing`, `--grad_checkpointing true` and `... false` all parse."""
    assert parse_args(["--grad_checkpointing"]).grad_checkpointing is True
    assert parse_args(["--grad_checkpointing", "true"]).grad_checkpointing is True
    assert parse_args(["--grad-checkpointing", "False"]).grad_checkpointing is False
    assert parse_args([]).grad_checkpointing is False
    assert parse_args(["--resume", "--output_dir", "o"]).resume is True


def test_bad_flags_exit_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown method or a bad boolean is a usage error, not a traceback."""
    for argv in (
        ["--method", "dpo"],
        ["--grad_checkpointing", "maybe"],
        ["--resume"],
        ["--steps", "0"],
    ):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_help_loads_neither_torch_nor_textual() -> None:
    """`python -m trainer --help` answers without importing torch, transformers or textual."""
    code = (
        "import sys, json\n"
        "from trainer.__main__ import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "--micro-batch" in out.stdout
    loaded = set(json.loads(out.stderr.strip().splitlines()[-1]))
    assert not loaded & {"torch", "transformers", "peft", "textual"}


def test_trainer_modules_never_import_textual() -> None:
    """Importing every trainer module (torch and all) loads no textual or tui."""
    pytest.importorskip("torch")
    mods = ["trainer"] + [
        f"trainer.{p.stem}" for p in (ROOT / "trainer").glob("*.py") if p.stem[0] != "_"
    ]
    code = (
        "import importlib, json, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "trainer.callback" in loaded
    assert not any(m == "textual" or m.startswith(("textual.", "tui")) for m in loaded)

"""The headless core never loads the UI or torch; `ftmon --help` starts without them."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def loaded_after_import(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


def headless_modules() -> list[str]:
    import supervisor

    names = ["supervisor"]
    for info in pkgutil.walk_packages(supervisor.__path__, "supervisor."):
        if not info.name.endswith("__main__"):  # running it would start the CLI
            names.append(info.name)
    return names


def test_supervisor_imports_neither_textual_nor_torch() -> None:
    """Importing every module of supervisor/ loads no textual, plotext or torch."""
    mods = headless_modules()
    assert len(mods) > 5
    loaded = loaded_after_import(mods)
    for banned in ("textual", "plotext", "textual_plotext", "torch", "transformers", "peft"):
        assert banned not in loaded, f"{banned} imported by the headless core"


def test_ftmon_help_does_not_load_textual_or_torch() -> None:
    """`ftmon --help` (the console script's path) answers without importing textual or torch."""
    code = (
        "import sys, json\n"
        "from tui.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "ftmon --watch LOG" in " ".join(out.stdout.split())  # help wraps lines
    loaded = set(json.loads(out.stderr.strip().splitlines()[-1]))
    assert "textual" not in loaded
    assert "torch" not in loaded


def test_ftmon_watch_does_not_load_textual_or_torch(tmp_path: Path) -> None:
    """`ftmon --watch LOG` (through the console script) reads a log without textual or torch."""
    log = tmp_path / "train.log"
    log.write_text("{'loss': nan, 'grad_norm': 1.0, 'learning_rate': 1e-05, 'epoch': 0.1}\n")
    code = (
        "import sys, json\n"
        "from tui.cli import main\n"
        f"rc = main(['scan', {str(log)!r}])\n"
        "print(json.dumps([rc, sorted(sys.modules)]), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    rc, loaded = json.loads(out.stderr.strip().splitlines()[-1])
    assert rc == 1 and "nan" in out.stdout  # it really read the log and found the NaN
    for banned in ("textual", "torch", "plotext"):
        assert banned not in loaded

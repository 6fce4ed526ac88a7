"""matplotlib is loaded by `ftmon report` alone: not by `ftmon --help`, the supervisor, the
comparison or the report's text (a fresh interpreter, as the boundary tests do)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

CHECK = """
import sys
import supervisor.cli.main as m
m.build_parser()
import supervisor.runs.supervise, supervisor.sweep.study, supervisor.report.compare
import supervisor.report.document, supervisor.report.render, supervisor.cli.report
print("matplotlib" in sys.modules)
"""


def test_nothing_but_the_plots_imports_matplotlib() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"

"""Every recipe shipped under recipes/ (all of it) loads, plans, and gives a valid command.sh."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from supervisor.monitoring.monitor import Monitor
from supervisor.monitoring.watch import scan_file
from supervisor.recipe.model import REDACTED, Recipe, apply_overrides, load_recipe
from supervisor.runs.plan import plan_run, write_run_files
from tests.conftest import ROOT

RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*") if p.suffix in (".yaml", ".yml"))
IDS = [str(p.relative_to(ROOT)) for p in RECIPES]


def test_the_examples_are_there() -> None:
    """The three example recipes the README points to are shipped (and found by the walk)."""
    names = {p.name for p in RECIPES}
    assert {"command.yaml", "hf-trainer.yaml", "external-vram.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=IDS)
def test_shipped_recipe_loads_and_plans(path: Path, tmp_path: Path) -> None:
    """The recipe validates, renders every placeholder, and its command.sh parses in bash."""
    recipe = load_recipe(path)
    env = {**os.environ, **{k: "x" for k, v in recipe.env.items() if v == REDACTED}}
    plan = plan_run(recipe, "20260101-0000-test", 1, tmp_path / "logs", base_env=env)
    assert plan.argv[0]
    write_run_files(plan)
    check = subprocess.run(
        ["bash", "-n", str(plan.run_dir / "command.sh")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert load_recipe(plan.run_dir / "recipe.yaml").name == recipe.name


@pytest.mark.parametrize("path", RECIPES, ids=IDS)
def test_shipped_recipe_opens_with_its_command(path: Path) -> None:
    """Each recipe opens with a comment that shows the exact `ftmon` command that runs it."""
    lines = path.read_text().splitlines()
    end = next((i for i, x in enumerate(lines) if not x.startswith("#")), len(lines))
    opening = lines[:end]
    rel = str(path.relative_to(ROOT))
    assert any("ftmon " in x and rel in x for x in opening), (
        f"{rel} opens with no `ftmon ... {rel}`"
    )


def _run_demo(tmp_path: Path, sets: list[str]) -> tuple[Recipe, Path]:
    recipe = apply_overrides(load_recipe(ROOT / "recipes" / "command.yaml"), sets)
    plan = plan_run(recipe, "demo", 1, tmp_path / "logs")
    write_run_files(plan)
    log = plan.log_path
    subprocess.run(
        ["bash", "-c", f"{plan.run_dir / 'command.sh'} >> {log} 2>&1"], check=True, timeout=60
    )
    return recipe, log


def test_command_demo_prints_metrics_the_monitor_reads(tmp_path: Path) -> None:
    """recipes/command.yaml really runs: its metric lines parse, and a healthy run is quiet."""
    recipe, log = _run_demo(tmp_path, ["steps=5", "delay=0"])
    lines = log.read_text().splitlines()
    assert len(lines) == 6 and lines[-1] == "done"
    events = scan_file(log, Monitor(recipe.watch, recipe.patterns))
    metrics = [e for e in events if type(e).__name__ == "Metric"]
    assert [m.step for m in metrics] == [1, 2, 3, 4, 5]
    assert not [e for e in events if type(e).__name__ == "Anomaly"]


def test_command_demo_with_high_lr_goes_nan(tmp_path: Path) -> None:
    """`--set lr=1.0` on the demo makes the loss nan, which the nan rule (its policy) catches."""
    recipe, log = _run_demo(tmp_path, ["steps=3", "delay=0", "lr=1.0"])
    events = scan_file(log, Monitor(recipe.watch, recipe.patterns))
    rules = {e.rule for e in events if type(e).__name__ == "Anomaly"}
    assert "nan" in rules and recipe.on["nan"].do == "relaunch"


@pytest.mark.slow  # imports transformers
def test_hf_trainer_recipe_speaks_training_arguments(tmp_path: Path) -> None:
    """recipes/hf-trainer.yaml renders flags that HfArgumentParser(TrainingArguments) accepts,
    with the values the recipe gives (checked against transformers itself, not a copy)."""
    transformers = pytest.importorskip("transformers")
    recipe = load_recipe(ROOT / "recipes" / "hf-trainer.yaml")
    plan = plan_run(recipe, "hf", 1, tmp_path / "logs")
    parser = transformers.HfArgumentParser(transformers.TrainingArguments)
    parser.add_argument("--model_name_or_path")  # the script's own argument
    # parse_known_args only: building TrainingArguments would check for a GPU (bf16).
    ns, unknown = parser.parse_known_args(plan.argv[len(recipe.command) :])
    assert unknown == []
    assert ns.learning_rate == recipe.args["learning_rate"]
    assert ns.per_device_train_batch_size == recipe.args["per_device_train_batch_size"]
    assert ns.gradient_accumulation_steps == recipe.args["gradient_accumulation_steps"]
    assert ns.bf16 is True
    assert "--gradient_checkpointing" not in plan.argv  # false + bools: bare = left out
    assert ns.output_dir == f"{plan.run_dir}/checkpoints"

"""The launch-time check of what a run writes: each unsafe shape is named with its argument
and what to write instead; safe shapes and recipes without a relaunch policy pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor.recipe.model import Recipe
from supervisor.runs.plan import plan_run
from supervisor.runs.writes import launch_problems, output_paths

RELAUNCH = {"nan": {"do": "relaunch"}}


def problems(tmp_path: Path, **fields: Any) -> list[str]:
    fields.setdefault("on", RELAUNCH)
    recipe = Recipe.model_validate({"name": "r", "command": ["python", "train.py"], **fields})
    plan = plan_run(recipe, "r1", 1, tmp_path / "logs", base_env={"PATH": "/bin"})
    return [f"{p.field_path}: {p.message}" for p in launch_problems(plan)]


def test_a_per_run_output_folder_passes(tmp_path: Path) -> None:
    found = problems(tmp_path, args={"output_dir": "{run_dir}/out", "lr": 0.1, "data": "/d/x"})
    assert found == []


def test_a_fixed_output_folder_is_named_with_what_to_write(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, args={"output_dir": "out", "lr": 0.1})
    assert found.startswith('args.output_dir: "out" is written by every attempt')
    assert 'write "{run_dir}/out" instead' in found


def test_without_a_relaunch_policy_nothing_is_refused(tmp_path: Path) -> None:
    """Only a relaunch depends on a clean start: an alert-only recipe may write anywhere."""
    assert problems(tmp_path, args={"output_dir": "out"}, on={"nan": {"do": "alert"}}) == []


def test_flags_written_into_command_are_read_too(tmp_path: Path) -> None:
    """nanoGPT's `--out_dir=out` and `--init_from=resume` in `command` itself."""
    found = problems(
        tmp_path,
        command=["python", "train.py", "config/x.py", "--out_dir=out", "--init_from=resume"],
    )
    assert [f.split(":")[0] for f in found] == ["command.3", "command.4"]
    assert "init_from=resume resumes from" in found[1]


def test_hf_resume_from_checkpoint_true_with_a_shared_output_dir(tmp_path: Path) -> None:
    found = problems(
        tmp_path, args={"output_dir": "/tmp/shared-out", "resume_from_checkpoint": True}
    )
    assert [f.split(":")[0] for f in found] == ["args.output_dir", "args.resume_from_checkpoint"]
    assert "a relaunch would start from the failed attempt's checkpoint" in found[1]


def test_a_resume_switch_with_no_output_folder_in_sight_is_refused(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, args={"resume": True, "lr": 0.1})
    assert "resumes from a folder ftmon cannot see" in found


def test_resuming_from_a_fixed_checkpoint_outside_the_outputs_passes(tmp_path: Path) -> None:
    """Every attempt starting from the same existing checkpoint is a base, not a failed run."""
    start = tmp_path / "pretrained" / "checkpoint-500"
    start.mkdir(parents=True)
    args = {"output_dir": "{run_dir}/out", "resume_from_checkpoint": str(start)}
    assert problems(tmp_path, args=args) == []


def test_a_checkpoint_inside_a_shared_output_folder_is_refused(tmp_path: Path) -> None:
    args = {
        "output_dir": str(tmp_path / "out"),
        "resume_from_checkpoint": str(tmp_path / "out" / "checkpoint-10"),
    }
    found = problems(tmp_path, args=args)
    assert any(f.startswith("args.resume_from_checkpoint:") for f in found)


def test_an_output_inside_the_base_weights_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "base"
    weights.mkdir()
    for out in ("{base_weights}", "{base_weights}/ft"):
        (found,) = problems(tmp_path, base_weights=str(weights), args={"out_dir": out})
        assert "points into base_weights" in found and f'"{out}"' in found
    read = {"model": "{base_weights}", "output_dir": "{run_dir}"}
    assert problems(tmp_path, base_weights=str(weights), args=read) == []


def test_path_arguments_count_as_written_unless_they_are_inputs(tmp_path: Path) -> None:
    """A path that does not exist is written (a report file), unless its name or a glob says
    it is read (a data file on another machine, `data/*.bin`), or it is a hub name."""
    recipe = Recipe(
        name="r",
        command=["python", "t.py"],
        args={
            "report": "results/metrics.json",
            "data": "/data/train.jsonl",
            "i": "dev/data/*.bin",
            "tokenizer_name": "Qwen/Qwen3-4B",
            "lr": 0.1,
        },
    )
    values = {"run_dir": str(tmp_path / "r1"), "run_id": "r1", "attempt": "1"}
    assert output_paths(recipe, values, tmp_path) == [tmp_path / "results" / "metrics.json"]


async def test_the_wait_before_a_kill_follows_checkpoints_not_logs(tmp_path: Path) -> None:
    """A metrics file the run appends to every step does not hold a kill back; a checkpoint
    written in the last second, or a last line announcing a save, does, until it is quiet."""
    import asyncio

    from supervisor.runs.writes import wait_for_save

    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "output.log"
    log.write_text("step 10 loss 1.0\n")
    metrics = out / "metrics.jsonl"
    stop = asyncio.Event()

    async def append_metrics() -> None:
        while not stop.is_set():
            with metrics.open("a") as f:
                f.write('{"loss": 1.0}\n')
            await asyncio.sleep(0.02)

    task = asyncio.create_task(append_metrics())
    assert await wait_for_save([out], log, bound=30, quiet=0.3) == 0.0
    (out / "model.safetensors").write_bytes(b"x" * 1000)
    waited = await wait_for_save([out], log, bound=30, quiet=0.3)
    assert 0.3 <= waited < 5
    stop.set()
    await task
    log.write_text("step 10 loss 1.0\nsaving checkpoint to out\n")
    assert await wait_for_save([tmp_path / "nothing-yet"], log, bound=30, quiet=0.3) >= 0.3
    assert await wait_for_save([out], log, bound=0, quiet=0.3) == 0.0


def test_a_scripts_own_defaults_count_unless_the_recipe_sets_them(tmp_path: Path) -> None:
    """nanoGPT's train.py says `out_dir = 'out'` and a config file `init_from = 'resume'`;
    a recipe that passes neither is refused at those lines; one that sets them passes."""
    (tmp_path / "train.py").write_text("import os\nout_dir = 'out'\ninit_from = 'scratch'\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "ft.py").write_text("# fine-tune\ninit_from = 'resume'  # go on\n")
    command = ["python", "train.py", "config/ft.py"]
    found = problems(tmp_path, command=command, cwd=str(tmp_path), flags={"equals": True})
    assert [f.split(": ")[0] for f in found] == ["train.py:2", "ft.py:2"]
    assert 'set it in the recipe instead: args: {out_dir: "{run_dir}/out"}' in found[0]
    assert "override it in the recipe (args: {init_from: scratch})" in found[1]
    args = {"out_dir": "{run_dir}/out", "init_from": "scratch"}
    fixed = problems(tmp_path, command=command, cwd=str(tmp_path), args=args)
    assert fixed == []

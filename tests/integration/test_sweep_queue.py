"""The sweep queue with real supervised processes: GPU placement through a fake NVML (this
machine has no GPU; the seam is the device list), a member too large for every GPU refused with
its estimate, and `ftmon replay SWEEP` running the study again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from supervisor.recipe.model import load_recipe
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History, SweepRecord
from supervisor.sweep.expand import expand
from supervisor.sweep.queue import GB, GpuCapacity, SweepQueue
from tests.conftest import ftmon
from tests.programs.recipes import write_recipe


class FakeNvml:
    def __init__(self, devices: dict[int, tuple[float, float]]) -> None:
        self.devices = devices  # GB used, GB total

    def memory(self) -> dict[int, tuple[int, int]]:
        return {i: (int(u * GB), int(t * GB)) for i, (u, t) in self.devices.items()}


async def test_members_go_to_a_gpu_that_fits_and_one_too_large_is_refused(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(
        tmp_path, "count_steps.py", name="gpu-sweep", args={"steps": 5, "interval": 0.02},
        sweep={"grid": {"steps": [5, 6, 7]}},
    ))  # fmt: skip
    members = expand(recipe)
    estimates = {"gpu-sweep-1": 20.0, "gpu-sweep-2": 100.0, "gpu-sweep-3": 20.0}
    history = History.in_logs_dir(tmp_path / "logs")
    history.add_sweep(SweepRecord("sweep-t", "gpu-sweep", 0.0, "", "", ("steps",), None),
                      [(m.index, m.values) for m in members])  # fmt: skip
    sup = Supervisor(history, tmp_path / "logs", lambda event: None)
    recorded: list[tuple[int, str, str]] = []

    def record(member, status, run_id, detail):  # type: ignore[no-untyped-def]
        recorded.append((member.index, status, detail))
        history.set_sweep_member("sweep-t", member.index, status=status, run_id=run_id,
                                 detail=detail)  # fmt: skip

    # GPU 0 is nearly full (another user's job); GPU 1 is free but holds one 20 GB member.
    capacity = GpuCapacity(FakeNvml({0: (70.0, 80.0), 1: (0.0, 24.0)}))
    queue = SweepQueue(sup, capacity, sweep_id="sweep-t", record=record,
                       estimate=lambda r: estimates[r.name], poll_secs=0.05)  # fmt: skip
    outcomes = await queue.run(members)
    await sup.close()

    assert [o.status for o in outcomes] == ["finished", "refused", "finished"]
    assert outcomes[1].detail == (
        "does not fit: the memory estimate is 100.0 GB and the largest GPU has 80.0 GB"
    )
    first, third = (history.get(outcomes[i].run_id or "") for i in (0, 2))
    assert first is not None and third is not None
    assert first.env["CUDA_VISIBLE_DEVICES"] == "1" == third.env["CUDA_VISIBLE_DEVICES"]
    assert first.ended_at is not None and third.started_at >= first.ended_at  # it waited
    rows = {m.member: m for m in history.sweep_members("sweep-t")}
    assert rows[2].status == "refused" and "100.0 GB" in rows[2].detail
    history.close()


def test_replay_of_a_sweep_runs_every_member_again(tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path, "count_steps.py", name="tiny-study", args={"steps": 3, "interval": 0.01},
        sweep={"grid": {"steps": [2, 3]}, "max_parallel": 2},
    )  # fmt: skip
    logs = str(tmp_path / "logs")
    first = ftmon("sweep", str(recipe), "--logs-dir", logs)
    assert first.returncode == 0, first.stdout + first.stderr
    db = sqlite3.connect(Path(logs) / "ftmon.db")
    (old,) = db.execute("SELECT id FROM sweeps").fetchone()
    again = ftmon("replay", old, "--logs-dir", logs)
    assert again.returncode == 0, again.stdout + again.stderr
    new, replay_of = db.execute("SELECT id, replay_of FROM sweeps WHERE id != ?", (old,)).fetchone()
    assert replay_of == old
    members = db.execute(
        "SELECT m.values_json, r.status FROM sweep_members m JOIN runs r ON r.id = m.run_id"
        " WHERE m.sweep_id = ? ORDER BY m.member", (new,),
    ).fetchall()  # fmt: skip
    assert [(json.loads(v), s) for v, s in members] == [
        ({"steps": 2}, "finished"), ({"steps": 3}, "finished"),
    ]  # fmt: skip
    assert f"ftmon compare {new}" in again.stdout
    listed = ftmon("compare", "--logs-dir", logs).stdout.splitlines()  # the sweeps, newest first
    assert [line.split()[0] for line in listed] == [new, old]


def test_successive_halving_stops_members_outside_the_best_share(tmp_path: Path) -> None:
    """One member at a time, levels 2, 1, 4, 3, rung at step 10, keep half: the 4 (worse than
    both before it) and the 3 (outside the best two of four) are stopped at the rung; the
    record and the comparison say why; the sweep still exits 0."""
    recipe = write_recipe(
        tmp_path, "val_curve.py", name="halving", args={"level": 0.0, "steps": 60},
        sweep={"zip": {"level": [2.0, 1.0, 4.0, 3.0]}, "max_parallel": 1,
               "prune": {"metric": "val_loss", "mode": "min", "rungs": [10], "keep": 0.5}},
    )  # fmt: skip
    logs = str(tmp_path / "logs")
    done = ftmon("sweep", str(recipe), "--logs-dir", logs)
    assert done.returncode == 0, done.stdout + done.stderr
    db = sqlite3.connect(Path(logs) / "ftmon.db")
    rows = db.execute(
        "SELECT m.member, m.status, m.detail, r.status, r.end_reason FROM sweep_members m"
        " JOIN runs r ON r.id = m.run_id ORDER BY m.member"
    ).fetchall()
    assert [(m, s) for m, s, *_ in rows] == [
        (1, "launched"), (2, "launched"), (3, "pruned"), (4, "pruned"),
    ]  # fmt: skip
    assert rows[2][2] == (
        "pruned at step 10: val_loss 4.1 is not in the best 50% of 3 (cut-off 1.1)"
    )
    assert rows[3][2].startswith("pruned at step 10: val_loss 3.1 is not in the best 50% of 4")
    assert [r[3] for r in rows] == ["finished", "finished", "killed", "killed"]
    assert "pruned at step 10" in rows[2][4]
    (sweep_id,) = db.execute("SELECT id FROM sweeps").fetchone()
    table = json.loads(ftmon("compare", sweep_id, "--json", "--logs-dir", logs).stdout)
    assert [r["status"] for r in table["rows"]] == ["finished", "finished", "pruned", "pruned"]


def test_run_of_a_sweep_recipe_points_to_ftmon_sweep(tmp_path: Path) -> None:
    """`ftmon run --headless` on a study launches nothing and says how to run it (exit 2)."""
    recipe = write_recipe(tmp_path, "count_steps.py", name="study", args={"steps": 2},
                          sweep={"grid": {"steps": [2, 3]}})  # fmt: skip
    done = ftmon("run", str(recipe), "--headless", "--logs-dir", str(tmp_path / "logs"))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"{recipe}: sweep: this recipe is a sweep; run it with `ftmon sweep {recipe}` "
        f"(or in the TUI: `ftmon {recipe}`)"
    )
    assert not (tmp_path / "logs" / "ftmon.db").exists()

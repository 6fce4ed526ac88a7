"""A real 2x2 sweep of the tiny model on the CPU, through the `ftmon` console script: one member
goes NaN and is relaunched by its own policy while the others run on; `compare` and `report`
then make the table and the PNG plots from the database alone."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, ftmon

# lr 5 without clipping overflows within a few steps; with clip 1.0, or at lr 0.5, it trains.
RECIPE = {
    "name": "tiny-sweep",
    "base_weights": "tiny",
    "command": ["python", "-m", "trainer"],
    "cwd": str(ROOT),
    "args": {
        "model": "{base_weights}", "method": "sft", "data": "synthetic",
        "output_dir": "{run_dir}/out", "steps": 8, "micro_batch": 4, "seq_len": 64,
        "optimizer": "sgd", "momentum": 0.9, "lr": 0.5, "clip": 1.0, "warmup": 2,
        "log_every": 2, "eval_every": 4, "eval_size": 4, "sample_every": 0,
        "max_new_tokens": 8, "seed": 0, "threads": 1, "mc_eval": "arc={arc}",
    },
    "env": {"OMP_NUM_THREADS": "1"},
    "on": {"nan": {"do": "relaunch", "adjust": {"lr": "*0.1"}, "max": 2}},
    "kill_grace_secs": 2.0,
    "sweep": {"grid": {"lr": [0.5, 5.0], "clip": [1.0, 0.0]}, "max_parallel": 2},
}  # fmt: skip


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.slow
def test_tiny_sweep_relaunches_its_nan_member_then_compares_and_reports(tmp_path: Path) -> None:
    arc = tmp_path / "arc.jsonl"  # six items of the shipped ARC-shaped sample: a quick eval
    sample = (ROOT / "trainer" / "samples" / "arc_sample.jsonl").read_text().splitlines()
    arc.write_text("\n".join(sample[:6]) + "\n")
    data = json.loads(json.dumps(RECIPE))
    data["args"]["mc_eval"] = data["args"]["mc_eval"].format(arc=arc)
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    logs = tmp_path / "logs"
    done = ftmon("sweep", str(recipe), "--logs-dir", str(logs), cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr

    db = sqlite3.connect(logs / "ftmon.db")
    (sweep_id,) = db.execute("SELECT id FROM sweeps").fetchone()
    members = db.execute(
        "SELECT member, run_id, values_json FROM sweep_members WHERE sweep_id = ? ORDER BY member",
        (sweep_id,),
    ).fetchall()
    assert [json.loads(v) for _, _, v in members] == [
        {"lr": 0.5, "clip": 1.0}, {"lr": 0.5, "clip": 0.0},
        {"lr": 5.0, "clip": 1.0}, {"lr": 5.0, "clip": 0.0},
    ]  # fmt: skip
    nan_member = members[3][1]
    children = db.execute(
        "SELECT id, reason_started, status FROM runs WHERE parent_id = ?", (nan_member,)
    ).fetchall()
    assert len(children) == 1 and children[0][2] == "finished"
    assert "lr 5 -> 0.5" in children[0][1]
    # The others ran once, untouched by the NaN member's relaunch.
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 5
    for _, run_id, _ in members[:3]:
        assert db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0] == (
            "finished"
        )
        assert not db.execute("SELECT 1 FROM runs WHERE parent_id = ?", (run_id,)).fetchall()
    db.close()
    shown = ftmon("show", children[0][0], "--logs-dir", str(logs)).stdout
    one = ftmon("report", children[0][0], "--no-plots", "-o", str(tmp_path / "one"),
                "--logs-dir", str(logs))  # fmt: skip
    assert f"Member 4 (lr=5 clip=0) of sweep `{sweep_id}`" in Path(one.stdout.strip()).read_text()
    assert f"sweep     {sweep_id}  member 4 (lr=5.0 clip=0.0)" in shown  # a relaunch's study

    table = json.loads(ftmon("compare", sweep_id, "--json", "--logs-dir", str(logs)).stdout)
    rows = {r["label"]: r for r in table["rows"]}
    assert [rows[f"#{i}"]["relaunches"] for i in (1, 2, 3, 4)] == [0, 0, 0, 1]
    assert rows["#4"]["anomalies"] >= 1
    for row in rows.values():
        assert row["final_val_loss"] is not None and row["tok_s"] > 0
        assert row["accuracy"] is not None and row["wall_secs"] > 0
        assert 0.0 <= row["arc"] <= 1.0  # the trainer's arc_acc, stored as an eval metric
    text = ftmon("compare", sweep_id, "--sort", "final_val_loss", "--logs-dir", str(logs)).stdout
    assert text.splitlines()[0].split()[:3] == ["run", "lr", "clip"]

    out = tmp_path / "report"
    made = ftmon("report", sweep_id, "-o", str(out), "--logs-dir", str(logs), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    md = (out / f"{sweep_id}.md").read_text()
    assert "| run | lr | clip | best val |" in md
    assert "relaunch after nan: lr 5 -> 0.5" in md and "python -m trainer" in md
    assert "| gen len | arc | tok/s |" in md  # the ARC-shaped accuracy is a column
    for name in ("loss", "val_loss", "accuracy", "arc_acc"):
        png = out / f"{name}.png"
        assert f"]({name}.png)" in md
        assert _png_size(png) == (800, 450)
        _assert_has_a_plot(png)

    page = ftmon("report", sweep_id, "--html", "-o", str(tmp_path / "html"),
                 "--logs-dir", str(logs)).stdout.strip()  # fmt: skip
    html = Path(page).read_text()
    assert html.count("src='data:image/png;base64,") >= 3
    assert list((tmp_path / "html").iterdir()) == [Path(page)]  # one self-contained file


def _assert_has_a_plot(png: Path) -> None:
    """Lines in colour, not a blank or all-white canvas: many pixels of the plot colours."""
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    spread = pixels.max(axis=-1) - pixels.min(axis=-1)  # grey/black/white have none
    coloured = int((spread > 0.3).sum())
    assert coloured > 500, f"{png}: only {coloured} coloured pixels"

"""The reference trainer under real torchrun: 2 CPU ranks (gloo), averaged gradients."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from tests.conftest import ROOT

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def torchrun_trainer(tmp_path: Path, *args: str) -> tuple[str, list[dict[str, Any]]]:
    out = subprocess.run(
        [*TORCHRUN, "--nproc_per_node", "2", "-m", "trainer", "--threads", "1",
         "--eval_size", "4", "--max_new_tokens", "4", "--train_size", "200",
         "--micro_batch", "4", "--seq_len", "48", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    records = [json.loads(s) for s in out.stdout.splitlines() if s.startswith("{")]
    return out.stdout, records


@pytest.mark.slow
def test_two_ranks_train_on_their_own_shards_with_averaged_gradients(tmp_path: Path) -> None:
    """Each rank prints its own metric lines (own loss on its shard, its rank), the gradient norm
    after the all-reduce is the same on both, and only rank 0 evaluates and saves."""
    if shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists():
        pytest.skip("torchrun is not installed")
    output = tmp_path / "out"
    text, records = torchrun_trainer(
        tmp_path, "--steps", "6", "--log_every", "2", "--output_dir", str(output)
    )
    metrics = [r for r in records if r["type"] == "metric"]
    by_rank = {rank: {m["step"]: m for m in metrics if m["rank"] == rank} for rank in (0, 1)}
    assert sorted(by_rank[0]) == sorted(by_rank[1]) == [2, 4, 6]
    for step in (2, 4, 6):
        zero, one = by_rank[0][step], by_rank[1][step]
        assert zero["grad_norm"] == one["grad_norm"]  # synchronised gradients
        assert zero["loss"] != one["loss"]  # but different data
    assert "rank 0 of 2: 100 train records" in text and "rank 1 of 2: 100 train records" in text
    evals = [r for r in records if r["type"] == "eval"]
    assert len(evals) == 1  # rank 0 only
    summaries = {r["rank"]: r for r in records if r["type"] == "summary"}
    assert (
        set(summaries) == {0, 1} and "val_loss" in summaries[0] and "val_loss" not in summaries[1]
    )
    assert (output / "final").is_dir()
    assert text.count("saved ") == 1

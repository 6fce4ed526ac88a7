"""Resources of a Slurm job on the real one-node cluster of .ci/slurm-up: the job's processes
are slurmd's, not ftmon's children, yet its memory is sampled (through `scontrol listpids`) and
a host_mem rule acts on it, as on a local run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from supervisor.events import Anomaly
from supervisor.monitoring.resources import GB
from supervisor.recipe.model import load_recipe
from supervisor.runs import events as ev
from supervisor.runs.executors.slurm_cli import SlurmCli, available
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History
from tests.conftest import async_wait_for
from tests.programs.recipes import write_recipe

WHY_NOT = available()
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"no Slurm here: {WHY_NOT}")

HOLD_MB = 200


async def test_a_slurm_jobs_memory_is_sampled_and_a_host_mem_rule_kills_it(
    tmp_path: Path,
) -> None:
    """A job holding 200 MB of host memory: its samples show at least that much resident
    memory of the job's own processes, and `host_mem` with a 0.15 GB limit kills it (scancel)."""
    recipe = load_recipe(
        write_recipe(
            tmp_path, "memhog.py", executor={"kind": "slurm", "time": "5"},
            args={"mb-per-step": HOLD_MB, "steps": 1, "interval": 0, "hold": 120},
            watch={"host_mem": {"limit_gb": 0.15, "over_secs": 0, "min_available_gb": 0},
                   "vram": {"poll_secs": 0.2}},
            on={"host_mem": {"do": "kill"}},
        )
    )  # fmt: skip
    events: list[object] = []
    logs = tmp_path / "logs"
    sup = Supervisor(History(logs / "ftmon.db"), logs, events.append)
    job = ""
    try:
        run_id = await sup.launch(recipe)
        rec = sup.history.get(run_id)
        assert rec is not None and rec.executor
        job = str(rec.executor["job_id"])

        def found() -> list[Anomaly]:
            return [e.anomaly for e in events if isinstance(e, ev.AnomalyFound)]

        await async_wait_for(
            lambda: any(a.rule == "host_mem" for a in found()), 30, "for host_mem to fire"
        )
        ended = await asyncio.wait_for(sup.wait_lineage(run_id), 30)
    finally:
        await sup.close(kill=True)
        if job:
            SlurmCli().cancel(job)
    samples = [e.sample for e in events if isinstance(e, ev.ResourcesObserved)]
    assert samples, "no resource sample of the Slurm job"
    biggest = max(s.host_rss_gb for s in samples)
    assert biggest >= HOLD_MB * 1024**2 / GB, f"largest sample {biggest * 1024:.0f} MB"
    assert ended.status == "killed" and ended.reason == "killed by ftmon: rule host_mem"
    info = SlurmCli().job(job)
    assert info is not None and not info.live, info
    assert not [a for a in found() if a.rule == "resources"]  # the job ran here: nothing to say

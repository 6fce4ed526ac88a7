"""A recipe's `launcher:` (how many processes: torchrun) and `executor:` (where: this machine or
a Slurm cluster), validated at the edge; runs/executors/choose.py turns them into executors.

```yaml
launcher: {kind: torchrun, nproc_per_node: 2, nnodes: 1}
executor: {kind: slurm, partition: gpu, nodes: 1, gpus_per_node: 8, time: "4:00:00"}
```
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^UNLIMITED$|^INFINITE$")
_SLURM_MEM = re.compile(r"^\d+[KMGT]?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TorchrunLauncher(_Model):
    """Start the command as `nproc_per_node` ranks per node under torchrun."""

    kind: Literal["torchrun"]
    nproc_per_node: int = Field(ge=1, le=1024)
    nnodes: int = Field(1, ge=1, le=4096)


class LocalExecutorSpec(_Model):
    """This machine (the default)."""

    kind: Literal["local"]


class SlurmExecutorSpec(_Model):
    """A batch job: these become `#SBATCH` options; `extra` lines are passed verbatim."""

    kind: Literal["slurm"]
    partition: str | None = None
    nodes: int = Field(1, ge=1, le=4096)
    ntasks_per_node: int = Field(1, ge=1, le=1024)
    gpus_per_node: int | None = Field(None, ge=0, le=64)
    cpus_per_task: int | None = Field(None, ge=1, le=4096)
    mem: str | None = None
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    extra: list[str] = []

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and not _SLURM_TIME.match(value):
            raise ValueError(f"{value!r} is not a Slurm time: minutes, MM:SS, HH:MM:SS or D-HH:MM")
        return value

    @field_validator("mem")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        if value is not None and not _SLURM_MEM.match(value):
            raise ValueError(f"{value!r} is not a Slurm memory size: e.g. 64G, 500M, 1024")
        return value

    @field_validator("extra")
    @classmethod
    def _extra(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.startswith("--") or "\n" in item:
                raise ValueError(
                    f"{item!r}: each extra item is one sbatch option, e.g. --exclusive"
                )
        return value


Launcher = TorchrunLauncher
ExecutorSpec = Annotated[LocalExecutorSpec | SlurmExecutorSpec, Field(discriminator="kind")]

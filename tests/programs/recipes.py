"""Write recipes for the test programs: real YAML files, loaded the way `ftmon run` loads them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

PROGRAMS = Path(__file__).resolve().parent


def write_recipe(folder: Path, program: str, **fields: Any) -> Path:
    """A recipe running `python PROGRAM` with `fields` (args, env, watch, on, ...) on top."""
    data: dict[str, Any] = {
        "name": fields.pop("name", Path(program).stem.replace("_", "-")),
        "command": [sys.executable, str(PROGRAMS / program)],
        "kill_grace_secs": 0.5,
        "preflight": {"enabled": False},
    }
    data.update(fields)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def base_weights(folder: Path) -> Path:
    """A small stand-in for base weights: a file the program reads and ftmon fingerprints."""
    path = folder / "base" / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights" * 1000)
    return path

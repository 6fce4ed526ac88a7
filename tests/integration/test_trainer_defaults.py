"""The memory preflight assumes the reference trainer's defaults for flags a recipe leaves out;
supervisor/ never imports trainer/, so this test holds the two in step: a default changed in
trainer/cli.py and not in estimate/preflight.py fails here."""

from __future__ import annotations

from supervisor.estimate.preflight import REFERENCE_TRAINER_DEFAULTS
from trainer.cli import FLAGS


def test_preflight_assumes_the_reference_trainers_own_defaults() -> None:
    """Every default the preflight assumes is the trainer's default for that flag."""
    trainer_defaults = {flag.name: flag.kwargs.get("default") for flag in FLAGS}
    assumed = dict(REFERENCE_TRAINER_DEFAULTS)
    assert set(assumed) <= set(trainer_defaults), "the preflight names a flag the trainer lacks"
    assert assumed == {k: trainer_defaults[k] for k in assumed}

"""The rules: small classes, each with a pydantic settings model, fed by the monitor.

`WatchSettings` is what a recipe's `watch:` section (and `ftmon --watch`) configures: one field
per rule, named as the rule, e.g. `watch: {vram: {limit_gb: 104, over_secs: 0}, stall: {secs:
600}}`. `build_rules(settings)` returns the enabled rules, in a fixed order.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from supervisor.rules.base import Rule, RuleSettings
from supervisor.rules.divergence import DivergenceRule, DivergenceSettings
from supervisor.rules.exit import ExitRule, ExitSettings, describe_exit
from supervisor.rules.hang import HangRule, HangSettings, StragglerRule, StragglerSettings
from supervisor.rules.job_end import (
    JobEndSettings,
    JobOomRule,
    NodeFailRule,
    PreemptedRule,
    TimeLimitRule,
)
from supervisor.rules.kl import KlRule, KlSettings
from supervisor.rules.nan import NanRule, NanSettings
from supervisor.rules.oom import OomRule, OomSettings
from supervisor.rules.repetition.rule import RepetitionRule
from supervisor.rules.repetition.settings import RepetitionSettings
from supervisor.rules.resources import HostMemRule, HostMemSettings, VramRule, VramSettings
from supervisor.rules.skipped import SkippedStepsRule, SkippedStepsSettings
from supervisor.rules.stall import StallRule, StallSettings
from supervisor.rules.traceback import TracebackRule, TracebackSettings
from supervisor.rules.trend import (
    GradNormRule,
    GradNormSettings,
    JumpSettings,
    SpikeRule,
)


class WatchSettings(BaseModel):
    """Settings of every rule; unknown rule names and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    nan: NanSettings = Field(default_factory=NanSettings, description="Non-finite loss/norm.")
    oom: OomSettings = Field(default_factory=OomSettings, description="Out of memory.")
    repetition: RepetitionSettings = Field(
        default_factory=RepetitionSettings, description="Repetition collapse in generated text."
    )
    spike: JumpSettings = Field(default_factory=JumpSettings, description="Loss spike.")
    grad_norm: GradNormSettings = Field(
        default_factory=GradNormSettings, description="Grad-norm explosion."
    )
    divergence: DivergenceSettings = Field(
        default_factory=DivergenceSettings, description="Validation loss rising, overfitting."
    )
    kl: KlSettings = Field(
        default_factory=KlSettings, description="A KL divergence of the policy update blowing up."
    )
    skipped_steps: SkippedStepsSettings = Field(
        default_factory=SkippedStepsSettings, description="Runs of skipped (overflowed) steps."
    )
    stall: StallSettings = Field(default_factory=StallSettings, description="No progress.")
    hang: HangSettings = Field(
        default_factory=HangSettings, description="One rank stopped while the others went on."
    )
    straggler: StragglerSettings = Field(
        default_factory=StragglerSettings, description="One rank much slower than the fastest."
    )
    traceback: TracebackSettings = Field(
        default_factory=TracebackSettings, description="Python tracebacks."
    )
    vram: VramSettings = Field(default_factory=VramSettings, description="GPU memory limit.")
    host_mem: HostMemSettings = Field(
        default_factory=HostMemSettings, description="Host memory limit."
    )
    exit: ExitSettings = Field(default_factory=ExitSettings, description="How the run ended.")
    time_limit: JobEndSettings = Field(
        default_factory=JobEndSettings, description="The scheduler's time limit ended the job."
    )
    preempted: JobEndSettings = Field(
        default_factory=JobEndSettings, description="The scheduler preempted the job."
    )
    node_fail: JobEndSettings = Field(
        default_factory=JobEndSettings, description="The job's node failed."
    )
    job_oom: JobEndSettings = Field(
        default_factory=JobEndSettings, description="The job's memory limit (cgroup) killed it."
    )


# Field name -> rule class; the order is the order rules see each event.
RULES: dict[str, type[Rule]] = {
    "nan": NanRule,
    "oom": OomRule,
    "repetition": RepetitionRule,
    "spike": SpikeRule,
    "grad_norm": GradNormRule,
    "divergence": DivergenceRule,
    "kl": KlRule,
    "skipped_steps": SkippedStepsRule,
    "stall": StallRule,
    "hang": HangRule,
    "straggler": StragglerRule,
    "traceback": TracebackRule,
    "vram": VramRule,
    "host_mem": HostMemRule,
    "exit": ExitRule,
    "time_limit": TimeLimitRule,
    "preempted": PreemptedRule,
    "node_fail": NodeFailRule,
    "job_oom": JobOomRule,
}


def build_rules(settings: WatchSettings | None = None) -> list[Rule]:
    """One instance of every enabled rule, configured from `settings`."""
    settings = settings if settings is not None else WatchSettings()
    rules: list[Rule] = []
    for name, cls in RULES.items():
        rule_settings: RuleSettings = getattr(settings, name)
        if rule_settings.enabled:
            rules.append(cls(rule_settings))
    return rules


__all__ = [
    "RULES",
    "Rule",
    "RuleSettings",
    "WatchSettings",
    "build_rules",
    "describe_exit",
]

"""`kl`: a KL divergence of the policy update blowing up (PPO, GRPO, RLHF trainers).

RL trainers watch the KL between the policy and the policy that collected the data (or the
reference model) because a jump in it is the update blowing up, before the reward or the loss
shows it. Their own checks are the definitions here:

- stable-baselines3's PPO (`target_kl`, default None: off) stops an update's epochs "Early
  stopping at step N due to reaching max kl" when the approximate KL passes 1.5 x `target_kl`
  (stable_baselines3/ppo/ppo.py; Spinning Up's PPO the same, `target_kl=0.01`). With `target`
  set, a KL above `target_factor` (1.5) x `target` is reported, as there.
- Without a target, a KL far above its own level: above `factor` (10, as Megatron-LM's loss
  check, rules/trend.py) times the largest of its last `window` values, and above `floor`.
  A KL grows from 0 in a healthy run (the policy starts as the reference: 0, 0.0005, 0.02, 0.1
  over hundreds of steps), so its own largest recent value is the level, not the median,
  and `floor` (1.0 nat; SB3/Spinning Up stop at 0.015, a healthy GRPO per-token KL is 0.001-0.1)
  keeps a KL still near 0 from counting at any factor; a level of 0 or below (the first steps,
  a k1 estimate) is no level. baselines' PPO1 table: 0.017, then 1.76,
  3.79, 4.34 within one iteration's epochs, the policy collapsing after.

Non-finite KLs are the nan rule's. Said at WARNING, as a loss spike; one report per episode
(until the KL falls back under the limit).
"""

from __future__ import annotations

from collections import deque

from pydantic import Field

from supervisor.events import Anomaly, Metric, Severity, show_step
from supervisor.rules.base import PerKeyRule, RuleSettings, fmt_ratio, fmt_value
from supervisor.rules.names import is_kl


class KlSettings(RuleSettings):
    factor: float = Field(
        10.0, gt=1, description="A KL above this many times the largest of its recent values..."
    )
    floor: float = Field(1.0, ge=0, description="...and above this (nats).")
    window: int = Field(20, ge=1, description="Recent values whose largest is the level.")
    target: float | None = Field(
        None, gt=0, description="The run's target KL (SB3 `target_kl`; None: not known)..."
    )
    target_factor: float = Field(
        1.5, gt=0, description="...a KL above this many times it is reported (SB3: 1.5)."
    )


class KlRule(PerKeyRule):
    name = "kl"
    Settings = KlSettings

    def __init__(self, settings: KlSettings | None = None) -> None:
        super().__init__(settings)
        self.settings: KlSettings
        self._recent: dict[str, deque[float]] = {}
        self._spiking: dict[str, bool] = {}

    def wants(self, key: str) -> bool:
        return is_kl(key)

    def _check(self, key: str, value: float, event: Metric) -> Anomaly | None:
        s = self.settings
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = deque(maxlen=s.window)
        message = ""
        if s.target is not None and value > s.target_factor * s.target:
            message = (
                f"{key} is {fmt_value(value)}, above {s.target_factor:g}x the target KL "
                f"{fmt_value(s.target)}"
            )
        elif recent and value > s.floor:
            # A level of 0 (the policy still the reference: TRL logs 0.0 for the first steps,
            # k1 estimates below 0) gives nothing to be far above.
            level = max(recent)
            if level > 0 and value > s.factor * level:
                message = (
                    f"{key} jumped to {fmt_value(value)} (largest of the last {len(recent)}: "
                    f"{fmt_value(level)}, {fmt_ratio(value / level)}x): the policy update blew up"
                )
        recent.append(value)
        was = self._spiking.get(key, False)
        self._spiking[key] = bool(message)
        if not message or was:
            return None
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        return self.anomaly(Severity.WARNING, message + where, event.ts, event.lineno)

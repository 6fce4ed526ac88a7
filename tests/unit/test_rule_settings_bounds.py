"""No rule setting takes an integer so large that the rule fails on it later (after a launch):
`watch.spike.window: 1e20` is refused when the settings are read, naming the key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from supervisor.rules import RULES, WatchSettings
from supervisor.rules.base import MAX_COUNT

INT_FIELDS = [
    (rule, name)
    for rule, cls in RULES.items()
    for name, field in cls.Settings.model_fields.items()
    if field.annotation in (int, "int", int | None, "int | None")
]


def test_there_are_integer_settings_to_check() -> None:
    assert ("spike", "window") in INT_FIELDS and len(INT_FIELDS) > 10


@pytest.mark.parametrize(("rule", "name"), INT_FIELDS)
def test_an_absurd_integer_setting_is_refused_by_name(rule: str, name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WatchSettings.model_validate({rule: {name: 10**20}})
    [err] = caught.value.errors()
    # A setting that sizes a buffer has a tighter bound of its own (`le=`), said instead.
    tighter = [m.le for m in RULES[rule].Settings.model_fields[name].metadata if hasattr(m, "le")]
    bound = f"less than or equal to {tighter[0]}" if tighter else f"{MAX_COUNT:,}"
    assert err["loc"] == (rule, name) and bound in err["msg"]

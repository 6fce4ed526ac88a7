"""The `repetition` rule, by what each module judges (the rule itself: rule.py)."""

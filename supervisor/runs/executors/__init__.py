"""Where runs execute: every OS effect on a run's processes goes through here."""

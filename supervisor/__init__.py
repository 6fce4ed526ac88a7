"""ftmon's headless core: tail, parse, rules, runs, history. Runs without a UI.

Never imports textual (the TUI) or torch (the trainer); tests/test_boundaries.py checks it.
"""

__version__ = "0.1.0"

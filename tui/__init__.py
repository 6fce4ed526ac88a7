"""ftmon's Textual front end: a view and a controller over `supervisor/`, no logic of its own.

Imports go one way: tui -> supervisor, never back. This package's __init__ imports nothing, so
that the console script (tui/cli.py) can start the headless commands without loading textual.
"""

"""One module per `ftmon` subcommand. Each has `register(subparsers)` and sets `func`.

Modules here import their heavy dependencies inside `run()`, so that `ftmon --help` stays fast.
"""

"""The headless command line: `main` in main.py, one module per subcommand."""

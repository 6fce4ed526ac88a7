"""Sweeps: a recipe's `sweep:` expanded into member recipes, and the queue that runs them."""

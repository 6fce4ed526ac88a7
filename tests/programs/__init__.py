"""Small training-shaped programs the run tests launch, and a helper to write their recipes."""

"""The memory estimate: a recipe -> peak memory by phase, a verdict and a suggestion."""

"""Runs: plan, launch, state, policy, adjust, relaunch; where they execute is `executors/`."""

"""Monitoring: the pure parse + rules pipeline, the async loop that feeds it, resource samples."""

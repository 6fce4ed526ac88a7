"""Parsing: one log line -> facts (metrics, evaluations, samples, progress, text)."""

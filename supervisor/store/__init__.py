"""The history database: every run, command, anomaly, action and metric."""

"""The main screen's parts: runs tree, live log, plots, resource gauges, anomaly feed."""

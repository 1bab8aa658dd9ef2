"""The bench suite: load generator, scenarios, metrics, report (python -m bench)."""

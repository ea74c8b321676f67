"""Subscribers to a call's events: logs, Prometheus metrics, recordings and event logs."""

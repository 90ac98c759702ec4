"""Metrics and the health endpoints of every long-running process."""

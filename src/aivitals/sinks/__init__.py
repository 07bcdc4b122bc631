"""Sinks: where recorded calls go."""

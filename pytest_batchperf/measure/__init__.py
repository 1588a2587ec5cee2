"""Measuring runs of a case: traces, round metrics, resources, interference, environment."""

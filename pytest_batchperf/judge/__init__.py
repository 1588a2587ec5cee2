"""Judging measurements against a reference: metrics, statistics, verdicts, results, baselines."""

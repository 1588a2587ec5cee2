"""Judging measurements against a reference: metric catalog, statistics, verdicts, results, baselines."""

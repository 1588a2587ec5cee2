"""Judging measurements against a reference: metrics, statistics, verdicts, results, baselines."""

# Here, not in decision.py: the options table reads them when pytest loads the plugin.
DEFAULT_ALPHA = 0.01  # false alarms per run of the whole suite
DEFAULT_POWER = 0.8
DEFAULT_KEEP_JOBS = 30  # jobs a baseline keeps

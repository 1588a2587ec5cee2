"""pytest-batchperf: benchmark LLM batch inference and gate regressions against baselines."""

__version__ = "0.1.0"

# Bumped whenever the JSON layout of results or baselines changes incompatibly.
SCHEMA_VERSION = 3
